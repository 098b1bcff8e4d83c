# SPDX-License-Identifier: GPL-2.0-or-later
"""Hostile input never raises out of ``Stack.receive_frame``; it is counted.

Three levels: arbitrary bytes; valid frames with mutated bytes; frames with
valid Ethernet and IPv4 headers whose fields lie (lengths, flags, options)
around random transport headers. A stateful test then throws random segments
and driver calls at live connections. Every frame the stack sends back must
still be well-formed with correct checksums, and each flow ends at most once.
"""

from __future__ import annotations

import struct

from checks import ref_checksum, ref_pseudo_header
from frames import (
    DNS_IP,
    GW_IP,
    VNET_ZERO,
    arp_request,
    icmp_echo,
    ip4,
    mac,
    tcp,
    udp,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from slirpy.stack.errors import ProtocolStateError
from slirpy.stack.events import FlowClosed, TCPConnectRequest
from slirpy.stack.tcp.state import TCPState
from stack.harness import Harness, tcp_in_state

FUZZ = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

SEEDS = [
    arp_request(GW_IP),
    icmp_echo(payload=b"0123456789"),
    udp(GW_IP, 7777, b"datagram"),
    udp(DNS_IP, 53, b"\x12\x34\x01\x00\x00\x01"),
    tcp(flags="S", options=[("MSS", 1460), ("WScale", 7), ("SAckOK", b"")]),
    tcp(flags="PA", payload=b"data", seq=5, ack=6),
    tcp(flags="R", seq=1),
]

OUR_MACS = [mac("52:55:0a:00:02:02"), mac("52:55:0a:00:02:03"), b"\xff" * 6]
GUEST = ip4("10.0.2.100")
DSTS = [ip4(a) for a in (GW_IP, DNS_IP, "10.0.2.7", "255.255.255.255", "127.0.0.1")]


def feed(h: Harness, frames: list[bytes]) -> None:
    for frame in frames:
        h.stack.receive_frame(frame, h.now)
    for out in h.frames():  # Harness.frames checks every frame
        assert out
    assert h.stack.stats.rx_frames == len(frames)


@FUZZ
@given(vnet=st.booleans(), frames=st.lists(st.binary(max_size=120), max_size=8))
def test_arbitrary_bytes_never_raise(vnet: bool, frames: list[bytes]) -> None:
    feed(Harness(vnet=vnet), frames)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(0, 6))):
        i = draw(st.integers(0, len(data) - 1))
        data[i] = draw(st.integers(0, 255))
    cut = draw(st.integers(0, len(data)))
    tail = draw(st.binary(max_size=8))
    return bytes(data[:cut]) + tail if draw(st.booleans()) else bytes(data)


@FUZZ
@given(vnet=st.booleans(), frames=st.lists(mutated(), min_size=1, max_size=8))
def test_mutated_frames_never_raise(vnet: bool, frames: list[bytes]) -> None:
    h = Harness(vnet=vnet)
    feed(h, [VNET_ZERO + f if vnet else f for f in frames])


# ------------------------------------------------- lying IPv4 and transport


