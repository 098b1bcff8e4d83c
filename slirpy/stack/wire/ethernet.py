# SPDX-License-Identifier: GPL-2.0-or-later
"""Ethernet II framing: destination, source, EtherType."""

from __future__ import annotations

import enum
import struct
from typing import Final, NamedTuple, Self

from slirpy.stack.errors import TruncatedError

HEADER_LEN: Final = 14
BROADCAST: Final = b"\xff" * 6
_STRUCT: Final = struct.Struct("!6s6sH")


class EtherType(enum.IntEnum):
    IPV4 = 0x0800
    ARP = 0x0806
    IPV6 = 0x86DD


class EthernetHeader(NamedTuple):
    dst: bytes
    src: bytes
    ethertype: int

    @classmethod
    def parse(cls, buf: memoryview) -> tuple[Self, memoryview]:
        if len(buf) < HEADER_LEN:
            raise TruncatedError("ethernet frame shorter than its header")
        dst, src, ethertype = _STRUCT.unpack_from(buf)
        return cls(dst=dst, src=src, ethertype=ethertype), buf[HEADER_LEN:]

    def to_bytes(self) -> bytes:
        return _STRUCT.pack(self.dst, self.src, self.ethertype)


def header(dst: bytes, src: bytes, ethertype: int) -> bytes:
    """The 14 header bytes of a frame."""
    return _STRUCT.pack(dst, src, ethertype)
