# SPDX-License-Identifier: GPL-2.0-or-later
"""ARP (RFC 826): parse and emit against golden bytes and scapy."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st
from scapy.layers.l2 import ARP
from scapy.packet import raw

from slirpy.stack.errors import MalformedError, TruncatedError, WireError
from slirpy.stack.wire.arp import PACKET_LEN, ARPOperation, ARPPacket

GOLDEN = bytes.fromhex(
    "0001"  # htype Ethernet
    "0800"  # ptype IPv4
    "06"  # hlen 6
    "04"  # plen 4
    "0001"  # operation request
    "02aabbccddee"  # sender MAC
    "0a000264"  # sender IP 10.0.2.100
    "000000000000"  # target MAC (unknown)
    "0a000202"  # target IP 10.0.2.2
)


def test_parse() -> None:
    pkt = ARPPacket.parse(memoryview(GOLDEN))
    assert pkt == ARPPacket(
        operation=ARPOperation.REQUEST,
        sender_mac=bytes.fromhex("02aabbccddee"),
        sender_ip=bytes([10, 0, 2, 100]),
        target_mac=bytes(6),
        target_ip=bytes([10, 0, 2, 2]),
    )


def test_parse_ignores_ethernet_padding() -> None:
    assert ARPPacket.parse(memoryview(GOLDEN + bytes(18))) == ARPPacket.parse(
        memoryview(GOLDEN)
    )


def test_emit() -> None:
    assert ARPPacket.parse(memoryview(GOLDEN)).to_bytes() == GOLDEN


def test_emit_reply_matches_scapy() -> None:
    reply = ARPPacket(
        operation=ARPOperation.REPLY,
        sender_mac=bytes.fromhex("52550a000202"),
        sender_ip=bytes([10, 0, 2, 2]),
        target_mac=bytes.fromhex("02aabbccddee"),
        target_ip=bytes([10, 0, 2, 100]),
    )
    oracle = ARP(
        op=2,
        hwsrc="52:55:0a:00:02:02",
        psrc="10.0.2.2",
        hwdst="02:aa:bb:cc:dd:ee",
        pdst="10.0.2.100",
    )
    assert reply.to_bytes() == raw(oracle)


@given(
    op=st.integers(0, 0xFFFF),
    sha=st.binary(min_size=6, max_size=6),
    spa=st.binary(min_size=4, max_size=4),
    tha=st.binary(min_size=6, max_size=6),
    tpa=st.binary(min_size=4, max_size=4),
)
def test_roundtrip(op: int, sha: bytes, spa: bytes, tha: bytes, tpa: bytes) -> None:
    pkt = ARPPacket(
        operation=op, sender_mac=sha, sender_ip=spa, target_mac=tha, target_ip=tpa
    )
    data = pkt.to_bytes()
    assert len(data) == PACKET_LEN
    assert ARPPacket.parse(memoryview(data)) == pkt


@pytest.mark.parametrize("length", [0, 8, 27], ids=lambda n: f"{n}B")
def test_truncated(length: int) -> None:
    with pytest.raises(TruncatedError):
        ARPPacket.parse(memoryview(GOLDEN[:length]))


def _patched(offset: int, value: bytes) -> bytes:
    return GOLDEN[:offset] + value + GOLDEN[offset + len(value) :]


@pytest.mark.parametrize(
    "data",
    [
        _patched(0, b"\x00\x06"),
        _patched(2, b"\x86\xdd"),
        _patched(4, b"\x08"),
        _patched(5, b"\x10"),
    ],
    ids=["htype-ieee802", "ptype-ipv6", "hlen-8", "plen-16"],
)
def test_malformed(data: bytes) -> None:
    with pytest.raises(MalformedError):
        ARPPacket.parse(memoryview(data))


@given(st.binary(max_size=40))
def test_arbitrary_bytes_raise_only_wire_error(data: bytes) -> None:
    with contextlib.suppress(WireError):
        ARPPacket.parse(memoryview(data))
