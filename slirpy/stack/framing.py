# SPDX-License-Identifier: GPL-2.0-or-later
"""Builds the frames the stack sends to the guest: Ethernet, IPv4 or IPv6, and
the transport header, with the checksum work handed to the kernel when it can be.

The family follows the addresses: 4-byte addresses make an IPv4 packet,
16-byte ones an IPv6 packet, so the callers (TCP connections, UDP flows) need
not know which they have. With the virtio-net header (``vnet_hdr``), TCP and
UDP frames carry ``NEEDS_CSUM``: the checksum field holds the pseudo-header
sum and the kernel completes it; TCP frames larger than one segment carry a
GSO type so the kernel cuts them into ``gso_size`` pieces. Without the header
every checksum is computed here.
"""

from __future__ import annotations

import struct
from typing import Final

from slirpy.stack.wire import ethernet, icmpv4, icmpv6, ipv4, ipv6, udp
from slirpy.stack.wire.checksum import (
    add_sums,
    finish,
    internet_checksum,
    ones_sum,
    pseudo_header_sum,
)

Buffer = bytes | bytearray | memoryview
Frame = bytes | tuple[Buffer, ...]
"""A frame for the TAP: whole, or as pieces to be written with one ``writev``."""

VNET_HDR_LEN: Final = 10
_VNET: Final = struct.Struct("<BBHHHH")
_VNET_NEEDS_CSUM: Final = 1
_GSO_NONE: Final = 0
_GSO_TCPV4: Final = 1
_GSO_TCPV6: Final = 4
_NO_VNET: Final = _VNET.pack(0, _GSO_NONE, 0, 0, 0, 0)
_TCP_CSUM_OFFSET: Final = 16
_UDP_CSUM_OFFSET: Final = 6
_ICMPV6: Final = 58
_H: Final = struct.Struct("!H")


