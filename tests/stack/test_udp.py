# SPDX-License-Identifier: GPL-2.0-or-later
"""UDP flows: address translation, replies, expiry and the flow limit."""

from __future__ import annotations

import pytest
from checks import check_icmp, check_ipv4, check_udp
from frames import DNS_IP, GUEST_IP, GW_IP, LOOPBACK_IP, ip4, ipv4, udp
from scapy.layers.inet import UDP
from scapy.packet import Raw, raw

from slirpy.stack.events import FlowClosed, UDPDatagram
from stack.harness import Harness

UPSTREAM = "192.0.2.53"
REMOTE = "93.184.216.34"


def datagram(h: Harness) -> UDPDatagram:
    events = h.events()
    assert len(events) == 1, events
    assert isinstance(events[0], UDPDatagram), events
    return events[0]


@pytest.mark.parametrize(
    ("dst", "dport", "host_dst"),
    [
        (GW_IP, 7777, LOOPBACK_IP),
        ("255.255.255.255", 9, LOOPBACK_IP),
        (REMOTE, 443, REMOTE),
        ("10.0.3.1", 1234, "10.0.3.1"),
    ],
    ids=["gateway", "limited-broadcast", "internet", "next-network"],
)
def test_datagram_translated(h: Harness, dst: str, dport: int, host_dst: str) -> None:
    h.send(udp(dst, dport, b"payload"))
    event = datagram(h)
    assert (event.dst_addr, event.dst_port, event.data) == (
        ip4(host_dst),
        dport,
        b"payload",
    )
    h.no_frames()
    assert h.stack.stats.udp_datagrams == 1


def test_dns_goes_to_the_upstream(h: Harness) -> None:
    h.stack.nat.dns_upstream = ip4(UPSTREAM)
    h.send(udp(DNS_IP, 53, b"query"))
    event = datagram(h)
    assert (event.dst_addr, event.dst_port) == (ip4(UPSTREAM), 53)


def _check_unreachable(h: Harness, sent: bytes) -> None:
    """Exactly one ICMP net unreachable from the gateway quoting ``sent``."""
    ip_packet = sent[14:]
    check_ipv4(
        h.one_frame(),
        vnet=h.vnet,
        src=GW_IP,
        dst=GUEST_IP,
        icmp=check_icmp(type=3, code=0, quote=ip_packet[: 20 + 8]),
    )
    assert h.events() == []


def test_dns_address_other_port_unreachable(hv: Harness) -> None:
    hv.stack.nat.dns_upstream = ip4(UPSTREAM)
    sent = udp(DNS_IP, 80, b"not dns")
    hv.send(sent)
    _check_unreachable(hv, sent)
    assert hv.stack.stats.icmp_unreachable_sent == 1
    assert hv.stack.stats.rx_policy_drop == 1


def test_dns_without_upstream_unreachable(h: Harness) -> None:
    sent = udp(DNS_IP, 53, b"query")
    h.send(sent)
    _check_unreachable(h, sent)


@pytest.mark.parametrize("dst", [GW_IP, "255.255.255.255"], ids=["gw", "broadcast"])
def test_loopback_disabled_unreachable(dst: str) -> None:
    h = Harness(disable_host_loopback=True)
    sent = udp(dst, 7777, b"x")
    h.send(sent)
    _check_unreachable(h, sent)


def test_other_virtual_addresses_unreachable(h: Harness) -> None:
    sent = udp("10.0.2.4", 7777, b"x")
    h.send(sent)
    _check_unreachable(h, sent)


@pytest.mark.parametrize(
    "dst",
    ["127.0.0.1", "0.0.0.0", "224.0.0.251", "239.255.255.250", "10.0.2.255"],
    ids=["loopback", "this-network", "mdns", "ssdp", "net-broadcast"],
)
def test_never_leaving_destinations_dropped_silently(h: Harness, dst: str) -> None:
    h.send(udp(dst, 5353, b"x"))
    h.no_frames()
    assert h.events() == []
    assert h.stack.stats.rx_policy_drop == 1


@pytest.mark.parametrize(
    ("sport", "dport"),
    [(67, 68), (0, 53), (1234, 0)],
    ids=["to-dhcp-client-port", "sport-0", "dport-0"],
)
def test_unsupported_ports_counted(h: Harness, sport: int, dport: int) -> None:
    h.send(udp(GW_IP, dport, b"x", sport=sport))
    h.no_frames()
    assert h.events() == []
    assert h.stack.stats.udp_unsupported_port == 1
    assert h.flows_empty()


def test_udp_length_shorter_than_payload_cuts_it(h: Harness) -> None:
    h.send(raw(ipv4(dst=GW_IP) / UDP(sport=1000, dport=7, len=8 + 3) / Raw(b"abcdef")))
    assert datagram(h).data == b"abc"


def test_udp_length_beyond_payload_counted(h: Harness) -> None:
    h.send(raw(ipv4(dst=GW_IP) / UDP(sport=1000, dport=7, len=100) / Raw(b"abc")))
    assert h.events() == []
    assert h.stack.stats.rx_truncated == 1


