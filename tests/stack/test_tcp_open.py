# SPDX-License-Identifier: GPL-2.0-or-later
"""TCP opening: connect requests, accept and reject, the handshake, limits."""

from __future__ import annotations

import pytest
from checks import ANY, check_icmp, check_ipv4, check_tcp
from frames import DNS_IP, GUEST_IP, GW_IP, ip4, tcp
from scapy.layers.inet import TCP

from slirpy.stack.events import FlowClosed, TCPConnectRequest, TCPReset
from slirpy.stack.stack import RejectReason
from slirpy.stack.tcp.state import TCPState
from stack.harness import Harness, Peer, accept, tcp_in_state

REMOTE = "93.184.216.34"


def test_syn_raises_connect_request_and_sends_nothing(hv: Harness) -> None:
    peer = Peer(hv, sport=41000, dport=8080)
    request = peer.connect()
    assert request == TCPConnectRequest(
        request.flow, ip4("127.0.0.1"), 8080, ip4(GUEST_IP), 41000
    )
    hv.no_frames()
    assert peer.state is TCPState.SYN_RECEIVED
    assert request.flow in hv.stack.flows.half_open


def test_syn_to_internet_address_keeps_it(h: Harness) -> None:
    request = Peer(h, dst=REMOTE, dport=443).connect()
    assert (request.dst_addr, request.dst_port) == (ip4(REMOTE), 443)


def test_syn_to_dns_port_53_goes_to_upstream(h: Harness) -> None:
    h.stack.nat.dns_upstream = ip4("192.0.2.53")
    request = Peer(h, dst=DNS_IP, dport=53).connect()
    assert (request.dst_addr, request.dst_port) == (ip4("192.0.2.53"), 53)


@pytest.mark.parametrize(
    ("offered", "expected"),
    [(None, None), (0, 5), (7, 5), (14, 5)],
    ids=["no-wscale", "wscale-0", "wscale-7", "wscale-14"],
)
def test_accept_sends_synack(
    hv: Harness, offered: int | None, expected: int | None
) -> None:
    peer = Peer(hv, wscale=offered, isn=0xFFFFFFFF)
    peer.connect()
    assert hv.stack.accept(peer.flow, hv.now)
    synack = peer.expect(
        flags="SA", ack=0, window=65535, mss=1460, wscale=expected, payload=b""
    )
    assert hv.events() == []
    assert peer.state is TCPState.SYN_RECEIVED
    # Half-open until the guest's ACK completes the handshake.
    assert peer.flow in hv.stack.flows.half_open
    assert synack[TCP].seq == peer.conn.iss


def test_synack_window_scale_follows_the_receive_window() -> None:
    h = Harness(tcp_rcv_window=65535)
    peer = Peer(h, wscale=7)
    peer.connect()
    h.stack.accept(peer.flow, h.now)
    peer.expect(flags="SA", window=65535, wscale=ANY)


@pytest.mark.parametrize(("mtu", "mss"), [(1500, 1460), (9000, 8960), (576, 536)])
def test_synack_mss_follows_the_mtu(mtu: int, mss: int) -> None:
    h = Harness(mtu=mtu)
    peer = Peer(h)
    peer.connect()
    h.stack.accept(peer.flow, h.now)
    peer.expect(flags="SA", mss=mss)


def test_accept_twice_or_unknown_is_refused(h: Harness) -> None:
    peer = Peer(h)
    peer.connect()
    assert h.stack.accept(peer.flow, h.now)
    h.frames()
    assert not h.stack.accept(peer.flow, h.now)
    assert not h.stack.accept(9999, h.now)
    h.no_frames()


def test_handshake_completes(hv: Harness) -> None:
    peer = Peer(hv)
    peer.connect()
    accept(peer)
    peer.send("A")
    hv.no_frames()
    assert hv.events() == []
    assert peer.state is TCPState.ESTABLISHED


def test_handshake_ack_with_data(h: Harness) -> None:
    peer = Peer(h)
    peer.connect()
    accept(peer)
    peer.send("PA", b"early")
    assert peer.state is TCPState.ESTABLISHED
    assert [e.data for e in h.events()] == [b"early"]  # type: ignore[union-attr]
    peer.expect_ack()


def test_handshake_bad_ack_gets_rst(h: Harness) -> None:
    peer = Peer(h)
    peer.connect()
    accept(peer)
    bad = peer.rcv_nxt + 1000
    peer.send("A", ack=bad)
    peer.expect(flags="R", seq=bad, ack=0)
    assert peer.state is TCPState.SYN_RECEIVED


def test_reject_refused_sends_rst_ack(hv: Harness) -> None:
    peer = Peer(hv, isn=0x7FFFFFFF)
    peer.connect()
    hv.stack.reject(peer.flow, RejectReason.REFUSED)
    peer.expect(flags="RA", seq=0, ack=0x80000000, window=0)
    assert hv.events() == [FlowClosed(peer.flow)]
    assert hv.flows_empty()
    assert hv.stack.stats.tcp_rst_sent == 1


