# SPDX-License-Identifier: GPL-2.0-or-later
"""TCP closing: both orders, simultaneous close, TIME-WAIT, aborts."""

from __future__ import annotations

import pytest
from scapy.layers.inet import TCP

from slirpy.stack.events import FlowClosed, TCPData, TCPEof, TCPReset
from slirpy.stack.tcp.state import TCPState
from stack.harness import Harness, Peer, tcp_in_state


def run_timers(h: Harness, until: float) -> None:
    """Run every timer due up to ``until`` (virtual time), in order."""
    for _ in range(1000):
        deadline = h.stack.next_timer()
        if deadline is None or deadline > until:
            break
        h.run_until_timer()
    h.now = max(h.now, until)


def test_guest_first_close(hv: Harness) -> None:
    peer = tcp_in_state(hv, TCPState.ESTABLISHED)
    peer.send("FA")
    assert hv.events() == [TCPEof(peer.flow)]
    peer.expect_ack()
    assert peer.state is TCPState.CLOSE_WAIT
    hv.stack.tcp_send(peer.flow, b"reply", hv.now)
    hv.stack.tcp_shutdown(peer.flow, hv.now)
    data, fin = hv.frames()
    assert peer.take(peer.check(data, flags="PA", payload=b"reply")) == b"reply"
    peer.take(peer.check(fin, flags="FA", payload=b""))
    assert peer.state is TCPState.LAST_ACK
    assert hv.events() == []
    peer.send("A")
    assert hv.events() == [FlowClosed(peer.flow)]
    hv.no_frames()
    assert hv.flows_empty()
    assert hv.stack.next_timer() is None or _only_stale_timers(hv)


def _only_stale_timers(h: Harness) -> bool:
    run_timers(h, h.now + 1000)
    return h.stack.next_timer() is None and h.frames() == [] and h.events() == []


def test_fin_waits_for_queued_data() -> None:
    h = Harness()
    peer = tcp_in_state(h, TCPState.CLOSE_WAIT, wscale=None, window=1000, mss=1000)
    h.stack.tcp_send(peer.flow, bytes(2500), h.now)
    h.stack.tcp_shutdown(peer.flow, h.now)
    (first,) = h.frames()
    peer.take(peer.check(first, flags="PA", payload_len=1000))
    assert peer.state is TCPState.CLOSE_WAIT
    peer.send("A")
    (second,) = h.frames()
    peer.take(peer.check(second, flags="PA", payload_len=1000))
    peer.send("A")
    (third,) = h.frames()
    # The FIN rides on the segment with the last of the data.
    peer.take(peer.check(third, flags="FPA", payload_len=500))
    assert peer.state is TCPState.LAST_ACK


def test_fin_with_the_last_data_in_one_call() -> None:
    h = Harness()
    peer = tcp_in_state(h, TCPState.ESTABLISHED, wscale=None, window=8000, mss=1000)
    h.stack.tcp_send(peer.flow, b"bye", h.now, fin=True)
    (only,) = h.frames()
    peer.take(peer.check(only, flags="FPA", payload=b"bye"))
    peer.send("A")
    assert h.frames() == []
    peer.send("FA")
    (ack,) = h.frames()
    peer.check(ack, flags="A")
    assert h.events() == [TCPEof(peer.flow), FlowClosed(peer.flow)]


def test_last_ack_fin_retransmitted(h: Harness, last_ack: Peer) -> None:
    peer = last_ack
    fin_seq = peer.rcv_nxt - 1
    h.run_until_timer()
    (again,) = h.frames()
    peer.check(again, flags="FA", seq=fin_seq)
    peer.send("A")
    assert h.events() == [FlowClosed(peer.flow)]
    assert h.flows_empty()


def test_host_first_close(hv: Harness) -> None:
    peer = tcp_in_state(hv, TCPState.ESTABLISHED)
    hv.stack.tcp_shutdown(peer.flow, hv.now)
    peer.take(peer.expect(flags="FA", payload=b""))
    assert peer.state is TCPState.FIN_WAIT_1
    peer.send("A")
    hv.frames()  # see test_ack_of_our_fin_sends_nothing
    assert peer.state is TCPState.FIN_WAIT_2
    assert hv.events() == []
    peer.send("PA", b"still talking")
    assert hv.events() == [TCPData(peer.flow, b"still talking")]
    hv.frames()
    peer.send("FA")
    assert hv.events() == [TCPEof(peer.flow), FlowClosed(peer.flow)]
    assert hv.frames()
    assert peer.state is TCPState.TIME_WAIT


