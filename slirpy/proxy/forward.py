# SPDX-License-Identifier: GPL-2.0-or-later
"""Port forwards: host listeners whose clients are relayed into the guest.

Theory of operation
===================

Each rule owns one host socket bound to ``host_addr:host_port`` (IPv4, or
IPv6 with ``IPV6_V6ONLY`` so that both families can be forwarded separately).

* TCP: the kernel accepts the client at once (as with slirp4netns); the
  stack then opens a connection to ``guest_addr:guest_port``
  (``Stack.open_tcp``), and the client's bytes wait in its socket — reading
  is paused — until the guest answers with a SYN-ACK (``TCPConnected``). A
  guest RST resets the client. From there on the flow is an ordinary
  ``HostTCP`` relay (made with reading off). The guest sees the client's
  real address, except that loopback clients appear as the gateway
  (``NAT.inbound_source``).
* UDP: every client address gets a flow of its own (``Stack.udp_inbound``),
  expiring like any UDP flow; the guest's replies come back as that flow's
  ``UDPDatagram`` events and leave through the rule's socket to the client.

* Splice (``--port-splice``, or ``"splice": true`` in the API): a client on
  the host's loopback is not relayed through the stack at all. A socket made
  inside the container's network namespace (``slirpy.tap.nsocket``) connects
  to the guest port from there, and ``SpliceRelay`` moves the bytes between
  the two kernel sockets with ``os.splice``. The guest then sees the
  connection come from its own address, not from the gateway: that is why it
  is a choice. Clients from other addresses keep the stack's path, so the
  guest still sees their real address.

Removing a rule closes its listener at once; connections already relayed go
on until they end.
"""

from __future__ import annotations

import asyncio
import dataclasses
import errno
import ipaddress
import itertools
import logging
import socket
import struct
from collections.abc import Callable
from typing import Literal, Protocol

from slirpy.proxy.splice import SpliceRelay
from slirpy.proxy.tcp import HostTCP
from slirpy.stack.stack import Stack

log = logging.getLogger(__name__)

_ACCEPT_BATCH = 64
_RECV_BATCH = 64
_RECV_SIZE = 65536
_BACKLOG = 128

Proto = Literal["tcp", "udp"]


@dataclasses.dataclass(frozen=True, slots=True)
class ForwardRule:
    """One port forward, as listed by the API."""

    id: int
    proto: Proto
    host_addr: ipaddress.IPv4Address | ipaddress.IPv6Address
    host_port: int
    """The port actually bound (the chosen one when 0 was asked for)."""
    guest_addr: ipaddress.IPv4Address | ipaddress.IPv6Address
    guest_port: int
    splice: bool = False
    """Loopback clients take the zero-copy path."""


def _packed(host: str) -> bytes:
    addr = ipaddress.ip_address(host.split("%", 1)[0])
    return addr.packed


class SocketFactory(Protocol):
    """Makes sockets inside the container's network namespace."""

    def new_socket(self, family: int) -> socket.socket: ...


class _Listener:
    """The host socket of one rule."""

    __slots__ = ("clients", "rule", "sock")

    def __init__(self, rule: ForwardRule, sock: socket.socket) -> None:
        self.rule = rule
        self.sock = sock
        self.clients: set[int] = set()
        """UDP flows of this rule's clients."""


