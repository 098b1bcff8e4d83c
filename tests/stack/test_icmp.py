# SPDX-License-Identifier: GPL-2.0-or-later
"""ICMP: echo for the stack's own addresses, errors quoting what they answer."""

from __future__ import annotations

import pytest
from checks import check_icmp, check_ipv4
from frames import DNS_IP, GUEST_IP, GW_IP, icmp_echo, ipv4
from scapy.layers.inet import ICMP
from scapy.packet import Raw, raw

from slirpy.stack.events import PingRequest
from stack.harness import Harness


@pytest.mark.parametrize("dst", [GW_IP, DNS_IP], ids=["gw", "dns"])
def test_echo_answered(hv: Harness, dst: str) -> None:
    payload = bytes(range(256)) * 3 + b"odd"
    hv.send(icmp_echo(dst, ident=0xBEEF, seq=42, payload=payload))
    check_ipv4(
        hv.one_frame(),
        vnet=hv.vnet,
        src=dst,
        dst=GUEST_IP,
        ttl=255,
        icmp=check_icmp(type=0, code=0, id=0xBEEF, seq=42, payload=payload),
    )
    assert hv.stack.stats.icmp_echo_replies == 1


def test_echo_without_payload(h: Harness) -> None:
    h.send(icmp_echo(payload=b""))
    check_ipv4(h.one_frame(), ttl=255, icmp=check_icmp(type=0, payload=b""))


def test_echo_reply_never_includes_ethernet_padding(h: Harness) -> None:
    """The reply echoes ``tot_len`` bytes, not what trails the packet."""
    h.send(icmp_echo(payload=b"x") + b"\xaa" * 20)
    check_ipv4(h.one_frame(), icmp=check_icmp(type=0, payload=b"x"))


def test_echo_goes_back_to_the_sending_mac(h: Harness) -> None:
    other = "02:00:00:00:00:07"
    frame = raw(ipv4(eth_src=other, dst=GW_IP) / ICMP(type=8) / Raw(b"p"))
    h.send(frame)
    check_ipv4(h.one_frame(), eth_dst=other, icmp=check_icmp(type=0))


@pytest.mark.parametrize(
    "dst",
    ["10.0.2.4", "10.0.2.255", "127.0.0.1"],
    ids=["net+4", "net-broadcast", "loopback"],
)
def test_echo_to_other_addresses_dropped_and_counted(h: Harness, dst: str) -> None:
    h.send(icmp_echo(dst))
    h.no_frames()
    assert h.stack.stats.icmp_echo_dropped == 1
    assert h.stack.stats.icmp_echo_replies == 0


@pytest.mark.parametrize("icmp_type", [0, 3, 11, 13], ids=["reply", "unr", "ttl", "ts"])
def test_other_types_ignored(h: Harness, icmp_type: int) -> None:
    h.send(raw(ipv4(dst=GW_IP, proto=1) / ICMP(type=icmp_type)))
    h.no_frames()
    assert h.stack.stats.icmp_echo_replies == 0


@pytest.mark.parametrize("length", [0, 4, 7], ids=lambda n: f"{n}B")
def test_short_icmp_counted(h: Harness, length: int) -> None:
    frame = raw(ipv4(dst=GW_IP, proto=1) / Raw(bytes([8]) + bytes(max(0, length - 1))))
    frame = frame[: 34 + length]
    h.send(frame)
    h.no_frames()
    assert h.stack.stats.rx_truncated == 1


def test_bad_icmp_checksum_still_answered(h: Harness) -> None:
    """Checksums from the local kernel are not verified (see ``stack.py``)."""
    h.send(raw(ipv4(dst=GW_IP) / ICMP(type=8, chksum=0x1234) / Raw(b"p")))
    check_ipv4(h.one_frame(), icmp=check_icmp(type=0, payload=b"p"))


def test_echo_to_a_host_becomes_a_ping_request(h: Harness) -> None:
    """An echo request for a host beyond the gateway raises ``PingRequest`` (the
    driver sends it from a ping socket); the real reply comes back to the guest
    with the guest's own identifier."""
    h.send(icmp_echo("192.0.2.9", ident=0x4242, seq=7, payload=b"abc"))
    h.no_frames()
    (event,) = h.events()
    assert event == PingRequest(event.flow, bytes([192, 0, 2, 9]), 7, b"abc")
    h.stack.ping_reply(event.flow, bytes([192, 0, 2, 9]), 7, b"abc", h.now)
    check_ipv4(
        h.one_frame(),
        src="192.0.2.9",
        dst=GUEST_IP,
        icmp=check_icmp(type=0, id=0x4242, seq=7, payload=b"abc"),
    )
    assert h.stack.stats.icmp_echo_requests == 1