def test_shutdown_twice_sends_one_fin(h: Harness, established: Peer) -> None:
    peer = established
    h.stack.tcp_shutdown(peer.flow, h.now)
    h.stack.tcp_shutdown(peer.flow, h.now)
    peer.expect(flags="FA")


def test_fin_retransmitted_in_fin_wait_1(h: Harness, fin_wait_1: Peer) -> None:
    peer = fin_wait_1
    h.run_until_timer()
    (again,) = h.frames()
    peer.check(again, flags="FA", seq=peer.rcv_nxt - 1)


def test_ack_of_our_fin_sends_nothing(h: Harness, fin_wait_1: Peer) -> None:
    peer = fin_wait_1
    peer.send("A")
    assert peer.state is TCPState.FIN_WAIT_2
    h.no_frames()
    assert peer.conn.snd_nxt == peer.rcv_nxt


def test_fin_wait_2_sends_no_second_fin(h: Harness, fin_wait_2: Peer) -> None:
    peer = fin_wait_2
    run_timers(h, h.now + 600)
    h.no_frames()
    assert h.events() == []
    assert peer.state is TCPState.FIN_WAIT_2


def test_fin_in_fin_wait_2_acked_once(h: Harness, fin_wait_2: Peer) -> None:
    peer = fin_wait_2
    peer.send("FA")
    peer.expect_ack()


def test_time_wait_re_acks_retransmitted_fin(h: Harness, time_wait: Peer) -> None:
    peer = time_wait
    peer.send("FA", seq=peer.snd_nxt - 1)
    peer.expect_ack()
    assert h.events() == []
    assert peer.state is TCPState.TIME_WAIT


def test_time_wait_forgotten_after_the_timer(h: Harness, time_wait: Peer) -> None:
    peer = time_wait
    entered = h.now
    run_timers(h, entered + 1.9)
    assert peer.state is TCPState.TIME_WAIT
    run_timers(h, entered + 2.0)
    assert peer.state is None
    assert h.events() == []  # FlowClosed came when TIME-WAIT began
    assert h.flows_empty()
    h.frames()
    assert h.stack.next_timer() is None


def test_simultaneous_close_enters_closing(h: Harness, fin_wait_1: Peer) -> None:
    peer = fin_wait_1
    fin_seq = peer.rcv_nxt - 1
    peer.send("FA", ack=fin_seq)
    assert h.events() == [TCPEof(peer.flow)]
    peer.expect_ack()
    assert peer.state is TCPState.CLOSING
    peer.send("A")
    assert h.events() == [FlowClosed(peer.flow)]
    assert peer.state is TCPState.TIME_WAIT


def test_simultaneous_close_forgotten_after_time_wait(
    h: Harness, closing: Peer
) -> None:
    peer = closing
    peer.send("A")
    assert h.events() == [FlowClosed(peer.flow)]
    h.no_frames()
    run_timers(h, h.now + 600)
    h.no_frames()
    assert h.events() == []
    assert h.flows_empty()


@pytest.mark.parametrize(
    "state",
    [
        TCPState.ESTABLISHED,
        TCPState.CLOSE_WAIT,
        TCPState.LAST_ACK,
        TCPState.FIN_WAIT_1,
        pytest.param(
            TCPState.FIN_WAIT_2,
        ),
        TCPState.CLOSING,
    ],
    ids=lambda s: s.name,
)
def test_abort_sends_rst_and_closes(h: Harness, state: TCPState) -> None:
    peer = tcp_in_state(h, state)
    h.stack.tcp_abort(peer.flow)
    peer.expect(flags="RA", seq=peer.rcv_nxt, ack=peer.snd_nxt)
    assert h.events() == [FlowClosed(peer.flow)]
    assert h.flows_empty()
    assert h.stack.stats.tcp_rst_sent == 1


def test_abort_pending_connection_refuses_it(h: Harness, syn_received: Peer) -> None:
    peer = syn_received
    h.stack.tcp_abort(peer.flow)
    peer.expect(flags="RA", seq=0, ack=peer.snd_nxt)
    assert h.events() == [FlowClosed(peer.flow)]
    assert h.flows_empty()


