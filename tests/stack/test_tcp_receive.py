# SPDX-License-Identifier: GPL-2.0-or-later
"""TCP, guest to host: in-order delivery, ACK coalescing, the receive window."""

from __future__ import annotations

from slirpy.stack.events import TCPData, TCPEof
from slirpy.stack.tcp.state import TCPState
from stack.harness import Harness, Peer, tcp_in_state


def data_events(h: Harness) -> list[bytes]:
    events = h.events()
    assert all(isinstance(e, TCPData) for e in events), events
    return [bytes(e.data) for e in events]  # type: ignore[union-attr]


def test_in_order_data_delivered_with_one_coalesced_ack(hv: Harness) -> None:
    peer = tcp_in_state(hv, TCPState.ESTABLISHED)
    chunks = [b"first ", b"second ", b"third"]
    for chunk in chunks:
        peer.send("PA", chunk)
    assert data_events(hv) == chunks
    peer.expect_ack(window=(1 << 20) >> 5)
    hv.no_frames()


def test_ack_per_batch_of_frames(h: Harness, established: Peer) -> None:
    peer = established
    peer.send("PA", b"a")
    peer.expect_ack()
    peer.send("PA", b"b")
    peer.expect_ack()


def test_long_stream_arrives_whole(h: Harness, established: Peer) -> None:
    peer = established
    chunks = [bytes([i]) * (1 + i * 13 % 1460) for i in range(200)]
    got = []
    for i, chunk in enumerate(chunks):
        peer.send("PA", chunk)
        if i % 20 == 19:  # stay inside the window the ACKs advertise
            got += data_events(h)
            peer.expect_ack()
    assert b"".join(got) == b"".join(chunks)


def test_out_of_order_dropped_with_duplicate_ack(hv: Harness) -> None:
    peer = tcp_in_state(hv, TCPState.ESTABLISHED)
    peer.send("PA", b"later", seq=peer.snd_nxt + 100)
    peer.expect_ack()
    assert hv.events() == []
    peer.send("PA", b"now")
    assert data_events(hv) == [b"now"]
    peer.expect_ack()


def test_retransmitted_old_data_re_acked(h: Harness, established: Peer) -> None:
    peer = established
    start = peer.snd_nxt
    peer.send("PA", b"0123456789")
    data_events(h)
    peer.expect_ack()
    peer.send("PA", b"0123456789", seq=start)
    peer.expect_ack()
    assert h.events() == []


def test_partly_new_segment_delivers_only_the_new_part(
    h: Harness, established: Peer
) -> None:
    peer = established
    start = peer.snd_nxt
    peer.send("PA", b"0123456789")
    data_events(h)
    h.frames()
    peer.send("PA", b"56789abcde", seq=start + 5)
    peer.snd_nxt = start + 15
    assert data_events(h) == [b"abcde"]
    peer.expect_ack()


def test_data_beyond_the_window_trimmed() -> None:
    h = Harness(tcp_rcv_window=4000)
    peer = tcp_in_state(h, TCPState.ESTABLISHED, wscale=None)
    start = peer.snd_nxt
    peer.send("PA", bytes(5000))
    assert data_events(h) == [bytes(4000)]
    peer.expect(flags="A", ack=start + 4000, window=4000)


def test_segment_entirely_beyond_the_window_re_acked() -> None:
    h = Harness(tcp_rcv_window=4000)
    peer = tcp_in_state(h, TCPState.ESTABLISHED, wscale=None)
    peer.send("PA", b"x" * 10, seq=peer.snd_nxt + 4000)
    peer.expect_ack()
    assert h.events() == []


def test_segment_without_ack_flag_dropped(h: Harness, established: Peer) -> None:
    peer = established
    peer.send("P", b"no ack")
    assert h.events() == []
    h.no_frames()


def test_urgent_data_is_inline(h: Harness, established: Peer) -> None:
    peer = established
    peer.send("PAU", b"urgent", urgptr=60000)
    peer.send("AU", b"", urgptr=1)
    assert data_events(h) == [b"urgent"]
    peer.expect_ack()


def test_window_field_is_scaled(h: Harness) -> None:
    """1 MiB of receive window with window scale 5 is 32768 in the field."""
    peer = tcp_in_state(h, TCPState.ESTABLISHED, wscale=2)
    peer.send("PA", b"x")
    data_events(h)
    peer.expect_ack(window=32768)


# ------------------------------------------------------------ paused receive


def paused_peer() -> tuple[Harness, Peer]:
    h = Harness(tcp_rcv_window=4000)
    peer = tcp_in_state(h, TCPState.ESTABLISHED, wscale=None)
    h.stack.set_receive_paused(peer.flow, True, h.now)
    h.no_frames()
    return h, peer


def test_paused_window_closes_as_data_arrives() -> None:
    h, peer = paused_peer()
    peer.send("PA", bytes(1000))
    data_events(h)
    peer.expect_ack(window=3000)
    peer.send("PA", bytes(2500))
    data_events(h)
    peer.expect_ack(window=500)
    peer.send("PA", bytes(500))
    data_events(h)
    peer.expect_ack(window=0)


