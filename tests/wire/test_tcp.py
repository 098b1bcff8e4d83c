# SPDX-License-Identifier: GPL-2.0-or-later
"""TCP headers and options (RFC 9293 §3.1, RFC 7323): parse and emit."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st
from scapy.layers.inet import TCP
from scapy.packet import raw

from slirpy.stack.errors import MalformedError, TruncatedError, WireError
from slirpy.stack.wire import tcp
from slirpy.stack.wire.tcp import TCPFlags, TCPHeader, parse_options

GOLDEN_SYN = bytes.fromhex(
    "9c40"  # src_port 40000
    "1f90"  # dst_port 8080
    "01020304"  # seq
    "00000000"  # ack
    "a0"  # data offset 10 (40 bytes)
    "02"  # flags SYN
    "faf0"  # window 64240
    "306d"  # checksum
    "0000"  # urgent pointer
    "020405b4"  # MSS 1460
    "0402"  # SACK permitted
    "080a1122334400000000"  # timestamps
    "01"  # NOP
    "030307"  # window scale 7
)
GOLDEN_DATA = bytes.fromhex(
    "1f90"  # src_port 8080
    "9c40"  # dst_port 40000
    "0000abcd"  # seq
    "01020305"  # ack
    "50"  # data offset 5
    "18"  # flags PSH|ACK
    "0200"  # window 512
    "0000"  # checksum (left for the caller)
    "0000"  # urgent pointer
    "6869"  # payload "hi"
)

ports = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)


def test_parse_syn_with_options() -> None:
    hdr, payload = TCPHeader.parse(memoryview(GOLDEN_SYN))
    assert hdr == TCPHeader(
        src_port=40000,
        dst_port=8080,
        seq=0x01020304,
        ack=0,
        header_len=40,
        flags=TCPFlags.SYN,
        window=64240,
        checksum=0x306D,
        urgent=0,
        mss=1460,
        wscale=7,
    )
    assert len(payload) == 0


def test_parse_data() -> None:
    hdr, payload = TCPHeader.parse(memoryview(GOLDEN_DATA))
    assert (hdr.seq, hdr.ack, hdr.flags, hdr.window) == (0xABCD, 0x01020305, 0x18, 512)
    assert (hdr.mss, hdr.wscale) == (None, None)
    assert bytes(payload) == b"hi"


def test_emit() -> None:
    header = tcp.emit(8080, 40000, 0xABCD, 0x01020305, tcp.PSH | tcp.ACK, 512)
    assert bytes(header) + b"hi" == GOLDEN_DATA


def test_emit_masks_sequence_numbers() -> None:
    header = tcp.emit(1, 2, 0x1_0000_0005, -1, tcp.ACK, 0)
    hdr, _ = TCPHeader.parse(memoryview(bytes(header)))
    assert (hdr.seq, hdr.ack) == (5, 0xFFFFFFFF)


@pytest.mark.parametrize(
    ("mss", "wscale", "expected"),
    [
        (None, None, ""),
        (1460, None, "020405b4"),
        (None, 7, "01030307"),
        (1460, 7, "020405b401030307"),
        (65475, 14, "0204ffc30103030e"),
    ],
    ids=["none", "mss", "wscale", "both", "max"],
)
def test_options_layout(mss: int | None, wscale: int | None, expected: str) -> None:
    assert tcp.options(mss, wscale) == bytes.fromhex(expected)


@given(
    sport=ports,
    dport=ports,
    seq=u32,
    ack=u32,
    flags=st.integers(0, 0xFF),
    window=ports,
    mss=st.none() | ports,
    wscale=st.none() | st.integers(0, 14),
    csum=ports,
)
def test_emit_matches_scapy(
    sport: int,
    dport: int,
    seq: int,
    ack: int,
    flags: int,
    window: int,
    mss: int | None,
    wscale: int | None,
    csum: int,
) -> None:
    opts: list[tuple[str, object]] = []
    if mss is not None:
        opts.append(("MSS", mss))
    if wscale is not None:
        opts += [("NOP", None), ("WScale", wscale)]
    oracle = TCP(
        sport=sport,
        dport=dport,
        seq=seq,
        ack=ack,
        flags=flags,
        window=window,
        chksum=csum,
        options=opts,
    )
    header = tcp.emit(
        sport, dport, seq, ack, flags, window, tcp.options(mss, wscale), csum
    )
    assert bytes(header) == raw(oracle)


@given(
    sport=ports,
    dport=ports,
    seq=u32,
    ack=u32,
    flags=st.integers(0, 0xFF),
    window=ports,
    mss=st.none() | ports,
    wscale=st.none() | st.integers(0, 14),
    payload=st.binary(max_size=32),
)
def test_roundtrip(
    sport: int,
    dport: int,
    seq: int,
    ack: int,
    flags: int,
    window: int,
    mss: int | None,
    wscale: int | None,
    payload: bytes,
) -> None:
    opts = tcp.options(mss, wscale)
    data = bytes(tcp.emit(sport, dport, seq, ack, flags, window, opts)) + payload
    hdr, rest = TCPHeader.parse(memoryview(data))
    assert hdr == TCPHeader(
        src_port=sport,
        dst_port=dport,
        seq=seq,
        ack=ack,
        header_len=20 + len(opts),
        flags=flags,
        window=window,
        checksum=0,
        urgent=0,
        mss=mss,
        wscale=wscale,
    )
    assert bytes(rest) == payload


# ----------------------------------------------------------------- options


@pytest.mark.parametrize(
    ("opts", "expected"),
    [
        ("", (None, None)),
        ("01010101", (None, None)),
        ("00", (None, None)),
        ("00020405b4", (None, None)),
        ("000000ff", (None, None)),
        ("020405b4", (1460, None)),
        ("02040000", (0, None)),
        ("030307", (None, 7)),
        ("03030e", (None, 14)),
        ("03030f", (None, 14)),
        ("0303ff", (None, 14)),
        ("fe04aaaa020405b4", (1460, None)),
        ("0402080a000000010000000201030305", (None, 5)),
        ("020305", (None, None)),
        ("020501020303030a", (None, 10)),
        ("0304070000", (None, None)),
        ("020405b402040218", (0x218, None)),
    ],
    ids=[
        "empty",
        "nops",
        "end",
        "end-stops-parsing",
        "end-then-garbage",
        "mss",
        "mss-0",
        "wscale-7",
        "wscale-14",
        "wscale-15-clamped",
        "wscale-255-clamped",
        "unknown-kind-skipped",
        "sack-perm-timestamps-wscale",
        "mss-length-3-ignored",
        "mss-length-5-ignored",
        "wscale-length-4-ignored",
        "last-mss-wins",
    ],
)
def test_parse_options(opts: str, expected: tuple[int | None, int | None]) -> None:
    assert parse_options(memoryview(bytes.fromhex(opts))) == expected


@pytest.mark.parametrize(
    "opts",
    ["0200", "0201", "fe00", "ff01", "02", "0101fe", "020505b4", "0203", "08ff0000"],
    ids=[
        "length-0",
        "length-1",
        "unknown-length-0",
        "unknown-length-1",
        "kind-without-length",
        "nops-then-kind-without-length",
        "mss-overrunning",
        "overrun-by-one",
        "timestamps-overrunning",
    ],
)
def test_parse_options_malformed(opts: str) -> None:
    with pytest.raises(MalformedError):
        parse_options(memoryview(bytes.fromhex(opts)))


def _with_options(opts: bytes) -> bytes:
    padded = opts + bytes(-len(opts) % 4)
    offset = (20 + len(padded)) // 4
    return GOLDEN_DATA[:12] + bytes([offset << 4]) + GOLDEN_DATA[13:20] + padded


def test_header_options_reach_parse_options() -> None:
    hdr, payload = TCPHeader.parse(memoryview(_with_options(b"\x03\x03\x63")))
    assert hdr.wscale == 14
    assert hdr.header_len == 24
    assert len(payload) == 0


def test_header_option_length_0_is_malformed() -> None:
    with pytest.raises(MalformedError):
        TCPHeader.parse(memoryview(_with_options(b"\x02\x00\x00\x00")))


# ------------------------------------------------------------- the header


def _offset(value: int) -> bytes:
    return GOLDEN_DATA[:12] + bytes([value << 4]) + GOLDEN_DATA[13:]


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"", TruncatedError),
        (GOLDEN_DATA[:19], TruncatedError),
        (_offset(0), MalformedError),
        (_offset(4), MalformedError),
        (_offset(6), TruncatedError),
        (_offset(15), TruncatedError),
        (GOLDEN_SYN[:39], TruncatedError),
    ],
    ids=[
        "empty",
        "19B",
        "offset-0",
        "offset-4",
        "offset-6-beyond-segment",
        "offset-15",
        "options-cut-short",
    ],
)
def test_truncated_or_malformed(data: bytes, error: type[WireError]) -> None:
    with pytest.raises(error):
        TCPHeader.parse(memoryview(data))


@given(st.binary(max_size=80))
def test_arbitrary_bytes_raise_only_wire_error(data: bytes) -> None:
    try:
        hdr, payload = TCPHeader.parse(memoryview(data))
    except WireError:
        return
    assert hdr.header_len + len(payload) == len(data)
    assert hdr.wscale is None or 0 <= hdr.wscale <= tcp.MAX_WSCALE


@given(st.binary(max_size=40))
def test_arbitrary_options_raise_only_malformed(data: bytes) -> None:
    with contextlib.suppress(MalformedError):
        parse_options(memoryview(data))
