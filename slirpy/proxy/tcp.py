# SPDX-License-Identifier: GPL-2.0-or-later
"""The host side of a guest TCP connection: one ``asyncio.Protocol`` per flow.

Theory of operation
===================

The stack raises ``TCPConnectRequest`` for a guest SYN; ``connect`` opens the
host socket and only then lets the stack answer the SYN (``Stack.accept``).
A refused connect becomes an RST toward the guest, an unreachable network or
host an ICMP error, so the guest's ``connect()`` fails the way it would on a
real network. From then on bytes are relayed both ways with backpressure:

* host → guest: ``data_received`` queues the bytes in the stack; when the
  stack's send buffer is over its limit, reading from the host socket pauses
  until the stack raises ``TCPWritable``;
* guest → host: the driver writes ``TCPData`` to the transport; when the
  transport's buffer passes its high-water mark, ``pause_writing`` stops the
  stack from opening the guest's receive window, ``resume_writing`` reopens it.

Half-close maps onto FIN in both directions: host EOF → ``Stack.tcp_shutdown``
(FIN to the guest after the queued data), guest FIN → ``write_eof``. A reset
on either side resets the other.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
import struct
from collections.abc import Callable
from typing import cast

from slirpy.stack.stack import RejectReason, Stack

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 30.0
_LINGER_RST = struct.pack("ii", 1, 0)


class HostTCP(asyncio.Protocol):
    """The host socket of one flow.

    A forwarded client's socket is attached to its protocol a little after the
    flow exists (``connect_accepted_socket``); what the stack asks of it before
    then (data, EOF, close, reset) is kept and done in ``connection_made``.
    """

    __slots__ = (
        "_early",
        "_early_end",
        "_early_eof",
        "_kick",
        "_loop",
        "_stack",
        "flow",
        "transport",
    )

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
        self.transport: asyncio.Transport | None = None
        self._early: list[bytes | memoryview] = []
        self._early_eof = False
        self._early_end: Callable[[], None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not inherit from asyncio.Transport.
        self.transport = cast(asyncio.Transport, transport)
        for data in self._early:
            self.transport.write(data)
        self._early.clear()
        if self._early_eof:
            self.write_eof()
        if self._early_end is not None:
            self._early_end()

    def data_received(self, data: bytes) -> None:
        room = self._stack.tcp_send(self.flow, data, self._loop.time())
        if not room and self.transport is not None:
            self.transport.pause_reading()
        self._kick()

    def eof_received(self) -> bool:
        self._stack.tcp_shutdown(self.flow, self._loop.time())
        self._kick()
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is not None:
            self._stack.tcp_abort(self.flow)
        else:
            self._stack.tcp_shutdown(self.flow, self._loop.time())
        self.transport = None
        self._kick()

    def pause_writing(self) -> None:
        self._stack.set_receive_paused(self.flow, True, self._loop.time())

    def resume_writing(self) -> None:
        self._stack.set_receive_paused(self.flow, False, self._loop.time())
        self._kick()

    # ------------------------------------------------------ driven by events

    def write(self, data: bytes | memoryview) -> None:
        if self.transport is not None:
            self.transport.write(data)
        else:
            self._early.append(data)

    def write_eof(self) -> None:
        t = self.transport
        if t is None:
            self._early_eof = True
        elif t.can_write_eof() and not t.is_closing():
            t.write_eof()

    def resume_reading(self) -> None:
        t = self.transport
        if t is not None and not t.is_closing():
            t.resume_reading()

    def abort(self) -> None:
        """Close with an RST, so the peer sees a reset rather than an EOF."""
        t = self.transport
        if t is None:
            self._early_end = self.abort
        else:
            sock = t.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RST)
            t.abort()

    def close(self) -> None:
        if self.transport is None:
            self._early_end = self.close
        else:
            self.transport.close()


def reject_reason(exc: BaseException) -> RejectReason:
    """How a failed host connect is reported to the guest."""
    if isinstance(exc, OSError):
        if exc.errno == errno.ENETUNREACH:
            return RejectReason.NET_UNREACHABLE
        if exc.errno == errno.EHOSTUNREACH:
            return RejectReason.HOST_UNREACHABLE
    return RejectReason.REFUSED


async def connect(
    stack: Stack,
    flow: int,
    addr: bytes,
    port: int,
    loop: asyncio.AbstractEventLoop,
    kick: Callable[[], None],
    registry: dict[int, HostTCP],
    source: str | None = None,
) -> None:
    """Connect the host side of ``flow``; accept or reject it in the stack.

    On success the protocol is entered in ``registry`` before the SYN-ACK
    goes out, so the guest's first data always finds it."""
    host = socket.inet_ntop(
        socket.AF_INET6 if len(addr) == 16 else socket.AF_INET, addr
    )
    try:
        # asyncio.timeout rather than wait_for: no second task per connect.
        async with asyncio.timeout(CONNECT_TIMEOUT):
            _, proto = await loop.create_connection(
                lambda: HostTCP(stack, flow, loop, kick),
                host=host,
                port=port,
                local_addr=None if source is None else (source, 0),
            )
    except (OSError, TimeoutError) as exc:
        log.debug("tcp #%d connect to %s:%d failed: %s", flow, host, port, exc)
        stack.reject(flow, reject_reason(exc))
        kick()
        return
    registry[flow] = proto
    if not stack.accept(flow, loop.time()):
        del registry[flow]
        proto.abort()
    kick()
