# SPDX-License-Identifier: GPL-2.0-or-later
"""The sans-IO stack: guest frames in, guest frames, events and one deadline out.

Theory of operation
===================

``Stack`` plays every address of the virtual network except the guest's: the
gateway (network+2), which stands for the host, the DNS address (network+3),
and, through address translation, every other host on the Internet. It never
does I/O and never reads a clock. Its driver

1. feeds each frame read from the TAP to ``receive_frame(frame, now)``;
2. writes ``drain_frames()`` to the TAP (``frames_to_send()`` gives the
   same frames whole);
3. acts on ``pop_events()`` (connect a host socket, write data to it, ...)
   and answers through the commands (``accept``, ``reject``, ``tcp_send``,
   ``tcp_shutdown``, ``tcp_abort``, ``set_receive_paused``, ``udp_send``,
   ``close_flow``);
4. calls ``handle_timer(now)`` at ``next_timer()``.

Dispatch: Ethernet → ARP (answered for the gateway and DNS addresses, with
libslirp's ``52:55:`` MACs) or IPv4 (fragments dropped, as passt does: a
guest with a sane MTU never needs them, and reassembly is where libslirp's
worst CVEs lived) → ICMP (echo answered for the stack's own addresses),
UDP (one flow per guest socket) or TCP (``TCPConnection`` per connection).
Every frame is parsed by ``slirpy.stack.wire``; a ``WireError`` is counted in
``stats`` and the frame dropped, so nothing the guest sends can raise out of
``receive_frame``. Checksums of the guest's frames are not verified: they come
from the local kernel over the TAP, which computes them or, with offloads,
leaves them to us.

Every resource the guest can create is bounded by ``StackConfig.limits``:
TCP connections, half-open handshakes, UDP flows (oldest evicted), the
neighbour table and the per-connection buffers.
"""

from __future__ import annotations

import enum
import hashlib
import struct
from collections import OrderedDict
from typing import Final, Protocol

from slirpy.stack import dhcp, nat, ndp
from slirpy.stack.config import StackConfig
from slirpy.stack.dhcp import DHCPServer
from slirpy.stack.errors import TruncatedError, WireError
from slirpy.stack.events import (
    Event,
    FlowClosed,
    PingRequest,
    TCPConnectRequest,
    UDPDatagram,
)
from slirpy.stack.flows import FlowTable, UDPFlow, UDPKey
from slirpy.stack.framing import VNET_HDR_LEN, Frame, Framer, icmp_unreachable
from slirpy.stack.nat import NAT, Verdict
from slirpy.stack.ndp import NeighborDiscovery
from slirpy.stack.stats import Stats
from slirpy.stack.tcp.connection import TCPConnection
from slirpy.stack.tcp.state import TCPState
from slirpy.stack.wire import arp, ethernet, icmpv4, icmpv6, ipv4, ipv6, tcp, udp
from slirpy.stack.wire.dhcpv4 import DHCPMessage
from slirpy.stack.wire.icmpv4 import ICMPType, UnreachableCode
from slirpy.stack.wire.icmpv6 import ICMPv6Type
from slirpy.stack.wire.tcp import ACK, FIN, RST, SYN

_ICMP_QUOTE_EXTRA: Final = 8
_MAX_PENDING_DATAGRAMS: Final = 16
_EMBRYONIC_GRACE: Final = 0.5
"""Seconds a SYN-ACK may go unanswered before its connection can be evicted."""
_ICMP: Final = "icmp"
_STACK_TIMER: Final = 0
"""The timer heap's id for the stack's own timer (router advertisements)."""
_ICMPV6_QUOTE_MAX: Final = 1280 - 40 - 8
_ECHO_ID_SEQ: Final = struct.Struct("!HH")
_PORTS: Final = struct.Struct("!HH")
_ND_TYPES: Final = frozenset(
    (
        ICMPv6Type.ROUTER_SOLICITATION,
        ICMPv6Type.NEIGHBOR_SOLICITATION,
        ICMPv6Type.NEIGHBOR_ADVERTISEMENT,
    )
)
IPHeader = ipv4.IPv4Header | ipv6.IPv6Header


class RandomSource(Protocol):
    """Where initial sequence numbers come from (``random.Random`` fits)."""

    def getrandbits(self, k: int, /) -> int: ...


class RejectReason(enum.Enum):
    """Why the host side of a new TCP connection could not be opened."""

    REFUSED = "refused"
    """Answer the guest's SYN with an RST (``ECONNREFUSED`` in the guest)."""
    NET_UNREACHABLE = "net-unreachable"
    """ICMP destination unreachable, code net (``ENETUNREACH``)."""
    HOST_UNREACHABLE = "host-unreachable"
    """ICMP destination unreachable, code host (``EHOSTUNREACH``)."""


