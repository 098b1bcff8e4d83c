# SPDX-License-Identifier: GPL-2.0-or-later
"""The host side of a guest UDP flow: one unconnected datagram socket per flow.

Like libslirp, slirpy gives each guest UDP socket (address and port) one host
socket, which sends to any destination and passes every reply back, so the
mapping is endpoint-independent. The socket lives until the stack expires
the flow.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable

from slirpy.stack.stack import Stack

log = logging.getLogger(__name__)

_RECV_BATCH = 64
_RECV_SIZE = 65536


class HostUDP:
    """The host socket of one UDP flow, read with ``loop.add_reader``."""

    __slots__ = ("_kick", "_loop", "_stack", "flow", "sock")

    def __init__(
        self,
        stack: Stack,
        flow: int,
        loop: asyncio.AbstractEventLoop,
        kick: Callable[[], None],
    ) -> None:
        self._stack = stack
        self._loop = loop
        self._kick = kick
        self.flow = flow
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setblocking(False)
        self.sock.bind(("0.0.0.0", 0))
        loop.add_reader(self.sock.fileno(), self._readable)

    def send(self, data: bytes, addr: bytes, port: int) -> None:
        try:
            self.sock.sendto(data, (socket.inet_ntoa(addr), port))
        except OSError as exc:
            log.debug("udp #%d send failed: %s", self.flow, exc)

    def _readable(self) -> None:
        recv = self.sock.recvfrom
        stack = self._stack
        now = self._loop.time()
        for _ in range(_RECV_BATCH):
            try:
                data, (host, port) = recv(_RECV_SIZE)
            except BlockingIOError:
                break
            except OSError as exc:
                log.debug("udp #%d receive failed: %s", self.flow, exc)
                break
            stack.udp_send(self.flow, socket.inet_aton(host), port, data, now)
        self._kick()

    def close(self) -> None:
        self._loop.remove_reader(self.sock.fileno())
        self.sock.close()
