# SPDX-License-Identifier: GPL-2.0-or-later
"""The IPv4 header (RFC 791): checked parsing and emitting.

``parse`` never trusts a length field: the header length must fit the buffer,
the total length must cover the header and fit the buffer (trailing Ethernet
padding is cut off). Options are skipped, not interpreted.
"""

from __future__ import annotations

import enum
import struct
from typing import Final, NamedTuple, Self

from slirpy.stack.errors import MalformedError, TruncatedError
from slirpy.stack.wire.checksum import internet_checksum

HEADER_LEN: Final = 20
_STRUCT: Final = struct.Struct("!BBHHHBBH4s4s")
FLAG_DF: Final = 0x4000
FLAG_MF: Final = 0x2000
_OFFSET_MASK: Final = 0x1FFF


class IPProtocol(enum.IntEnum):
    ICMP = 1
    TCP = 6
    UDP = 17
    ICMPV6 = 58


class IPv4Header(NamedTuple):
    header_len: int
    tos: int
    total_len: int
    ident: int
    flags_fragment: int
    ttl: int
    protocol: int
    checksum: int
    src: bytes
    dst: bytes

    @property
    def is_fragment(self) -> bool:
        """True for any fragment: more-fragments set or a non-zero offset."""
        return bool(self.flags_fragment & (FLAG_MF | _OFFSET_MASK))

    @classmethod
    def parse(cls, buf: memoryview) -> tuple[Self, memoryview]:
        """The header and the payload (exactly ``total_len - header_len`` bytes)."""
        if len(buf) < HEADER_LEN:
            raise TruncatedError("IPv4 packet shorter than 20 bytes")
        vihl, tos, total_len, ident, frag, ttl, proto, csum, src, dst = (
            _STRUCT.unpack_from(buf)
        )
        if vihl >> 4 != 4:
            raise MalformedError("IPv4 version field is not 4")
        header_len = (vihl & 0x0F) * 4
        if header_len < HEADER_LEN:
            raise MalformedError("IPv4 header length below 20 bytes")
        if total_len < header_len:
            raise MalformedError("IPv4 total length below the header length")
        if total_len > len(buf):
            raise TruncatedError("IPv4 total length beyond the frame")
        hdr = cls(
            header_len=header_len,
            tos=tos,
            total_len=total_len,
            ident=ident,
            flags_fragment=frag,
            ttl=ttl,
            protocol=proto,
            checksum=csum,
            src=src,
            dst=dst,
        )
        return hdr, buf[header_len:total_len]


def emit(
    src: bytes,
    dst: bytes,
    protocol: int,
    payload_len: int,
    *,
    ident: int = 0,
    ttl: int = 64,
    dont_fragment: bool = True,
) -> bytearray:
    """A 20-byte IPv4 header with its checksum filled in."""
    buf = bytearray(
        _STRUCT.pack(
            0x45,
            0,
            HEADER_LEN + payload_len,
            ident & 0xFFFF,
            FLAG_DF if dont_fragment else 0,
            ttl,
            protocol,
            0,
            src,
            dst,
        )
    )
    struct.pack_into("!H", buf, 10, internet_checksum(buf))
    return buf
