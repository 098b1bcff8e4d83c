# SPDX-License-Identifier: GPL-2.0-or-later
"""The TCP header (RFC 9293 §3.1) and the options the stack uses.

``TCPHeader.parse`` checks the data offset against the segment; the option
parser always advances (kinds 0 and 1 are one byte, any other kind must carry
a length of at least 2 that stays inside the header) and keeps only MSS
(RFC 9293 §3.7.1) and window scale (RFC 7323 §2). ``emit`` builds a header
with the options of a SYN or SYN-ACK.
"""

from __future__ import annotations

import enum
import struct
from typing import Final, NamedTuple, Self

from slirpy.stack.errors import MalformedError, TruncatedError

HEADER_LEN: Final = 20
_STRUCT: Final = struct.Struct("!HHIIBBHHH")
OPT_END: Final = 0
OPT_NOP: Final = 1
OPT_MSS: Final = 2
OPT_WSCALE: Final = 3
MAX_WSCALE: Final = 14


class TCPFlags(enum.IntFlag):
    FIN = 0x01
    SYN = 0x02
    RST = 0x04
    PSH = 0x08
    ACK = 0x10
    URG = 0x20
    ECE = 0x40
    CWR = 0x80


FIN: Final = 0x01
SYN: Final = 0x02
RST: Final = 0x04
PSH: Final = 0x08
ACK: Final = 0x10


class TCPHeader(NamedTuple):
    src_port: int
    dst_port: int
    seq: int
    ack: int
    header_len: int
    flags: int
    window: int
    checksum: int
    urgent: int
    mss: int | None = None
    wscale: int | None = None

    @classmethod
    def parse(cls, buf: memoryview) -> tuple[Self, memoryview]:
        """The header (with MSS and window scale if present) and the payload."""
        if len(buf) < HEADER_LEN:
            raise TruncatedError("TCP segment shorter than 20 bytes")
        sport, dport, seq, ack, off, flags, window, csum, urg = _STRUCT.unpack_from(buf)
        header_len = (off >> 4) * 4
        if header_len < HEADER_LEN:
            raise MalformedError("TCP data offset below 5")
        if header_len > len(buf):
            raise TruncatedError("TCP data offset beyond the segment")
        mss: int | None = None
        wscale: int | None = None
        if header_len > HEADER_LEN:
            mss, wscale = parse_options(buf[HEADER_LEN:header_len])
        hdr = cls(
            src_port=sport,
            dst_port=dport,
            seq=seq,
            ack=ack,
            header_len=header_len,
            flags=flags,
            window=window,
            checksum=csum,
            urgent=urg,
            mss=mss,
            wscale=wscale,
        )
        return hdr, buf[header_len:]


def parse_options(opts: memoryview) -> tuple[int | None, int | None]:
    """MSS and window scale from an options area; other options are skipped."""
    mss: int | None = None
    wscale: int | None = None
    i = 0
    end = len(opts)
    while i < end:
        kind = opts[i]
        if kind == OPT_END:
            break
        if kind == OPT_NOP:
            i += 1
            continue
        if i + 1 >= end:
            raise MalformedError("TCP option without a length byte")
        length = opts[i + 1]
        if length < 2 or i + length > end:
            raise MalformedError("TCP option length out of bounds")
        if kind == OPT_MSS and length == 4:
            mss = (opts[i + 2] << 8) | opts[i + 3]
        elif kind == OPT_WSCALE and length == 3:
            wscale = min(opts[i + 2], MAX_WSCALE)
        i += length
    return mss, wscale


def options(mss: int | None = None, wscale: int | None = None) -> bytes:
    """The options area of a SYN or SYN-ACK, padded to a multiple of 4 bytes."""
    out = b""
    if mss is not None:
        out += struct.pack("!BBH", OPT_MSS, 4, mss)
    if wscale is not None:
        out += struct.pack("!BBBB", OPT_NOP, OPT_WSCALE, 3, wscale)
    return out


def emit(
    src_port: int,
    dst_port: int,
    seq: int,
    ack: int,
    flags: int,
    window: int,
    opts: bytes = b"",
    checksum: int = 0,
) -> bytearray:
    """A TCP header (with ``opts``, already padded) and the given checksum field."""
    header_len = HEADER_LEN + len(opts)
    buf = bytearray(
        _STRUCT.pack(
            src_port,
            dst_port,
            seq & 0xFFFFFFFF,
            ack & 0xFFFFFFFF,
            (header_len // 4) << 4,
            flags,
            window,
            checksum,
            0,
        )
    )
    buf += opts
    return buf
