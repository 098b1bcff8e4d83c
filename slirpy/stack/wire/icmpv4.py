# SPDX-License-Identifier: GPL-2.0-or-later
"""ICMP for IPv4 (RFC 792): the common header, echo, destination unreachable."""

from __future__ import annotations

import enum
import struct
from typing import Final, NamedTuple, Self

from slirpy.stack.errors import TruncatedError
from slirpy.stack.wire.checksum import internet_checksum

HEADER_LEN: Final = 8
_STRUCT: Final = struct.Struct("!BBHHH")


class ICMPType(enum.IntEnum):
    ECHO_REPLY = 0
    DEST_UNREACHABLE = 3
    ECHO_REQUEST = 8
    TIME_EXCEEDED = 11


class UnreachableCode(enum.IntEnum):
    NET = 0
    HOST = 1
    PROTOCOL = 2
    PORT = 3


class ICMPHeader(NamedTuple):
    type: int
    code: int
    checksum: int
    ident: int
    """First half of the rest-of-header word (echo identifier)."""
    seq: int
    """Second half of the rest-of-header word (echo sequence number)."""

    @classmethod
    def parse(cls, buf: memoryview) -> tuple[Self, memoryview]:
        if len(buf) < HEADER_LEN:
            raise TruncatedError("ICMP message shorter than 8 bytes")
        typ, code, csum, ident, seq = _STRUCT.unpack_from(buf)
        hdr = cls(type=typ, code=code, checksum=csum, ident=ident, seq=seq)
        return hdr, buf[HEADER_LEN:]


def emit(typ: int, code: int, ident: int, seq: int, body: bytes | memoryview) -> bytes:
    """A whole ICMP message with its checksum."""
    msg = bytearray(_STRUCT.pack(typ, code, 0, ident, seq))
    msg += body
    struct.pack_into("!H", msg, 2, internet_checksum(msg))
    return bytes(msg)
