# SPDX-License-Identifier: GPL-2.0-or-later
"""The UDP header (RFC 768): checked parsing; the length field is never trusted."""

from __future__ import annotations

import struct
from typing import Final, NamedTuple, Self

from slirpy.stack.errors import MalformedError, TruncatedError

HEADER_LEN: Final = 8
_STRUCT: Final = struct.Struct("!HHHH")


class UDPHeader(NamedTuple):
    src_port: int
    dst_port: int
    length: int
    checksum: int

    @classmethod
    def parse(cls, buf: memoryview) -> tuple[Self, memoryview]:
        """The header and exactly ``length - 8`` payload bytes."""
        if len(buf) < HEADER_LEN:
            raise TruncatedError("UDP datagram shorter than 8 bytes")
        src_port, dst_port, length, checksum = _STRUCT.unpack_from(buf)
        if length < HEADER_LEN:
            raise MalformedError("UDP length below 8")
        if length > len(buf):
            raise TruncatedError("UDP length beyond the IP payload")
        hdr = cls(
            src_port=src_port, dst_port=dst_port, length=length, checksum=checksum
        )
        return hdr, buf[HEADER_LEN:length]


def emit(src_port: int, dst_port: int, payload_len: int, checksum: int = 0) -> bytes:
    return _STRUCT.pack(src_port, dst_port, HEADER_LEN + payload_len, checksum)