class Framer:
    """Frames from the stack's MACs toward the guest, for one stack."""

    __slots__ = ("_ident", "src_mac", "src_mac6", "vnet_hdr")

    def __init__(
        self,
        src_mac: bytes,
        *,
        vnet_hdr: bool,
        src_mac6: bytes | None = None,
        ident: int = 0,
    ) -> None:
        """``ident``: the IPv4 identification the first packet follows."""
        self.src_mac = src_mac
        """Source MAC of ARP and IPv4 frames (the gateway's)."""
        self.src_mac6 = src_mac6 or src_mac
        """Source MAC of IPv6 frames (the router's)."""
        self.vnet_hdr = vnet_hdr
        self._ident = ident & 0xFFFF

    def _head(
        self, dst_mac: bytes, src: bytes, dst: bytes, proto: int, length: int, ttl: int
    ) -> bytes:
        """Ethernet and IP headers for a packet of ``length`` payload bytes."""
        if len(src) == 16:
            return ethernet.header(
                dst_mac, self.src_mac6, ethernet.EtherType.IPV6
            ) + ipv6.emit(src, dst, proto, length, ttl)
        return ethernet.header(dst_mac, self.src_mac, ethernet.EtherType.IPV4) + bytes(
            ipv4.emit(src, dst, proto, length, ident=self.next_ident(), ttl=ttl)
        )

    def next_ident(self) -> int:
        """The IPv4 identification of the next packet (one counter per stack)."""
        self._ident = ident = (self._ident + 1) & 0xFFFF
        return ident

    def raw(
        self,
        dst_mac: bytes,
        ethertype: int,
        payload: bytes,
        *,
        src_mac: bytes | None = None,
    ) -> bytes:
        """A frame of any EtherType (ARP) with no offload work."""
        head = ethernet.header(dst_mac, src_mac or self.src_mac, ethertype)
        return (_NO_VNET + head + payload) if self.vnet_hdr else head + payload

    def tcp(
        self,
        dst_mac: bytes,
        src: bytes,
        dst: bytes,
        segment_header: bytearray,
        payload: bytes | bytearray | memoryview,
        gso_size: int,
    ) -> Frame:
        """A TCP segment; ``segment_header`` has a zero checksum field.

        A segment with payload is returned in pieces, so the payload is never
        copied in Python (``os.writev`` gathers it)."""
        tcp_len = len(segment_header) + len(payload)
        pseudo = pseudo_header_sum(src, dst, 6, tcp_len)
        head = self._head(dst_mac, src, dst, 6, tcp_len, 64)
        if self.vnet_hdr:
            _H.pack_into(segment_header, _TCP_CSUM_OFFSET, pseudo)
            l4_start = len(head)
            hdr_len = l4_start + len(segment_header)
            if len(payload) > gso_size:
                gso_type = _GSO_TCPV6 if len(src) == 16 else _GSO_TCPV4
            else:
                gso_type, gso_size = _GSO_NONE, 0
            vnet = _VNET.pack(
                _VNET_NEEDS_CSUM,
                gso_type,
                hdr_len,
                gso_size,
                l4_start,
                _TCP_CSUM_OFFSET,
            )
            return (
                (vnet, head, segment_header, payload)
                if payload
                else b"".join((vnet, head, segment_header))
            )
        # TCP headers are 4-byte multiples, so summing the parts is exact.
        total = add_sums(ones_sum(segment_header, pseudo), ones_sum(payload))
        _H.pack_into(segment_header, _TCP_CSUM_OFFSET, finish(total))
        if payload:
            return (head, segment_header, payload)
        return head + segment_header

    def udp(
        self,
        dst_mac: bytes,
        src: bytes,
        dst: bytes,
        src_port: int,
        dst_port: int,
        payload: bytes | memoryview,
    ) -> bytes:
        udp_len = udp.HEADER_LEN + len(payload)
        pseudo = pseudo_header_sum(src, dst, 17, udp_len)
        head = self._head(dst_mac, src, dst, 17, udp_len, 64)
        if self.vnet_hdr:
            l4_start = len(head)
            vnet = _VNET.pack(
                _VNET_NEEDS_CSUM,
                _GSO_NONE,
                l4_start + udp.HEADER_LEN,
                0,
                l4_start,
                _UDP_CSUM_OFFSET,
            )
            udp_head = udp.emit(src_port, dst_port, len(payload), pseudo)
            return b"".join((vnet, head, udp_head, payload))
        hdr = udp.emit(src_port, dst_port, len(payload))
        csum = finish(add_sums(ones_sum(hdr, pseudo), ones_sum(payload))) or 0xFFFF
        udp_head = udp.emit(src_port, dst_port, len(payload), csum)
        return b"".join((head, udp_head, payload))

    def icmp(
        self,
        dst_mac: bytes,
        src: bytes,
        dst: bytes,
        message: bytes,
        ttl: int = 64,
    ) -> bytes:
        """An ICMP message (already checksummed by ``icmpv4.emit``)."""
        frame = self._head(dst_mac, src, dst, 1, len(message), ttl) + message
        return _NO_VNET + frame if self.vnet_hdr else frame

    def icmpv6(
        self,
        dst_mac: bytes,
        src: bytes,
        dst: bytes,
        typ: int,
        code: int,
        body: bytes | memoryview,
        hop_limit: int = 64,
    ) -> bytes:
        """An ICMPv6 message; its checksum covers the IPv6 pseudo-header."""
        message = icmpv6.emit(typ, code, body)
        csum = internet_checksum(
            message, pseudo_header_sum(src, dst, _ICMPV6, len(message))
        )
        message = message[:2] + _H.pack(csum) + message[4:]
        frame = (
            self._head(dst_mac, src, dst, _ICMPV6, len(message), hop_limit) + message
        )
        return _NO_VNET + frame if self.vnet_hdr else frame


_TCP4_FRAME: Final = struct.Struct("!BBHHHH6s6sHHHHHHH4s4sHHIIBBHHH")
"""virtio-net header (its little-endian fields stored byte-swapped), Ethernet,
IPv4 and TCP headers of a segment without options, packed in one call."""
_TCP6_FRAME: Final = struct.Struct("!BBHHHH6s6sHIHBB16s16sHHIIBBHHH")
_ETH_LEN: Final = 14
_TCP_LEN: Final = 20
_IPV4_FIXED: Final = 0x4500 + ipv4.FLAG_DF + (64 << 8) + 6
"""The constant 16-bit words of the template's IPv4 header: version and
header length, DF, TTL 64 and protocol TCP."""


def _swap16(value: int) -> int:
    return ((value & 0xFF) << 8) | (value >> 8)


def _words_sum(data: bytes) -> int:
    """Sum of the big-endian 16-bit words of ``data`` (even length), unfolded."""
    return sum(int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2))


