# SPDX-License-Identifier: GPL-2.0-or-later
"""Guest-side frames for the stack tests, built by scapy as an independent oracle.

The addresses are those of slirp4netns's default network (10.0.2.0/24): the
gateway 10.0.2.2 and the DNS address 10.0.2.3 with libslirp's ``52:55:`` MAC
addresses, and a guest at 10.0.2.100 with a locally administered MAC that the
stack can only learn from the frames it receives. Nothing here uses slirpy's
own emitters: frames are built by scapy, so a bug in slirpy's wire layer
cannot cancel itself out in a test.
"""

from __future__ import annotations

from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.l2 import ARP, Ether
from scapy.packet import Packet, Raw, raw

GW_MAC = "52:55:0a:00:02:02"
DNS_MAC = "52:55:0a:00:02:03"
GUEST_MAC = "02:aa:bb:cc:dd:ee"
BROADCAST_MAC = "ff:ff:ff:ff:ff:ff"
GW_IP = "10.0.2.2"
DNS_IP = "10.0.2.3"
GUEST_IP = "10.0.2.100"
LOOPBACK_IP = "127.0.0.1"

VNET_HDR_LEN = 10
VNET_ZERO = bytes(VNET_HDR_LEN)


def mac(text: str) -> bytes:
    """``"52:55:0a:00:02:02"`` as 6 packed bytes."""
    return bytes.fromhex(text.replace(":", ""))


def ip4(text: str) -> bytes:
    """``"10.0.2.2"`` as 4 packed bytes."""
    return bytes(int(part) for part in text.split("."))


def frame(pkt: Packet, *, vnet: bool = False) -> bytes:
    """The bytes of ``pkt``, behind an all-zero virtio-net header if ``vnet``."""
    data = raw(pkt)
    return VNET_ZERO + data if vnet else data


def ether(*, dst: str = GW_MAC, src: str = GUEST_MAC, type: int | None = None) -> Ether:
    return (
        Ether(dst=dst, src=src) if type is None else Ether(dst=dst, src=src, type=type)
    )


def ipv4(
    *,
    src: str = GUEST_IP,
    dst: str = GW_IP,
    eth_dst: str = GW_MAC,
    eth_src: str = GUEST_MAC,
    **fields: object,
) -> Packet:
    """Ethernet + IPv4 header (DF set unless ``flags`` is given)."""
    fields.setdefault("flags", "DF")
    return ether(dst=eth_dst, src=eth_src) / IP(src=src, dst=dst, **fields)


def arp_request(
    target: str,
    *,
    sender_ip: str = GUEST_IP,
    sender_mac: str = GUEST_MAC,
    op: int = 1,
    vnet: bool = False,
) -> bytes:
    pkt = Ether(dst=BROADCAST_MAC, src=sender_mac) / ARP(
        op=op, hwsrc=sender_mac, psrc=sender_ip, hwdst="00:00:00:00:00:00", pdst=target
    )
    return frame(pkt, vnet=vnet)


def icmp_echo(
    dst: str = GW_IP,
    *,
    ident: int = 0x1234,
    seq: int = 1,
    payload: bytes = b"ping payload",
    src: str = GUEST_IP,
    eth_dst: str = GW_MAC,
    vnet: bool = False,
    **ip_fields: object,
) -> bytes:
    pkt = ipv4(src=src, dst=dst, eth_dst=eth_dst, **ip_fields) / ICMP(
        type=8, id=ident, seq=seq
    )
    return frame(pkt / Raw(payload) if payload else pkt, vnet=vnet)


def udp(
    dst: str = GW_IP,
    dport: int = 7777,
    payload: bytes = b"hello",
    *,
    sport: int = 40000,
    src: str = GUEST_IP,
    eth_src: str = GUEST_MAC,
    eth_dst: str = GW_MAC,
    vnet: bool = False,
    **ip_fields: object,
) -> bytes:
    pkt = ipv4(src=src, dst=dst, eth_src=eth_src, eth_dst=eth_dst, **ip_fields) / UDP(
        sport=sport, dport=dport
    )
    return frame(pkt / Raw(payload) if payload else pkt, vnet=vnet)


def tcp(
    *,
    sport: int = 40000,
    dport: int = 8080,
    seq: int = 0,
    ack: int = 0,
    flags: str = "A",
    window: int = 65535,
    options: list[tuple[str, object]] | None = None,
    payload: bytes = b"",
    src: str = GUEST_IP,
    dst: str = GW_IP,
    eth_dst: str = GW_MAC,
    vnet: bool = False,
    **tcp_fields: object,
) -> bytes:
    seg = TCP(
        sport=sport,
        dport=dport,
        seq=seq & 0xFFFFFFFF,
        ack=ack & 0xFFFFFFFF,
        flags=flags,
        window=window,
        options=options or [],
        **tcp_fields,
    )
    pkt = ipv4(src=src, dst=dst, eth_dst=eth_dst) / seg
    return frame(pkt / Raw(payload) if payload else pkt, vnet=vnet)