def test_reopening_sends_a_window_update() -> None:
    h, peer = paused_peer()
    peer.send("PA", bytes(4000))
    data_events(h)
    peer.expect_ack(window=0)
    h.stack.set_receive_paused(peer.flow, False, h.now)
    peer.expect_ack(window=4000)
    h.no_frames()


def test_reopening_unchanged_window_is_quiet() -> None:
    h, peer = paused_peer()
    h.stack.set_receive_paused(peer.flow, True, h.now)
    h.no_frames()


def test_data_into_a_closed_window_not_delivered() -> None:
    h, peer = paused_peer()
    peer.send("PA", bytes(4000))
    data_events(h)
    h.frames()
    peer.send("PA", b"more", seq=peer.snd_nxt)
    assert h.events() == []
    peer.send("PA", b"more", seq=peer.snd_nxt + 1)
    peer.expect(flags="A", ack=peer.snd_nxt, window=0)


def test_zero_window_probe_answered() -> None:
    """RFC 9293 §3.8.6.1: a zero window still acknowledges probes."""
    h, peer = paused_peer()
    peer.send("PA", bytes(4000))
    data_events(h)
    h.frames()
    peer.send("PA", b"p", seq=peer.snd_nxt)
    peer.expect(flags="A", ack=peer.snd_nxt, window=0)


def test_pause_for_unknown_flow_ignored(h: Harness) -> None:
    h.stack.set_receive_paused(4242, True, h.now)
    h.no_frames()


# ------------------------------------------------------------------- FIN


def test_fin_raises_eof_and_enters_close_wait(hv: Harness) -> None:
    peer = tcp_in_state(hv, TCPState.ESTABLISHED)
    peer.send("FA")
    assert hv.events() == [TCPEof(peer.flow)]
    peer.expect_ack()
    assert peer.state is TCPState.CLOSE_WAIT


def test_fin_with_data(h: Harness, established: Peer) -> None:
    peer = established
    peer.send("FPA", b"last words")
    assert h.events() == [TCPData(peer.flow, b"last words"), TCPEof(peer.flow)]
    peer.expect_ack()
    assert peer.state is TCPState.CLOSE_WAIT


def test_fin_before_missing_data_waits(h: Harness, established: Peer) -> None:
    peer = established
    peer.send("FA", seq=peer.snd_nxt + 10)
    assert h.events() == []
    h.frames()
    assert peer.state is TCPState.ESTABLISHED
    peer.send("PA", bytes(10))
    data_events(h)
    peer.send("FA")
    assert h.events() == [TCPEof(peer.flow)]
    assert peer.state is TCPState.CLOSE_WAIT


def test_out_of_order_fin_gets_duplicate_ack(h: Harness, established: Peer) -> None:
    peer = established
    peer.send("FA", seq=peer.snd_nxt + 10)
    peer.expect_ack()


def test_retransmitted_fin_in_close_wait_re_acked(h: Harness, close_wait: Peer) -> None:
    peer = close_wait
    peer.send("FA", seq=peer.snd_nxt - 1)
    peer.expect_ack()
    assert h.events() == []


def test_data_after_fin_ignored(h: Harness, close_wait: Peer) -> None:
    peer = close_wait
    peer.send("PA", b"after the end")
    assert h.events() == []


def test_delayed_ack_waits_then_goes_out() -> None:
    """A small segment's ACK waits ``tcp_delayed_ack`` for data to ride on."""
    h = Harness(tcp_delayed_ack=0.001)
    peer = tcp_in_state(h, TCPState.ESTABLISHED)
    peer.send("PA", b"request")
    assert data_events(h) == [b"request"]
    h.no_frames()
    h.advance(0.0005)
    h.no_frames()
    h.advance(0.0006)
    peer.expect_ack()
    h.advance(1.0)
    h.no_frames()


def test_delayed_ack_rides_on_the_answer() -> None:
    """The host's answer within the delay carries the ACK; none follows."""
    h = Harness(tcp_delayed_ack=0.001)
    peer = tcp_in_state(h, TCPState.ESTABLISHED)
    peer.send("PA", b"request")
    data_events(h)
    h.stack.tcp_send(peer.flow, b"answer", h.now)
    answer = peer.expect(flags="PA", ack=peer.snd_nxt, payload=b"answer")
    peer.take(answer)
    h.advance(0.002)
    h.no_frames()


def test_two_full_segments_are_acked_at_once() -> None:
    h = Harness(tcp_delayed_ack=0.001)
    peer = tcp_in_state(h, TCPState.ESTABLISHED, mss=1460)
    peer.send("PA", bytes(1460))
    h.no_frames()
    peer.send("PA", bytes(1460))
    peer.expect_ack()


def test_early_segment_is_held_and_delivered_after_the_gap(
    h: Harness, established: Peer
) -> None:
    """Reordering: a segment that arrives before the one it follows is kept,
    answered with a duplicate ACK, and delivered once the gap is filled, with
    one ACK covering both."""
    peer = established
    start = peer.snd_nxt
    peer.send("PA", b"second", seq=start + 5)
    peer.expect_ack(ack=start)
    assert h.events() == []
    peer.send("PA", b"first", seq=start)
    assert data_events(h) == [b"first", b"second"]
    peer.snd_nxt = start + 11
    peer.expect_ack(ack=start + 11)
