# SPDX-License-Identifier: GPL-2.0-or-later
"""ARP for IPv4 over Ethernet (RFC 826): the 28-byte packet."""

from __future__ import annotations

import enum
import struct
from typing import Final, NamedTuple, Self

from slirpy.stack.errors import MalformedError, TruncatedError

PACKET_LEN: Final = 28
_STRUCT: Final = struct.Struct("!HHBBH6s4s6s4s")
_HTYPE_ETHERNET: Final = 1
_PTYPE_IPV4: Final = 0x0800


class ARPOperation(enum.IntEnum):
    REQUEST = 1
    REPLY = 2


class ARPPacket(NamedTuple):
    operation: int
    sender_mac: bytes
    sender_ip: bytes
    target_mac: bytes
    target_ip: bytes

    @classmethod
    def parse(cls, buf: memoryview) -> Self:
        if len(buf) < PACKET_LEN:
            raise TruncatedError("ARP packet shorter than 28 bytes")
        htype, ptype, hlen, plen, op, sha, spa, tha, tpa = _STRUCT.unpack_from(buf)
        if htype != _HTYPE_ETHERNET or ptype != _PTYPE_IPV4 or hlen != 6 or plen != 4:
            raise MalformedError("ARP for something other than IPv4 over Ethernet")
        return cls(
            operation=op, sender_mac=sha, sender_ip=spa, target_mac=tha, target_ip=tpa
        )

    def to_bytes(self) -> bytes:
        return _STRUCT.pack(
            _HTYPE_ETHERNET,
            _PTYPE_IPV4,
            6,
            4,
            self.operation,
            self.sender_mac,
            self.sender_ip,
            self.target_mac,
            self.target_ip,
        )
