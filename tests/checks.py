# SPDX-License-Identifier: GPL-2.0-or-later
"""Composable assertions on the frames the stack sends to the guest.

A frame is dissected by scapy, then checked layer by layer, in the style of
gVisor's ``checker`` package::

    check_ipv4(f, src=GW_IP, tcp=check_tcp(flags="SA", ack=n, mss=1460))

``check_ipv4`` and ``check_arp`` take the frame's bytes (with its virtio-net
header when ``vnet`` is true) and return the scapy packet; ``check_tcp``,
``check_udp`` and ``check_icmp`` return checks for the layer inside. Every
frame also has its checksums verified by ``verify_checksums``, a plain
reference implementation that shares no code with slirpy: complete
checksums without the virtio-net header, and with it the IP header checksum
plus, for TCP and UDP, the partial (pseudo-header) sum that the kernel
completes (``VIRTIO_NET_HDR_F_NEEDS_CSUM``), whose offsets the header must
describe. A failed check raises ``AssertionError`` naming the field.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from frames import GUEST_MAC, GW_MAC
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.l2 import ARP, Ether
from scapy.packet import Packet, Raw

VNET_HDR_LEN: Final = 10
VNET_NEEDS_CSUM: Final = 1
GSO_NONE: Final = 0
GSO_TCPV4: Final = 1
L4_START: Final = 14 + 20


class _Any:
    def __repr__(self) -> str:
        return "ANY"


ANY: Final = _Any()
"""Default of every expected field: not checked."""


@dataclass(frozen=True, slots=True)
class VNetHeader:
    """``struct virtio_net_hdr`` (little-endian, 10 bytes)."""

    flags: int
    gso_type: int
    hdr_len: int
    gso_size: int
    csum_start: int
    csum_offset: int

    @classmethod
    def parse(cls, data: bytes) -> VNetHeader:
        assert len(data) >= VNET_HDR_LEN, "frame shorter than the virtio-net header"
        return cls(*struct.unpack_from("<BBHHHH", data))


@dataclass(frozen=True, slots=True)
class Dissected:
    """One frame toward the guest: its bytes, its virtio-net header, its layers."""

    data: bytes
    """The Ethernet frame (the virtio-net header cut off)."""
    vnet: VNetHeader | None
    pkt: Packet


Check = Callable[[Dissected], None]


# ------------------------------------------------------------ reference sums


def ref_ones_sum(data: bytes, initial: int = 0) -> int:
    """RFC 1071 one's-complement sum, word by word with end-around carry."""
    total = initial
    padded = data + b"\x00" if len(data) % 2 else data
    for i in range(0, len(padded), 2):
        total += (padded[i] << 8) | padded[i + 1]
        while total > 0xFFFF:
            total = (total & 0xFFFF) + (total >> 16)
    return total


def ref_checksum(data: bytes, initial: int = 0) -> int:
    return ~ref_ones_sum(data, initial) & 0xFFFF


def ref_pseudo_header(src: bytes, dst: bytes, protocol: int, length: int) -> bytes:
    return src + dst + bytes((0, protocol)) + length.to_bytes(2, "big")


def _fast_sum(data: bytes) -> int:
    """The same sum as ``ref_ones_sum`` over many words at once (for bulk tests)."""
    if len(data) % 2:
        data += b"\x00"
    words = struct.unpack(f"!{len(data) // 2}H", data)
    total = sum(words)
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def verify_checksums(frame: bytes, *, vnet: bool, fast: bool = False) -> None:
    """Check every checksum of an IPv4 frame toward the guest (see module doc)."""
    summer = _fast_sum if fast else ref_ones_sum
    hdr = VNetHeader.parse(frame) if vnet else None
    data = frame[VNET_HDR_LEN:] if vnet else frame
    assert len(data) >= 14, "frame shorter than an Ethernet header"
    if data[12:14] != b"\x08\x00":
        if hdr is not None:
            assert hdr == VNetHeader(0, 0, 0, 0, 0, 0), f"non-IP frame with {hdr}"
        return
    ip = data[14:]
    assert len(ip) >= 20, "IPv4 packet shorter than 20 bytes"
    ihl = (ip[0] & 0x0F) * 4
    total_len = int.from_bytes(ip[2:4], "big")
    assert total_len == len(ip), f"IPv4 total length {total_len} != {len(ip)}"
    assert summer(ip[:ihl]) == 0xFFFF, "bad IPv4 header checksum"
    proto = ip[9]
    l4 = ip[ihl:]
    pseudo = ref_pseudo_header(ip[12:16], ip[16:20], proto, len(l4))
    if proto == 1:
        assert summer(l4) == 0xFFFF, "bad ICMP checksum"
        if hdr is not None:
            assert hdr == VNetHeader(0, 0, 0, 0, 0, 0), f"ICMP frame with {hdr}"
        return
    if proto not in (6, 17):
        return
    csum_offset = 16 if proto == 6 else 6
    field = int.from_bytes(l4[csum_offset : csum_offset + 2], "big")
    if hdr is None:
        if proto == 17:
            assert field != 0, "UDP checksum left out"
        assert summer(pseudo + l4) == 0xFFFF, f"bad checksum for protocol {proto}"
        return
    assert hdr.flags == VNET_NEEDS_CSUM, f"{hdr}: NEEDS_CSUM not set"
    assert hdr.csum_start == L4_START, f"{hdr}: csum_start"
    assert hdr.csum_offset == csum_offset, f"{hdr}: csum_offset"
    assert field == summer(pseudo), "partial checksum is not the pseudo-header sum"
    # Complete it as the kernel does (sum from csum_start on, field included),
    # then check the result as a receiver would.
    completed = (~summer(l4) & 0xFFFF).to_bytes(2, "big")
    final = l4[:csum_offset] + completed + l4[csum_offset + 2 :]
    assert summer(pseudo + final) == 0xFFFF, "partial checksum completes wrongly"