class HostForwarder:
    """The rule table and the host listeners; see the module docstring."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        stack: Stack,
        kick: Callable[[], None],
        tcp_registry: dict[int, HostTCP],
        ns_sockets: SocketFactory | None = None,
    ) -> None:
        """``ns_sockets`` makes sockets in the container's namespace; without
        it no rule can splice."""
        self._loop = loop
        self._ns_sockets = ns_sockets
        self._relays: set[SpliceRelay] = set()
        self._stack = stack
        self._kick = kick
        self._tcp = tcp_registry
        self._ids = itertools.count(1)
        self._rules: dict[int, _Listener] = {}
        self.udp_clients: dict[int, tuple[_Listener, tuple[str, int]]] = {}
        """UDP flow id → the rule and client address its replies go to."""

    def add(
        self,
        proto: Proto,
        host_addr: ipaddress.IPv4Address | ipaddress.IPv6Address,
        host_port: int,
        guest_addr: ipaddress.IPv4Address | ipaddress.IPv6Address,
        guest_port: int,
        *,
        splice: bool = False,
    ) -> ForwardRule:
        """Bind the host socket and start forwarding; OSError if binding fails
        (or ``splice`` is asked for where it is not available)."""
        if splice and (proto != "tcp" or self._ns_sockets is None):
            raise OSError(errno.EOPNOTSUPP, "splice needs TCP and --port-splice")
        v6 = host_addr.version == 6
        family = socket.AF_INET6 if v6 else socket.AF_INET
        kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
        sock = socket.socket(family, kind)
        try:
            if proto == "tcp":
                # Not for UDP: there it would let a second rule take the port.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if v6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind((str(host_addr), host_port))
            if proto == "tcp":
                sock.listen(_BACKLOG)
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        bound_port = sock.getsockname()[1]
        rule = ForwardRule(
            next(self._ids),
            proto,
            host_addr,
            bound_port,
            guest_addr,
            guest_port,
            splice,
        )
        listener = _Listener(rule, sock)
        callback = self._accept if proto == "tcp" else self._datagrams
        self._loop.add_reader(sock.fileno(), callback, listener)
        self._rules[rule.id] = listener
        log.debug(
            "forward %s %s:%d -> %s:%d #%d",
            proto,
            host_addr,
            bound_port,
            guest_addr,
            guest_port,
            rule.id,
        )
        return rule

    def remove(self, rule_id: int) -> bool:
        """Close the rule's listener; established connections go on."""
        listener = self._rules.pop(rule_id, None)
        if listener is None:
            return False
        self._loop.remove_reader(listener.sock.fileno())
        listener.sock.close()
        for flow in listener.clients:
            self.udp_clients.pop(flow, None)
        return True

    def rules(self) -> list[ForwardRule]:
        return [listener.rule for listener in self._rules.values()]

    def close(self) -> None:
        for rule_id in list(self._rules):
            self.remove(rule_id)
        for relay in list(self._relays):
            relay.close()

    # ------------------------------------------------------------------- TCP

    def _accept(self, listener: _Listener) -> None:
        rule = listener.rule
        guest = rule.guest_addr.packed
        for _ in range(_ACCEPT_BATCH):
            try:
                conn, addr = listener.sock.accept()
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                log.warning("accept on forward #%d failed: %s", rule.id, exc)
                break
            if rule.splice and _is_loopback(addr[0]):
                self._splice(rule, conn)
                continue
            flow = self._stack.open_tcp(
                _packed(addr[0]), addr[1], guest, rule.guest_port, self._loop.time()
            )
            if flow is None:
                _reset(conn)
                continue
            conn.setblocking(False)
            self._tcp[flow] = HostTCP(
                self._stack, flow, self._loop, self._kick, conn, reading=False
            )
        self._kick()

    def _splice(self, rule: ForwardRule, conn: socket.socket) -> None:
        assert self._ns_sockets is not None  # add() refuses splice without it
        try:
            family = socket.AF_INET6 if rule.guest_addr.version == 6 else socket.AF_INET
            inner = self._ns_sockets.new_socket(family)
        except OSError as exc:
            log.warning("no socket in the container for forward #%d: %s", rule.id, exc)
            _reset(conn)
            return
        conn.setblocking(False)
        self._loop.create_task(self._splice_connect(rule, conn, inner))

    async def _splice_connect(
        self, rule: ForwardRule, conn: socket.socket, inner: socket.socket
    ) -> None:
        try:
            await self._loop.sock_connect(
                inner, (str(rule.guest_addr), rule.guest_port)
            )
        except OSError as exc:
            log.debug("splice connect for forward #%d failed: %s", rule.id, exc)
            inner.close()
            _reset(conn)
            return

        def done() -> None:
            self._relays.discard(relay)

        relay = SpliceRelay(self._loop, conn, inner, done)
        self._relays.add(relay)
        relay.start()

    # ------------------------------------------------------------------- UDP

    def _datagrams(self, listener: _Listener) -> None:
        rule = listener.rule
        guest = rule.guest_addr.packed
        stack = self._stack
        now = self._loop.time()
        for _ in range(_RECV_BATCH):
            try:
                data, addr = listener.sock.recvfrom(_RECV_SIZE)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                log.debug("receive on forward #%d failed: %s", rule.id, exc)
                break
            flow = stack.udp_inbound(
                _packed(addr[0]), addr[1], guest, rule.guest_port, data, now
            )
            if flow not in self.udp_clients:
                self.udp_clients[flow] = (listener, (addr[0], addr[1]))
                listener.clients.add(flow)
        self._kick()

    def udp_reply(self, flow: int, data: bytes) -> bool:
        """Send the guest's reply on ``flow`` to its client; False if not ours."""
        entry = self.udp_clients.get(flow)
        if entry is None:
            return False
        listener, addr = entry
        try:
            listener.sock.sendto(data, addr)
        except OSError as exc:
            log.debug("udp reply on forward #%d failed: %s", listener.rule.id, exc)
        return True

    def flow_closed(self, flow: int) -> None:
        entry = self.udp_clients.pop(flow, None)
        if entry is not None:
            entry[0].clients.discard(flow)


def _is_loopback(host: str) -> bool:
    addr = ipaddress.ip_address(host.split("%", 1)[0])
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped.is_loopback
    return addr.is_loopback


def _reset(sock: socket.socket) -> None:
    """Close ``sock`` with an RST rather than a FIN."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()
