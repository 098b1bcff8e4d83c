# SPDX-License-Identifier: GPL-2.0-or-later
"""The API socket: a UNIX stream server, one slirp4netns request per connection.

This module owns the socket file (created mode 0600, removed by ``close``), the
framing of a request on a connection, the per-connection deadline and the cap
on connections served at once.  What a request means is ``schema``'s business;
what a forward does is the ``HostFwdService``'s.

Theory of operation
-------------------
Everything runs as callbacks of one ``asyncio.Protocol`` per connection on the
daemon's loop, so no client can hold up anything else (slirp4netns does a
blocking ``read()`` in its main loop, and a silent client stops the world).

A connection collects bytes until one of these decides the reply:

* the first 4095 bytes hold a complete JSON value (``schema.is_complete``):
  that prefix is the request; anything after it is ignored, as parson does;
* 4096 bytes arrived without a complete value: ``too large message``;
* EOF: everything received is the request (nothing at all gives
  ``cannot parse JSON``, as in slirp4netns);
* the deadline (``timeout`` seconds after accept): whatever arrived is the
  request; a client that sent nothing is closed without an answer.

The reply is written once, followed by a write EOF, so that a client reading
to EOF (rootlesskit's ``io.ReadAll``) finishes as soon as it has the reply and
one doing a single read (podman) gets it whole.  The connection is closed once
the client's EOF arrives; until then its further bytes are read and discarded.
Closing a UNIX stream socket with unread input would make the peer's next read
fail with ECONNRESET instead of EOF.  The deadline still applies while
draining, and a client sending more than ``_DRAIN_LIMIT`` after its request is
cut off.

Beyond ``max_connections`` connections in progress, new ones are closed at
once, so slow clients cost bounded memory and file descriptors.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import stat
from typing import Final, Protocol, cast

from slirpy.api.schema import (
    ADD_FAILED,
    BAD_ID,
    MAX_REQUEST,
    REMOVE_FAILED,
    AddHostFwd,
    BadRequest,
    GetStats,
    HostFwdEntry,
    ListFlows,
    ListHostFwd,
    RemoveHostFwd,
    is_complete,
    parse_request,
    render_added,
    render_entries,
    render_error,
    render_removed,
    render_return,
)

log = logging.getLogger(__name__)

SUN_PATH_MAX: Final = 108
"""``sizeof(struct sockaddr_un.sun_path)`` on Linux; a path must be shorter."""

DEFAULT_TIMEOUT: Final = 5.0
DEFAULT_MAX_CONNECTIONS: Final = 64
SOCKET_MODE: Final = 0o600

_DRAIN_LIMIT: Final = 64 * 1024
_LISTEN_BACKLOG: Final = 64


class HostFwdService(Protocol):
    """What the API needs from the daemon (the port forwarder and, for the
    extensions, the stack); every call returns at once."""

    def add(self, cmd: AddHostFwd) -> tuple[int, int] | None:
        """Start a forward; (its id, the bound host port), or None if it failed.

        ``cmd.guest_addr`` None means the default guest address.
        """
        ...

    def remove(self, id: int) -> bool:
        """Stop the forward ``id``; False if that failed."""
        ...

    def entries(self) -> list[HostFwdEntry]:
        """Every forward, in the order they were added."""
        ...

    def flows(self) -> list[dict[str, object]]:
        """``list_flows``: one JSON object per flow."""
        ...

    def stats(self) -> dict[str, object]:
        """``stats``: the counters, as a JSON object."""
        ...


class APISocketPathTooLongError(ValueError):
    """The API socket path does not fit into ``sockaddr_un``."""

    def __init__(self) -> None:
        super().__init__(
            f"the specified API socket path is too long (>= {SUN_PATH_MAX})"
        )


def answer(data: bytes, service: HostFwdService) -> bytes:
    """The reply to the request ``data``, after asking ``service`` if it is valid.

    ``remove_hostfwd`` of an id the service does not list is ``bad arguments.id``
    (slirp4netns looks the id up first); a service that fails or raises gives
    the ``slirp_*_hostfwd failed`` texts.
    """
    cmd = parse_request(data)
    match cmd:
        case BadRequest(desc=desc):
            return render_error(desc)
        case ListHostFwd():
            return render_entries(service.entries())
        case ListFlows():
            return render_return({"flows": service.flows()})
        case GetStats():
            return render_return(service.stats())
        case RemoveHostFwd(id=fwd_id):
            if all(entry.id != fwd_id for entry in service.entries()):
                return render_error(BAD_ID)
            try:
                removed = service.remove(fwd_id)
            except Exception:
                log.exception("api: removing forward %d failed", fwd_id)
                removed = False
            return render_removed() if removed else render_error(REMOVE_FAILED)
        case AddHostFwd():
            try:
                added = service.add(cmd)
            except Exception:
                log.exception("api: adding forward %s failed", cmd)
                added = None
            if added is None:
                return render_error(ADD_FAILED)
            fwd_id, host_port = added
            return render_added(fwd_id, host_port if cmd.host_port == 0 else None)


def _printable(data: bytes) -> str:
    """``data`` for a log line: one line, control characters escaped."""
    text = data.decode("utf-8", "backslashreplace").removesuffix("\n")
    return "".join(
        c if c.isprintable() or c == " " else c.encode("unicode_escape").decode()
        for c in text
    )


class _Connection(asyncio.Protocol):
    """One API client, from accept to close (see the module docstring)."""

    def __init__(self, server: APIServer) -> None:
        self._server = server
        self._transport: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._buf = bytearray()
        self._answered = False
        self._drained = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        if not self._server._admit(self):
            log.warning(
                "api: more than %d connections at once; closing a new one",
                self._server.max_connections,
            )
            self._transport.close()
            return
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(self._server.timeout, self._on_timeout)

    def data_received(self, data: bytes) -> None:
        if self._answered:
            self._drained += len(data)
            if self._drained > _DRAIN_LIMIT:
                self.abort()
            return
        self._buf += data[: MAX_REQUEST - len(self._buf)]
        head = bytes(self._buf[: MAX_REQUEST - 1])
        if is_complete(head):
            self._reply(head)
        elif len(self._buf) >= MAX_REQUEST:
            self._reply(bytes(self._buf))

    def eof_received(self) -> bool:
        if not self._answered:
            self._reply(bytes(self._buf))
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._server._release(self)

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    def _close_or_abort(self) -> None:
        """Close after the reply if it is already out, else drop the connection."""
        transport = self._transport
        if transport is None:
            return
        if transport.get_write_buffer_size() == 0:
            transport.close()
        else:
            transport.abort()

    def _on_timeout(self) -> None:
        self._timer = None
        if self._answered:
            log.debug("api: client did not close its side in time")
            self.abort()
        elif self._buf:
            log.debug("api: client did not finish its request in time")
            self._reply(bytes(self._buf))
            self._close_or_abort()
        else:
            log.debug("api: client sent nothing in time; closing")
            self.abort()

    def _reply(self, data: bytes) -> None:
        transport = self._transport
        assert transport is not None
        self._answered = True
        if len(data) >= MAX_REQUEST:
            log.info("api_handler: too large message (>= %d bytes)", len(data))
        else:
            log.debug("api_handler: got request: %s", _printable(data))
        try:
            reply = answer(data, self._server.service)
        except Exception:
            log.exception("api: cannot answer request")
            self.abort()
            return
        transport.write(reply)
        if transport.can_write_eof():
            transport.write_eof()


class APIServer:
    """The ``--api-socket`` server: ``start`` it before the ready byte."""

    def __init__(
        self,
        service: HostFwdService,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
    ) -> None:
        self.service: Final = service
        self.timeout: Final = timeout
        self.max_connections: Final = max_connections
        self._server: asyncio.Server | None = None
        self._path: str | None = None
        self._identity: tuple[int, int] | None = None
        self._connections: set[_Connection] = set()

    @property
    def path(self) -> str | None:
        """The socket path while serving, else None."""
        return self._path

    async def start(self, path: str) -> None:
        """Replace whatever is at ``path`` with a listening socket, mode 0600.

        Returns once connections are accepted.  Raises
        ``APISocketPathTooLongError`` for a path of 108 bytes or more and
        ``OSError`` if the socket cannot be created.
        """
        if self._server is not None:
            raise RuntimeError("the API server is already started")
        if len(os.fsencode(path)) >= SUN_PATH_MAX:
            raise APISocketPathTooLongError
        with contextlib.suppress(OSError):  # slirp4netns ignores this too
            os.unlink(path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            # On Linux bind() gives the new file the socket inode's mode (less
            # the umask), so the file never exists with wider permissions.  The
            # chmod below covers a kernel that refuses this.
            with contextlib.suppress(OSError):
                os.fchmod(sock.fileno(), SOCKET_MODE)
            sock.bind(path)
            st = os.lstat(path)
            if stat.S_IMODE(st.st_mode) != SOCKET_MODE:
                os.chmod(path, SOCKET_MODE)
            sock.setblocking(False)
            loop = asyncio.get_running_loop()
            self._server = await loop.create_unix_server(
                lambda: _Connection(self), sock=sock, backlog=_LISTEN_BACKLOG
            )
        except BaseException:
            sock.close()
            raise
        self._path = path
        self._identity = (st.st_dev, st.st_ino)
        log.debug("api: listening on %s", path)

    def close(self) -> None:
        """Stop listening, drop connections in progress, remove the socket file.

        The file is removed only if it is still the one ``start`` created.
        Safe to call more than once.
        """
        if self._server is not None:
            self._server.close()
        for conn in list(self._connections):
            conn.abort()
        path, identity = self._path, self._identity
        self._path = self._identity = None
        if path is None:
            return
        try:
            st = os.lstat(path)
        except OSError:
            return
        if (st.st_dev, st.st_ino) == identity:
            # Read-only inside the sandbox: the file is then left, as
            # slirp4netns leaves it.
            with contextlib.suppress(OSError):
                os.unlink(path)

    async def wait_closed(self) -> None:
        """Wait until the listening socket is closed after ``close``."""
        if self._server is not None:
            await self._server.wait_closed()

    def _admit(self, conn: _Connection) -> bool:
        if len(self._connections) >= self.max_connections:
            return False
        self._connections.add(conn)
        return True

    def _release(self, conn: _Connection) -> None:
        self._connections.discard(conn)
