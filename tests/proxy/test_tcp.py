# SPDX-License-Identifier: GPL-2.0-or-later
"""HostTCP on real loopback TCP connections, under asyncio and uvloop.

``HostTCP`` owns one end of a connection made here; the test holds the other
end (``peer``, non-blocking) and steps the event loop until what it waits
for has happened. A ``RecordingStack`` stands in for the stack and records
what the host socket told it.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import platform
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import pytest

from slirpy.proxy import tcp
from slirpy.proxy.tcp import HostTCP, connect
from slirpy.stack.stack import RejectReason, Stack

STEP_TIMEOUT = 20.0
QUEUED = 32 << 20
"""More than the kernel buffers for a peer that does not read: the rest
waits in HostTCP's queue."""
FLOW = 7


class RecordingStack:
    """What a host socket tells the stack, in order."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.received = bytearray()
        self.room = True
        """What ``tcp_send`` answers."""

    def names(self) -> list[str]:
        return [name for name, _ in self.calls]

    def tcp_send(self, flow: int, data: bytes, now: float, fin: bool = False) -> bool:
        assert flow == FLOW
        self.received += data
        self.calls.append(("tcp_send+fin" if fin else "tcp_send", len(data)))
        return self.room

    def tcp_shutdown(self, flow: int, now: float) -> None:
        self.calls.append(("tcp_shutdown", None))

    def tcp_abort(self, flow: int) -> None:
        self.calls.append(("tcp_abort", None))

    def set_receive_paused(self, flow: int, paused: bool, now: float) -> None:
        self.calls.append(("set_receive_paused", paused))

    def accept(self, flow: int, now: float) -> bool:
        self.calls.append(("accept", None))
        return True

    def reject(self, flow: int, reason: RejectReason) -> None:
        self.calls.append(("reject", reason))


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    yield sock
    sock.close()


def pair(listener: socket.socket) -> tuple[socket.socket, socket.socket]:
    """(ours, peer): a connected loopback pair, both non-blocking."""
    ours = socket.create_connection(listener.getsockname())
    peer, _ = listener.accept()
    ours.setblocking(False)
    peer.setblocking(False)
    return ours, peer


def step_until(
    loop: asyncio.AbstractEventLoop,
    done: Callable[[], bool],
    between: Callable[[], None] | None = None,
) -> None:
    """Run the loop in short slices until ``done()`` (at most STEP_TIMEOUT)."""
    deadline = time.monotonic() + STEP_TIMEOUT
    while not done():
        assert time.monotonic() < deadline, "timed out"
        loop.run_until_complete(asyncio.sleep(0.005))
        if between is not None:
            between()


def drain(sock: socket.socket, into: bytearray) -> bool:
    """Read what ``sock`` has into ``into``; True at EOF."""
    while True:
        try:
            data = sock.recv(1 << 20)
        except BlockingIOError:
            return False
        if not data:
            return True
        into += data


def read_to_eof(loop: asyncio.AbstractEventLoop, peer: socket.socket) -> bytes:
    """What ``peer`` receives up to EOF, stepping the loop meanwhile."""
    got = bytearray()
    eof = [False]

    def read() -> None:
        eof[0] = eof[0] or drain(peer, got)

    step_until(loop, lambda: eof[0], read)
    return bytes(got)


def fd_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


def reset(sock: socket.socket) -> None:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def host(
    loop: asyncio.AbstractEventLoop, sock: socket.socket, **kwargs: Any
) -> tuple[HostTCP, RecordingStack]:
    stack = RecordingStack()
    kicks: list[None] = []
    proto = HostTCP(
        cast(Stack, stack), FLOW, loop, lambda: kicks.append(None), sock, **kwargs
    )
    return proto, stack


# ---------------------------------------------------------------- reading


def test_data_then_reset_both_reach_the_stack(
    loop: asyncio.AbstractEventLoop, listener: socket.socket
) -> None:
    """The peer's last bytes and its RST are already queued when reading
    starts: uvloop calls the reader once for them and then never again, so
    both must be taken in that call."""
    ours, peer = pair(listener)
    payload = os.urandom(100_000)
    peer.sendall(payload)
    reset(peer)
    time.sleep(0.05)
    proto, stack = host(loop, ours)
    step_until(loop, lambda: "tcp_abort" in stack.names())
    assert bytes(stack.received) == payload
    assert stack.names()[-1] == "tcp_abort"
    assert not fd_open(ours.fileno())
    proto.close()


def test_eof_alone(loop: asyncio.AbstractEventLoop, listener: socket.socket) -> None:
    ours, peer = pair(listener)
    proto, stack = host(loop, ours)
    peer.sendall(b"hello")
    step_until(loop, lambda: bytes(stack.received) == b"hello")
    peer.shutdown(socket.SHUT_WR)
    step_until(loop, lambda: "tcp_shutdown" in stack.names())
    assert stack.names() == ["tcp_send", "tcp_shutdown"]
    proto.close()
    peer.close()


def test_eof_after_data(
    loop: asyncio.AbstractEventLoop, listener: socket.socket
) -> None:
    ours, peer = pair(listener)
    peer.sendall(b"hello")
    peer.shutdown(socket.SHUT_WR)
    proto, stack = host(loop, ours)
    step_until(loop, lambda: "tcp_send+fin" in stack.names())
    assert bytes(stack.received) == b"hello"
    # The last data and the EOF go to the stack together (one segment).
    assert stack.names() == ["tcp_send+fin"]
    proto.close()
    peer.close()


def test_a_full_stack_pauses_reading_until_resumed(
    loop: asyncio.AbstractEventLoop, listener: socket.socket
) -> None:
    ours, peer = pair(listener)
    proto, stack = host(loop, ours)
    stack.room = False
    peer.sendall(b"a" * 1000)
    step_until(loop, lambda: len(stack.received) == 1000)
    peer.sendall(b"b" * 1000)
    loop.run_until_complete(asyncio.sleep(0.1))
    assert len(stack.received) == 1000, "read while the stack was full"
    stack.room = True
    proto.resume_reading()
    step_until(loop, lambda: len(stack.received) == 2000)
    assert bytes(stack.received) == b"a" * 1000 + b"b" * 1000
    proto.close()
    peer.close()


# ---------------------------------------------------------------- writing


def test_small_writes_are_not_held_back(
    loop: asyncio.AbstractEventLoop, listener: socket.socket
) -> None:
    """Nagle's algorithm is off on every host socket, connected or accepted."""
    ours, peer = pair(listener)
    proto, _stack = host(loop, ours)
    assert ours.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    out, _ = _connect(loop, listener.getsockname()[1])
    assert out is not None
    assert out._sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    out.close()
    proto.close()
    peer.close()


