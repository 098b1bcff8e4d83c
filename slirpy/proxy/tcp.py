# SPDX-License-Identifier: GPL-2.0-or-later
"""The host side of a guest TCP connection: one ``HostTCP`` per flow.

Theory of operation
===================

A ``HostTCP`` owns one non-blocking kernel socket and watches it with the
loop's ``add_reader``/``add_writer``; there is no asyncio transport, task or
future in between. That keeps a connection's set-up to a ``connect()`` (and,
to an address that is not local, one writer callback), and lets reads land in
the ``bytes`` the stack keeps.

Outbound (a guest SYN): the stack raises ``TCPConnectRequest``; ``connect``
starts a non-blocking ``connect()`` and only once it has completed (at once
to a local address, otherwise when the socket turns writable) lets the stack
answer the SYN (``Stack.accept``). A refused connect becomes
an RST toward the guest, an unreachable network or host an ICMP error, and a
connect that has not finished after ``CONNECT_TIMEOUT`` an RST, so the
guest's ``connect()`` fails the way it would on a real network.

Inbound (a port forward's client): the accepted socket is wrapped at once,
with reading off until the guest answers the forwarded SYN (``TCPConnected``).

From then on bytes are relayed both ways with backpressure:

* host → guest: each readable callback reads up to ``_READ_SIZE`` into a new
  ``bytes`` and queues it in the stack, which keeps the object, not a copy
  (a flow whose last read was small reads into a shared ``_SMALL_READ``
  buffer and copies out what came, as the transports did, so that a small
  read never takes or pins a large block of heap; a read that fills it
  switches the flow to ``_READ_SIZE`` reads kept as read); when the stack's
  send buffer is over its limit, reading pauses until the stack raises
  ``TCPWritable``;
* guest → host: the driver hands ``TCPData`` to ``write``, which sends at
  once; what the socket does not take waits in a queue drained by a writer
  callback, and while that queue is over ``_HIGH_WATER`` the stack keeps the
  guest's receive window shut (``Stack.set_receive_paused``) until it falls to
  ``_LOW_WATER``.

Half-close maps onto FIN in both directions: host EOF → ``Stack.tcp_shutdown``
(FIN to the guest after the queued data), guest FIN → ``write_eof``
(``shutdown(SHUT_WR)`` once the queue is sent). A reset or error on the host
socket resets the guest side (``Stack.tcp_abort``); a guest RST closes the host
socket with an RST (``abort``). The stack says when a flow is over
(``FlowClosed``) and the driver then calls ``close``, which sends what is
queued first.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import errno
import logging
import os
import socket
import struct
from collections.abc import Callable

from slirpy.stack.stack import RejectReason, Stack

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 30.0
_LINGER_RST = struct.pack("ii", 1, 0)
_READ_SIZE = 262144
"""Bytes asked for per read: large, so that a bulk transfer needs few reads
and most guest segments lie within one chunk of the stack's send buffer."""
_SMALL_READ = 65536
"""The shared buffer of small reads; a read this large makes the flow's next
ones ``_READ_SIZE`` reads straight into their own ``bytes``."""
_HIGH_WATER = 65536
_LOW_WATER = 16384
_NONBLOCK = socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC


_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_MMAP_THRESHOLD = 1 << 20
"""Blocks this large and larger come from mmap; a read's never do."""
_TRIM_THRESHOLD = 8 << 20
"""The heap is shrunk only when more than this is free at its top."""


def tune_allocator() -> None:
    """Keep bulk reads off the mmap and page-fault paths (glibc's malloc).

    A bulk read is a fresh ``_READ_SIZE`` ``bytes`` that lives until the guest
    acknowledges it. By default glibc serves blocks this large with mmap
    until one is freed (then an mmap, an mremap and a munmap per read), and
    once its dynamic thresholds have risen it still gives the heap's top back
    to the kernel whenever twice that is free there — which a flow's whole
    acknowledged send buffer often is, so that every later read touches fresh
    pages: host→guest at MTU 65520 fell from ~16 to ~11 Gbit/s in about one
    run in three, with ~230 000 minor page faults a second against none.
    Fixed thresholds (mallopt(3)) end both; with another C library this does
    nothing."""
    try:
        import ctypes

        mallopt = ctypes.CDLL(None).mallopt
    except (ImportError, OSError, AttributeError):
        return
    mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD)
    mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD)


_small = bytearray(_SMALL_READ)
_small_view = memoryview(_small)


def _read(sock: socket.socket, bulk: bool) -> bytes:
    """One read (see the module docstring)."""
    if bulk:
        return sock.recv(_READ_SIZE)
    return bytes(_small_view[: sock.recv_into(_small)])


