# SPDX-License-Identifier: GPL-2.0-or-later
"""Builds the frames the stack sends to the guest: Ethernet, IPv4, and the
transport header, with the checksum work handed to the kernel when it can be.

With the virtio-net header (``vnet_hdr``), TCP and UDP frames carry
``NEEDS_CSUM``: the checksum field holds the pseudo-header sum and the kernel
completes it; TCP frames larger than one segment carry a GSO type so the
kernel cuts them into ``gso_size`` pieces. Without the header every checksum
is computed here.
"""

from __future__ import annotations

import struct
from typing import Final

from slirpy.stack.wire import ethernet, icmpv4, ipv4, udp
from slirpy.stack.wire.checksum import (
    add_sums,
    finish,
    ones_sum,
    pseudo_header_sum,
)

VNET_HDR_LEN: Final = 10
_VNET: Final = struct.Struct("<BBHHHH")
_VNET_NEEDS_CSUM: Final = 1
_GSO_NONE: Final = 0
_GSO_TCPV4: Final = 1
_NO_VNET: Final = _VNET.pack(0, _GSO_NONE, 0, 0, 0, 0)
_L4_START: Final = ethernet.HEADER_LEN + ipv4.HEADER_LEN
_TCP_CSUM_OFFSET: Final = 16
_UDP_CSUM_OFFSET: Final = 6
_H: Final = struct.Struct("!H")


class Framer:
    """Frames from the gateway's MAC toward the guest, for one stack."""

    __slots__ = ("_ident", "src_mac", "vnet_hdr")

    def __init__(self, src_mac: bytes, *, vnet_hdr: bool) -> None:
        self.src_mac = src_mac
        self.vnet_hdr = vnet_hdr
        self._ident = 0

    def _ip(
        self, src: bytes, dst: bytes, proto: int, length: int, ttl: int
    ) -> bytearray:
        self._ident = (self._ident + 1) & 0xFFFF
        return ipv4.emit(src, dst, proto, length, ident=self._ident, ttl=ttl)

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
        payload: bytes | bytearray,
        gso_size: int,
    ) -> bytes:
        """A TCP segment; ``segment_header`` has a zero checksum field."""
        tcp_len = len(segment_header) + len(payload)
        pseudo = pseudo_header_sum(src, dst, 6, tcp_len)
        if self.vnet_hdr:
            _H.pack_into(segment_header, _TCP_CSUM_OFFSET, pseudo)
            hdr_len = _L4_START + len(segment_header)
            if len(payload) > gso_size:
                vnet = _VNET.pack(
                    _VNET_NEEDS_CSUM,
                    _GSO_TCPV4,
                    hdr_len,
                    gso_size,
                    _L4_START,
                    _TCP_CSUM_OFFSET,
                )
            else:
                vnet = _VNET.pack(
                    _VNET_NEEDS_CSUM, _GSO_NONE, hdr_len, 0, _L4_START, _TCP_CSUM_OFFSET
                )
            return b"".join(
                (
                    vnet,
                    ethernet.header(dst_mac, self.src_mac, ethernet.EtherType.IPV4),
                    self._ip(src, dst, 6, tcp_len, 64),
                    segment_header,
                    payload,
                )
            )
        total = add_sums(ones_sum(segment_header, pseudo), ones_sum(payload))
        # An odd-length header is impossible (TCP headers are 4-byte multiples),
        # so summing the two parts separately is exact.
        _H.pack_into(segment_header, _TCP_CSUM_OFFSET, finish(total))
        return b"".join(
            (
                ethernet.header(dst_mac, self.src_mac, ethernet.EtherType.IPV4),
                self._ip(src, dst, 6, tcp_len, 64),
                segment_header,
                payload,
            )
        )

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
        head = ethernet.header(dst_mac, self.src_mac, ethernet.EtherType.IPV4)
        if self.vnet_hdr:
            vnet = _VNET.pack(
                _VNET_NEEDS_CSUM, _GSO_NONE, _L4_START + 8, 0, _L4_START, 6
            )
            return b"".join(
                (
                    vnet,
                    head,
                    self._ip(src, dst, 17, udp_len, 64),
                    udp.emit(src_port, dst_port, len(payload), pseudo),
                    payload,
                )
            )
        hdr = udp.emit(src_port, dst_port, len(payload))
        csum = finish(add_sums(ones_sum(hdr, pseudo), ones_sum(payload))) or 0xFFFF
        return b"".join(
            (
                head,
                self._ip(src, dst, 17, udp_len, 64),
                udp.emit(src_port, dst_port, len(payload), csum),
                payload,
            )
        )

    def icmp(
        self,
        dst_mac: bytes,
        src: bytes,
        dst: bytes,
        message: bytes,
        ttl: int = 64,
    ) -> bytes:
        """An ICMP message (already checksummed by ``icmpv4.emit``)."""
        head = ethernet.header(dst_mac, self.src_mac, ethernet.EtherType.IPV4)
        ip = self._ip(src, dst, 1, len(message), ttl)
        frame = head + ip + message
        return _NO_VNET + frame if self.vnet_hdr else frame


def icmp_unreachable(code: int, quote: bytes | memoryview) -> bytes:
    """A destination-unreachable message quoting the offending packet's start."""
    return icmpv4.emit(icmpv4.ICMPType.DEST_UNREACHABLE, code, 0, 0, quote)
