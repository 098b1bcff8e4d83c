# SPDX-License-Identifier: GPL-2.0-or-later
"""IPv4 headers (RFC 791): parse and emit against golden bytes and scapy."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from scapy.layers.inet import IP
from scapy.packet import raw

from slirpy.stack.errors import MalformedError, TruncatedError, WireError
from slirpy.stack.wire import ipv4
from slirpy.stack.wire.ipv4 import IPProtocol, IPv4Header

GOLDEN = bytes.fromhex(
    "45"  # version 4, IHL 5
    "00"  # TOS
    "0021"  # total length 33
    "1c46"  # identification
    "4000"  # flags DF, fragment offset 0
    "40"  # TTL 64
    "11"  # protocol UDP
    "0621"  # header checksum
    "0a000264"  # src 10.0.2.100
    "0a000202"  # dst 10.0.2.2
    "d4310035000de940"  # UDP header (payload of IPv4)
    "6162636465"  # UDP payload "abcde"
)
GUEST = bytes([10, 0, 2, 100])
GATEWAY = bytes([10, 0, 2, 2])

addrs = st.binary(min_size=4, max_size=4)


def test_parse() -> None:
    hdr, payload = IPv4Header.parse(memoryview(GOLDEN))
    assert hdr == IPv4Header(
        header_len=20,
        tos=0,
        total_len=33,
        ident=0x1C46,
        flags_fragment=ipv4.FLAG_DF,
        ttl=64,
        protocol=IPProtocol.UDP,
        checksum=0x0621,
        src=GUEST,
        dst=GATEWAY,
    )
    assert bytes(payload) == GOLDEN[20:]
    assert not hdr.is_fragment


def test_parse_cuts_ethernet_padding() -> None:
    _, payload = IPv4Header.parse(memoryview(GOLDEN + bytes(13)))
    assert bytes(payload) == GOLDEN[20:]


def test_parse_skips_options() -> None:
    with_options = bytes.fromhex(
        "46"  # version 4, IHL 6
        "00"  # TOS
        "0019"  # total length 25
        "0001"  # identification
        "0000"  # no flags
        "40"  # TTL 64
        "06"  # protocol TCP
        "0000"  # header checksum (not verified)
        "0a000264"  # src
        "0a000202"  # dst
        "01010100"  # options: NOP NOP NOP END
        "58"  # payload
    )
    hdr, payload = IPv4Header.parse(memoryview(with_options))
    assert hdr.header_len == 24
    assert bytes(payload) == b"\x58"


def test_emit() -> None:
    header = ipv4.emit(GUEST, GATEWAY, IPProtocol.UDP, 13, ident=0x1C46, ttl=64)
    assert bytes(header) == GOLDEN[:20]


@given(
    src=addrs,
    dst=addrs,
    proto=st.integers(0, 255),
    length=st.integers(0, 65535 - 20),
    ident=st.integers(0, 0xFFFF),
    ttl=st.integers(0, 255),
    df=st.booleans(),
)
def test_emit_matches_scapy(
    src: bytes, dst: bytes, proto: int, length: int, ident: int, ttl: int, df: bool
) -> None:
    oracle = IP(
        src=".".join(map(str, src)),
        dst=".".join(map(str, dst)),
        proto=proto,
        len=20 + length,
        id=ident,
        ttl=ttl,
        flags="DF" if df else 0,
    )
    header = ipv4.emit(src, dst, proto, length, ident=ident, ttl=ttl, dont_fragment=df)
    assert bytes(header) == raw(oracle)


@given(
    src=addrs,
    dst=addrs,
    proto=st.integers(0, 255),
    payload=st.binary(max_size=64),
    ident=st.integers(0, 0xFFFF),
    ttl=st.integers(0, 255),
)
def test_roundtrip(
    src: bytes, dst: bytes, proto: int, payload: bytes, ident: int, ttl: int
) -> None:
    header = ipv4.emit(src, dst, proto, len(payload), ident=ident, ttl=ttl)
    hdr, rest = IPv4Header.parse(memoryview(bytes(header) + payload))
    assert (hdr.src, hdr.dst, hdr.protocol, hdr.ident, hdr.ttl) == (
        src,
        dst,
        proto,
        ident,
        ttl,
    )
    assert hdr.total_len == 20 + len(payload)
    assert hdr.flags_fragment == ipv4.FLAG_DF
    assert bytes(rest) == payload


def _with(offset: int, value: bytes, base: bytes = GOLDEN) -> bytes:
    return base[:offset] + value + base[offset + len(value) :]


@pytest.mark.parametrize(
    ("flags_fragment", "fragment"),
    [
        (0x0000, False),
        (0x4000, False),
        (0x2000, True),
        (0x0001, True),
        (0x1FFF, True),
        (0x6000, True),
        (0x8000, False),
    ],
    ids=["none", "df", "mf", "offset-1", "offset-max", "df-mf", "reserved-bit"],
)
def test_is_fragment(flags_fragment: int, fragment: bool) -> None:
    hdr, _ = IPv4Header.parse(memoryview(_with(6, flags_fragment.to_bytes(2, "big"))))
    assert hdr.is_fragment is fragment


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"", TruncatedError),
        (GOLDEN[:19], TruncatedError),
        (_with(0, b"\x65"), MalformedError),
        (_with(0, b"\x05"), MalformedError),
        (_with(0, b"\x44"), MalformedError),
        (_with(0, b"\x40"), MalformedError),
        (_with(2, b"\x00\x13"), MalformedError),
        (_with(2, b"\x00\x00"), MalformedError),
        (_with(0, b"\x4f\x00\x00\x18"), MalformedError),
        (_with(2, b"\x00\x22"), TruncatedError),
        (_with(2, b"\xff\xff"), TruncatedError),
        (_with(0, b"\x4f\x00\x00\x3c"), TruncatedError),
        (GOLDEN[:32], TruncatedError),
    ],
    ids=[
        "empty",
        "19B",
        "version-6",
        "version-0",
        "ihl-4",
        "ihl-0",
        "total-len-below-header",
        "total-len-0",
        "ihl-15-total-len-24",
        "total-len-one-past-frame",
        "total-len-65535",
        "ihl-15-beyond-frame",
        "frame-cut-short",
    ],
)
def test_truncated_or_malformed(data: bytes, error: type[WireError]) -> None:
    with pytest.raises(error):
        IPv4Header.parse(memoryview(data))


@given(st.binary(max_size=80))
def test_arbitrary_bytes_raise_only_wire_error(data: bytes) -> None:
    try:
        hdr, payload = IPv4Header.parse(memoryview(data))
    except WireError:
        return
    assert len(payload) == hdr.total_len - hdr.header_len <= len(data) - 20
