# SPDX-License-Identifier: GPL-2.0-or-later
"""Zero-copy relaying of two connected stream sockets: ``os.splice`` through pipes.

This module owns ``SpliceRelay``, which moves bytes both ways between two
connected, non-blocking stream sockets on an asyncio event loop (the default
loop or uvloop) without the data ever entering Python: the kernel moves page
references from one socket's receive queue into a pipe and from the pipe into
the other socket's send queue. The port-forward fast path uses it between a
host loopback client and a socket created inside the container's network
namespace (``slirpy.tap.nsocket``).

Theory of operation
===================

Each direction (a → b, b → a) owns one pipe, made non-blocking and enlarged
with ``F_SETPIPE_SZ`` (1 MiB if the kernel allows it, less if not); the pipe is
that direction's only buffer. A direction is always in exactly one of these
states:

* **waiting for the source** (pipe empty): a reader is registered on the
  source's fd. When it fires, one ``splice`` moves whatever the source holds,
  up to the pipe's capacity, into the pipe; the same callback then splices the
  pipe into the destination.
* **waiting for the destination** (pipe not empty): the destination returned
  ``EAGAIN``. The reader is removed — the source is not read while the pipe
  holds data, so the sender feels the backpressure through its own socket
  buffers — and a writer is registered on the destination's fd; when it fires
  the pipe is drained, and reading resumes once it is empty.
* **done**: the source returned 0 (EOF) and the pipe has drained; the
  destination gets ``shutdown(SHUT_WR)`` (half-close), so the peer sees the
  FIN only after every byte.

Only registered fds wake the relay and every wake-up makes progress or
changes state, so an idle or blocked relay costs no CPU; a callback makes at
most ``_BUDGET`` splice calls before yielding to the loop (it then waits on
the event that is already ready). The pipe is filled only when empty, so a
full pipe is never mistaken for a dry source (both report ``EAGAIN``) and a
splice that returns 0 always means EOF.

When both directions are done, both sockets are closed. Any other error on
either side (``ECONNRESET``, ``EPIPE``, ...) aborts the relay: both sockets
are closed with ``SO_LINGER`` 0, so each peer sees a reset, as it would have
from the far end. ``close()`` aborts the same way. Either way ``on_done``
runs exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import socket
import struct
from collections.abc import Callable
from typing import Final

log = logging.getLogger(__name__)

DEFAULT_PIPE_SIZE: Final = 1 << 20
"""The pipe capacity asked for per direction; the kernel may grant less."""
_MIN_PIPE_SIZE: Final = 1 << 16
_BUDGET: Final = 16
"""Splice calls per direction per loop callback."""
_FLAGS: Final = os.SPLICE_F_NONBLOCK | os.SPLICE_F_MOVE
_LINGER_RESET: Final = struct.pack("ii", 1, 0)


class SpliceRelay:
    """Relays two connected stream sockets both ways; see the module docstring.

    The relay owns ``a`` and ``b`` from construction on (it makes them
    non-blocking) and closes them when it ends. ``start()`` begins relaying;
    ``close()`` aborts. ``on_done`` is called exactly once, when the relay
    ends for whatever reason (including ``close()``).
    """

    __slots__ = ("_a", "_ab", "_b", "_ba", "_done", "_loop", "_on_done", "error")

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        a: socket.socket,
        b: socket.socket,
        on_done: Callable[[], None] | None = None,
        *,
        pipe_size: int = DEFAULT_PIPE_SIZE,
    ) -> None:
        """``OSError`` if the pipes cannot be made (the sockets stay open then)."""
        self._loop = loop
        self._a = a
        self._b = b
        self._on_done = on_done
        self._done = False
        self.error: OSError | None = None
        """What aborted the relay, if an error did."""
        a.setblocking(False)
        b.setblocking(False)
        self._ab = _Direction(self, a, b, pipe_size)
        try:
            self._ba = _Direction(self, b, a, pipe_size)
        except BaseException:
            self._ab.close_pipe()
            raise

    @property
    def a_to_b(self) -> int:
        """Bytes delivered from ``a`` into ``b``."""
        return self._ab.moved

    @property
    def b_to_a(self) -> int:
        """Bytes delivered from ``b`` into ``a``."""
        return self._ba.moved

    @property
    def buffered(self) -> int:
        """Bytes held in the pipes right now (read, not yet delivered)."""
        return self._ab.pending + self._ba.pending

    @property
    def pipe_size(self) -> int:
        """The capacity of each direction's pipe, as granted."""
        return self._ab.capacity

    @property
    def done(self) -> bool:
        """True once the relay has ended (both sockets are closed)."""
        return self._done

    def start(self) -> None:
        """Start relaying: wait for data from both sockets."""
        if self._done:
            raise RuntimeError("the relay has ended")
        self._ab.arm(read=True, write=False)
        self._ba.arm(read=True, write=False)

    def close(self) -> None:
        """Abort: both peers see a reset, data in flight is dropped. Idempotent."""
        self._abort(None)

    def _direction_done(self) -> None:
        if self._done or not (self._ab.done and self._ba.done):
            return
        self._finish()
        for sock in (self._a, self._b):
            sock.close()
        self._notify()

    def _abort(self, exc: OSError | None) -> None:
        if self._done:
            return
        if exc is not None:
            self.error = exc
            log.debug("splice relay aborted: %s", exc)
        self._finish()
        for sock in (self._a, self._b):
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
            sock.close()
        self._notify()

    def _finish(self) -> None:
        self._done = True
        for direction in (self._ab, self._ba):
            direction.arm(read=False, write=False)
            direction.close_pipe()

    def _notify(self) -> None:
        on_done, self._on_done = self._on_done, None
        if on_done is not None:
            on_done()


