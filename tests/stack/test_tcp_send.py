# SPDX-License-Identifier: GPL-2.0-or-later
"""TCP, host to guest: segmentation, GSO, backpressure, persist and retransmission."""

from __future__ import annotations

import itertools

import pytest
from checks import ANY
from scapy.layers.inet import IP, TCP

from slirpy.stack.errors import ProtocolStateError
from slirpy.stack.events import FlowClosed, TCPReset, TCPWritable
from slirpy.stack.tcp.state import TCPState
from stack.harness import Harness, Peer, accept, tcp_in_state


def payloads(peer: Peer, frames: list[bytes], **expected: object) -> list[bytes]:
    """Check ``frames`` are consecutive data segments and return their payloads."""
    out = []
    for frame in frames:
        pkt = peer.check(frame, flags="PA", ack=peer.snd_nxt, **expected)
        out.append(peer.take(pkt))
    return out


def data(n: int) -> bytes:
    return bytes(i * 7 % 251 for i in range(n))


def test_small_send_is_one_segment(hv: Harness) -> None:
    peer = tcp_in_state(hv, TCPState.ESTABLISHED)
    assert hv.stack.tcp_send(peer.flow, b"hello guest", hv.now)
    assert payloads(peer, hv.frames(), gso_size=0 if hv.vnet else ANY) == [
        b"hello guest"
    ]


@pytest.mark.parametrize(
    ("guest_mss", "size"), [(1460, 1460), (1000, 1000), (9000, 1460), (None, 536)]
)
def test_segments_respect_mss(guest_mss: int | None, size: int) -> None:
    h = Harness()
    peer = tcp_in_state(h, TCPState.ESTABLISHED, mss=guest_mss)
    blob = data(5 * size + 17)
    h.stack.tcp_send(peer.flow, blob, h.now)
    got = payloads(peer, h.frames())
    assert [len(p) for p in got] == [size] * 5 + [17]
    assert b"".join(got) == blob


def test_mss_zero_means_default(h: Harness) -> None:
    peer = tcp_in_state(h, TCPState.ESTABLISHED, mss=0)
    h.stack.tcp_send(peer.flow, data(600), h.now)
    assert [len(p) for p in payloads(peer, h.frames())] == [536, 64]


def test_segments_respect_the_guest_window(h: Harness) -> None:
    peer = tcp_in_state(h, TCPState.ESTABLISHED, wscale=None, window=3000)
    blob = data(10_000)
    h.stack.tcp_send(peer.flow, blob, h.now)
    got = payloads(peer, h.frames())
    assert [len(p) for p in got] == [1460, 1460, 80]
    peer.send("A")  # acknowledges all 3000, window still 3000
    got += payloads(peer, h.frames())
    assert sum(map(len, got)) == 6000
    peer.send("A", window=10_000)
    got += payloads(peer, h.frames())
    assert b"".join(got) == blob


def test_scaled_guest_window(h: Harness) -> None:
    """The guest's window field is shifted by its scale (RFC 7323 §2.3)."""
    peer = tcp_in_state(h, TCPState.ESTABLISHED, wscale=4, window=0)
    peer.send("A", window=100)  # 1600 bytes
    h.stack.tcp_send(peer.flow, data(5000), h.now)
    assert [len(p) for p in payloads(peer, h.frames())] == [1460, 140]


def test_gso_frames_with_vnet_header() -> None:
    h = Harness(vnet=True)
    peer = tcp_in_state(h, TCPState.ESTABLISHED)
    blob = data(200_000)
    h.stack.tcp_send(peer.flow, blob, h.now)
    frames = h.frames()
    got = payloads(peer, frames, gso_size=1460)
    assert b"".join(got) == blob
    assert max(map(len, got)) > 60_000
    for frame, payload in zip(frames, got, strict=True):
        pkt = h.dissect(frame)
        assert pkt[IP].len == 40 + len(payload) <= 65535
        vnet = frame[:10]
        assert vnet[0] == 1  # NEEDS_CSUM
        assert vnet[1] == 1  # GSO TCPv4
        assert int.from_bytes(vnet[2:4], "little") == 54  # hdr_len
        assert int.from_bytes(vnet[4:6], "little") == 1460  # gso_size
        assert int.from_bytes(vnet[6:8], "little") == 34  # csum_start
        assert int.from_bytes(vnet[8:10], "little") == 16  # csum_offset
    assert all(len(p) % 1460 == 0 for p in got[:-1])