def test_writes_queue_and_shut_the_guest_window_while_the_peer_is_slow(
    loop: asyncio.AbstractEventLoop, listener: socket.socket
) -> None:
    ours, peer = pair(listener)
    proto, stack = host(loop, ours)
    chunks = [os.urandom(65536) for _ in range(QUEUED // 65536)]
    for chunk in chunks:
        proto.write(memoryview(chunk))
    assert ("set_receive_paused", True) in stack.calls
    got = bytearray()

    def read() -> None:
        drain(peer, got)

    step_until(loop, lambda: len(got) == QUEUED, read)
    step_until(loop, lambda: stack.calls[-1] == ("set_receive_paused", False))
    assert hashlib.sha256(got).digest() == hashlib.sha256(b"".join(chunks)).digest()
    proto.close()
    peer.close()


def test_write_eof_waits_for_the_queue(
    loop: asyncio.AbstractEventLoop, listener: socket.socket
) -> None:
    ours, peer = pair(listener)
    proto, stack = host(loop, ours)
    data = os.urandom(QUEUED)
    proto.write(data)
    proto.write_eof()
    assert read_to_eof(loop, peer) == data
    # Half-closed: the other direction still works.
    peer.sendall(b"reply")
    step_until(loop, lambda: bytes(stack.received) == b"reply")
    proto.close()
    peer.close()


def test_close_sends_the_queue_first(
    loop: asyncio.AbstractEventLoop, listener: socket.socket
) -> None:
    ours, peer = pair(listener)
    fd = ours.fileno()
    proto, _stack = host(loop, ours)
    data = os.urandom(QUEUED)
    proto.write(data)
    proto.close()
    assert fd_open(fd)
    assert read_to_eof(loop, peer) == data
    step_until(loop, lambda: not fd_open(fd))
    peer.close()


def test_abort_resets_the_peer(
    loop: asyncio.AbstractEventLoop, listener: socket.socket
) -> None:
    ours, peer = pair(listener)
    proto, _stack = host(loop, ours)
    proto.write(b"lost or not")
    proto.abort()
    peer.setblocking(True)
    peer.settimeout(STEP_TIMEOUT)

    def read_all() -> None:
        while peer.recv(65536):
            pass

    with pytest.raises(ConnectionResetError):
        read_all()
    peer.close()


def test_a_write_to_a_reset_socket_resets_the_guest(
    loop: asyncio.AbstractEventLoop, listener: socket.socket
) -> None:
    ours, peer = pair(listener)
    proto, stack = host(loop, ours, reading=False)
    reset(peer)
    time.sleep(0.05)
    proto.write(b"x" * 1000)
    assert stack.names() == ["tcp_abort"]
    proto.write(b"ignored")
    assert stack.names() == ["tcp_abort"]


# ---------------------------------------------------------------- connect


def _connect(
    loop: asyncio.AbstractEventLoop, port: int
) -> tuple[HostTCP | None, RecordingStack]:
    stack = RecordingStack()
    addr = socket.inet_aton("127.0.0.1")
    proto = connect(cast(Stack, stack), FLOW, addr, port, loop, lambda: None)
    return proto, stack


def test_connect_accepts_and_relays(
    loop: asyncio.AbstractEventLoop, listener: socket.socket
) -> None:
    proto, stack = _connect(loop, listener.getsockname()[1])
    assert proto is not None
    step_until(loop, lambda: "accept" in stack.names())
    peer, _ = listener.accept()
    peer.sendall(b"ping")
    step_until(loop, lambda: bytes(stack.received) == b"ping")
    proto.write(b"pong")
    peer.settimeout(STEP_TIMEOUT)
    assert peer.recv(4) == b"pong"
    proto.close()
    peer.close()


def test_a_refused_connect_rejects_the_flow(
    loop: asyncio.AbstractEventLoop,
) -> None:
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    _proto, stack = _connect(loop, port)
    step_until(loop, lambda: "reject" in stack.names())
    assert stack.calls == [("reject", RejectReason.REFUSED)]


@pytest.fixture
def full_listener() -> Iterator[socket.socket]:
    """A listener whose accept queue is full: SYNs to it are dropped, so a
    connect there hangs (until the queue has room and the SYN is resent)."""
    full = socket.socket()
    full.bind(("127.0.0.1", 0))
    full.listen(0)
    queued = socket.create_connection(full.getsockname())
    yield full
    queued.close()
    full.close()


def test_a_connect_that_never_completes_times_out(
    loop: asyncio.AbstractEventLoop,
    monkeypatch: pytest.MonkeyPatch,
    full_listener: socket.socket,
) -> None:
    monkeypatch.setattr(tcp, "CONNECT_TIMEOUT", 0.3)
    proto, stack = _connect(loop, full_listener.getsockname()[1])
    assert proto is not None
    started = time.monotonic()
    step_until(loop, lambda: "reject" in stack.names())
    assert time.monotonic() - started >= 0.25
    assert stack.calls == [("reject", RejectReason.REFUSED)]


def test_closing_while_connecting_forgets_quietly(
    loop: asyncio.AbstractEventLoop,
    monkeypatch: pytest.MonkeyPatch,
    full_listener: socket.socket,
) -> None:
    monkeypatch.setattr(tcp, "CONNECT_TIMEOUT", 0.2)
    proto, stack = _connect(loop, full_listener.getsockname()[1])
    assert proto is not None
    proto.close()
    loop.run_until_complete(asyncio.sleep(0.4))
    assert stack.calls == []


def test_what_is_written_while_connecting_goes_out_once_connected(
    loop: asyncio.AbstractEventLoop, full_listener: socket.socket
) -> None:
    proto, stack = _connect(loop, full_listener.getsockname()[1])
    assert proto is not None
    proto.write(b"early")
    proto.write_eof()
    first, _ = full_listener.accept()  # room for the resent SYN (after ~1 s)
    first.close()
    step_until(loop, lambda: "accept" in stack.names())
    peer, _ = full_listener.accept()
    peer.setblocking(False)
    assert read_to_eof(loop, peer) == b"early"
    proto.close()
    peer.close()


_ALLOCATION_ROUNDS = """\
import resource, sys
from slirpy.proxy import tcp
if sys.argv[1] == "tuned":
    tcp.tune_allocator()
def one_round():
    # One flow's send buffer of bulk reads, all acknowledged at once.
    chunks = [bytes(tcp._READ_SIZE) for _ in range(6)]
    del chunks
one_round()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(100):
    one_round()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _minor_faults(mode: str) -> int:
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    out = subprocess.run(
        [sys.executable, "-c", _ALLOCATION_ROUNDS, mode],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    return int(out)


@pytest.mark.skipif(
    platform.libc_ver()[0] != "glibc", reason="glibc's malloc thresholds"
)
def test_tuned_allocator_reuses_freed_read_buffers() -> None:
    """Bulk reads freed together are reused, not given back and refaulted."""
    default = _minor_faults("default")
    tuned = _minor_faults("tuned")
    assert tuned * 10 < default, (tuned, default)
