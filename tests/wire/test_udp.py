# SPDX-License-Identifier: GPL-2.0-or-later
"""UDP (RFC 768): parse and emit against golden bytes and scapy."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from scapy.layers.inet import UDP
from scapy.packet import raw

from slirpy.stack.errors import MalformedError, TruncatedError, WireError
from slirpy.stack.wire import udp
from slirpy.stack.wire.udp import UDPHeader

GOLDEN = bytes.fromhex(
    "d431"  # src_port 54321
    "0035"  # dst_port 53
    "000d"  # length 13
    "e940"  # checksum
    "6162636465"  # payload "abcde"
)

ports = st.integers(0, 0xFFFF)


def test_parse() -> None:
    hdr, payload = UDPHeader.parse(memoryview(GOLDEN))
    assert hdr == UDPHeader(src_port=54321, dst_port=53, length=13, checksum=0xE940)
    assert bytes(payload) == b"abcde"


def test_parse_cuts_payload_to_length() -> None:
    _, payload = UDPHeader.parse(memoryview(GOLDEN + b"trailing"))
    assert bytes(payload) == b"abcde"


def test_parse_length_8_is_empty() -> None:
    data = GOLDEN[:4] + b"\x00\x08" + GOLDEN[6:]
    hdr, payload = UDPHeader.parse(memoryview(data))
    assert hdr.length == 8
    assert len(payload) == 0


def test_emit() -> None:
    assert udp.emit(54321, 53, 5, 0xE940) == GOLDEN[:8]


@given(sport=ports, dport=ports, n=st.integers(0, 1472), csum=ports)
def test_emit_matches_scapy(sport: int, dport: int, n: int, csum: int) -> None:
    oracle = raw(UDP(sport=sport, dport=dport, len=8 + n, chksum=csum))
    assert udp.emit(sport, dport, n, csum) == oracle


@given(sport=ports, dport=ports, payload=st.binary(max_size=64), csum=ports)
def test_roundtrip(sport: int, dport: int, payload: bytes, csum: int) -> None:
    data = udp.emit(sport, dport, len(payload), csum) + payload
    hdr, rest = UDPHeader.parse(memoryview(data))
    assert hdr == UDPHeader(
        src_port=sport, dst_port=dport, length=8 + len(payload), checksum=csum
    )
    assert bytes(rest) == payload


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"", TruncatedError),
        (GOLDEN[:7], TruncatedError),
        (GOLDEN[:4] + b"\x00\x00" + GOLDEN[6:], MalformedError),
        (GOLDEN[:4] + b"\x00\x07" + GOLDEN[6:], MalformedError),
        (GOLDEN[:4] + b"\x00\x0e" + GOLDEN[6:], TruncatedError),
        (GOLDEN[:4] + b"\xff\xff" + GOLDEN[6:], TruncatedError),
        (GOLDEN[:12], TruncatedError),
    ],
    ids=[
        "empty",
        "7B",
        "length-0",
        "length-7",
        "length-one-past",
        "length-65535",
        "payload-cut-short",
    ],
)
def test_truncated_or_malformed(data: bytes, error: type[WireError]) -> None:
    with pytest.raises(error):
        UDPHeader.parse(memoryview(data))


@given(st.binary(max_size=24))
def test_arbitrary_bytes_raise_only_wire_error(data: bytes) -> None:
    try:
        hdr, payload = UDPHeader.parse(memoryview(data))
    except WireError:
        return
    assert len(payload) == hdr.length - 8
