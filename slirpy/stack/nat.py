# SPDX-License-Identifier: GPL-2.0-or-later
"""Address translation between the guest's view and the host's (pure rules).

Outbound (guest → host), as libslirp's ``sotranslate_out``: the gateway
(network+2) and the limited broadcast stand for the host's ``127.0.0.1``
unless host loopback is disabled; the DNS address (network+3) on port 53 is
the first nameserver of the host's ``resolv.conf``, and any other port on it
is unreachable (unless DNS is disabled, when it is an ordinary address). Other
addresses in the virtual network do not exist, and loopback, "this network"
and multicast destinations never leave the stack. Everything else is itself.

Inbound (host → guest) the replies of a UDP flow come back from the guest-side
address the guest sent to; ``reverse`` covers what no flow remembers.
"""

from __future__ import annotations

import enum
import ipaddress
from typing import Final

from slirpy.stack.config import StackConfig

LOOPBACK: Final = bytes((127, 0, 0, 1))
LOOPBACK6: Final = ipaddress.IPv6Address("::1").packed
LIMITED_BROADCAST: Final = b"\xff\xff\xff\xff"
DNS_PORT: Final = 53
_V4_MAPPED_PREFIX: Final = b"\x00" * 10 + b"\xff\xff"


class Verdict(enum.Enum):
    UNREACHABLE = "unreachable"
    """Answer with ICMP destination unreachable (net)."""
    DROP = "drop"
    """Drop silently."""


class NAT:
    """The translation rules of one stack."""

    __slots__ = (
        "_broadcast",
        "_disable_dns",
        "_disable_loopback",
        "_net6",
        "_net_mask",
        "_net_prefix",
        "dns",
        "dns6",
        "dns_upstream",
        "dns_upstream6",
        "gateway",
        "host6",
    )

    def __init__(self, config: StackConfig) -> None:
        self.gateway = config.gateway.packed
        self.dns = config.dns.packed
        self._broadcast = config.network.broadcast_address.packed
        self._net_prefix = int.from_bytes(config.network.network_address.packed)
        self._net_mask = int.from_bytes(config.network.netmask.packed)
        self._disable_loopback = config.disable_host_loopback
        self._disable_dns = config.disable_dns
        self.dns_upstream: bytes | None = None
        """The host-side resolver (packed IPv4), or None when none is known."""
        self.host6 = config.host6.packed
        self.dns6 = config.dns6.packed
        self._net6 = config.network6
        self.dns_upstream6: bytes | None = None
        """The host-side IPv6 resolver (packed), or None when none is known."""

    def outbound(self, dst: bytes, port: int) -> tuple[bytes, int] | Verdict:
        """The host-side destination for a guest packet to ``dst:port``."""
        if len(dst) == 16:
            return self._outbound6(dst, port)
        if dst == self.gateway or dst == LIMITED_BROADCAST:
            if self._disable_loopback:
                return Verdict.UNREACHABLE
            return LOOPBACK, port
        if dst == self.dns:
            if self._disable_dns:
                return dst, port
            if port != DNS_PORT or self.dns_upstream is None:
                return Verdict.UNREACHABLE
            return self.dns_upstream, port
        first = dst[0]
        if first == 127 or first == 0 or first >= 224 or dst == self._broadcast:
            return Verdict.DROP
        if int.from_bytes(dst) & self._net_mask == self._net_prefix:
            return Verdict.UNREACHABLE
        return dst, port

    def _outbound6(self, dst: bytes, port: int) -> tuple[bytes, int] | Verdict:
        """The IPv6 rules: prefix::2 is the host's ``::1``, prefix::3:53 the
        host's IPv6 resolver; the rest of the prefix does not exist; link-local,
        multicast, loopback and unspecified destinations stay here."""
        if dst == self.host6:
            if self._disable_loopback:
                return Verdict.UNREACHABLE
            return LOOPBACK6, port
        if dst == self.dns6 and not self._disable_dns:
            if port != DNS_PORT or self.dns_upstream6 is None:
                return Verdict.UNREACHABLE
            return self.dns_upstream6, port
        addr = ipaddress.IPv6Address(dst)
        if addr in self._net6:
            return Verdict.UNREACHABLE
        if addr.is_link_local or addr.is_multicast or addr.is_loopback:
            return Verdict.DROP
        if addr.is_unspecified or addr.ipv4_mapped is not None:
            return Verdict.DROP
        return dst, port

    def inbound_source(self, client: bytes, guest: bytes = b"") -> bytes:
        """How a port-forward client (packed IPv4 or IPv6) appears to ``guest``.

        As libslirp's ``sotranslate_accept``: loopback and unspecified clients
        appear as the gateway; other IPv4 clients keep their address. An IPv4
        guest cannot see an IPv6 address, so IPv6 clients (other than
        IPv4-mapped ones) appear as the gateway too. Toward an IPv6 guest
        (a 16-byte ``guest``) the same holds with prefix::2 as the gateway,
        and an IPv4 client, which it cannot see either, appears as that."""
        if len(guest) == 16:
            if len(client) == 4 or client == LOOPBACK6 or not any(client):
                return self.host6
            return client
        if len(client) == 16:
            if client[:12] != _V4_MAPPED_PREFIX:
                return self.gateway
            client = client[12:]
        if client[0] == 127 or client == b"\x00\x00\x00\x00":
            return self.gateway
        return client

    def reverse(self, src: bytes, port: int) -> bytes:
        """The guest-side source for a host packet from ``src:port``."""
        if len(src) == 16:
            if src == self.dns_upstream6 and port == DNS_PORT:
                return self.dns6
            return self.host6 if src == LOOPBACK6 else src
        if self.dns_upstream is not None and src == self.dns_upstream and port == 53:
            return self.dns
        if src[0] == 127:
            return self.gateway
        return src