@pytest.mark.parametrize(
    ("reason", "code"),
    [(RejectReason.NET_UNREACHABLE, 0), (RejectReason.HOST_UNREACHABLE, 1)],
    ids=["net", "host"],
)
def test_reject_unreachable_sends_icmp_quoting_the_syn(
    hv: Harness, reason: RejectReason, code: int
) -> None:
    peer = Peer(hv)
    syn = peer.segment("S", options=peer.syn_options(), ack=0)
    peer.connect()
    hv.stack.reject(peer.flow, reason)
    check_ipv4(
        hv.one_frame(),
        vnet=hv.vnet,
        src=GW_IP,
        dst=GUEST_IP,
        icmp=check_icmp(type=3, code=code, quote=syn[14 : 14 + 28]),
    )
    assert hv.events() == [FlowClosed(peer.flow)]
    assert hv.flows_empty()


def test_reject_after_accept_is_ignored(h: Harness) -> None:
    peer = Peer(h)
    peer.connect()
    accept(peer)
    h.stack.reject(peer.flow, RejectReason.REFUSED)
    h.no_frames()
    assert h.events() == []
    assert peer.state is TCPState.SYN_RECEIVED


def test_duplicate_syn_while_pending_ignored(h: Harness) -> None:
    peer = Peer(h)
    peer.connect()
    for _ in range(3):
        peer.send("S", seq=peer.isn, ack=0, options=peer.syn_options())
    h.no_frames()
    assert h.events() == []
    assert len(h.stack.flows.tcp_by_id) == 1


def test_duplicate_syn_after_accept_resends_synack(h: Harness) -> None:
    peer = Peer(h)
    peer.connect()
    first = accept(peer)
    peer.send("S", seq=peer.isn, ack=0, options=peer.syn_options())
    peer.expect(flags="SA", seq=first[TCP].seq, ack=peer.isn + 1, mss=1460)


def test_other_syn_after_accept_gets_challenge_ack(h: Harness) -> None:
    peer = Peer(h)
    peer.connect()
    accept(peer)
    peer.send("S", seq=peer.isn + 500, ack=0, options=peer.syn_options())
    peer.expect(flags="A", ack=peer.isn + 1)
    assert peer.state is TCPState.SYN_RECEIVED


def test_rst_while_pending_forgets_the_flow(h: Harness) -> None:
    peer = Peer(h)
    peer.connect()
    peer.send("R", seq=peer.isn + 1, ack=0)
    assert h.events() == [FlowClosed(peer.flow)]
    assert h.flows_empty()
    assert not h.stack.accept(peer.flow, h.now)
    h.no_frames()


def test_synack_retransmitted_then_given_up(h: Harness) -> None:
    peer = Peer(h)
    peer.connect()
    first = accept(peer)
    times = []
    for _ in range(20):
        h.run_until_timer()
        frames = h.frames()
        events = h.events()
        if events:
            assert events == [TCPReset(peer.flow), FlowClosed(peer.flow)]
            (rst,) = frames
            peer.check(rst, flags="RA", seq=peer.rcv_nxt)
            break
        times.append(h.now)
        (again,) = frames
        peer.check(again, flags="SA", seq=first[TCP].seq, ack=peer.isn + 1, mss=1460)
    else:
        pytest.fail("the SYN-ACK was retransmitted forever")
    assert times == [1.0, 3.0, 7.0, 15.0, 31.0]
    assert h.flows_empty()


def test_syn_payload_is_not_taken(h: Harness) -> None:
    peer = Peer(h)
    peer.send("S", b"syn data", ack=0, options=peer.syn_options())
    request = h.events()
    assert len(request) == 1
    peer.flow = request[0].flow
    h.stack.accept(peer.flow, h.now)
    peer.expect(flags="SA", ack=peer.isn + 1)
    assert h.events() == []


@pytest.mark.parametrize("flags", ["SF", "SR", "SRF", "SFA"], ids=str.lower)
def test_syn_with_fin_or_rst_opens_nothing(h: Harness, flags: str) -> None:
    h.send(tcp(flags=flags, seq=100, ack=0, options=[("MSS", 1460)]))
    assert h.events() == []
    assert h.flows_empty()
    for frame in h.frames():
        check_ipv4(frame, tcp=check_tcp(flags=ANY))
        assert "R" in str(h.dissect(frame)[TCP].flags)


