# SPDX-License-Identifier: GPL-2.0-or-later
"""IPv4 and Ethernet input: fragments, lying lengths, frames not for the stack."""

from __future__ import annotations

import pytest
from frames import DNS_MAC, GW_IP, GW_MAC, icmp_echo, ipv4, tcp, udp
from scapy.layers.inet import ICMP, IP, UDP
from scapy.layers.l2 import Ether
from scapy.packet import Raw, raw

from stack.harness import Harness


@pytest.mark.parametrize(
    ("flags", "frag"),
    [("MF", 0), (0, 1), ("MF", 185), ("DF+MF", 0), (0, 8191)],
    ids=["first", "last", "middle", "df-mf", "max-offset"],
)
def test_fragments_dropped_and_counted(h: Harness, flags: object, frag: int) -> None:
    pkt = ipv4(dst=GW_IP, flags=flags, frag=frag) / ICMP(type=8) / Raw(b"x" * 16)
    h.send(raw(pkt))
    pkt = ipv4(dst=GW_IP, flags=flags, frag=frag) / UDP(sport=1, dport=2) / Raw(b"x")
    h.send(raw(pkt))
    h.no_frames()
    assert h.events() == []
    assert h.stack.stats.rx_fragments == 2
    assert h.stack.stats.icmp_echo_replies == 0


def test_overlapping_fragment_storm_holds_nothing(h: Harness) -> None:
    for i in range(2000):
        pkt = ipv4(dst=GW_IP, flags="MF", frag=i % 7, id=i) / Raw(b"y" * 64)
        h.send(raw(pkt))
    h.no_frames()
    assert h.stack.stats.rx_fragments == 2000
    assert h.flows_empty()


@pytest.mark.parametrize(
    ("fields", "counter"),
    [
        ({"ihl": 4}, "rx_malformed"),
        ({"ihl": 15}, "rx_malformed"),
        ({"ihl": 15, "len": 60}, "rx_truncated"),
        ({"len": 19}, "rx_malformed"),
        ({"len": 200}, "rx_truncated"),
        ({"len": 65535}, "rx_truncated"),
        ({"version": 6}, "rx_malformed"),
    ],
    ids=[
        "ihl-4",
        "ihl-15-len-28",
        "ihl-15-len-60",
        "len-19",
        "len-past-frame",
        "len-65535",
        "version-6",
    ],
)
def test_lying_header_counted(h: Harness, fields: dict[str, int], counter: str) -> None:
    h.send(raw(Ether(dst=GW_MAC) / IP(dst=GW_IP, **fields) / ICMP(type=8)))
    h.no_frames()
    assert getattr(h.stack.stats, counter) == 1


def test_short_frames_counted(h: Harness) -> None:
    for n in (0, 1, 13):
        h.send(icmp_echo()[:n])
    h.send(icmp_echo()[: 14 + 19])
    h.no_frames()
    assert h.stack.stats.rx_truncated == 4
    assert h.stack.stats.rx_frames == 4


@pytest.mark.parametrize("n", [0, 5, 9], ids=lambda n: f"{n}B")
def test_short_frames_with_vnet_header(n: int) -> None:
    h = Harness(vnet=True)
    h.stack.receive_frame(bytes(n), h.now)
    h.no_frames()
    assert h.stack.stats.rx_truncated == 1


def test_unknown_ethertypes_counted(h: Harness) -> None:
    for ethertype in (0x88F8, 0x8100, 0x0000, 0xFFFF):
        h.send(raw(Ether(dst=GW_MAC, type=ethertype) / Raw(b"\x00" * 46)))
    h.send(raw(Ether(dst=GW_MAC, type=0x86DD) / Raw(b"\x60" + bytes(45))))
    h.no_frames()
    assert h.stack.stats.rx_unknown_ethertype == 4
    assert h.stack.stats.rx_ipv6 == 1


def test_ipv4_for_other_macs_ignored(h: Harness) -> None:
    h.send(icmp_echo(eth_dst="02:00:00:00:00:99"))
    h.send(icmp_echo(eth_dst="01:00:5e:00:00:01"))
    h.no_frames()
    assert h.stack.stats.rx_not_for_us == 2


@pytest.mark.parametrize("dst_mac", [DNS_MAC, "ff:ff:ff:ff:ff:ff"], ids=["dns", "bc"])
def test_ipv4_for_dns_mac_and_broadcast_accepted(h: Harness, dst_mac: str) -> None:
    h.send(icmp_echo(eth_dst=dst_mac))
    assert len(h.frames()) == 1


def test_unknown_protocol_counted(h: Harness) -> None:
    h.send(raw(ipv4(dst=GW_IP, proto=47) / Raw(b"gre")))
    h.send(raw(ipv4(dst=GW_IP, proto=58) / Raw(b"icmp6")))
    h.no_frames()
    assert h.stack.stats.rx_unknown_protocol == 2


def test_ip_options_are_skipped(h: Harness) -> None:
    pkt = ipv4(dst=GW_IP, options=b"\x01\x01\x01\x00") / ICMP(type=8) / Raw(b"opt")
    h.send(raw(pkt))
    assert len(h.frames()) == 1


def test_bad_ip_checksum_is_not_verified(h: Harness) -> None:
    h.send(raw(ipv4(dst=GW_IP, chksum=0xDEAD) / ICMP(type=8)))
    assert len(h.frames()) == 1


@pytest.mark.parametrize(
    "make",
    [
        lambda: udp(payload=b"d")[: 14 + 20 + 7],
        lambda: tcp(flags="S")[: 14 + 20 + 19],
    ],
    ids=["udp-7B", "tcp-19B"],
)
def test_truncated_transport_counted(h: Harness, make: object) -> None:
    frame = make()  # type: ignore[operator]
    pkt = Ether(frame)
    pkt[IP].len = len(frame) - 14
    del pkt[IP].chksum
    h.send(raw(pkt)[: len(frame)])
    h.no_frames()
    assert h.stack.stats.rx_truncated == 1
    assert h.events() == []
