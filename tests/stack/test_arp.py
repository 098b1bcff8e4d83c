# SPDX-License-Identifier: GPL-2.0-or-later
"""ARP: the stack answers for the gateway and DNS addresses only."""

from __future__ import annotations

import pytest
from checks import check_arp
from frames import DNS_IP, DNS_MAC, GUEST_IP, GUEST_MAC, GW_IP, GW_MAC, arp_request

from stack.harness import Harness


@pytest.mark.parametrize(
    ("target", "target_mac"), [(GW_IP, GW_MAC), (DNS_IP, DNS_MAC)], ids=["gw", "dns"]
)
def test_request_answered(hv: Harness, target: str, target_mac: str) -> None:
    hv.send(arp_request(target))
    check_arp(
        hv.one_frame(),
        vnet=hv.vnet,
        eth_dst=GUEST_MAC,
        eth_src=target_mac,
        op=2,
        hwsrc=target_mac,
        psrc=target,
        hwdst=GUEST_MAC,
        pdst=GUEST_IP,
    )
    assert hv.stack.stats.arp_replies == 1


def test_reply_goes_to_the_asking_mac(h: Harness) -> None:
    other = "02:11:22:33:44:55"
    h.send(arp_request(GW_IP, sender_ip="10.0.2.15", sender_mac=other))
    check_arp(h.one_frame(), eth_dst=other, hwdst=other, pdst="10.0.2.15")


@pytest.mark.parametrize(
    "target",
    ["10.0.2.1", "10.0.2.4", GUEST_IP, "10.0.2.255", "192.168.1.1", "0.0.0.0"],
    ids=["net+1", "net+4", "guest", "broadcast", "outside", "zero"],
)
def test_other_addresses_not_answered(h: Harness, target: str) -> None:
    h.send(arp_request(target))
    h.no_frames()
    assert h.stack.stats.arp_replies == 0


def test_dns_not_answered_when_dns_disabled() -> None:
    h = Harness(disable_dns=True)
    h.send(arp_request(DNS_IP))
    h.no_frames()
    h.send(arp_request(GW_IP))
    check_arp(h.one_frame(), psrc=GW_IP)


def test_replies_are_not_answered(h: Harness) -> None:
    h.send(arp_request(GW_IP, op=2))
    h.no_frames()


def test_probe_from_zero_address_answered(h: Harness) -> None:
    """RFC 5227 probes carry sender 0.0.0.0; the answer goes back to the MAC."""
    h.send(arp_request(GW_IP, sender_ip="0.0.0.0"))
    check_arp(h.one_frame(), eth_dst=GUEST_MAC, pdst="0.0.0.0")


@pytest.mark.parametrize("cut", [14, 20, 14 + 27], ids=["no-payload", "6B", "27B"])
def test_truncated_counted(h: Harness, cut: int) -> None:
    h.send(arp_request(GW_IP)[:cut])
    h.no_frames()
    assert h.stack.stats.rx_truncated == 1


def test_not_ipv4_over_ethernet_counted(h: Harness) -> None:
    frame = bytearray(arp_request(GW_IP))
    frame[14 + 2 : 14 + 4] = b"\x86\xdd"  # ptype IPv6
    h.send(bytes(frame))
    h.no_frames()
    assert h.stack.stats.rx_malformed == 1


def test_neighbour_table_is_bounded() -> None:
    h = Harness(max_neighbours=4)
    for i in range(50):
        h.send(arp_request(GW_IP, sender_ip=f"10.0.2.{100 + i}"))
    assert len(h.frames()) == 50
    assert len(h.stack._neighbours) <= 4
