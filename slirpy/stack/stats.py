# SPDX-License-Identifier: GPL-2.0-or-later
"""Counters of what the stack did with the guest's frames, one per drop reason."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(slots=True)
class Stats:
    """Plain integer counters; the stack only ever increments them."""

    rx_frames: int = 0
    rx_truncated: int = 0
    rx_malformed: int = 0
    rx_not_for_us: int = 0
    rx_unknown_ethertype: int = 0
    rx_ipv6: int = 0
    rx_fragments: int = 0
    rx_unknown_protocol: int = 0
    rx_policy_drop: int = 0
    arp_replies: int = 0
    icmp_echo_requests: int = 0
    icmp_echo_replies: int = 0
    icmp_echo_dropped: int = 0
    icmp_unreachable_sent: int = 0
    icmp_errors_relayed: int = 0
    dhcp_replies: int = 0
    udp_datagrams: int = 0
    udp_unsupported_port: int = 0
    udp_flows_evicted: int = 0
    udp_oversize_dropped: int = 0
    udp_no_neighbour: int = 0
    tcp_segments: int = 0
    tcp_rst_sent: int = 0
    tcp_syn_dropped: int = 0
    tcp_embryonic_evicted: int = 0
    tcp_flow_limit: int = 0
    tx_frames: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)