class _Direction:
    """One way through the relay: source socket → pipe → destination socket."""

    __slots__ = (
        "capacity",
        "done",
        "dst",
        "dst_fd",
        "eof",
        "loop",
        "moved",
        "pending",
        "pipe_r",
        "pipe_w",
        "reading",
        "relay",
        "src",
        "src_fd",
        "writing",
    )

    def __init__(
        self, relay: SpliceRelay, src: socket.socket, dst: socket.socket, size: int
    ) -> None:
        self.relay = relay
        self.loop = relay._loop
        self.src = src
        self.dst = dst
        self.src_fd = src.fileno()
        self.dst_fd = dst.fileno()
        self.pipe_r, self.pipe_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.capacity = _grow_pipe(self.pipe_w, size)
        self.pending = 0
        """Bytes in the pipe."""
        self.moved = 0
        """Bytes delivered to the destination."""
        self.eof = False
        self.done = False
        self.reading = False
        self.writing = False

    def pump(self) -> None:
        """Move what can be moved now, within the budget, then wait for an event."""
        if self.relay._done:
            return
        budget = _BUDGET
        try:
            while budget > 0:
                budget -= 1
                if self.pending:
                    try:
                        n = os.splice(
                            self.pipe_r, self.dst_fd, self.pending, flags=_FLAGS
                        )
                    except BlockingIOError:
                        self.arm(read=False, write=True)
                        return
                    self.pending -= n
                    self.moved += n
                    continue
                if self.eof:
                    break
                try:
                    n = os.splice(self.src_fd, self.pipe_w, self.capacity, flags=_FLAGS)
                except BlockingIOError:
                    self.arm(read=True, write=False)
                    return
                if n:
                    self.pending += n
                else:
                    self.eof = True
        except OSError as exc:
            self.relay._abort(exc)
            return
        if self.pending:
            # Out of budget: the writer fires at once if there is room.
            self.arm(read=False, write=True)
        elif self.eof:
            self._half_close()
        else:
            self.arm(read=True, write=False)

    def _half_close(self) -> None:
        self.arm(read=False, write=False)
        try:
            self.dst.shutdown(socket.SHUT_WR)
        except OSError as exc:
            self.relay._abort(exc)
            return
        self.done = True
        self.relay._direction_done()

    def arm(self, *, read: bool, write: bool) -> None:
        """Register exactly the wanted callbacks (source readable, dest writable)."""
        if read != self.reading:
            if read:
                self.loop.add_reader(self.src_fd, self.pump)
            else:
                self.loop.remove_reader(self.src_fd)
            self.reading = read
        if write != self.writing:
            if write:
                self.loop.add_writer(self.dst_fd, self.pump)
            else:
                self.loop.remove_writer(self.dst_fd)
            self.writing = write

    def close_pipe(self) -> None:
        for fd in (self.pipe_r, self.pipe_w):
            if fd >= 0:
                os.close(fd)
        self.pipe_r = self.pipe_w = -1
        self.pending = 0


def _grow_pipe(fd: int, size: int) -> int:
    """Ask for ``size`` bytes of pipe, halving on refusal; the capacity granted."""
    while size >= _MIN_PIPE_SIZE:
        try:
            return fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, size)
        except OSError:
            size //= 2
    return fcntl.fcntl(fd, fcntl.F_GETPIPE_SZ)