def test_one_flow_per_guest_socket(h: Harness) -> None:
    h.send(udp(GW_IP, 1, b"a", sport=5000))
    h.send(udp(REMOTE, 2, b"b", sport=5000))
    h.send(udp(GW_IP, 1, b"c", sport=5001))
    first, second, third = h.events()
    assert isinstance(first, UDPDatagram)
    assert isinstance(second, UDPDatagram)
    assert isinstance(third, UDPDatagram)
    assert first.flow == second.flow != third.flow
    assert len(h.stack.flows.udp_by_id) == 2


@pytest.mark.parametrize(
    ("dst", "dport", "host_src", "guest_src"),
    [
        (GW_IP, 7777, LOOPBACK_IP, GW_IP),
        (DNS_IP, 53, UPSTREAM, DNS_IP),
        (REMOTE, 443, REMOTE, REMOTE),
        ("255.255.255.255", 9, LOOPBACK_IP, "255.255.255.255"),
    ],
    ids=["gateway", "dns", "internet", "broadcast"],
)
def test_reply_from_the_guest_side_address(
    hv: Harness, dst: str, dport: int, host_src: str, guest_src: str
) -> None:
    hv.stack.nat.dns_upstream = ip4(UPSTREAM)
    hv.send(udp(dst, dport, b"q", sport=5353))
    flow = datagram(hv).flow
    payload = bytes(range(256)) + b"odd"
    hv.stack.udp_send(flow, ip4(host_src), dport, payload, hv.now)
    check_ipv4(
        hv.one_frame(),
        vnet=hv.vnet,
        src=guest_src,
        dst=GUEST_IP,
        ttl=64,
        udp=check_udp(sport=dport, dport=5353, payload=payload),
    )


def test_reply_from_unknown_peer_uses_reverse_translation(h: Harness) -> None:
    h.stack.nat.dns_upstream = ip4(UPSTREAM)
    h.send(udp(REMOTE, 443, b"q", sport=5353))
    flow = datagram(h).flow
    h.stack.udp_send(flow, ip4("127.0.0.5"), 9999, b"r", h.now)
    h.stack.udp_send(flow, ip4(UPSTREAM), 53, b"r", h.now)
    h.stack.udp_send(flow, ip4("198.51.100.7"), 80, b"r", h.now)
    first, second, third = h.frames()
    check_ipv4(first, src=GW_IP, udp=check_udp(sport=9999))
    check_ipv4(second, src=DNS_IP, udp=check_udp(sport=53))
    check_ipv4(third, src="198.51.100.7", udp=check_udp(sport=80))


def test_reply_with_empty_payload(hv: Harness) -> None:
    hv.send(udp(GW_IP, 7, b"q", sport=5353))
    flow = datagram(hv).flow
    hv.stack.udp_send(flow, ip4(LOOPBACK_IP), 7, b"", hv.now)
    check_ipv4(hv.one_frame(), vnet=hv.vnet, udp=check_udp(payload=b""))


def test_reply_goes_to_the_latest_guest_mac(h: Harness) -> None:
    h.send(udp(GW_IP, 7, b"q", sport=5353))
    h.send(udp(GW_IP, 7, b"q", sport=5353, eth_src="02:00:00:00:00:42"))
    flow = h.events()[-1].flow  # type: ignore[union-attr]
    h.stack.udp_send(flow, ip4(LOOPBACK_IP), 7, b"r", h.now)
    check_ipv4(h.one_frame(), eth_dst="02:00:00:00:00:42")


def test_oversize_reply_dropped_and_counted(h: Harness) -> None:
    h.send(udp(GW_IP, 7, b"q", sport=5353))
    flow = datagram(h).flow
    h.stack.udp_send(flow, ip4(LOOPBACK_IP), 7, bytes(1500 - 28), h.now)
    assert len(h.frames()) == 1
    h.stack.udp_send(flow, ip4(LOOPBACK_IP), 7, bytes(1500 - 27), h.now)
    h.no_frames()
    assert h.stack.stats.udp_oversize_dropped == 1


def test_reply_to_unknown_flow_ignored(h: Harness) -> None:
    h.stack.udp_send(12345, ip4(LOOPBACK_IP), 7, b"r", h.now)
    h.no_frames()


# ----------------------------------------------------------------- expiry


def _expires_at(h: Harness, flow: int, limit: float) -> None:
    """``flow`` is still there just before ``limit`` and gone (FlowClosed) at it."""
    while True:
        deadline = h.stack.next_timer()
        assert deadline is not None, "no expiry timer"
        if deadline >= limit:
            break
        h.now = deadline
        h.stack.handle_timer(h.now)
        assert h.events() == [], f"expired early at {h.now}"
    h.now = limit - 1e-6
    h.stack.handle_timer(h.now)
    assert h.events() == []
    assert flow in h.stack.flows.udp_by_id
    h.now = limit
    h.stack.handle_timer(h.now)
    assert h.events() == [FlowClosed(flow)]
    assert h.flows_empty()
    assert h.stack.next_timer() is None


