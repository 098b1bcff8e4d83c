# SPDX-License-Identifier: GPL-2.0-or-later
"""Settings of the sans-IO stack: the virtual network, its addresses and its bounds.

Everything guest-visible that slirp4netns fixes by convention lives here: the
network (10.0.2.0/24 by default), the gateway at network+2 (which stands for
the host's loopback), the DNS address at network+3, the recommended guest
address at network+100 and the ``52:55:`` MAC addresses libslirp answers ARP
with. The bounds cap every resource a guest can make the stack create.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Final

DEFAULT_CIDR: Final = "10.0.2.0/24"
DEFAULT_CIDR6: Final = "fd00::/64"
ROUTER_LINK_LOCAL: Final = ipaddress.IPv6Address("fe80::2")
DEFAULT_MTU: Final = 1500
MIN_MTU: Final = 68
MAX_MTU: Final = 65521


def _mac_for(addr: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bytes:
    """libslirp's MAC for a virtual address: ``52:55`` then the 4 address bytes
    for IPv4, ``52:56`` then the last 4 bytes for IPv6."""
    if addr.version == 6:
        return b"\x52\x56" + addr.packed[-4:]
    return b"\x52\x55" + addr.packed


@dataclass(frozen=True, slots=True, kw_only=True)
class Limits:
    """Bounds on what the guest (or a remote client) can make the stack hold."""

    max_tcp_flows: int = 4096
    """TCP connections tracked at once, all states; further SYNs are refused."""
    max_half_open: int = 256
    """Guest SYNs waiting for the host connect to finish."""
    max_udp_flows: int = 1024
    """UDP and ping flows (one host socket each) at once; the least recently
    active one is evicted."""
    max_neighbours: int = 64
    """Entries of the ARP table."""
    tcp_rcv_window: int = 1 << 20
    """Bytes the guest may send beyond what the host socket has taken."""
    tcp_snd_buffer: int = 1 << 20
    """Bytes queued toward the guest before reading from the host pauses."""
    tcp_delayed_ack: float = 0.001
    """Seconds an ACK for less than two full segments may wait for data to
    ride on (0: acknowledge at once)."""
    udp_timeout: float = 240.0
    """Idle seconds before a UDP flow expires (libslirp ``SO_EXPIRE``)."""
    dns_timeout: float = 10.0
    """Idle seconds before a UDP flow to the DNS address expires (``SO_EXPIREFAST``)."""
    icmp_timeout: float = 30.0
    """Idle seconds before a guest's echo identifier loses its host ping socket."""


@dataclass(frozen=True, slots=True, kw_only=True)
class StackConfig:
    """The virtual network as the guest sees it, plus the stack's bounds."""

    network: ipaddress.IPv4Network = field(
        default_factory=lambda: ipaddress.IPv4Network(DEFAULT_CIDR)
    )
    mtu: int = DEFAULT_MTU
    disable_host_loopback: bool = False
    disable_dns: bool = False
    enable_ipv6: bool = False
    network6: ipaddress.IPv6Network = field(
        default_factory=lambda: ipaddress.IPv6Network(DEFAULT_CIDR6)
    )
    """The IPv6 prefix advertised to the guest (``-6``); /64 for SLAAC."""
    vnet_hdr: bool = False
    """Frames in and out carry a ``virtio_net_hdr``; checksums and GSO are offloaded."""
    limits: Limits = field(default_factory=Limits)

    @property
    def gateway(self) -> ipaddress.IPv4Address:
        return self.network.network_address + 2

    @property
    def dns(self) -> ipaddress.IPv4Address:
        return self.network.network_address + 3

    @property
    def dhcp_start(self) -> ipaddress.IPv4Address:
        return self.network.network_address + 15

    @property
    def dhcp_end(self) -> ipaddress.IPv4Address:
        return self.network.network_address + 30

    @property
    def guest(self) -> ipaddress.IPv4Address:
        """The recommended guest address (network+100), used by ``-c`` and the API."""
        return self.network.network_address + 100

    @property
    def host6(self) -> ipaddress.IPv6Address:
        """The IPv6 address standing for the host's ``::1`` (prefix::2)."""
        return self.network6.network_address + 2

    @property
    def dns6(self) -> ipaddress.IPv6Address:
        return self.network6.network_address + 3

    @property
    def router_mac(self) -> bytes:
        """The MAC of the IPv6 router (fe80::2) and of prefix::2."""
        return _mac_for(ROUTER_LINK_LOCAL)

    @property
    def dns6_mac(self) -> bytes:
        return _mac_for(self.dns6)

    @property
    def gateway_mac(self) -> bytes:
        return _mac_for(self.gateway)

    @property
    def dns_mac(self) -> bytes:
        return _mac_for(self.dns)
