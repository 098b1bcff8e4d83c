# SPDX-License-Identifier: GPL-2.0-or-later
"""IPv6 Neighbor Discovery for the virtual router (RFC 4861), as libslirp does it.

The router is fe80::2 (MAC ``52:56:00:00:00:02``); it advertises the prefix
(fd00::/64 by default) with the autonomous flag so the guest configures itself
by SLAAC, answers router solicitations and re-advertises every 200 to 600 s.
Neighbour solicitations are answered only for the stack's own addresses
(fe80::2, prefix::2 and prefix::3), so other addresses of the prefix do not
exist, as with libslirp. The guest's MAC is learned from its ND options.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import Final

from slirpy.stack.config import ROUTER_LINK_LOCAL, StackConfig
from slirpy.stack.errors import TruncatedError
from slirpy.stack.framing import Frame, Framer
from slirpy.stack.wire import icmpv6
from slirpy.stack.wire.icmpv6 import ICMPv6Type

ROUTER_LIFETIME: Final = 1800
VALID_LIFETIME: Final = 86400
PREFERRED_LIFETIME: Final = 14400
MIN_INTERVAL: Final = 200.0
MAX_INTERVAL: Final = 600.0
ALL_NODES: Final = ipaddress.IPv6Address("ff02::1").packed
ALL_NODES_MAC: Final = b"\x33\x33\x00\x00\x00\x01"
UNSPECIFIED: Final = bytes(16)
SOLICITED_NODE_PREFIX: Final = ipaddress.IPv6Address("ff02::1:ff00:0").packed[:13]
_ND_HOP_LIMIT: Final = 255


class NeighborDiscovery:
    """The router's side of ND for one stack."""

    def __init__(
        self,
        config: StackConfig,
        framer: Framer,
        upstream_dns: Callable[[], bytes | None],
    ) -> None:
        self._config = config
        self._framer = framer
        self._upstream_dns = upstream_dns
        self.router = ROUTER_LINK_LOCAL.packed
        self._router_mac = config.router_mac
        self.answers: dict[bytes, bytes] = {
            self.router: config.router_mac,
            config.host6.packed: config.router_mac,
        }
        """Our IPv6 addresses and the MAC each is answered with."""
        if not config.disable_dns:
            self.answers[config.dns6.packed] = config.dns6_mac

    def advertisement(
        self, dst: bytes = ALL_NODES, dst_mac: bytes = ALL_NODES_MAC
    ) -> bytes:
        """A router advertisement frame for ``dst``."""
        config = self._config
        has_dns = not config.disable_dns and self._upstream_dns() is not None
        body = icmpv6.router_advertisement(
            router_lifetime=ROUTER_LIFETIME,
            mac=self._router_mac,
            mtu=config.mtu,
            prefix=config.network6.network_address.packed,
            prefix_len=config.network6.prefixlen,
            valid=VALID_LIFETIME,
            preferred=PREFERRED_LIFETIME,
            dns=config.dns6.packed if has_dns else None,
            dns_lifetime=ROUTER_LIFETIME,
        )
        return self._framer.icmpv6(
            dst_mac,
            self.router,
            dst,
            ICMPv6Type.ROUTER_ADVERTISEMENT,
            0,
            body,
            _ND_HOP_LIMIT,
        )

    def solicitation(self, target: bytes) -> bytes:
        """A neighbour solicitation for ``target`` from the router (to resolve
        the guest's MAC for a port forward)."""
        group = SOLICITED_NODE_PREFIX + target[-3:]
        mac = b"\x33\x33" + group[-4:]
        body = (
            bytes(4)
            + target
            + icmpv6.link_layer_option(icmpv6.OPT_SOURCE_LL, self._router_mac)
        )
        return self._framer.icmpv6(
            mac,
            self.router,
            group,
            ICMPv6Type.NEIGHBOR_SOLICITATION,
            0,
            body,
            _ND_HOP_LIMIT,
        )

    def receive(
        self,
        src_mac: bytes,
        src: bytes,
        typ: int,
        body: memoryview,
        out: list[Frame],
        learn: Callable[[bytes, bytes], None],
    ) -> None:
        """Handle a router or neighbour solicitation or a neighbour advertisement."""
        if typ == ICMPv6Type.ROUTER_SOLICITATION:
            # 4 reserved bytes, then options.
            if len(body) < 4:
                raise TruncatedError("router solicitation too short")
            options = icmpv6.parse_options(body[4:])
            if src == UNSPECIFIED:
                out.append(self.advertisement())
                return
            mac = options.get(icmpv6.OPT_SOURCE_LL, src_mac)[:6]
            learn(src, mac)
            out.append(self.advertisement(src, mac))
        elif typ == ICMPv6Type.NEIGHBOR_SOLICITATION:
            if len(body) < 20:
                raise TruncatedError("neighbour solicitation too short")
            target = bytes(body[4:20])
            options = icmpv6.parse_options(body[20:])
            if src == UNSPECIFIED:
                return  # duplicate address detection: never claim the guest's
            mac = options.get(icmpv6.OPT_SOURCE_LL, src_mac)[:6]
            learn(src, mac)
            answer = self.answers.get(target)
            if answer is None:
                return
            advert = icmpv6.neighbor_advertisement(target, answer, solicited=True)
            out.append(
                self._framer.icmpv6(
                    mac,
                    target,
                    src,
                    ICMPv6Type.NEIGHBOR_ADVERTISEMENT,
                    0,
                    advert,
                    _ND_HOP_LIMIT,
                )
            )
        elif typ == ICMPv6Type.NEIGHBOR_ADVERTISEMENT:
            if len(body) < 20:
                raise TruncatedError("neighbour advertisement too short")
            target = bytes(body[4:20])
            options = icmpv6.parse_options(body[20:])
            target_mac = options.get(icmpv6.OPT_TARGET_LL, b"")
            if len(target_mac) >= 6:
                learn(target, target_mac[:6])