def test_expiry_after_240_seconds(h: Harness) -> None:
    h.send(udp(GW_IP, 7, b"q"))
    flow = datagram(h).flow
    _expires_at(h, flow, 240.0)


def test_dns_expiry_after_10_seconds(h: Harness) -> None:
    h.stack.nat.dns_upstream = ip4(UPSTREAM)
    h.send(udp(DNS_IP, 53, b"q"))
    flow = datagram(h).flow
    _expires_at(h, flow, 10.0)


def test_guest_datagram_refreshes_the_flow(h: Harness) -> None:
    h.send(udp(GW_IP, 7, b"q"))
    flow = datagram(h).flow
    h.advance(200.0)
    h.send(udp(GW_IP, 7, b"again"))
    assert datagram(h).flow == flow
    _expires_at(h, flow, 440.0)


def test_reply_refreshes_the_flow(h: Harness) -> None:
    h.send(udp(GW_IP, 7, b"q"))
    flow = datagram(h).flow
    h.advance(100.0)
    h.stack.udp_send(flow, ip4(LOOPBACK_IP), 7, b"r", h.now)
    h.frames()
    _expires_at(h, flow, 340.0)


def test_dns_flow_used_for_other_traffic_gets_the_long_timeout(h: Harness) -> None:
    h.stack.nat.dns_upstream = ip4(UPSTREAM)
    h.send(udp(DNS_IP, 53, b"q"))
    flow = datagram(h).flow
    h.advance(5.0)
    h.send(udp(REMOTE, 443, b"q"))
    assert datagram(h).flow == flow
    _expires_at(h, flow, 245.0)


def test_close_flow_forgets_silently(h: Harness) -> None:
    h.send(udp(GW_IP, 7, b"q"))
    flow = datagram(h).flow
    h.stack.close_flow(flow)
    assert h.flows_empty()
    h.stack.udp_send(flow, ip4(LOOPBACK_IP), 7, b"r", h.now)
    h.no_frames()
    h.advance(1000.0)
    assert h.events() == []
    h.send(udp(GW_IP, 7, b"q"))
    assert datagram(h).flow != flow


# ------------------------------------------------------------------ limits


def test_flow_limit_evicts_the_oldest() -> None:
    h = Harness(max_udp_flows=3)
    flows = []
    for port in (5000, 5001, 5002):
        h.send(udp(GW_IP, 7, b"q", sport=port))
        flows.append(datagram(h).flow)
        h.advance(1.0)
    h.send(udp(GW_IP, 7, b"q", sport=5000))  # refresh the first one
    assert datagram(h).flow == flows[0]
    h.send(udp(GW_IP, 7, b"q", sport=5003))
    closed, new = h.events()
    assert closed == FlowClosed(flows[1])
    assert isinstance(new, UDPDatagram)
    assert new.flow not in flows
    assert h.stack.stats.udp_flows_evicted == 1
    assert sorted(h.stack.flows.udp_by_id) == sorted([flows[0], flows[2], new.flow])


def test_many_source_ports_stay_bounded() -> None:
    h = Harness(max_udp_flows=16)
    for port in range(1000, 1300):
        h.send(udp(GW_IP, 7, b"q", sport=port))
    events = h.events()
    assert sum(isinstance(e, FlowClosed) for e in events) == 300 - 16
    assert len(h.stack.flows.udp_by_id) == 16
    assert len(h.stack.flows.udp_by_key) == 16


def test_eviction_spares_a_flow_active_in_the_reply_direction() -> None:
    h = Harness(max_udp_flows=2)
    h.send(udp(GW_IP, 7, b"q", sport=5000))
    busy = datagram(h).flow
    h.advance(1.0)
    h.send(udp(GW_IP, 7, b"q", sport=5001))
    idle = datagram(h).flow
    h.advance(1.0)
    h.stack.udp_send(busy, ip4(LOOPBACK_IP), 7, b"stream", h.now)
    h.frames()
    h.advance(1.0)
    h.send(udp(GW_IP, 7, b"q", sport=5002))
    assert h.events()[0] == FlowClosed(idle)


def test_host_icmp_error_is_relayed_quoting_the_guest_datagram(h: Harness) -> None:
    """``udp_error``: the host socket's ICMP error comes to the guest from the
    guest-side address, quoting the guest's own datagram header."""
    h.send(udp(GW_IP, 9, b"anyone?", sport=40123))
    (event,) = h.events()
    assert isinstance(event, UDPDatagram)
    h.stack.udp_error(event.flow, ip4(LOOPBACK_IP), 9, 3, 3, b"anyone?", h.now)
    frame = h.one_frame()
    check_ipv4(frame, src=GW_IP, dst=GUEST_IP)
    pkt = h.dissect(frame)
    icmp = pkt["ICMP"]
    assert (icmp.type, icmp.code) == (3, 3)
    quoted = pkt["IPerror"]
    assert (quoted.src, quoted.dst) == (GUEST_IP, GW_IP)
    assert (pkt["UDPerror"].sport, pkt["UDPerror"].dport) == (40123, 9)
    assert h.stack.stats.icmp_errors_relayed == 1
