# SPDX-License-Identifier: GPL-2.0-or-later
"""ICMPv6 (RFC 4443) and Neighbor Discovery (RFC 4861): messages and options.

The options walk always advances: every option is a whole number of 8-byte
units and a length of 0 is malformed (RFC 4861 §4.6), so a hostile guest
cannot make it loop.
"""

from __future__ import annotations

import enum
import struct
from typing import Final, NamedTuple, Self

from slirpy.stack.errors import MalformedError, TruncatedError

HEADER_LEN: Final = 4
_HEAD: Final = struct.Struct("!BBH")

OPT_SOURCE_LL: Final = 1
OPT_TARGET_LL: Final = 2
OPT_PREFIX: Final = 3
OPT_MTU: Final = 5
OPT_RDNSS: Final = 25


class ICMPv6Type(enum.IntEnum):
    DEST_UNREACHABLE = 1
    PACKET_TOO_BIG = 2
    TIME_EXCEEDED = 3
    ECHO_REQUEST = 128
    ECHO_REPLY = 129
    ROUTER_SOLICITATION = 133
    ROUTER_ADVERTISEMENT = 134
    NEIGHBOR_SOLICITATION = 135
    NEIGHBOR_ADVERTISEMENT = 136


class ICMPv6Header(NamedTuple):
    type: int
    code: int
    checksum: int

    @classmethod
    def parse(cls, buf: memoryview) -> tuple[Self, memoryview]:
        if len(buf) < HEADER_LEN:
            raise TruncatedError("ICMPv6 message shorter than 4 bytes")
        typ, code, csum = _HEAD.unpack_from(buf)
        return cls(type=typ, code=code, checksum=csum), buf[HEADER_LEN:]


def parse_options(buf: memoryview) -> dict[int, bytes]:
    """ND options by type (the first of each type wins), values without the
    type and length bytes."""
    options: dict[int, bytes] = {}
    i = 0
    end = len(buf)
    while i < end:
        if i + 2 > end:
            raise TruncatedError("ND option header cut off")
        kind = buf[i]
        length = buf[i + 1] * 8
        if length == 0:
            raise MalformedError("ND option of length 0")
        if i + length > end:
            raise TruncatedError("ND option runs past the message")
        options.setdefault(kind, bytes(buf[i + 2 : i + length]))
        i += length
    return options


def link_layer_option(kind: int, mac: bytes) -> bytes:
    return bytes((kind, 1)) + mac


def neighbor_advertisement(target: bytes, mac: bytes, *, solicited: bool) -> bytes:
    """An NA body (after the 4-byte header): router, solicited, override flags."""
    flags = 0x80000000 | 0x20000000 | (0x40000000 if solicited else 0)
    return struct.pack("!I", flags) + target + link_layer_option(OPT_TARGET_LL, mac)


def router_advertisement(
    *,
    router_lifetime: int,
    mac: bytes,
    mtu: int,
    prefix: bytes,
    prefix_len: int,
    valid: int,
    preferred: int,
    dns: bytes | None,
    dns_lifetime: int,
) -> bytes:
    """An RA body (after the 4-byte header) with source LL, MTU, prefix and
    (if ``dns``) RDNSS options."""
    body = struct.pack("!BBHII", 64, 0, router_lifetime, 0, 0)
    body += link_layer_option(OPT_SOURCE_LL, mac)
    body += struct.pack("!BBHI", OPT_MTU, 1, 0, mtu)
    body += struct.pack(
        "!BBBBIII16s", OPT_PREFIX, 4, prefix_len, 0xC0, valid, preferred, 0, prefix
    )
    if dns is not None:
        body += struct.pack("!BBHI16s", OPT_RDNSS, 3, 0, dns_lifetime, dns)
    return body


def emit(typ: int, code: int, body: bytes | memoryview, checksum: int = 0) -> bytes:
    return _HEAD.pack(typ, code, checksum) + bytes(body)
