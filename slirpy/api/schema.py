# SPDX-License-Identifier: GPL-2.0-or-later
"""The slirp4netns API wire contract: requests in, typed commands out, replies rendered.

This module owns the validation of one API request (``parse_request``), the
framing test the server uses to decide that a request has fully arrived
(``is_complete``) and the byte-exact rendering of every reply.  It is pure:
no I/O, no clock, no asyncio.

Theory of operation
-------------------
A request is the first JSON value of the bytes a client sent (leading JSON
whitespace skipped, anything after the value ignored, as parson does in
slirp4netns).  Checks run in slirp4netns's order and produce its exact error
texts (``api.c: api_handle_req``, ``api_handle_req_add_hostfwd``,
``api_handle_req_remove_hostfwd``):

1. 4096 bytes or more: ``too large message``;
2. not JSON (also duplicate object keys, ``NaN``/``Infinity``, nesting too
   deep): ``cannot parse JSON``;
3. not an object: ``json_object() failed``;
4. ``execute`` missing or not a string: ``no execute found``;
5. not one of ``add_hostfwd``, ``list_hostfwd``, ``remove_hostfwd``:
   ``unknown execute``;
6. the command's ``arguments``, in the order proto, host_addr, host_port,
   guest_addr, guest_port (then slirpy's ``splice``), or ``id``.

Deliberate departures from slirp4netns, each one a request that slirp4netns
mishandles:

* a missing or non-string ``proto`` is ``bad arguments.proto`` (slirp4netns
  dereferences NULL and crashes);
* ``host_port`` 0 is accepted and means "pick a free port" (the reply then
  carries the port); ports outside 0..65535 (host) or 1..65535 (guest) are
  refused instead of wrapping modulo 65536;
* ``host_addr`` may also be an IPv6 literal (without a ``%scope``);
* a ``host_addr``/``guest_addr`` that is present but not a string (e.g. a
  number or null) is a bad argument rather than "missing";
* ``remove_hostfwd`` refuses an ``id`` that is not a number or is below 1 here;
  an id that names no forward is refused by the server with the same text;
* ``list_hostfwd`` answers ``{"return":{"entries":[...]},"entries":[...]}``:
  the ``return`` wrapper the man page and upstream test expect, and the bare
  ``entries`` member the real binary sends.

Numbers follow the C ``(int)`` cast: finite JSON numbers are truncated toward
zero (8080.7 is 8080); booleans are not numbers.
"""

from __future__ import annotations

import ipaddress
import json
import math
from dataclasses import dataclass
from typing import Final, Literal

MAX_REQUEST: Final = 4096
"""A request must be shorter than this many bytes (slirp4netns's read buffer)."""

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Proto = Literal["tcp", "udp"]

CANNOT_PARSE_JSON: Final = "bad request: cannot parse JSON"
NOT_AN_OBJECT: Final = "bad request: json_object() failed"
NO_EXECUTE: Final = "bad request: no execute found"
UNKNOWN_EXECUTE: Final = "bad request: unknown execute"
TOO_LARGE: Final = "bad request: too large message"
BAD_PROTO: Final = "bad request: add_hostfwd: bad arguments.proto"
BAD_HOST_ADDR: Final = "bad request: add_hostfwd: bad arguments.host_addr"
BAD_HOST_PORT: Final = "bad request: add_hostfwd: bad arguments.host_port"
BAD_GUEST_ADDR: Final = "bad request: add_hostfwd: bad arguments.guest_addr"
BAD_GUEST_PORT: Final = "bad request: add_hostfwd: bad arguments.guest_port"
BAD_SPLICE: Final = "bad request: add_hostfwd: bad arguments.splice"
ADD_FAILED: Final = "bad request: add_hostfwd: slirp_add_hostfwd failed"
BAD_ID: Final = "bad request: remove_hostfwd: bad arguments.id"
REMOVE_FAILED: Final = "bad request: remove_hostfwd: slirp_remove_hostfwd failed"

DEFAULT_HOST_ADDR: Final = ipaddress.IPv4Address("0.0.0.0")

_JSON_WHITESPACE: Final = " \t\n\r"
_SEPARATORS: Final = (",", ":")


