# SPDX-License-Identifier: GPL-2.0-or-later
"""The host side of guest datagram flows: UDP sockets and ICMP echo ("ping") sockets.

Like libslirp, slirpy gives each guest UDP socket (address and port) one host
socket, which sends to any destination and passes every reply back, so the
mapping is endpoint-independent. Each guest echo identifier gets one
unprivileged ICMP socket (``SOCK_DGRAM``/``IPPROTO_ICMP``, allowed by the
host's ``net.ipv4.ping_group_range``): the kernel sends real echo requests and
only real replies come back. A socket lives until the stack expires its flow.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
from collections.abc import Callable

from slirpy.stack.stack import Stack

log = logging.getLogger(__name__)

_ECHO_HEAD = struct.Struct("!BBHHH")
_ECHO_REQUEST, _ECHO_REPLY = 8, 0
_ECHO_REQUEST6, _ECHO_REPLY6 = 128, 129
_RECV_BATCH = 64
_IP_RECVERR = 11
_IPV6_RECVERR = 25
_MSG_ERRQUEUE = 0x2000
_RECVERR = frozenset(
    ((socket.IPPROTO_IP, _IP_RECVERR), (socket.IPPROTO_IPV6, _IPV6_RECVERR))
)
_EXT_ERR = struct.Struct("=IBBBBII")
"""``struct sock_extended_err``: errno, origin, type, code, pad, info, data."""
_ORIGIN_ICMP = 2
_ORIGIN_ICMP6 = 3
_ERROR_QUOTE = 64
"""Bytes of the offending datagram's payload kept for the guest's ICMP error."""
_RECV_SIZE = 65536


class HostUDP:
    """The host socket of one UDP flow, read with ``loop.add_reader``."""

    __slots__ = ("_kick", "_loop", "_rearm_next", "_stack", "family", "flow", "sock")

    PROTO = 0
    """The socket's protocol for IPv4 (0: UDP) ..."""
    PROTO6 = 0
    """... and for IPv6."""

    def __init__(
        self,
        stack: Stack,
        flow: int,
        loop: asyncio.AbstractEventLoop,
        kick: Callable[[], None],
        source: str | None = None,
        *,
        family: int = socket.AF_INET,
    ) -> None:
        self._stack = stack
        self._loop = loop
        self._kick = kick
        self.flow = flow
        self._rearm_next = False
        """A send took an error the loop may already have seen as POLLERR."""
        v6 = family == socket.AF_INET6
        self.family = family
        self.sock = socket.socket(
            family, socket.SOCK_DGRAM, self.PROTO6 if v6 else self.PROTO
        )
        try:
            self.sock.setblocking(False)
            if source is None:
                source = "::" if v6 else "0.0.0.0"
            self.sock.bind((source, 0))
            if v6:
                self.sock.setsockopt(socket.IPPROTO_IPV6, _IPV6_RECVERR, 1)
            else:
                self.sock.setsockopt(socket.IPPROTO_IP, _IP_RECVERR, 1)
            loop.add_reader(self.sock.fileno(), self._readable)
        except OSError:
            self.sock.close()
            raise

    def send(self, data: bytes, addr: bytes, port: int) -> None:
        dest = (socket.inet_ntop(self.family, addr), port)
        try:
            self.sock.sendto(data, dest)
        except BlockingIOError:
            log.debug("udp #%d send dropped: socket buffer full", self.flow)
        except OSError as exc:
            # Most likely an earlier datagram's ICMP error, which the kernel
            # reports on the next send and then drops that datagram: relay
            # the error and send again. If the loop polled the socket while
            # that error was pending, uvloop will drop its watcher when it
            # gets to it (see _rearm), though nothing is left to read: the
            # reader watches again the next time it runs.
            self._rearm_next = True
            self._errors(self._loop.time())
            try:
                self.sock.sendto(data, dest)
            except OSError as again:
                log.debug("udp #%d send failed: %s (%s)", self.flow, again, exc)

    def _readable(self) -> None:
        recv = self.sock.recvfrom
        stack = self._stack
        now = self._loop.time()
        if self._rearm_next:
            self._rearm_next = False
            self._rearm()
        for _ in range(_RECV_BATCH):
            try:
                data, peer = recv(_RECV_SIZE)
            except BlockingIOError:
                break
            except OSError as exc:
                log.debug("udp #%d receive failed: %s", self.flow, exc)
                self._errors(now)
                self._rearm()
                break
            host = socket.inet_pton(self.family, peer[0].split("%", 1)[0])
            self._deliver(stack, host, peer[1], data, now)
        else:
            # A full batch: an error may wait behind the datagrams.
            if self._errors(now):
                self._rearm()
        self._kick()

    def _rearm(self) -> None:
        """Watch the socket again after reading an error from it.

        A socket with an error pending polls as POLLERR; uvloop then calls
        the reader once more and drops the watcher, and without a new one
        the flow would never hear from its socket again."""
        fd = self.sock.fileno()
        self._loop.remove_reader(fd)
        self._loop.add_reader(fd, self._readable)

    def _deliver(
        self, stack: Stack, host: bytes, port: int, data: bytes, now: float
    ) -> None:
        stack.udp_send(self.flow, host, port, data, now)

    def _errors(self, now: float) -> int:
        """Relay the ICMP errors queued on the socket (``IP_RECVERR``) to the
        guest, each about the datagram that caused it; the number read."""
        for count in range(_RECV_BATCH):
            try:
                data, ancdata, _flags, addr = self.sock.recvmsg(
                    _ERROR_QUOTE, 512, _MSG_ERRQUEUE
                )
            except OSError:
                return count
            for level, kind, payload in ancdata:
                if (level, kind) not in _RECVERR or len(payload) < _EXT_ERR.size:
                    continue
                _errno, origin, icmp_type, icmp_code = _EXT_ERR.unpack_from(payload)[:4]
                if origin not in (_ORIGIN_ICMP, _ORIGIN_ICMP6):
                    continue
                dst = socket.inet_pton(self.family, addr[0].split("%", 1)[0])
                self._stack.udp_error(
                    self.flow, dst, addr[1], icmp_type, icmp_code, data, now
                )
        return _RECV_BATCH

    def close(self) -> None:
        self._loop.remove_reader(self.sock.fileno())
        self.sock.close()


class HostPing(HostUDP):
    """The ICMP echo socket of one guest echo identifier."""

    __slots__ = ()

    PROTO = socket.IPPROTO_ICMP
    PROTO6 = socket.IPPROTO_ICMPV6

    def send_echo(self, addr: bytes, seq: int, payload: bytes) -> None:
        # The kernel fills in the identifier and the checksum.
        request = _ECHO_REQUEST6 if self.family == socket.AF_INET6 else _ECHO_REQUEST
        self.send(_ECHO_HEAD.pack(request, 0, 0, 0, seq) + payload, addr, 0)

    def _deliver(
        self, stack: Stack, host: bytes, port: int, data: bytes, now: float
    ) -> None:
        reply = _ECHO_REPLY6 if self.family == socket.AF_INET6 else _ECHO_REPLY
        if len(data) < _ECHO_HEAD.size or data[0] != reply:
            return  # only echo replies come back on a ping socket
        seq = _ECHO_HEAD.unpack_from(data)[4]
        stack.ping_reply(self.flow, host, seq, data[_ECHO_HEAD.size :], now)