def test_gso_respects_guest_mss_and_window() -> None:
    h = Harness(vnet=True)
    peer = tcp_in_state(h, TCPState.ESTABLISHED, wscale=None, window=5000, mss=1000)
    h.stack.tcp_send(peer.flow, data(20_000), h.now)
    assert [len(p) for p in payloads(peer, h.frames(), gso_size=1000)] == [5000]


def test_send_unknown_flow_is_harmless(h: Harness) -> None:
    assert h.stack.tcp_send(31337, b"x", h.now)
    h.no_frames()


def test_send_after_shutdown_is_a_driver_error(h: Harness, established: Peer) -> None:
    peer = established
    h.stack.tcp_shutdown(peer.flow, h.now)
    with pytest.raises(ProtocolStateError):
        h.stack.tcp_send(peer.flow, b"late", h.now)


def test_data_queued_before_the_handshake_goes_after_it(h: Harness) -> None:
    peer = Peer(h)
    peer.connect()
    accept(peer)
    h.stack.tcp_send(peer.flow, b"banner", h.now)
    h.no_frames()
    peer.send("A")
    assert payloads(peer, h.frames()) == [b"banner"]


def test_ack_beyond_what_was_sent_is_answered(h: Harness, established: Peer) -> None:
    peer = established
    peer.send("A", ack=peer.rcv_nxt + 5000)
    peer.expect_ack(seq=peer.rcv_nxt)
    assert peer.state is TCPState.ESTABLISHED


# ------------------------------------------------------------ backpressure


def test_backpressure_and_writable() -> None:
    h = Harness(tcp_snd_buffer=10_000)
    peer = tcp_in_state(h, TCPState.ESTABLISHED, wscale=None, window=1000, mss=1000)
    assert h.stack.tcp_send(peer.flow, data(6000), h.now)
    assert not h.stack.tcp_send(peer.flow, data(6000), h.now)
    assert h.events() == []
    payloads(peer, h.frames())
    peer.send("A")  # 1000 acknowledged: 11000 left, still over the limit
    payloads(peer, h.frames())
    assert h.events() == []
    peer.send("A")  # 2000 acknowledged: 10000 left, at the limit
    payloads(peer, h.frames())
    assert h.events() == []
    peer.send("A")  # 3000 acknowledged: below the limit
    assert h.events() == [TCPWritable(peer.flow)]
    payloads(peer, h.frames())
    peer.send("A")
    assert h.events() == []


def test_no_writable_without_backpressure(h: Harness, established: Peer) -> None:
    peer = established
    assert h.stack.tcp_send(peer.flow, data(3000), h.now)
    payloads(peer, h.frames())
    peer.send("A")
    assert h.events() == []


# ---------------------------------------------------------------- persist


def test_zero_window_persist_probe() -> None:
    h = Harness()
    peer = tcp_in_state(h, TCPState.ESTABLISHED, wscale=None)
    peer.send("A", window=0)
    h.stack.tcp_send(peer.flow, b"waiting", h.now)
    h.no_frames()
    start = h.now
    deadline = h.stack.next_timer()
    assert deadline is not None
    h.advance(deadline - h.now - 0.01)
    h.no_frames()
    h.run_until_timer()
    probe = peer.expect(flags="A", seq=peer.rcv_nxt - 1, payload=b"")
    assert probe[TCP].ack == peer.snd_nxt
    assert h.now - start == pytest.approx(1.0)
    peer.send("A", window=4096)
    assert payloads(peer, h.frames()) == [b"waiting"]


def test_persist_backs_off_and_never_gives_up() -> None:
    h = Harness()
    peer = tcp_in_state(h, TCPState.ESTABLISHED, wscale=None)
    peer.send("A", window=0)
    h.stack.tcp_send(peer.flow, b"waiting", h.now)
    probes = []
    while len(probes) < 20:
        h.run_until_timer()
        frames = h.frames()
        if frames:
            (probe,) = frames
            peer.check(probe, flags="A", seq=peer.rcv_nxt - 1)
            probes.append(h.now)
        assert h.events() == []
    gaps = [b - a for a, b in itertools.pairwise(probes)]
    assert gaps[:5] == pytest.approx([2.0, 4.0, 8.0, 16.0, 32.0])
    assert max(gaps) == pytest.approx(60.0)
    assert peer.state is TCPState.ESTABLISHED


# ---------------------------------------------------------- retransmission