class Stack:
    """The virtual network seen from the guest; see the module docstring."""

    def __init__(self, config: StackConfig, rng: RandomSource) -> None:
        self.config = config
        self.stats = Stats()
        self.nat = NAT(config)
        self.flows = FlowTable()
        self._rng = rng
        self._isn_key = rng.getrandbits(128).to_bytes(16)
        self._framer = Framer(
            config.gateway_mac, vnet_hdr=config.vnet_hdr, src_mac6=config.router_mac
        )
        self._vnet = config.vnet_hdr
        self._out: list[Frame] = []
        self._events: list[Event] = []
        self._dirty: dict[int, TCPConnection] = {}
        self._neighbours: OrderedDict[bytes, bytes] = OrderedDict()
        self._awaiting_neighbour: dict[bytes, set[int]] = {}
        self._pending_udp: dict[bytes, list[tuple[int, bytes, int, bytes]]] = {}
        self._dhcp = DHCPServer(config)
        self._gateway = config.gateway.packed
        self._dns = config.dns.packed
        self._our_macs = (config.gateway_mac, config.dns_mac, ethernet.BROADCAST)
        self._arp_answers = {self._gateway: config.gateway_mac}
        if not config.disable_dns:
            self._arp_answers[self._dns] = config.dns_mac
        self._ipv6 = config.enable_ipv6
        self._ndp = NeighborDiscovery(config, self._framer, self._dns_upstream6)
        self._our_addrs6 = frozenset(self._ndp.answers)
        self._our_macs6 = frozenset((config.router_mac, config.dns6_mac))
        self._host6 = config.host6.packed
        if self._ipv6:
            # The first router advertisement goes out at the first timer call.
            self.flows.schedule(_STACK_TIMER, 0.0)

    def _dns_upstream6(self) -> bytes | None:
        return self.nat.dns_upstream6

    # ================================================================ driver API

    def receive_frame(self, frame: bytes | memoryview, now: float) -> None:
        """Process one frame from the TAP (with its virtio-net header if enabled)."""
        self.stats.rx_frames += 1
        buf = memoryview(frame)
        if self._vnet:
            buf = buf[VNET_HDR_LEN:]
        try:
            self._receive_ethernet(buf, now)
        except TruncatedError:
            self.stats.rx_truncated += 1
        except WireError:
            self.stats.rx_malformed += 1

    def frames_to_send(self) -> list[bytes]:
        """Frames for the TAP, in order, each as one ``bytes``."""
        return [f if isinstance(f, bytes) else b"".join(f) for f in self.drain_frames()]

    def drain_frames(self) -> list[Frame]:
        """Frames for the TAP, in order; big ones in pieces for ``os.writev``."""
        if self._dirty:
            for conn in self._dirty.values():
                conn.flush()
            self._dirty.clear()
        out = self._out
        if not out:
            return []
        # Connections hold ``self._out.append``: hand over a copy, keep the list.
        frames = out.copy()
        out.clear()
        self.stats.tx_frames += len(frames)
        return frames

    def pop_events(self) -> list[Event]:
        """Events raised since the last call, in order."""
        events = self._events
        if not events:
            return []
        # Connections hold a reference to this list: copy, then clear it.
        popped = events.copy()
        events.clear()
        return popped

    def next_timer(self) -> float | None:
        """When ``handle_timer`` must be called next, or None."""
        return self.flows.next_deadline()

    def handle_timer(self, now: float) -> None:
        flows = self.flows
        for flow in flows.pop_due(now):
            if flow == _STACK_TIMER:
                self._out.append(self._ndp.advertisement())
                interval = ndp.MIN_INTERVAL + (ndp.MAX_INTERVAL - ndp.MIN_INTERVAL) * (
                    self._rng.getrandbits(16) / 0xFFFF
                )
                flows.schedule(_STACK_TIMER, now + interval)
                continue
            conn = flows.tcp_by_id.get(flow)
            if conn is not None:
                wakeup = conn.wakeup_at
                if wakeup is not None and wakeup <= now:
                    conn.on_timer(now)
                    if conn.state is TCPState.SYN_SENT and not conn.guest_mac:
                        self._arp_request(conn.guest_ip)
                self._after_tcp(conn)
                continue
            uflow = flows.udp_by_id.get(flow)
            if uflow is not None:
                if uflow.expires_at <= now:
                    flows.remove_udp(uflow)
                    self._events.append(FlowClosed(uflow.flow))
                else:
                    flows.schedule(flow, uflow.expires_at)

    # -------------------------------------------------------------- TCP commands

    def accept(self, flow: int, now: float) -> bool:
        """The host connect for ``flow`` succeeded: send the SYN-ACK.

        False if the flow is gone (the guest gave up meanwhile)."""
        conn = self.flows.tcp_by_id.get(flow)
        if conn is None or conn.state is not TCPState.SYN_RECEIVED or conn.accepted:
            return False
        conn.accept(now)
        self._after_tcp(conn)
        return True

    def reject(self, flow: int, reason: RejectReason) -> None:
        """The host connect for ``flow`` failed: tell the guest, forget the flow."""
        conn = self.flows.tcp_by_id.get(flow)
        if conn is None or conn.accepted:
            return
        if reason is RejectReason.REFUSED:
            conn.reset_syn()
        else:
            code = (
                UnreachableCode.HOST
                if reason is RejectReason.HOST_UNREACHABLE
                else UnreachableCode.NET
            )
            self._send_unreachable(conn.guest_mac, conn.guest_ip, code, conn.syn_quote)
            conn.abort_silently()
        self._after_tcp(conn)

    def tcp_send(
        self,
        flow: int,
        data: bytes | bytearray | memoryview,
        now: float,
        fin: bool = False,
    ) -> bool:
        """Queue host data for the guest, with ``fin`` the host's EOF after
        it (``tcp_shutdown`` in the same segment); False: stop reading until
        ``TCPWritable``."""
        conn = self.flows.tcp_by_id.get(flow)
        if conn is None or conn.finished:
            return True
        room = conn.send(data, now, fin)
        self._after_tcp(conn)
        return room

    def tcp_shutdown(self, flow: int, now: float) -> None:
        """The host side sent EOF: FIN to the guest after the queued data."""
        conn = self.flows.tcp_by_id.get(flow)
        if conn is not None:
            conn.shutdown(now)
            self._after_tcp(conn)

    def tcp_abort(self, flow: int) -> None:
        """The host side was reset: RST to the guest."""
        conn = self.flows.tcp_by_id.get(flow)
        if conn is not None:
            conn.abort()
            self._after_tcp(conn)

    def set_receive_paused(self, flow: int, paused: bool, now: float) -> None:
        """Close (or reopen) the guest's window: the host socket is backed up."""
        conn = self.flows.tcp_by_id.get(flow)
        if conn is not None:
            conn.set_receive_paused(paused, now)

    # -------------------------------------------------------------- UDP commands

    def udp_send(
        self, flow: int, src: bytes, src_port: int, data: bytes | memoryview, now: float
    ) -> None:
        """A datagram from host ``src:src_port`` for the guest socket of ``flow``."""
        uflow = self.flows.udp_by_id.get(flow)
        if uflow is None:
            return
        ip_len = ipv4.HEADER_LEN if len(uflow.guest_ip) == 4 else ipv6.HEADER_LEN
        if len(data) > self.config.mtu - ip_len - udp.HEADER_LEN:
            self.stats.udp_oversize_dropped += 1
            return
        guest_side = uflow.peers.get((src, src_port))
        if guest_side is None:
            guest_side = self.nat.reverse(src, src_port)
        self.flows.touch_udp(uflow, now)
        self._out.append(
            self._framer.udp(
                uflow.guest_mac,
                guest_side,
                uflow.guest_ip,
                src_port,
                uflow.guest_port,
                data,
            )
        )

    def udp_error(
        self,
        flow: int,
        dst: bytes,
        dst_port: int,
        icmp_type: int,
        icmp_code: int,
        payload: bytes,
        now: float,
    ) -> None:
        """An ICMP error the host socket of ``flow`` got for what it sent to
        ``dst:dst_port`` (``payload`` is the start of that datagram, or the
        whole echo request of a ping flow): the guest gets the same error,
        quoting its own packet as it sent it."""
        uflow = self.flows.udp_by_id.get(flow)
        if uflow is None or not uflow.guest_mac:
            return
        guest_side = uflow.peers.get((dst, dst_port)) or self.nat.reverse(dst, dst_port)
        v6 = len(uflow.guest_ip) == 16
        if len(uflow.key) == 3:  # a ping flow: the guest's echo request
            if len(payload) < 8:
                return
            proto = ipv4.IPProtocol.ICMPV6 if v6 else ipv4.IPProtocol.ICMP
            ident = uflow.guest_port.to_bytes(2, "big")
            inner = payload[:4] + ident + payload[6:]
        else:
            proto = ipv4.IPProtocol.UDP
            inner = udp.emit(uflow.guest_port, dst_port, len(payload)) + payload
        self.stats.icmp_errors_relayed += 1
        if v6:
            head = ipv6.emit(uflow.guest_ip, guest_side, proto, len(inner), 64)
            quote = (head + inner)[:_ICMPV6_QUOTE_MAX]
            self._out.append(
                self._framer.icmpv6(
                    uflow.guest_mac,
                    guest_side,
                    uflow.guest_ip,
                    icmp_type,
                    icmp_code,
                    bytes(4) + quote,
                )
            )
            return
        head4 = ipv4.emit(uflow.guest_ip, guest_side, proto, len(inner))
        message = icmpv4.emit(icmp_type, icmp_code, 0, 0, bytes(head4) + inner[:8])
        self._out.append(
            self._framer.icmp(uflow.guest_mac, guest_side, uflow.guest_ip, message)
        )

    # ---------------------------------------------------------- port forwards

    def open_tcp(
        self,
        client: bytes,
        client_port: int,
        guest_ip: bytes,
        guest_port: int,
        now: float,
    ) -> int | None:
        """Open a connection to ``guest_ip:guest_port`` for a port-forward client.

        ``client`` is the host client's packed address (IPv4 or IPv6); the guest
        sees it translated by ``NAT.inbound_source``. Returns the flow id (the
        driver relays the client's bytes from ``TCPConnected`` on) or None when
        the connection cannot be tracked (limit, or the same four-tuple is in
        use)."""
        flows = self.flows
        src = self.nat.inbound_source(client, guest_ip)
        key = (guest_ip, guest_port, src, client_port)
        old = flows.tcp_by_key.get(key)
        if old is not None and not old.finished:
            if old.state is not TCPState.TIME_WAIT:
                return None
            old.abort_silently()
            self._after_tcp(old)
        if len(flows.tcp_by_id) >= self.config.limits.max_tcp_flows:
            self.stats.tcp_flow_limit += 1
            return None
        mac = self._neighbours.get(guest_ip, b"")
        conn = self._tcp_connection(mac, guest_ip, guest_port, src, client_port, now)
        flows.add_tcp(key, conn, half_open=False)
        conn.connect(now)
        if not mac:
            self._awaiting_neighbour.setdefault(guest_ip, set()).add(conn.flow)
            self._arp_request(guest_ip)
        self._after_tcp(conn)
        return conn.flow

    def udp_inbound(
        self,
        client: bytes,
        client_port: int,
        guest_ip: bytes,
        guest_port: int,
        data: bytes | memoryview,
        now: float,
    ) -> int:
        """A datagram from a port-forward client for ``guest_ip:guest_port``.

        Returns the flow id of the client's flow; the guest's replies come back
        as ``UDPDatagram`` events of that flow."""
        src = self.nat.inbound_source(client, guest_ip)
        key = (guest_ip, guest_port, src, client_port)
        uflow = self.flows.udp_by_key.get(key)
        mac = self._neighbours.get(guest_ip, b"")
        if uflow is None:
            uflow = self._new_udp_flow(
                key, guest_ip, guest_port, mac, self.config.limits.udp_timeout, now
            )
            uflow.remember_peer((src, client_port), src)
        else:
            self.flows.touch_udp(uflow, now)
        if mac:
            uflow.guest_mac = mac
        if not uflow.guest_mac:
            pending = self._pending_udp.setdefault(guest_ip, [])
            if len(pending) < _MAX_PENDING_DATAGRAMS:
                pending.append((uflow.flow, src, client_port, bytes(data)))
            else:
                self.stats.udp_no_neighbour += 1
            self._arp_request(guest_ip)
            return uflow.flow
        self.udp_send(uflow.flow, src, client_port, data, now)
        return uflow.flow

    def _arp_request(self, ip: bytes) -> None:
        """Ask for ``ip``'s MAC: ARP for IPv4, a neighbour solicitation for IPv6."""
        if len(ip) == 16:
            self._out.append(self._ndp.solicitation(ip))
            return
        request = arp.ARPPacket(
            operation=arp.ARPOperation.REQUEST,
            sender_mac=self.config.gateway_mac,
            sender_ip=self._gateway,
            target_mac=b"\x00" * 6,
            target_ip=ip,
        )
        self._out.append(
            self._framer.raw(
                ethernet.BROADCAST, ethernet.EtherType.ARP, request.to_bytes()
            )
        )

    def close_flow(self, flow: int) -> None:
        """Forget a UDP flow whose host socket failed (no event is raised)."""
        uflow = self.flows.udp_by_id.get(flow)
        if uflow is not None:
            self.flows.remove_udp(uflow)

    # ==================================================================== input

    def _receive_ethernet(self, buf: memoryview, now: float) -> None:
        eth, payload = ethernet.EthernetHeader.parse(buf)
        if eth.src[0] & 1:
            self.stats.rx_malformed += 1  # a group address cannot send
            return
        ethertype = eth.ethertype
        if ethertype == ethernet.EtherType.IPV4:
            if eth.dst not in self._our_macs:
                self.stats.rx_not_for_us += 1
                return
            self._receive_ipv4(eth.src, payload, now)
        elif ethertype == ethernet.EtherType.ARP:
            self._receive_arp(payload)
        elif ethertype == ethernet.EtherType.IPV6:
            if not self._ipv6:
                self.stats.rx_ipv6 += 1
            elif eth.dst in self._our_macs6 or eth.dst[:2] == b"\x33\x33":
                self._receive_ipv6(eth.src, payload, now)
            else:
                self.stats.rx_not_for_us += 1
        else:
            self.stats.rx_unknown_ethertype += 1

    def _learn(self, ip: bytes, mac: bytes) -> None:
        if not any(ip) or mac[0] & 1 or (len(ip) == 16 and ip[0] == 0xFF):
            return
        table = self._neighbours
        if table.get(ip) != mac:
            table[ip] = mac
            self._neighbour_found(ip, mac)
        table.move_to_end(ip)
        if len(table) > self.config.limits.max_neighbours:
            table.popitem(last=False)

    def _neighbour_found(self, ip: bytes, mac: bytes) -> None:
        """Send what waited for ``ip``'s MAC: port-forward SYNs and datagrams."""
        for flow in self._awaiting_neighbour.pop(ip, ()):
            conn = self.flows.tcp_by_id.get(flow)
            if conn is not None:
                conn.neighbour_known(mac)
        for flow, src, src_port, data in self._pending_udp.pop(ip, ()):
            uflow = self.flows.udp_by_id.get(flow)
            if uflow is not None:
                uflow.guest_mac = mac
                self.udp_send(flow, src, src_port, data, uflow.last_active)

    def _receive_arp(self, buf: memoryview) -> None:
        pkt = arp.ARPPacket.parse(buf)
        self._learn(pkt.sender_ip, pkt.sender_mac)
        if pkt.operation != arp.ARPOperation.REQUEST:
            return
        mac = self._arp_answers.get(pkt.target_ip)
        if mac is None:
            return
        reply = arp.ARPPacket(
            operation=arp.ARPOperation.REPLY,
            sender_mac=mac,
            sender_ip=pkt.target_ip,
            target_mac=pkt.sender_mac,
            target_ip=pkt.sender_ip,
        )
        self.stats.arp_replies += 1
        self._out.append(
            self._framer.raw(
                pkt.sender_mac, ethernet.EtherType.ARP, reply.to_bytes(), src_mac=mac
            )
        )

    def _receive_ipv4(self, src_mac: bytes, buf: memoryview, now: float) -> None:
        ip, payload = ipv4.IPv4Header.parse(buf)
        if ip.is_fragment:
            self.stats.rx_fragments += 1
            return
        self._learn(ip.src, src_mac)
        proto = ip.protocol
        if proto == ipv4.IPProtocol.TCP:
            self._receive_tcp(src_mac, ip, buf, payload, now)
        elif proto == ipv4.IPProtocol.UDP:
            self._receive_udp(src_mac, ip, buf, payload, now)
        elif proto == ipv4.IPProtocol.ICMP:
            self._receive_icmp(src_mac, ip, payload, now)
        else:
            self.stats.rx_unknown_protocol += 1

    def _receive_ipv6(self, src_mac: bytes, buf: memoryview, now: float) -> None:
        ip, payload = ipv6.IPv6Header.parse(buf)
        self._learn(ip.src, src_mac)
        nh = ip.next_header
        if nh == ipv4.IPProtocol.TCP:
            self._receive_tcp(src_mac, ip, buf, payload, now)
        elif nh == ipv4.IPProtocol.UDP:
            self._receive_udp(src_mac, ip, buf, payload, now)
        elif nh == ipv4.IPProtocol.ICMPV6:
            self._receive_icmpv6(src_mac, ip, payload, now)
        elif nh == ipv6.NEXT_FRAGMENT:
            self.stats.rx_fragments += 1
        else:
            self.stats.rx_unknown_protocol += 1

    def _outbound(
        self, src_mac: bytes, ip: IPHeader, packet: memoryview, port: int
    ) -> tuple[bytes, int] | None:
        """The host-side destination of a new flow, or None after telling the
        guest (ICMP unreachable) or silently dropping, as the NAT decides."""
        verdict = self.nat.outbound(ip.dst, port)
        if not isinstance(verdict, Verdict):
            return verdict
        self.stats.rx_policy_drop += 1
        if verdict is Verdict.UNREACHABLE:
            self._send_unreachable(
                src_mac, ip.src, UnreachableCode.NET, self._quote(ip, packet)
            )
        return None

    def _quote(self, ip: IPHeader, packet: memoryview) -> bytes:
        """The start of ``packet`` for an ICMP error: the header and 8 bytes
        (RFC 792), or as much as fits the IPv6 minimum MTU (RFC 4443 §3.1)."""
        if isinstance(ip, ipv6.IPv6Header):
            return bytes(packet[:_ICMPV6_QUOTE_MAX])
        return bytes(packet[: ip.header_len + _ICMP_QUOTE_EXTRA])

    def _send_unreachable(
        self, mac: bytes, dst: bytes, code: int, quote: bytes | memoryview
    ) -> None:
        self.stats.icmp_unreachable_sent += 1
        if len(dst) == 16:
            code6 = 3 if code == UnreachableCode.HOST else 0  # address / no route
            self._out.append(
                self._framer.icmpv6(
                    mac,
                    self._host6,
                    dst,
                    ICMPv6Type.DEST_UNREACHABLE,
                    code6,
                    bytes(4) + bytes(quote),
                )
            )
            return
        self._out.append(
            self._framer.icmp(mac, self._gateway, dst, icmp_unreachable(code, quote))
        )

    # --------------------------------------------------------------------- ICMP

    def _receive_icmp(
        self, src_mac: bytes, ip: ipv4.IPv4Header, payload: memoryview, now: float
    ) -> None:
        icmp, body = icmpv4.ICMPHeader.parse(payload)
        if icmp.type != ICMPType.ECHO_REQUEST:
            return
        if ip.dst == self._gateway or ip.dst == self._dns:
            reply = icmpv4.emit(ICMPType.ECHO_REPLY, 0, icmp.ident, icmp.seq, body)
            self.stats.icmp_echo_replies += 1
            self._out.append(self._framer.icmp(src_mac, ip.dst, ip.src, reply, ttl=255))
            return
        self._ping(src_mac, ip, icmp.ident, icmp.seq, body, now)

    def _receive_icmpv6(
        self, src_mac: bytes, ip: ipv6.IPv6Header, payload: memoryview, now: float
    ) -> None:
        icmp, body = icmpv6.ICMPv6Header.parse(payload)
        typ = icmp.type
        if typ == ICMPv6Type.ECHO_REQUEST:
            if len(body) < 4:
                raise TruncatedError("ICMPv6 echo request too short")
            ident, seq = _ECHO_ID_SEQ.unpack_from(body)
            if ip.dst in self._our_addrs6:
                self.stats.icmp_echo_replies += 1
                self._out.append(
                    self._framer.icmpv6(
                        src_mac, ip.dst, ip.src, ICMPv6Type.ECHO_REPLY, 0, body, 255
                    )
                )
                return
            self._ping(src_mac, ip, ident, seq, body[4:], now)
        elif typ in _ND_TYPES:
            self._ndp.receive(src_mac, ip.src, typ, body, self._out, self._learn)

    def _ping(
        self,
        src_mac: bytes,
        ip: IPHeader,
        ident: int,
        seq: int,
        body: memoryview,
        now: float,
    ) -> None:
        """An echo request for another host: a ping flow per echo identifier."""
        verdict = self.nat.outbound(ip.dst, 0)
        if isinstance(verdict, Verdict):
            self.stats.icmp_echo_dropped += 1
            return
        key = (ip.src, ident, _ICMP)
        flow = self.flows.udp_by_key.get(key)
        if flow is None:
            flow = self._new_udp_flow(
                key,
                ip.src,
                ident,
                src_mac,
                self.config.limits.icmp_timeout,
                now,
            )
        else:
            self.flows.touch_udp(flow, now)
        flow.remember_peer((verdict[0], 0), ip.dst)
        self.stats.icmp_echo_requests += 1
        self._events.append(PingRequest(flow.flow, verdict[0], seq, bytes(body)))

    def ping_reply(
        self, flow: int, src: bytes, seq: int, data: bytes | memoryview, now: float
    ) -> None:
        """A real echo reply from host ``src`` for the guest's ping ``flow``."""
        uflow = self.flows.udp_by_id.get(flow)
        if uflow is None:
            return
        guest_side = uflow.peers.get((src, 0)) or self.nat.reverse(src, 0)
        self.flows.touch_udp(uflow, now)
        self.stats.icmp_echo_replies += 1
        if len(src) == 16:
            body = _ECHO_ID_SEQ.pack(uflow.guest_port, seq) + bytes(data)
            self._out.append(
                self._framer.icmpv6(
                    uflow.guest_mac,
                    guest_side,
                    uflow.guest_ip,
                    ICMPv6Type.ECHO_REPLY,
                    0,
                    body,
                )
            )
            return
        reply = icmpv4.emit(ICMPType.ECHO_REPLY, 0, uflow.guest_port, seq, data)
        self._out.append(
            self._framer.icmp(uflow.guest_mac, guest_side, uflow.guest_ip, reply)
        )

    # ---------------------------------------------------------------------- UDP

    def _receive_udp(
        self,
        src_mac: bytes,
        ip: IPHeader,
        packet: memoryview,
        payload: memoryview,
        now: float,
    ) -> None:
        hdr, data = udp.UDPHeader.parse(payload)
        inbound = self.flows.udp_by_key.get(
            (ip.src, hdr.src_port, ip.dst, hdr.dst_port)
        )
        if inbound is not None:
            # A reply on a port forward's flow.
            self.flows.touch_udp(inbound, now)
            self.stats.udp_datagrams += 1
            self._events.append(
                UDPDatagram(inbound.flow, ip.dst, hdr.dst_port, bytes(data))
            )
            return
        if hdr.dst_port == dhcp.SERVER_PORT and len(ip.src) == 4:
            self._receive_dhcp(src_mac, data)
            return
        if hdr.dst_port == dhcp.CLIENT_PORT or hdr.src_port == 0 or hdr.dst_port == 0:
            self.stats.udp_unsupported_port += 1
            return
        destination = self._outbound(src_mac, ip, packet, hdr.dst_port)
        if destination is None:
            return
        host_addr, host_port = destination
        key = (ip.src, hdr.src_port)
        is_dns = ip.dst == self._dns or ip.dst == self.nat.dns6
        limits = self.config.limits
        uflow = self.flows.udp_by_key.get(key)
        if uflow is None:
            timeout = limits.dns_timeout if is_dns else limits.udp_timeout
            uflow = self._new_udp_flow(key, ip.src, hdr.src_port, src_mac, timeout, now)
        else:
            self.flows.touch_udp(uflow, now)
            uflow.guest_mac = src_mac
            if not is_dns:
                uflow.timeout = limits.udp_timeout
        uflow.remember_peer((host_addr, host_port), ip.dst)
        self.stats.udp_datagrams += 1
        self._events.append(UDPDatagram(uflow.flow, host_addr, host_port, bytes(data)))

    def _receive_dhcp(self, src_mac: bytes, data: memoryview) -> None:
        msg = DHCPMessage.parse(data)
        reply = self._dhcp.handle(msg)
        if reply is None:
            return
        self.stats.dhcp_replies += 1
        self._out.append(
            self._framer.udp(
                msg.chaddr,
                self._gateway,
                nat.LIMITED_BROADCAST,
                dhcp.SERVER_PORT,
                dhcp.CLIENT_PORT,
                reply,
            )
        )

    def _new_udp_flow(
        self,
        key: UDPKey,
        guest_ip: bytes,
        guest_port: int,
        guest_mac: bytes,
        timeout: float,
        now: float,
    ) -> UDPFlow:
        flows = self.flows
        if len(flows.udp_by_key) >= self.config.limits.max_udp_flows:
            oldest = flows.oldest_udp()
            if oldest is not None:
                flows.remove_udp(oldest)
                self.stats.udp_flows_evicted += 1
                self._events.append(FlowClosed(oldest.flow))
        uflow = UDPFlow(
            flow=flows.new_id(),
            key=key,
            guest_ip=guest_ip,
            guest_port=guest_port,
            guest_mac=guest_mac,
            last_active=now,
            timeout=timeout,
        )
        flows.add_udp(uflow)
        return uflow

    # ---------------------------------------------------------------------- TCP

    def _receive_tcp(
        self,
        src_mac: bytes,
        ip: IPHeader,
        packet: memoryview,
        payload: memoryview,
        now: float,
    ) -> None:
        hdr, data = tcp.TCPHeader.parse(payload)
        self.stats.tcp_segments += 1
        key = (ip.src, hdr.src_port, ip.dst, hdr.dst_port)
        flows = self.flows
        conn = flows.tcp_by_key.get(key)
        flags = hdr.flags
        is_syn = flags & (SYN | ACK | RST | FIN) == SYN
        if conn is not None and is_syn and conn.state is TCPState.TIME_WAIT:
            conn.abort_silently()
            self._after_tcp(conn)
            conn = None
        if conn is None:
            if is_syn:
                self._new_connection(src_mac, ip, hdr, packet, now)
            elif not flags & RST:
                self._reset_unknown(src_mac, ip, hdr, len(data))
            return
        conn.segment_arrived(hdr, data, now)
        self._after_tcp(conn)

    def _new_connection(
        self,
        src_mac: bytes,
        ip: IPHeader,
        hdr: tcp.TCPHeader,
        packet: memoryview,
        now: float,
    ) -> None:
        if hdr.src_port == 0 or hdr.dst_port == 0:
            self.stats.rx_malformed += 1
            return
        destination = self._outbound(src_mac, ip, packet, hdr.dst_port)
        if destination is None:
            return
        flows = self.flows
        limits = self.config.limits
        if len(flows.tcp_by_id) >= limits.max_tcp_flows:
            self.stats.tcp_flow_limit += 1
            self._reset_unknown(src_mac, ip, hdr, 0)
            return
        full = len(flows.half_open) >= limits.max_half_open
        if full and not self._evict_embryonic(now):
            self.stats.tcp_syn_dropped += 1
            return
        conn = self._tcp_connection(
            src_mac, ip.src, hdr.src_port, ip.dst, hdr.dst_port, now
        )
        conn.syn_received(hdr, self._quote(ip, packet))
        flows.add_tcp(
            (ip.src, hdr.src_port, ip.dst, hdr.dst_port), conn, half_open=True
        )
        host_addr, host_port = destination
        self._events.append(
            TCPConnectRequest(conn.flow, host_addr, host_port, ip.src, hdr.src_port)
        )

    def _evict_embryonic(self, now: float) -> bool:
        """Make room among the half-open: forget the oldest connection whose
        SYN-ACK has gone unanswered for ``_EMBRYONIC_GRACE`` (as a SYN flood
        leaves them). False if there is none: every other one is still
        connecting to the host or in the middle of its handshake."""
        flows = self.flows
        for flow in flows.half_open:
            conn = flows.tcp_by_id.get(flow)
            if conn is None or not conn.accepted:
                continue
            if now - conn.accepted_at >= _EMBRYONIC_GRACE:
                self.stats.tcp_embryonic_evicted += 1
                conn.abort_silently()
                self._after_tcp(conn)
                return True
        return False

    def _isn(
        self, guest_ip: bytes, guest_port: int, remote: bytes, port: int, now: float
    ) -> int:
        """RFC 6528: a 4 µs clock plus a keyed hash of the four-tuple, so a new
        connection on a reused four-tuple starts above the old one (a guest
        still in TIME-WAIT accepts its SYN) and ISNs stay unguessable."""
        digest = hashlib.blake2b(
            guest_ip + remote + _PORTS.pack(guest_port, port),
            digest_size=4,
            key=self._isn_key,
        ).digest()
        return (int(now * 250_000) + int.from_bytes(digest)) & 0xFFFFFFFF

    def _tcp_connection(
        self,
        guest_mac: bytes,
        guest_ip: bytes,
        guest_port: int,
        remote_ip: bytes,
        remote_port: int,
        now: float,
    ) -> TCPConnection:
        return TCPConnection(
            flow=self.flows.new_id(),
            guest_mac=guest_mac,
            guest_ip=guest_ip,
            guest_port=guest_port,
            remote_ip=remote_ip,
            remote_port=remote_port,
            framer=self._framer,
            limits=self.config.limits,
            mtu=self.config.mtu,
            iss=self._isn(guest_ip, guest_port, remote_ip, remote_port, now),
            events=self._events,
            emit=self._out.append,
            mark_dirty=self._mark_dirty,
            stats=self.stats,
        )

    def _reset_unknown(
        self, src_mac: bytes, ip: IPHeader, hdr: tcp.TCPHeader, data_len: int
    ) -> None:
        """RFC 9293 §3.10.7.1: an RST for a segment of no known connection."""
        if hdr.flags & ACK:
            seq, ack, flags = hdr.ack, 0, RST
        else:
            seg_len = data_len + (1 if hdr.flags & SYN else 0)
            seg_len += 1 if hdr.flags & FIN else 0
            seq, ack, flags = 0, (hdr.seq + seg_len) & 0xFFFFFFFF, RST | ACK
        rst = tcp.emit(hdr.dst_port, hdr.src_port, seq, ack, flags, 0)
        self.stats.tcp_rst_sent += 1
        self._out.append(self._framer.tcp(src_mac, ip.dst, ip.src, rst, b"", 0xFFFF))

    def _mark_dirty(self, conn: TCPConnection) -> None:
        self._dirty[conn.flow] = conn

    def _after_tcp(self, conn: TCPConnection) -> None:
        """Bookkeeping after anything touched ``conn``: its timer, its removal."""
        flows = self.flows
        if conn.flow in flows.half_open and conn.state is not TCPState.SYN_RECEIVED:
            del flows.half_open[conn.flow]
        if conn.finished:
            flows.remove_tcp(conn)
            self._dirty.pop(conn.flow, None)
            waiting = self._awaiting_neighbour.get(conn.guest_ip)
            if waiting is not None:
                waiting.discard(conn.flow)
                if not waiting:
                    del self._awaiting_neighbour[conn.guest_ip]
            return
        wakeup = conn.wakeup_at
        if wakeup is not None:
            flows.schedule(conn.flow, wakeup)