class TCPTemplate:
    """The headers of one connection's segments toward the guest, with the
    virtio-net header: everything fixed for the connection (MACs, addresses,
    ports, the partial sums of the IPv4 header and of the TCP pseudo-header)
    is worked out once, so a segment costs one ``struct.pack``.  Segments
    with options (SYN, SYN-ACK) and frames without the virtio-net header are
    built by ``Framer.tcp``."""

    __slots__ = (
        "_dst",
        "_fixed",
        "_framer",
        "_mac",
        "_ports",
        "_pseudo",
        "_src",
        "_v4",
    )

    def __init__(
        self,
        framer: Framer,
        dst_mac: bytes,
        src: bytes,
        dst: bytes,
        src_port: int,
        dst_port: int,
    ) -> None:
        self._framer = framer
        self._src = src
        self._dst = dst
        self._ports = (src_port, dst_port)
        addr_sum = _words_sum(src) + _words_sum(dst)
        self._pseudo = addr_sum + 6
        self._v4 = len(src) == 4
        if not self._v4:
            self._mac = (dst_mac, framer.src_mac6, ethernet.EtherType.IPV6)
            self._fixed = 0
        else:
            self._mac = (dst_mac, framer.src_mac, ethernet.EtherType.IPV4)
            self._fixed = _IPV4_FIXED + addr_sum

    def segment(
        self,
        seq: int,
        ack: int,
        flags: int,
        window: int,
        payload: bytes | bytearray | memoryview,
        gso_size: int,
    ) -> Frame:
        """One segment: the header bytes, with the payload as a second piece."""
        size = len(payload)
        tcp_len = _TCP_LEN + size
        total = self._pseudo + tcp_len
        total = (total & 0xFFFF) + (total >> 16)
        pseudo = (total & 0xFFFF) + (total >> 16)
        if size > gso_size:
            gso_type = _GSO_TCPV4 if self._v4 else _GSO_TCPV6
            gso = _swap16(gso_size)
        else:
            gso_type = gso = 0
        src_port, dst_port = self._ports
        if self._v4:
            ident = self._framer.next_ident()
            ip_len = 20 + tcp_len
            csum = self._fixed + ip_len + ident
            csum = (csum & 0xFFFF) + (csum >> 16)
            csum = ~((csum & 0xFFFF) + (csum >> 16)) & 0xFFFF
            head = _TCP4_FRAME.pack(
                _VNET_NEEDS_CSUM, gso_type, _HDR_LEN4_SWAPPED, gso,
                _L4_START4_SWAPPED, _CSUM_OFFSET_SWAPPED,
                *self._mac,
                0x4500, ip_len, ident, ipv4.FLAG_DF, 0x4006, csum,
                self._src, self._dst,
                src_port, dst_port, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF,
                0x50, flags, window, pseudo, 0,
            )  # fmt: skip
        else:
            head = _TCP6_FRAME.pack(
                _VNET_NEEDS_CSUM, gso_type, _HDR_LEN6_SWAPPED, gso,
                _L4_START6_SWAPPED, _CSUM_OFFSET_SWAPPED,
                *self._mac,
                0x60000000, tcp_len, 6, 64, self._src, self._dst,
                src_port, dst_port, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF,
                0x50, flags, window, pseudo, 0,
            )  # fmt: skip
        return (head, payload) if size else head


_HDR_LEN4_SWAPPED: Final = _swap16(_ETH_LEN + ipv4.HEADER_LEN + _TCP_LEN)
_L4_START4_SWAPPED: Final = _swap16(_ETH_LEN + ipv4.HEADER_LEN)
_HDR_LEN6_SWAPPED: Final = _swap16(_ETH_LEN + ipv6.HEADER_LEN + _TCP_LEN)
_L4_START6_SWAPPED: Final = _swap16(_ETH_LEN + ipv6.HEADER_LEN)
_CSUM_OFFSET_SWAPPED: Final = _swap16(_TCP_CSUM_OFFSET)


def icmp_unreachable(code: int, quote: bytes | memoryview) -> bytes:
    """A destination-unreachable message quoting the offending packet's start."""
    return icmpv4.emit(icmpv4.ICMPType.DEST_UNREACHABLE, code, 0, 0, quote)
