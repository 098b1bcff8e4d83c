# SPDX-License-Identifier: GPL-2.0-or-later
"""ICMPv4 (RFC 792): parse and emit against golden bytes and scapy."""

from __future__ import annotations

import contextlib

import pytest
from checks import ref_ones_sum
from hypothesis import given
from hypothesis import strategies as st
from scapy.layers.inet import ICMP
from scapy.packet import Raw, raw

from slirpy.stack.errors import TruncatedError, WireError
from slirpy.stack.wire import icmpv4
from slirpy.stack.wire.icmpv4 import ICMPHeader, ICMPType

GOLDEN = bytes.fromhex(
    "08"  # type echo request
    "00"  # code 0
    "06f4"  # checksum
    "1234"  # identifier
    "0007"  # sequence number 7
    "70696e67"  # data "ping"
)


def test_parse() -> None:
    hdr, body = ICMPHeader.parse(memoryview(GOLDEN))
    assert hdr == ICMPHeader(
        type=ICMPType.ECHO_REQUEST, code=0, checksum=0x06F4, ident=0x1234, seq=7
    )
    assert bytes(body) == b"ping"


def test_emit() -> None:
    assert icmpv4.emit(ICMPType.ECHO_REQUEST, 0, 0x1234, 7, b"ping") == GOLDEN


@given(
    ident=st.integers(0, 0xFFFF),
    seq=st.integers(0, 0xFFFF),
    body=st.binary(max_size=100),
)
def test_emit_echo_reply_matches_scapy(ident: int, seq: int, body: bytes) -> None:
    oracle = raw(ICMP(type=0, id=ident, seq=seq) / Raw(body))
    assert icmpv4.emit(ICMPType.ECHO_REPLY, 0, ident, seq, body) == oracle


@given(
    typ=st.integers(0, 255),
    code=st.integers(0, 255),
    ident=st.integers(0, 0xFFFF),
    seq=st.integers(0, 0xFFFF),
    body=st.binary(max_size=64),
)
def test_roundtrip(typ: int, code: int, ident: int, seq: int, body: bytes) -> None:
    message = icmpv4.emit(typ, code, ident, seq, body)
    assert ref_ones_sum(message) == 0xFFFF
    hdr, rest = ICMPHeader.parse(memoryview(message))
    assert (hdr.type, hdr.code, hdr.ident, hdr.seq) == (typ, code, ident, seq)
    assert bytes(rest) == body


def test_unreachable_layout() -> None:
    quote = bytes(range(28))
    message = icmpv4.emit(ICMPType.DEST_UNREACHABLE, 0, 0, 0, quote)
    oracle = raw(ICMP(type=3, code=0) / Raw(quote))
    assert message == oracle


@pytest.mark.parametrize("length", [0, 1, 4, 7], ids=lambda n: f"{n}B")
def test_truncated(length: int) -> None:
    with pytest.raises(TruncatedError):
        ICMPHeader.parse(memoryview(GOLDEN[:length]))


def test_header_only() -> None:
    hdr, body = ICMPHeader.parse(memoryview(GOLDEN[:8]))
    assert hdr.seq == 7
    assert len(body) == 0


@given(st.binary(max_size=20))
def test_arbitrary_bytes_raise_only_wire_error(data: bytes) -> None:
    with contextlib.suppress(WireError):
        ICMPHeader.parse(memoryview(data))
