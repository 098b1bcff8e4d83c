# SPDX-License-Identifier: GPL-2.0-or-later
"""Ethernet II: parse and emit against golden bytes and scapy."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st
from scapy.layers.l2 import Ether
from scapy.packet import raw

from slirpy.stack.errors import TruncatedError, WireError
from slirpy.stack.wire import ethernet
from slirpy.stack.wire.ethernet import EthernetHeader, EtherType

GOLDEN = bytes.fromhex(
    "52550a000202"  # dst 52:55:0a:00:02:02 (the gateway)
    "02aabbccddee"  # src 02:aa:bb:cc:dd:ee (the guest)
    "0806"  # ethertype ARP
    "c0ffee"  # payload
)

macs = st.binary(min_size=6, max_size=6)


def test_parse() -> None:
    hdr, payload = EthernetHeader.parse(memoryview(GOLDEN))
    assert hdr.dst == bytes.fromhex("52550a000202")
    assert hdr.src == bytes.fromhex("02aabbccddee")
    assert hdr.ethertype == EtherType.ARP
    assert bytes(payload) == b"\xc0\xff\xee"


def test_parse_unknown_ethertype_stays_int() -> None:
    hdr, _ = EthernetHeader.parse(memoryview(GOLDEN[:12] + b"\x88\xf8"))
    assert hdr.ethertype == 0x88F8


def test_emit() -> None:
    dst, src = bytes.fromhex("52550a000202"), bytes.fromhex("02aabbccddee")
    assert ethernet.header(dst, src, EtherType.ARP) == GOLDEN[:14]
    hdr = EthernetHeader(dst=dst, src=src, ethertype=EtherType.ARP)
    assert hdr.to_bytes() == GOLDEN[:14]


@given(dst=macs, src=macs, ethertype=st.integers(0, 0xFFFF))
def test_emit_matches_scapy(dst: bytes, src: bytes, ethertype: int) -> None:
    oracle = raw(Ether(dst=dst.hex(":"), src=src.hex(":"), type=ethertype))
    assert ethernet.header(dst, src, ethertype) == oracle


@given(dst=macs, src=macs, ethertype=st.integers(0, 0xFFFF), rest=st.binary())
def test_roundtrip(dst: bytes, src: bytes, ethertype: int, rest: bytes) -> None:
    hdr = EthernetHeader(dst=dst, src=src, ethertype=ethertype)
    parsed, payload = EthernetHeader.parse(memoryview(hdr.to_bytes() + rest))
    assert parsed == hdr
    assert bytes(payload) == rest


@pytest.mark.parametrize("length", [0, 1, 6, 13], ids=lambda n: f"{n}B")
def test_truncated(length: int) -> None:
    with pytest.raises(TruncatedError):
        EthernetHeader.parse(memoryview(GOLDEN[:length]))


def test_header_only_has_empty_payload() -> None:
    _, payload = EthernetHeader.parse(memoryview(GOLDEN[:14]))
    assert len(payload) == 0


@given(st.binary(max_size=64))
def test_arbitrary_bytes_raise_only_wire_error(data: bytes) -> None:
    with contextlib.suppress(WireError):
        EthernetHeader.parse(memoryview(data))