def test_rto_retransmits_with_back_off_then_aborts(hv: Harness) -> None:
    peer = tcp_in_state(hv, TCPState.ESTABLISHED)
    hv.stack.tcp_send(peer.flow, b"lost", hv.now)
    (first,) = hv.frames()
    seq = hv.dissect(first)[TCP].seq
    times = []
    for _ in range(100):
        hv.run_until_timer()
        frames = hv.frames()
        events = hv.events()
        if events:
            assert events == [TCPReset(peer.flow), FlowClosed(peer.flow)]
            (rst,) = frames
            peer.check(rst, flags="RA", seq=seq + 4, ack=peer.snd_nxt)
            break
        if frames:
            (again,) = frames
            peer.check(again, flags="PA", seq=seq, payload=b"lost")
            times.append(hv.now)
    else:
        pytest.fail("never gave up")
    assert times == [1, 3, 7, 15, 31, 63, 123, 183, 243, 303, 363, 423]
    assert hv.now == 483
    assert hv.flows_empty()
    assert hv.stack.next_timer() is None


def test_rto_follows_the_measured_rtt(h: Harness, established: Peer) -> None:
    peer = established
    h.stack.tcp_send(peer.flow, b"one", h.now)
    payloads(peer, h.frames())
    h.advance(0.1)
    peer.send("A")
    h.stack.tcp_send(peer.flow, b"two", h.now)
    (_frame,) = h.frames()
    sent_at = h.now
    for _ in range(10):
        h.run_until_timer()
        frames = h.frames()
        if frames:
            break
    else:
        pytest.fail("no retransmission")
    peer.check(frames[0], flags="PA", payload=b"two")
    # RFC 6298: SRTT 0.1, RTTVAR 0.05, RTO = SRTT + 4 RTTVAR.
    assert h.now - sent_at == pytest.approx(0.3)


def test_rto_resends_everything_unacknowledged(h: Harness) -> None:
    peer = tcp_in_state(h, TCPState.ESTABLISHED, mss=1000)
    blob = data(3000)
    h.stack.tcp_send(peer.flow, blob, h.now)
    start = peer.rcv_nxt
    assert len(h.frames()) == 3
    peer.send("A", ack=start + 1000)
    h.frames()
    for _ in range(10):
        h.run_until_timer()
        frames = h.frames()
        if frames:
            break
    peer.rcv_nxt = start + 1000
    assert b"".join(payloads(peer, frames)) == blob[1000:]


def test_ack_stops_the_retransmission_timer(h: Harness, established: Peer) -> None:
    peer = established
    h.stack.tcp_send(peer.flow, b"x", h.now)
    payloads(peer, h.frames())
    peer.send("A")
    for _ in range(5):
        if h.stack.next_timer() is None:
            break
        h.run_until_timer()
    assert h.stack.next_timer() is None
    h.no_frames()


def test_three_duplicate_acks_fast_retransmit(h: Harness) -> None:
    peer = tcp_in_state(h, TCPState.ESTABLISHED, mss=1000)
    blob = data(4000)
    h.stack.tcp_send(peer.flow, blob, h.now)
    start = peer.rcv_nxt
    assert len(h.frames()) == 4
    peer.send("A", ack=start + 1000)
    h.no_frames()
    for _ in range(2):
        peer.send("A", ack=start + 1000)
        h.no_frames()
    peer.send("A", ack=start + 1000)
    peer.expect(flags="A", seq=start + 1000, payload=blob[1000:2000])
    peer.send("A", ack=start + 1000)
    h.no_frames()


def test_duplicate_acks_with_data_do_not_count(h: Harness) -> None:
    peer = tcp_in_state(h, TCPState.ESTABLISHED, mss=1000)
    h.stack.tcp_send(peer.flow, data(4000), h.now)
    start = peer.rcv_nxt
    h.frames()
    for i in range(4):
        peer.send("PA", bytes([i]), ack=start)
    h.events()
    for frame in h.frames():
        peer.check(frame, flags="A", payload=b"")


def test_fast_retransmit_stays_in_the_window(h: Harness) -> None:
    peer = tcp_in_state(h, TCPState.ESTABLISHED, wscale=None, window=1000)
    h.stack.tcp_send(peer.flow, data(5000), h.now)
    start = peer.rcv_nxt
    assert [len(p) for p in payloads(peer, h.frames())] == [1000]
    for _ in range(3):
        peer.send("A", ack=start, window=1000)
    (again,) = h.frames()
    assert len(h.dissect(again)[TCP].payload) <= 1000