# ----------------------------------------------------------------- dissecting


def dissect(frame: bytes, *, vnet: bool = False) -> Dissected:
    hdr = VNetHeader.parse(frame) if vnet else None
    data = frame[VNET_HDR_LEN:] if vnet else frame
    return Dissected(data, hdr, Ether(data))


def _expect(layer: str, name: str, actual: object, expected: object) -> None:
    if expected is ANY:
        return
    assert actual == expected, f"{layer}.{name}: got {actual!r}, expected {expected!r}"


def _flags(value: object) -> frozenset[str]:
    return frozenset(str(value))


def check_arp(
    frame: bytes,
    *,
    vnet: bool = False,
    eth_dst: object = GUEST_MAC,
    eth_src: object = GW_MAC,
    op: object = ANY,
    hwsrc: object = ANY,
    psrc: object = ANY,
    hwdst: object = ANY,
    pdst: object = ANY,
) -> Packet:
    """An ARP frame; ``eth_src`` is also the ARP sender's MAC unless given apart."""
    d = dissect(frame, vnet=vnet)
    verify_checksums(frame, vnet=vnet)
    pkt = d.pkt
    assert ARP in pkt, f"not an ARP frame: {pkt.summary()}"
    _expect("eth", "dst", pkt[Ether].dst, eth_dst)
    _expect("eth", "src", pkt[Ether].src, eth_src)
    a = pkt[ARP]
    assert (a.hwtype, a.ptype, a.hwlen, a.plen) == (1, 0x0800, 6, 4)
    _expect("arp", "op", a.op, op)
    _expect("arp", "hwsrc", a.hwsrc, hwsrc)
    _expect("arp", "psrc", a.psrc, psrc)
    _expect("arp", "hwdst", a.hwdst, hwdst)
    _expect("arp", "pdst", a.pdst, pdst)
    return pkt


def check_ipv4(
    frame: bytes,
    *,
    vnet: bool = False,
    eth_dst: object = GUEST_MAC,
    eth_src: object = GW_MAC,
    src: object = ANY,
    dst: object = ANY,
    ttl: object = ANY,
    tcp: Check | None = None,
    udp: Check | None = None,
    icmp: Check | None = None,
) -> Packet:
    """An IPv4 frame from the stack, its checksums and the inner layer's check."""
    verify_checksums(frame, vnet=vnet)
    d = dissect(frame, vnet=vnet)
    pkt = d.pkt
    assert IP in pkt, f"not an IPv4 frame: {pkt.summary()}"
    _expect("eth", "dst", pkt[Ether].dst, eth_dst)
    _expect("eth", "src", pkt[Ether].src, eth_src)
    ip = pkt[IP]
    _expect("ip", "version", ip.version, 4)
    _expect("ip", "ihl", ip.ihl, 5)
    _expect("ip", "frag", ip.frag, 0)
    assert "MF" not in str(ip.flags), "the stack sent a fragment"
    _expect("ip", "src", ip.src, src)
    _expect("ip", "dst", ip.dst, dst)
    _expect("ip", "ttl", ip.ttl, ttl)
    for layer, check in ((TCP, tcp), (UDP, udp), (ICMP, icmp)):
        if check is not None:
            assert layer in pkt, f"no {layer.__name__} in {pkt.summary()}"
            check(d)
    return pkt