class HostTCP:
    """The host socket of one flow (see the module docstring)."""

    __slots__ = (
        "_bulk",
        "_closed",
        "_closing",
        "_connect_timer",
        "_connecting",
        "_eof_pending",
        "_eof_received",
        "_fd",
        "_kick",
        "_loop",
        "_queue",
        "_queued",
        "_reading",
        "_sock",
        "_stack",
        "_write_paused",
        "_writing",
        "flow",
    )

    def __init__(
        self,
        stack: Stack,
        flow: int,
        loop: asyncio.AbstractEventLoop,
        kick: Callable[[], None],
        sock: socket.socket,
        *,
        reading: bool = True,
    ) -> None:
        """``sock``: connected (or connecting, see ``connect``) and
        non-blocking; ``reading``: start reading it at once."""
        self._stack = stack
        self._loop = loop
        self._kick = kick
        self.flow = flow
        self._sock = sock
        self._fd = sock.fileno()
        # The guest's own stack already decided when to send: a small write
        # must not wait for the host peer's ACK (Nagle, with the peer's
        # delayed ACK: up to 40 ms), as with slirp4netns and pasta.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._queue: collections.deque[bytes | memoryview] = collections.deque()
        self._queued = 0
        """Bytes in ``_queue``."""
        self._reading = False
        self._bulk = False
        """The last read was at least ``_SMALL_READ``."""
        self._writing = False
        self._connecting = False
        self._connect_timer: asyncio.TimerHandle | None = None
        self._write_paused = False
        self._eof_pending = False
        """The guest sent FIN: shut the socket's write side once sent."""
        self._eof_received = False
        self._closing = False
        """Close once the queue is sent."""
        self._closed = False
        if reading:
            self.resume_reading()

    # ------------------------------------------------------- host → guest

    def _readable(self) -> None:
        # Read until the socket says EAGAIN, EOF or an error, or the stack is
        # full: uvloop's readers are called once more after a socket error
        # (an RST) and then never again, so the data before the error and the
        # error itself must both be taken in that one call. Each chunk goes
        # to the stack once the next read has said what follows it, so that
        # a server's last bytes and its EOF reach the guest in one segment.
        sock = self._sock
        stack = self._stack
        flow = self.flow
        now = self._loop.time()
        pending = b""
        room = True
        while room:
            try:
                data = _read(sock, self._bulk)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                if pending:
                    stack.tcp_send(flow, pending, now)
                self._fail(exc)
                return
            if not data:
                self._stop_reading()
                self._eof_received = True
                if pending:
                    stack.tcp_send(flow, pending, now, True)
                else:
                    stack.tcp_shutdown(flow, now)
                self._kick()
                return
            self._bulk = len(data) >= _SMALL_READ
            if pending:
                room = stack.tcp_send(flow, pending, now)
            pending = data
        if pending and not stack.tcp_send(flow, pending, now):
            room = False
        if not room:
            self._stop_reading()
        self._kick()

    def resume_reading(self) -> None:
        """Read again (``TCPWritable``, ``TCPConnected``)."""
        if not (
            self._reading
            or self._closed
            or self._closing
            or self._connecting
            or self._eof_received
        ):
            self._reading = True
            self._loop.add_reader(self._fd, self._readable)

    def _stop_reading(self) -> None:
        if self._reading:
            self._reading = False
            self._loop.remove_reader(self._fd)

    # ------------------------------------------------------- guest → host

    def write(self, data: bytes | memoryview) -> None:
        """Send ``data`` (``TCPData``); queue what the socket does not take."""
        if self._closed:
            return
        if not self._queue and not self._connecting:
            try:
                sent = self._sock.send(data)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError as exc:
                self._fail(exc)
                return
            if sent == len(data):
                return
            data = memoryview(data)[sent:]
        self._queue.append(data)
        self._queued += len(data)
        if not self._writing and not self._connecting:
            self._writing = True
            self._loop.add_writer(self._fd, self._writable)
        if not self._write_paused and self._queued > _HIGH_WATER:
            self._write_paused = True
            self._stack.set_receive_paused(self.flow, True, self._loop.time())

    def _writable(self) -> None:
        queue = self._queue
        send = self._sock.send
        while queue:
            data = queue[0]
            try:
                sent = send(data)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                self._fail(exc)
                return
            self._queued -= sent
            if sent < len(data):
                queue[0] = memoryview(data)[sent:]
                break
            queue.popleft()
        if not queue:
            self._writing = False
            self._loop.remove_writer(self._fd)
            self._drained()
        if self._write_paused and self._queued <= _LOW_WATER and not self._closed:
            self._write_paused = False
            self._stack.set_receive_paused(self.flow, False, self._loop.time())
            self._kick()

    def _drained(self) -> None:
        """The queue is empty: do the half-close or close that waited for it."""
        if self._closing:
            self._close_now()
        elif self._eof_pending:
            self._eof_pending = False
            try:
                self._sock.shutdown(socket.SHUT_WR)
            except OSError as exc:
                if exc.errno != errno.ENOTCONN:
                    self._fail(exc)

    def write_eof(self) -> None:
        """The guest sent FIN: half-close once the queued data is sent."""
        if self._closed or self._closing:
            return
        self._eof_pending = True
        if not self._queue and not self._connecting:
            self._drained()

    # ----------------------------------------------------------- the end

    def abort(self) -> None:
        """Close with an RST, so the peer sees a reset rather than an EOF."""
        if self._closed:
            return
        with contextlib.suppress(OSError):
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RST)
        self._close_now()

    def close(self) -> None:
        """Close once the queued data is sent (``FlowClosed``)."""
        if self._closed:
            return
        self._closing = True
        self._stop_reading()
        if not self._queue or self._connecting:
            self._close_now()

    def _close_now(self) -> None:
        self._closed = True
        self._stop_reading()
        if self._writing:
            self._writing = False
            self._loop.remove_writer(self._fd)
        if self._connect_timer is not None:
            self._connect_timer.cancel()
            self._connect_timer = None
        self._queue.clear()
        self._queued = 0
        self._sock.close()

    def _fail(self, exc: OSError) -> None:
        """The host socket failed (reset, broken pipe): reset the guest side."""
        log.debug("tcp #%d host socket: %s", self.flow, exc)
        self._close_now()
        self._stack.tcp_abort(self.flow)
        self._kick()

    # ------------------------------------------------------------ connect

    def _start_connect(self, address: tuple[str, int]) -> None:
        sock = self._sock
        err = sock.connect_ex(address)
        if err == errno.EINPROGRESS:
            # To a local address the handshake has run by the time connect()
            # returns (only the socket's state was looked at too early):
            # finish now rather than one loop iteration later.
            try:
                sock.getpeername()
            except OSError:
                pass
            else:
                err = 0
        if err == 0:
            self._finish_connect()
            return
        if err != errno.EINPROGRESS:
            raise OSError(err, os.strerror(err))
        self._connecting = True
        loop = self._loop
        self._connect_timer = loop.call_at(
            loop.time() + CONNECT_TIMEOUT, self._connect_timed_out
        )
        self._writing = True
        loop.add_writer(self._fd, self._connected)

    def _connected(self) -> None:
        """The connect in progress finished, one way or the other."""
        self._loop.remove_writer(self._fd)
        self._writing = False
        self._connecting = False
        if self._connect_timer is not None:
            self._connect_timer.cancel()
            self._connect_timer = None
        err = self._sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            self._reject(OSError(err, os.strerror(err)))
        else:
            self._finish_connect()
        self._kick()

    def _finish_connect(self) -> None:
        if not self._stack.accept(self.flow, self._loop.time()):
            self.abort()
            return
        self.resume_reading()
        if self._queue:
            self._writing = True
            self._loop.add_writer(self._fd, self._writable)
        elif self._eof_pending:
            self._drained()

    def _connect_timed_out(self) -> None:
        self._connect_timer = None
        self._reject(TimeoutError("connect timed out"))
        self._kick()

    def _reject(self, exc: OSError) -> None:
        log.debug("tcp #%d connect failed: %s", self.flow, exc)
        self._close_now()
        self._stack.reject(self.flow, reject_reason(exc))