@pytest.mark.parametrize(
    ("flags", "payload", "expected"),
    [
        ("A", b"", {"flags": "R", "seq": 5555, "ack": 0}),
        ("PA", b"data", {"flags": "R", "seq": 5555, "ack": 0}),
        ("FA", b"", {"flags": "R", "seq": 5555, "ack": 0}),
        ("SA", b"", {"flags": "R", "seq": 5555, "ack": 0}),
        ("", b"", {"flags": "RA", "seq": 0, "ack": 1000}),
        ("P", b"12345", {"flags": "RA", "seq": 0, "ack": 1005}),
        ("F", b"", {"flags": "RA", "seq": 0, "ack": 1001}),
        ("F", b"123", {"flags": "RA", "seq": 0, "ack": 1004}),
    ],
    ids=["ack", "data-ack", "fin-ack", "syn-ack", "bare", "data", "fin", "data-fin"],
)
def test_segment_for_unknown_connection_gets_rst(
    hv: Harness, flags: str, payload: bytes, expected: dict[str, object]
) -> None:
    """RFC 9293 §3.10.7.1."""
    hv.send(tcp(sport=4444, dport=80, flags=flags, seq=1000, ack=5555, payload=payload))
    check_ipv4(
        hv.one_frame(),
        vnet=hv.vnet,
        src=GW_IP,
        dst=GUEST_IP,
        tcp=check_tcp(sport=80, dport=4444, payload=b"", **expected),
    )
    assert hv.events() == []
    assert hv.flows_empty()
    assert hv.stack.stats.tcp_rst_sent == 1


@pytest.mark.parametrize("flags", ["R", "RA"])
def test_rst_for_unknown_connection_ignored(h: Harness, flags: str) -> None:
    h.send(tcp(flags=flags, seq=1, ack=2))
    h.no_frames()
    assert h.stack.stats.tcp_rst_sent == 0


def test_syn_to_loopback_disabled_gateway_unreachable() -> None:
    h = Harness(disable_host_loopback=True)
    syn = tcp(flags="S", dst=GW_IP, options=[("MSS", 1460)])
    h.send(syn)
    check_ipv4(h.one_frame(), icmp=check_icmp(type=3, code=0, quote=syn[14 : 14 + 28]))
    assert h.events() == []
    assert h.flows_empty()


@pytest.mark.parametrize("dst", ["127.0.0.1", "224.0.0.1", "10.0.2.255"])
def test_syn_to_never_leaving_address_dropped(h: Harness, dst: str) -> None:
    h.send(tcp(flags="S", dst=dst))
    h.no_frames()
    assert h.events() == []
    assert h.stack.stats.rx_policy_drop == 1


@pytest.mark.parametrize(("sport", "dport"), [(0, 80), (4000, 0)])
def test_syn_with_port_zero_counted(h: Harness, sport: int, dport: int) -> None:
    h.send(tcp(flags="S", sport=sport, dport=dport))
    assert h.events() == []
    assert h.flows_empty()
    assert h.stack.stats.rx_malformed == 1


# ------------------------------------------------------------------ limits


def test_half_open_limit_drops_and_counts() -> None:
    h = Harness(max_half_open=3)
    peers = [Peer(h, sport=5000 + i) for i in range(3)]
    for peer in peers:
        peer.connect()
    for i in range(5):
        Peer(h, sport=6000 + i).send("S", ack=0)
    h.no_frames()
    assert h.events() == []
    assert h.stack.stats.tcp_syn_dropped == 5
    assert len(h.stack.flows.tcp_by_id) == 3
    # Once one has had its SYN-ACK unanswered for a while, a new SYN takes its
    # place: a flood of unanswered handshakes cannot lock real clients out.
    accept(peers[0])
    h.frames()
    Peer(h, sport=6999).send("S", ack=0)
    assert h.events() == []  # too young to give way yet
    h.advance(0.6)
    h.frames()
    late = Peer(h, sport=7000)
    late.send("S", ack=0)
    events = h.events()
    assert events[0] == FlowClosed(peers[0].flow)
    assert isinstance(events[1], TCPConnectRequest)
    assert len(h.stack.flows.half_open) == 3
    assert h.stack.stats.tcp_embryonic_evicted == 1


def test_flow_limit_refuses_with_rst() -> None:
    h = Harness(max_tcp_flows=2)
    for i in range(2):
        tcp_in_state(h, TCPState.ESTABLISHED, sport=5000 + i)
    late = Peer(h, sport=6000)
    late.send("S", ack=0)
    late.expect(flags="RA", seq=0, ack=late.isn + 1)
    assert h.events() == []
    assert h.stack.stats.tcp_flow_limit == 1
    assert len(h.stack.flows.tcp_by_id) == 2


def test_syn_flood_holds_bounded_state() -> None:
    h = Harness(max_half_open=16, max_tcp_flows=64)
    for i in range(1000):
        h.send(tcp(flags="S", sport=1024 + i, seq=i))
    assert len(h.events()) == 16
    assert len(h.stack.flows.tcp_by_id) == 16
    assert h.stack.stats.tcp_syn_dropped == 1000 - 16
    h.no_frames()


def test_new_syn_in_time_wait_opens_a_new_connection(
    h: Harness, time_wait: Peer
) -> None:
    peer = time_wait
    old = peer.flow
    again = Peer(h, isn=peer.snd_nxt + 100_000)
    request = again.connect()
    assert request.flow != old
    assert old not in h.stack.flows.tcp_by_id
    assert again.state is TCPState.SYN_RECEIVED
