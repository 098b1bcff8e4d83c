# SPDX-License-Identifier: GPL-2.0-or-later
"""The Internet checksum (RFC 1071) and the IPv4 pseudo-header sum.

``ones_sum`` returns the folded 16-bit one's-complement sum of a buffer, not
inverted, so sums of several pieces add up with ``add_sums``. It reads the whole
buffer as one big integer: since 2**16 is 1 modulo 0xFFFF, the integer modulo
0xFFFF is the one's-complement sum of its 16-bit words, and CPython's big-integer
code does that in C. An odd-length buffer is padded with a zero byte by shifting
the integer left by 8 bits.
"""

from __future__ import annotations

import struct
from typing import Final

_PSEUDO: Final = struct.Struct("!4s4sBBH")
_PSEUDO6: Final = struct.Struct("!16s16sIxxxB")


def ones_sum(data: bytes | bytearray | memoryview, initial: int = 0) -> int:
    """Folded one's-complement sum of ``data`` plus ``initial``, in 0..0xFFFF."""
    value = int.from_bytes(data, "big")
    if len(data) & 1:
        value <<= 8
    folded = value % 0xFFFF
    if folded == 0 and value:
        folded = 0xFFFF
    total = folded + initial
    return (total & 0xFFFF) + (total >> 16)


def add_sums(a: int, b: int) -> int:
    """One's-complement addition of two folded sums."""
    total = a + b
    return (total & 0xFFFF) + (total >> 16)


def finish(total: int) -> int:
    """The value to put in a checksum field for a folded sum."""
    return ~total & 0xFFFF


def internet_checksum(data: bytes | bytearray | memoryview, initial: int = 0) -> int:
    """The checksum field value for ``data`` (RFC 1071)."""
    return finish(ones_sum(data, initial))


def pseudo_header_sum(src: bytes, dst: bytes, protocol: int, length: int) -> int:
    """Folded sum of the pseudo-header: IPv4 (RFC 793 §3.1, RFC 768) for 4-byte
    addresses, IPv6 (RFC 8200 §8.1) for 16-byte ones."""
    if len(src) == 16:
        return ones_sum(_PSEUDO6.pack(src, dst, length, protocol))
    return ones_sum(_PSEUDO.pack(src, dst, 0, protocol, length))