def _payload(layer: Packet) -> bytes:
    return bytes(layer[Raw].load) if Raw in layer else b""


def tcp_options(pkt: Packet) -> dict[str, object]:
    """The TCP options of ``pkt`` by scapy name (NOP and EOL left out)."""
    return {
        name: value for name, value in pkt[TCP].options if name not in ("NOP", "EOL")
    }


def _mod32(value: object) -> object:
    return value & 0xFFFFFFFF if isinstance(value, int) else value


def check_tcp(
    *,
    sport: object = ANY,
    dport: object = ANY,
    seq: object = ANY,
    ack: object = ANY,
    flags: str | _Any = ANY,
    window: object = ANY,
    payload: object = ANY,
    payload_len: object = ANY,
    mss: object = ANY,
    wscale: object = ANY,
    gso_size: object = ANY,
) -> Check:
    """A TCP check; ``mss=None``/``wscale=None`` require the option's absence,
    ``gso_size`` (vnet only) the GSO size, 0 meaning no GSO."""

    def check(d: Dissected) -> None:
        t = d.pkt[TCP]
        _expect("tcp", "sport", t.sport, sport)
        _expect("tcp", "dport", t.dport, dport)
        _expect("tcp", "seq", t.seq, _mod32(seq))
        _expect("tcp", "ack", t.ack, _mod32(ack))
        if flags is not ANY:
            _expect("tcp", "flags", _flags(t.flags), _flags(flags))
        _expect("tcp", "window", t.window, window)
        _expect("tcp", "urgptr", t.urgptr, 0)
        data = _payload(t)
        _expect("tcp", "payload", data, payload)
        _expect("tcp", "payload_len", len(data), payload_len)
        opts = tcp_options(d.pkt)
        _expect("tcp", "mss", opts.get("MSS"), mss)
        _expect("tcp", "wscale", opts.get("WScale"), wscale)
        if d.vnet is not None:
            v = d.vnet
            _expect("vnet", "hdr_len", v.hdr_len, L4_START + t.dataofs * 4)
            if v.gso_type == GSO_TCPV4:
                assert 0 < v.gso_size < len(data), f"{v}: GSO for {len(data)} bytes"
            else:
                _expect("vnet", "gso_type", v.gso_type, GSO_NONE)
                _expect("vnet", "gso_size", v.gso_size, 0)
            _expect("vnet", "gso_size", v.gso_size, gso_size)

    return check


def check_udp(
    *,
    sport: object = ANY,
    dport: object = ANY,
    payload: object = ANY,
) -> Check:
    def check(d: Dissected) -> None:
        u = d.pkt[UDP]
        _expect("udp", "sport", u.sport, sport)
        _expect("udp", "dport", u.dport, dport)
        _expect("udp", "len", u.len, len(d.pkt[IP]) - 20)
        _expect("udp", "payload", _payload(u), payload)

    return check


def check_icmp(
    *,
    type: object = ANY,
    code: object = ANY,
    id: object = ANY,
    seq: object = ANY,
    payload: object = ANY,
    quote: object = ANY,
) -> Check:
    """An ICMP check; ``quote`` is the quoted packet of an error message."""

    def check(d: Dissected) -> None:
        c = d.pkt[ICMP]
        _expect("icmp", "type", c.type, type)
        _expect("icmp", "code", c.code, code)
        ip = d.data[14:]
        body = ip[20 + 8 :]
        if c.type in (0, 8):
            _expect("icmp", "id", c.id, id)
            _expect("icmp", "seq", c.seq, seq)
            _expect("icmp", "payload", body, payload)
        else:
            _expect("icmp", "unused", ip[20 + 4 : 20 + 8], b"\x00" * 4)
            _expect("icmp", "quote", body, quote)

    return check


def check_any(frame: bytes, *, vnet: bool = False) -> Packet:
    """What every frame from the stack must be: ARP or IPv4 with good checksums,
    from a ``52:55:`` MAC."""
    verify_checksums(frame, vnet=vnet)
    d = dissect(frame, vnet=vnet)
    pkt = d.pkt
    assert pkt[Ether].src.startswith("52:55:0a:00:02:"), pkt[Ether].src
    assert ARP in pkt or IP in pkt, f"neither ARP nor IPv4: {pkt.summary()}"
    if IP in pkt:
        check_ipv4(frame, vnet=vnet, eth_dst=ANY)
    return pkt