def _tcp_segment(draw: st.DrawFn) -> bytes:
    options = draw(st.binary(max_size=40))
    offset = draw(st.one_of(st.just(5 + (len(options) + 3) // 4), st.integers(0, 15)))
    options += bytes(-len(options) % 4)
    header = struct.pack(
        "!HHIIBBHHH",
        draw(st.sampled_from([40000, 0, 65535])),
        draw(st.sampled_from([80, 8080, 0, 53])),
        draw(st.integers(0, 0xFFFFFFFF)),
        draw(st.integers(0, 0xFFFFFFFF)),
        offset << 4,
        draw(st.integers(0, 255)),
        draw(st.integers(0, 0xFFFF)),
        draw(st.integers(0, 0xFFFF)),
        draw(st.integers(0, 0xFFFF)),
    )
    return header + options + draw(st.binary(max_size=64))


def _udp_datagram(draw: st.DrawFn) -> bytes:
    payload = draw(st.binary(max_size=64))
    length = draw(st.one_of(st.just(8 + len(payload)), st.integers(0, 0xFFFF)))
    ports = draw(st.sampled_from([(40000, 53), (40000, 7), (68, 67), (0, 9), (5, 0)]))
    return struct.pack("!HHHH", *ports, length, 0) + payload


def _icmp_message(draw: st.DrawFn) -> bytes:
    icmp_type = draw(st.sampled_from([8, 0, 3, 11, 255]))
    return bytes([icmp_type]) + draw(st.binary(max_size=40))


@st.composite
def hostile_ipv4(draw: st.DrawFn) -> tuple[bytes, str]:
    """A frame with a lying IPv4 header, and what the stack must count for it."""
    proto = draw(st.sampled_from([6, 17, 1, 6, 17, 47]))
    if proto == 6:
        l4 = _tcp_segment(draw)
    elif proto == 17:
        l4 = _udp_datagram(draw)
    else:
        l4 = _icmp_message(draw)
    ihl = draw(st.one_of(st.just(5), st.integers(0, 15)))
    version = draw(st.one_of(st.just(4), st.integers(0, 15)))
    opts = draw(st.binary(min_size=max(0, ihl - 5) * 4, max_size=max(0, ihl - 5) * 4))
    true_len = 20 + len(opts) + len(l4)
    total_len = draw(
        st.one_of(st.just(true_len), st.integers(0, 0xFFFF), st.integers(0, true_len))
    )
    frag = draw(st.one_of(st.just(0x4000), st.integers(0, 0xFFFF)))
    src = draw(st.one_of(st.just(GUEST), st.binary(min_size=4, max_size=4)))
    dst = draw(st.one_of(st.sampled_from(DSTS), st.binary(min_size=4, max_size=4)))
    header = bytearray(
        struct.pack(
            "!BBHHHBBH4s4s",
            (version << 4) | ihl,
            draw(st.integers(0, 255)),
            total_len,
            draw(st.integers(0, 0xFFFF)),
            frag,
            draw(st.integers(0, 255)),
            proto,
            0,
            src,
            dst,
        )
    )
    header[10:12] = ref_checksum(bytes(header)).to_bytes(2, "big")
    packet = bytes(header) + opts + l4
    packet = (
        packet[: draw(st.integers(0, len(packet)))] if draw(st.booleans()) else packet
    )
    frame = draw(st.sampled_from(OUR_MACS)) + mac("02:aa:bb:cc:dd:ee") + b"\x08\x00"
    frame += packet
    # What the IPv4 layer must make of it, worked out independently.
    if len(packet) < 20:
        verdict = "rx_truncated"
    elif version != 4 or ihl < 5 or total_len < ihl * 4:
        verdict = "rx_malformed"
    elif total_len > len(packet):
        verdict = "rx_truncated"
    elif frag & 0x3FFF:
        verdict = "rx_fragments"
    else:
        verdict = "passed"
    return frame, verdict


@FUZZ
@given(vnet=st.booleans(), items=st.lists(hostile_ipv4(), min_size=1, max_size=6))
def test_lying_ipv4_never_raises_and_is_counted(
    vnet: bool, items: list[tuple[bytes, str]]
) -> None:
    h = Harness(vnet=vnet)
    h.stack.nat.dns_upstream = ip4("192.0.2.53")
    for frame, verdict in items:
        before = h.stack.stats.as_dict()
        h.stack.receive_frame(VNET_ZERO + frame if vnet else frame, h.now)
        after = h.stack.stats.as_dict()
        for counter in ("rx_truncated", "rx_malformed", "rx_fragments"):
            if counter == verdict:
                assert after[counter] == before[counter] + 1, (counter, frame.hex())
            elif verdict != "passed" or counter == "rx_fragments":
                assert after[counter] == before[counter], (counter, frame.hex())
        h.frames()
        for event in h.events():
            if isinstance(event, TCPConnectRequest):
                h.stack.accept(event.flow, h.now)
        h.frames()
    h.now += 1000.0
    h.stack.handle_timer(h.now)
    h.frames()


# ------------------------------------------- random segments on live flows


def _segment(draw: st.DrawFn, guest_seq: int, stack_seq: int) -> dict[str, object]:
    near = st.one_of(
        st.integers(-3, 3), st.integers(-70_000, 70_000), st.integers(0, 0xFFFFFFFF)
    )
    return {
        "flags": draw(
            st.sampled_from(["A", "PA", "FA", "R", "RA", "S", "SA", "", "SF", "AU"])
        ),
        "seq": guest_seq + draw(near),
        "ack": stack_seq + draw(near),
        "window": draw(st.sampled_from([0, 1, 512, 65535])),
        "payload": draw(st.binary(max_size=40)),
        "options": draw(
            st.sampled_from([[], [("MSS", 0)], [("WScale", 14)], [("NOP", None)]])
        ),
    }


@st.composite
def actions(draw: st.DrawFn) -> list[tuple[str, object]]:
    out: list[tuple[str, object]] = []
    for _ in range(draw(st.integers(1, 25))):
        kind = draw(
            st.sampled_from(
                ["seg", "seg", "seg", "send", "shutdown", "pause", "time", "abort"]
            )
        )
        if kind == "seg":
            out.append(("seg", _segment(draw, 0, 0)))
        elif kind == "send":
            out.append(("send", draw(st.integers(0, 5000))))
        elif kind == "pause":
            out.append(("pause", draw(st.booleans())))
        elif kind == "time":
            out.append(("time", draw(st.sampled_from([0.01, 0.5, 1.0, 3.0, 61.0]))))
        else:
            out.append((kind, None))
    return out


START_STATES = [
    TCPState.SYN_RECEIVED,
    TCPState.ESTABLISHED,
    TCPState.CLOSE_WAIT,
    TCPState.FIN_WAIT_1,
    TCPState.LAST_ACK,
    TCPState.CLOSING,
]


@FUZZ
@given(
    vnet=st.booleans(),
    state=st.sampled_from(START_STATES),
    script=actions(),
)
def test_random_segments_on_a_live_connection(
    vnet: bool, state: TCPState, script: list[tuple[str, object]]
) -> None:
    h = Harness(vnet=vnet, tcp_snd_buffer=8000)
    peer = tcp_in_state(h, state)
    shut = state in (TCPState.FIN_WAIT_1, TCPState.LAST_ACK, TCPState.CLOSING)
    closed: list[int] = []
    for kind, arg in script:
        if kind == "seg":
            seg = dict(arg)  # type: ignore[call-overload]
            seg["seq"] = (peer.snd_nxt + seg["seq"]) & 0xFFFFFFFF
            seg["ack"] = (peer.rcv_nxt + seg["ack"]) & 0xFFFFFFFF
            flags, payload = seg.pop("flags"), seg.pop("payload")
            peer.send(flags, payload, **seg)
        elif kind == "send":
            if not shut:
                try:
                    h.stack.tcp_send(peer.flow, bytes(arg), h.now)  # type: ignore[call-overload]
                except ProtocolStateError:
                    assert peer.state not in (TCPState.ESTABLISHED, TCPState.CLOSE_WAIT)
        elif kind == "shutdown":
            shut = True
            h.stack.tcp_shutdown(peer.flow, h.now)
        elif kind == "pause":
            h.stack.set_receive_paused(peer.flow, bool(arg), h.now)
        elif kind == "time":
            h.advance(float(arg))  # type: ignore[arg-type]
        else:
            h.stack.tcp_abort(peer.flow)
        h.frames()
        closed += [e.flow for e in h.events() if isinstance(e, FlowClosed)]
        assert len(closed) == len(set(closed)), "FlowClosed raised twice"
    for _ in range(50):
        deadline = h.stack.next_timer()
        if deadline is None:
            break
        h.now = max(h.now, deadline)
        h.stack.handle_timer(h.now)
        h.frames()
        closed += [e.flow for e in h.events() if isinstance(e, FlowClosed)]
    assert len(closed) == len(set(closed)), "FlowClosed raised twice"
    for conn in h.stack.flows.tcp_by_id.values():
        assert len(conn.snd_buf) <= 8000 + 5000


def test_pseudo_header_helper_matches_the_layout() -> None:
    assert ref_pseudo_header(b"\x01\x02\x03\x04", b"\x05\x06\x07\x08", 6, 20) == bytes(
        [1, 2, 3, 4, 5, 6, 7, 8, 0, 6, 0, 20]
    )