@dataclass(frozen=True, slots=True, kw_only=True)
class AddHostFwd:
    """``add_hostfwd``: listen on host_addr:host_port, forward to the guest.

    ``host_port`` 0 asks for a free port.  ``guest_addr`` None means the
    default guest (network+100), which the caller resolves.  ``splice`` asks
    for (True) or against (False) the in-namespace zero-copy path for loopback
    clients, a slirpy extension; None leaves it to the daemon's default.
    """

    proto: Proto
    host_addr: IPAddress
    host_port: int
    guest_addr: IPAddress | None
    guest_port: int
    splice: bool | None = None


@dataclass(frozen=True, slots=True)
class RemoveHostFwd:
    """``remove_hostfwd``: drop the forward with this id (always >= 1)."""

    id: int


@dataclass(frozen=True, slots=True)
class ListHostFwd:
    """``list_hostfwd``: every forward, in the order they were added."""


@dataclass(frozen=True, slots=True)
class ListFlows:
    """``list_flows`` (slirpy extension): the flows the stack tracks now."""


@dataclass(frozen=True, slots=True)
class GetStats:
    """``stats`` (slirpy extension): the stack's counters."""


Command = AddHostFwd | RemoveHostFwd | ListHostFwd | ListFlows | GetStats


@dataclass(frozen=True, slots=True)
class BadRequest:
    """A request that is refused before reaching the service; ``desc`` is the text."""

    desc: str


@dataclass(frozen=True, slots=True, kw_only=True)
class HostFwdEntry:
    """One forward as ``list_hostfwd`` shows it, with the guest address resolved."""

    id: int
    proto: Proto
    host_addr: IPAddress
    host_port: int
    guest_addr: IPAddress
    guest_port: int
    splice: bool = False


class _NotJSON(ValueError):
    """The bytes do not start with a JSON value slirp4netns's parser would accept."""


def _reject_constant(name: str) -> object:
    raise _NotJSON(f"{name} is not JSON")


def _unique_keys(pairs: list[tuple[str, object]]) -> dict[str, object]:
    obj: dict[str, object] = {}
    for key, value in pairs:
        if key in obj:
            raise _NotJSON(f"duplicate key {key!r}")
        obj[key] = value
    return obj


_DECODER: Final = json.JSONDecoder(
    object_pairs_hook=_unique_keys, parse_constant=_reject_constant
)


def _decode_first(data: bytes) -> object:
    """The first JSON value in ``data``; raises ``_NotJSON``.

    Bytes that are not UTF-8 are carried as lone surrogates, so they can only
    make the request fail later (in a string) or be ignored (after the value).
    """
    text = data.decode("utf-8", "surrogateescape").lstrip(_JSON_WHITESPACE)
    try:
        value, _end = _DECODER.raw_decode(text)
    except (ValueError, RecursionError) as exc:
        raise _NotJSON(str(exc)) from exc
    return value


def is_complete(data: bytes) -> bool:
    """True when ``data`` already decides the reply: it starts with a whole JSON value.

    Also true when the decoder gives up for a reason more bytes cannot cure
    (nesting too deep).  False while the value may still be arriving; the server
    then keeps reading until EOF, the size limit or its timeout.
    """
    text = data.decode("utf-8", "surrogateescape").lstrip(_JSON_WHITESPACE)
    if not text:
        return False
    try:
        _DECODER.raw_decode(text)
    except RecursionError:
        return True
    except ValueError:
        return False
    return True


_MISSING: Final = object()


