# SPDX-License-Identifier: GPL-2.0-or-later
"""The IPv6 header (RFC 8200): checked parsing and emitting.

``parse`` never trusts the payload length: it must fit the buffer (trailing
Ethernet padding is cut off; a payload length beyond the frame is an error,
the bug class of CVE-2020-10756). Extension headers are not walked here; the
stack drops what it does not handle directly.
"""

from __future__ import annotations

import struct
from typing import Final, NamedTuple, Self

from slirpy.stack.errors import MalformedError, TruncatedError

HEADER_LEN: Final = 40
_STRUCT: Final = struct.Struct("!IHBB16s16s")
NEXT_HOP_BY_HOP: Final = 0
NEXT_FRAGMENT: Final = 44


class IPv6Header(NamedTuple):
    payload_len: int
    next_header: int
    hop_limit: int
    src: bytes
    dst: bytes

    @property
    def header_len(self) -> int:
        return HEADER_LEN

    @classmethod
    def parse(cls, buf: memoryview) -> tuple[Self, memoryview]:
        """The header and exactly ``payload_len`` payload bytes."""
        if len(buf) < HEADER_LEN:
            raise TruncatedError("IPv6 packet shorter than 40 bytes")
        vtf, payload_len, next_header, hop_limit, src, dst = _STRUCT.unpack_from(buf)
        if vtf >> 28 != 6:
            raise MalformedError("IPv6 version field is not 6")
        if HEADER_LEN + payload_len > len(buf):
            raise TruncatedError("IPv6 payload length beyond the frame")
        hdr = cls(
            payload_len=payload_len,
            next_header=next_header,
            hop_limit=hop_limit,
            src=src,
            dst=dst,
        )
        return hdr, buf[HEADER_LEN : HEADER_LEN + payload_len]


def emit(
    src: bytes, dst: bytes, next_header: int, payload_len: int, hop_limit: int
) -> bytes:
    """A 40-byte IPv6 header."""
    return _STRUCT.pack(6 << 28, payload_len, next_header, hop_limit, src, dst)
