# SPDX-License-Identifier: GPL-2.0-or-later
"""The DHCPv4 server of the virtual network, as libslirp's ``bootp.c`` behaves.

Sixteen leases from network+15 to network+30, keyed by the client's MAC;
router and server id are the gateway, DNS is network+3, the lease lasts 24 h.
A REQUEST for any address other than the client's lease is refused with a NAK
("requested address not available"). The server is pure: a parsed request
in, the reply's UDP payload out.
"""

from __future__ import annotations

import struct
from typing import Final

from slirpy.stack.config import StackConfig
from slirpy.stack.wire import dhcpv4
from slirpy.stack.wire.dhcpv4 import DHCPMessage, DHCPMessageType

LEASE_SECONDS: Final = 86400
POOL_SIZE: Final = 16
SERVER_PORT: Final = 67
CLIENT_PORT: Final = 68


class DHCPServer:
    """Leases of one virtual network."""

    def __init__(self, config: StackConfig) -> None:
        first = int(config.dhcp_start)
        self._pool = [(first + i).to_bytes(4, "big") for i in range(POOL_SIZE)]
        self._leases: dict[bytes, bytes] = {}
        self._gateway = config.gateway.packed
        self._mask = config.network.netmask.packed
        self._dns = config.dns.packed

    def _lease_for(self, mac: bytes) -> bytes | None:
        lease = self._leases.get(mac)
        if lease is not None:
            return lease
        taken = set(self._leases.values())
        for addr in self._pool:
            if addr not in taken:
                self._leases[mac] = addr
                return addr
        return None

    def handle(self, msg: DHCPMessage) -> bytes | None:
        """The reply's UDP payload, or None when no reply is due."""
        if msg.op != dhcpv4.BOOTREQUEST:
            return None
        kind = msg.message_type
        mac = msg.chaddr
        if kind == DHCPMessageType.DISCOVER:
            lease = self._lease_for(mac)
            return (
                None
                if lease is None
                else self._reply(msg, DHCPMessageType.OFFER, lease)
            )
        if kind == DHCPMessageType.REQUEST:
            wanted = msg.option_ip(dhcpv4.OPT_REQUESTED_IP)
            if wanted is None and msg.ciaddr != b"\x00\x00\x00\x00":
                wanted = msg.ciaddr
            lease = self._lease_for(mac)
            if lease is None or (wanted is not None and wanted != lease):
                return self._nak(msg)
            return self._reply(msg, DHCPMessageType.ACK, lease)
        if kind == DHCPMessageType.RELEASE:
            self._leases.pop(mac, None)
        return None

    def _reply(self, msg: DHCPMessage, kind: DHCPMessageType, lease: bytes) -> bytes:
        options = [
            (dhcpv4.OPT_MESSAGE_TYPE, bytes((kind,))),
            (dhcpv4.OPT_SERVER_ID, self._gateway),
            (dhcpv4.OPT_LEASE_TIME, struct.pack("!I", LEASE_SECONDS)),
            (dhcpv4.OPT_SUBNET_MASK, self._mask),
            (dhcpv4.OPT_ROUTER, self._gateway),
            (dhcpv4.OPT_DNS, self._dns),
        ]
        return dhcpv4.emit_reply(
            xid=msg.xid,
            flags=msg.flags,
            yiaddr=lease,
            siaddr=self._gateway,
            chaddr=msg.chaddr,
            options=options,
        )

    def _nak(self, msg: DHCPMessage) -> bytes:
        options = [
            (dhcpv4.OPT_MESSAGE_TYPE, bytes((DHCPMessageType.NAK,))),
            (dhcpv4.OPT_SERVER_ID, self._gateway),
            (dhcpv4.OPT_MESSAGE, b"requested address not available"),
        ]
        return dhcpv4.emit_reply(
            xid=msg.xid,
            flags=msg.flags,
            yiaddr=b"\x00" * 4,
            siaddr=b"\x00" * 4,
            chaddr=msg.chaddr,
            options=options,
        )