def _number(value: object) -> int | None:
    """A JSON number truncated toward zero like C's ``(int)``; None if not a number."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value):
        return int(value)
    return None


def _port(value: object, lowest: int) -> int | None:
    port = _number(value)
    if port is None or not lowest <= port <= 0xFFFF:
        return None
    return port


def _host_addr(value: object) -> IPAddress | None:
    if value is _MISSING or value == "":
        return DEFAULT_HOST_ADDR
    if not isinstance(value, str):
        return None
    try:
        if ":" in value:
            addr6 = ipaddress.IPv6Address(value)
            return None if addr6.scope_id is not None else addr6
        return ipaddress.IPv4Address(value)
    except ValueError:
        return None


def _parse_add(args: dict[str, object]) -> AddHostFwd | BadRequest:
    proto: Proto
    match args.get("proto"):
        case "tcp":
            proto = "tcp"
        case "udp":
            proto = "udp"
        case _:
            return BadRequest(BAD_PROTO)
    host_addr = _host_addr(args.get("host_addr", _MISSING))
    if host_addr is None:
        return BadRequest(BAD_HOST_ADDR)
    host_port = _port(args.get("host_port"), 0)
    if host_port is None:
        return BadRequest(BAD_HOST_PORT)
    guest_addr: IPAddress | None = None
    raw_guest = args.get("guest_addr", _MISSING)
    if raw_guest is not _MISSING and raw_guest != "":
        if not isinstance(raw_guest, str):
            return BadRequest(BAD_GUEST_ADDR)
        try:
            guest_addr = ipaddress.ip_address(raw_guest)
        except ValueError:
            return BadRequest(BAD_GUEST_ADDR)
        if "%" in raw_guest:
            return BadRequest(BAD_GUEST_ADDR)
    guest_port = _port(args.get("guest_port"), 1)
    if guest_port is None:
        return BadRequest(BAD_GUEST_PORT)
    splice: bool | None = None
    if "splice" in args:
        value = args["splice"]
        if not isinstance(value, bool):
            return BadRequest(BAD_SPLICE)
        splice = value
    return AddHostFwd(
        proto=proto,
        host_addr=host_addr,
        host_port=host_port,
        guest_addr=guest_addr,
        guest_port=guest_port,
        splice=splice,
    )


def _parse_remove(args: dict[str, object]) -> RemoveHostFwd | BadRequest:
    fwd_id = _number(args.get("id"))
    if fwd_id is None or fwd_id < 1:
        return BadRequest(BAD_ID)
    return RemoveHostFwd(fwd_id)


def parse_request(data: bytes) -> Command | BadRequest:
    """Validate one request exactly as slirp4netns does (see the module docstring)."""
    if len(data) >= MAX_REQUEST:
        return BadRequest(TOO_LARGE)
    try:
        value = _decode_first(data)
    except _NotJSON:
        return BadRequest(CANNOT_PARSE_JSON)
    if not isinstance(value, dict):
        return BadRequest(NOT_AN_OBJECT)
    execute = value.get("execute")
    if not isinstance(execute, str):
        return BadRequest(NO_EXECUTE)
    raw_args = value.get("arguments")
    args: dict[str, object] = raw_args if isinstance(raw_args, dict) else {}
    match execute:
        case "add_hostfwd":
            return _parse_add(args)
        case "remove_hostfwd":
            return _parse_remove(args)
        case "list_hostfwd":
            return ListHostFwd()
        case "list_flows":
            return ListFlows()
        case "stats":
            return GetStats()
        case _:
            return BadRequest(UNKNOWN_EXECUTE)


def _dump(obj: dict[str, object]) -> bytes:
    return json.dumps(obj, separators=_SEPARATORS).encode()


def render_error(desc: str) -> bytes:
    """``{"error":{"desc":"..."}}``."""
    return _dump({"error": {"desc": desc}})


def render_added(fwd_id: int, host_port: int | None = None) -> bytes:
    """``{"return":{"id":N}}``; with ``host_port`` (for a request that asked for
    port 0) ``{"return":{"id":N,"host_port":P}}``."""
    ret: dict[str, object] = {"id": fwd_id}
    if host_port is not None:
        ret["host_port"] = host_port
    return _dump({"return": ret})


def render_removed() -> bytes:
    """``{"return":{}}``."""
    return _dump({"return": {}})


def render_return(value: dict[str, object]) -> bytes:
    """``{"return":VALUE}`` (the extensions' replies)."""
    return _dump({"return": value})


def entry_to_json(entry: HostFwdEntry) -> dict[str, object]:
    """One ``list_hostfwd`` entry; ``splice`` appears only when true."""
    obj: dict[str, object] = {
        "id": entry.id,
        "proto": entry.proto,
        "host_addr": str(entry.host_addr),
        "host_port": entry.host_port,
        "guest_addr": str(entry.guest_addr),
        "guest_port": entry.guest_port,
    }
    if entry.splice:
        obj["splice"] = True
    return obj


def render_entries(entries: list[HostFwdEntry]) -> bytes:
    """``{"return":{"entries":[...]},"entries":[...]}``: both documented shapes."""
    items = [entry_to_json(entry) for entry in entries]
    return _dump({"return": {"entries": items}, "entries": items})