def test_abort_unknown_flow_is_harmless(h: Harness) -> None:
    h.stack.tcp_abort(777)
    h.stack.tcp_shutdown(777, h.now)
    h.no_frames()
    assert h.events() == []


def test_flow_closed_exactly_once_per_connection(h: Harness) -> None:
    """Every way of ending raises one FlowClosed and leaves the table empty."""
    endings = {
        "guest-first": lambda p: (p.send("FA"), shut(p), p.send("A")),
        "host-first": lambda p: (shut(p), p.send("A"), p.send("FA")),
        "guest-rst": lambda p: p.send("R"),
        "host-abort": lambda p: p.h.stack.tcp_abort(p.flow),
    }
    flows = []
    events = []
    for i, ending in enumerate(endings.values()):
        peer = tcp_in_state(h, TCPState.ESTABLISHED, sport=20000 + i)
        flows.append(peer.flow)
        ending(peer)
        h.frames()
        events += h.events()
    run_timers(h, h.now + 10)
    events += h.events()
    closed = [e.flow for e in events if isinstance(e, FlowClosed)]
    assert sorted(closed) == sorted(flows)
    assert h.flows_empty()


def shut(peer: Peer) -> None:
    h = peer.h
    h.stack.tcp_shutdown(peer.flow, h.now)
    for frame in h.frames():
        pkt = h.dissect(frame)
        if "F" in str(pkt[TCP].flags):
            peer.take(pkt)


# ------------------------------------------------------------------- RST


@pytest.mark.parametrize(
    "state",
    [
        TCPState.ESTABLISHED,
        TCPState.CLOSE_WAIT,
        TCPState.LAST_ACK,
        TCPState.FIN_WAIT_1,
        TCPState.FIN_WAIT_2,
        TCPState.CLOSING,
    ],
    ids=lambda s: s.name,
)
@pytest.mark.parametrize("flags", ["R", "RA"])
def test_exact_rst_resets(hv: Harness, state: TCPState, flags: str) -> None:
    peer = tcp_in_state(hv, state)
    peer.send(flags)
    assert hv.events() == [TCPReset(peer.flow), FlowClosed(peer.flow)]
    hv.no_frames()
    assert hv.flows_empty()


def test_rst_in_time_wait_raises_no_event(h: Harness, time_wait: Peer) -> None:
    peer = time_wait
    peer.send("R")
    assert h.events() == []


def test_rst_in_time_wait_forgets_the_connection(h: Harness, time_wait: Peer) -> None:
    peer = time_wait
    peer.send("R")
    h.events()
    assert h.flows_empty()


def test_in_window_rst_gets_challenge_ack(hv: Harness) -> None:
    """RFC 5961 §3.2."""
    peer = tcp_in_state(hv, TCPState.ESTABLISHED)
    peer.send("R", seq=peer.snd_nxt + 1)
    peer.expect_ack()
    assert hv.events() == []
    assert peer.state is TCPState.ESTABLISHED
    peer.send("PA", b"still alive")
    assert hv.events() == [TCPData(peer.flow, b"still alive")]


@pytest.mark.parametrize("offset", [-1, -1000, 1 << 21, 1 << 31], ids=str)
def test_out_of_window_rst_ignored(h: Harness, offset: int, established: Peer) -> None:
    peer = established
    peer.send("R", seq=peer.snd_nxt + offset)
    h.no_frames()
    assert h.events() == []
    assert peer.state is TCPState.ESTABLISHED


@pytest.mark.parametrize("offset", [0, 10, -5, 1 << 30], ids=str)
def test_syn_in_established_gets_challenge_ack(
    h: Harness, offset: int, established: Peer
) -> None:
    """RFC 5961 §4.2 (RFC 9293 §3.10.7.4 for the out-of-window ones)."""
    peer = established
    peer.send("S", seq=peer.snd_nxt + offset, ack=0, options=peer.syn_options())
    peer.expect_ack()
    assert h.events() == []
    assert peer.state is TCPState.ESTABLISHED


def test_syn_fin_in_established_gets_challenge_ack(
    h: Harness, established: Peer
) -> None:
    peer = established
    peer.send("SF", seq=peer.snd_nxt)
    peer.expect_ack()
    assert h.events() == []
    assert peer.state is TCPState.ESTABLISHED