def reject_reason(exc: BaseException) -> RejectReason:
    """How a failed host connect is reported to the guest."""
    if isinstance(exc, OSError):
        if exc.errno == errno.ENETUNREACH:
            return RejectReason.NET_UNREACHABLE
        if exc.errno == errno.EHOSTUNREACH:
            return RejectReason.HOST_UNREACHABLE
    return RejectReason.REFUSED


def connect(
    stack: Stack,
    flow: int,
    addr: bytes,
    port: int,
    loop: asyncio.AbstractEventLoop,
    kick: Callable[[], None],
    source: str | None = None,
) -> HostTCP | None:
    """Start connecting the host side of ``flow``.

    Returns the ``HostTCP``, which accepts or rejects the flow in the stack
    when the connect completes (at once, for a local address); None when the
    flow is already rejected."""
    family = socket.AF_INET6 if len(addr) == 16 else socket.AF_INET
    host = socket.inet_ntop(family, addr)
    try:
        sock = socket.socket(family, socket.SOCK_STREAM | _NONBLOCK)
    except OSError as exc:
        log.warning("cannot open a TCP socket: %s", exc)
        stack.reject(flow, RejectReason.REFUSED)
        return None
    proto = HostTCP(stack, flow, loop, kick, sock, reading=False)
    try:
        if source is not None:
            sock.bind((source, 0))
        proto._start_connect((host, port))
    except OSError as exc:
        proto._reject(exc)
        return None
    return None if proto._closed else proto
