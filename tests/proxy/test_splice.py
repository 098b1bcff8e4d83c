# SPDX-License-Identifier: GPL-2.0-or-later
"""SpliceRelay on real loopback TCP connections, under asyncio and uvloop.

Topology of every test (all on 127.0.0.1, all sockets made here)::

    client ──TCP── a │ SpliceRelay │ b ──TCP── server

``a`` is accepted from one listener, ``b`` connects to another whose accepted
end is ``server``. The test drives ``client`` and ``server`` with blocking
sockets from worker threads while the relay runs on the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import os
import random
import resource
import socket
import struct
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest

from slirpy.proxy.splice import DEFAULT_PIPE_SIZE, SpliceRelay

MB = 1024 * 1024
BULK = 50 * MB
CHUNK = MB
IO_TIMEOUT = 30.0
"""Seconds any blocking socket call in a worker thread may wait."""
SCENARIO_TIMEOUT = 120.0
T = TypeVar("T")


def run(loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, T]) -> T:
    return loop.run_until_complete(asyncio.wait_for(coro, SCENARIO_TIMEOUT))


def open_fds() -> set[int]:
    return {int(name) for name in os.listdir("/proc/self/fd")}


@dataclass
class Topology:
    client: socket.socket
    a: socket.socket
    b: socket.socket
    server: socket.socket

    @classmethod
    def make(cls) -> Topology:
        with listener() as front, listener() as back:
            client = socket.create_connection(front.getsockname(), timeout=5)
            a, _ = front.accept()
            b = socket.create_connection(back.getsockname(), timeout=5)
            server, _ = back.accept()
        for sock in (client, server):
            sock.settimeout(IO_TIMEOUT)
        return cls(client, a, b, server)

    def close(self) -> None:
        for sock in (self.client, self.a, self.b, self.server):
            sock.close()


@contextlib.contextmanager
def listener() -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind(("127.0.0.1", 0))
        sock.listen(4)
        sock.settimeout(5)
        yield sock
    finally:
        sock.close()


@pytest.fixture
def topo() -> Iterator[Topology]:
    the_topo = Topology.make()
    yield the_topo
    the_topo.close()


@dataclass
class Relayed:
    """A started relay and a future resolved (once) by its ``on_done``."""

    relay: SpliceRelay
    finished: asyncio.Future[None]
    calls: list[float] = field(default_factory=list)


def start_relay(
    loop: asyncio.AbstractEventLoop, topo: Topology, **kwargs: Any
) -> Relayed:
    finished: asyncio.Future[None] = loop.create_future()
    calls: list[float] = []

    def on_done() -> None:
        calls.append(time.monotonic())
        if not finished.done():
            finished.set_result(None)

    relay = SpliceRelay(loop, topo.a, topo.b, on_done, **kwargs)
    relay.start()
    return Relayed(relay, finished, calls)


def stream(seed: int, total: int) -> Iterator[bytes]:
    """``total`` deterministic pseudo-random bytes, in chunks.

    Each chunk is one random block rotated by a random offset: every chunk
    differs, and making one costs a copy, not a random number per byte (the
    endpoints share the interpreter with the relay under test).
    """
    rng = random.Random(seed)
    block = rng.randbytes(CHUNK)
    while total > 0:
        size = min(CHUNK, total)
        turn = rng.randrange(CHUNK)
        yield (block[turn:] + block[:turn])[:size]
        total -= size


def send_stream(sock: socket.socket, seed: int, total: int) -> str:
    """Send the stream, then half-close; the SHA-256 of what was sent."""
    digest = hashlib.sha256()
    for chunk in stream(seed, total):
        sock.sendall(chunk)
        digest.update(chunk)
    sock.shutdown(socket.SHUT_WR)
    return digest.hexdigest()


def recv_stream(sock: socket.socket) -> tuple[int, str]:
    """Read to EOF: the byte count and SHA-256."""
    digest = hashlib.sha256()
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    count = 0
    while n := sock.recv_into(buf):
        digest.update(view[:n])
        count += n
    return count, digest.hexdigest()


def recv_all(sock: socket.socket) -> bytes:
    parts = []
    while part := sock.recv(65536):
        parts.append(part)
    return b"".join(parts)


def reset(sock: socket.socket) -> None:
    """Close so that the peer sees a reset."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def sees_reset(sock: socket.socket) -> bool:
    """Read until an error or EOF; True if it was a reset."""
    try:
        while sock.recv(65536):
            pass
    except (ConnectionResetError, BrokenPipeError):
        return True
    return False


def test_bulk_both_ways(loop: asyncio.AbstractEventLoop, topo: Topology) -> None:
    """50 MB each way at once, byte-exact, then a clean end."""

    async def scenario() -> tuple[list[Any], float]:
        relayed = start_relay(loop, topo)
        started = time.perf_counter()
        results = await asyncio.gather(
            asyncio.to_thread(send_stream, topo.client, 1, BULK),
            asyncio.to_thread(recv_stream, topo.server),
            asyncio.to_thread(send_stream, topo.server, 2, BULK),
            asyncio.to_thread(recv_stream, topo.client),
        )
        elapsed = time.perf_counter() - started
        await relayed.finished
        assert relayed.relay.a_to_b == BULK
        assert relayed.relay.b_to_a == BULK
        assert relayed.relay.error is None
        assert relayed.relay.done
        assert len(relayed.calls) == 1
        return results, elapsed

    before = open_fds()
    closed = {topo.a.fileno(), topo.b.fileno()}
    (sent_ab, got_ab, sent_ba, got_ba), elapsed = run(loop, scenario())
    assert got_ab == (BULK, sent_ab)
    assert got_ba == (BULK, sent_ba)
    assert topo.a.fileno() == topo.b.fileno() == -1
    assert open_fds() == before - closed
    print(
        f"\n{type(loop).__module__}: 2 x {BULK // MB} MB in {elapsed:.3f} s: "
        f"{BULK / MB / elapsed:.0f} MB/s each way"
    )


def test_bulk_one_way(loop: asyncio.AbstractEventLoop, topo: Topology) -> None:
    """50 MB client → server alone: the relay's one-way throughput."""

    async def scenario() -> tuple[str, tuple[int, str], float]:
        relayed = start_relay(loop, topo)
        topo.server.shutdown(socket.SHUT_WR)
        started = time.perf_counter()
        sent, got = await asyncio.gather(
            asyncio.to_thread(send_stream, topo.client, 3, BULK),
            asyncio.to_thread(recv_stream, topo.server),
        )
        elapsed = time.perf_counter() - started
        assert await asyncio.to_thread(recv_all, topo.client) == b""
        await relayed.finished
        return sent, got, elapsed

    sent, got, elapsed = run(loop, scenario())
    assert got == (BULK, sent)
    print(
        f"\n{type(loop).__module__}: {BULK // MB} MB one way in {elapsed:.3f} s: "
        f"{BULK / MB / elapsed:.0f} MB/s"
    )


def test_small_pipe(loop: asyncio.AbstractEventLoop, topo: Topology) -> None:
    """With the smallest pipe the kernel grants by default, still byte-exact."""

    async def scenario() -> tuple[list[Any], int]:
        relayed = start_relay(loop, topo, pipe_size=4096)
        results = await asyncio.gather(
            asyncio.to_thread(send_stream, topo.client, 4, 5 * MB),
            asyncio.to_thread(recv_stream, topo.server),
            asyncio.to_thread(send_stream, topo.server, 5, 3 * MB + 17),
            asyncio.to_thread(recv_stream, topo.client),
        )
        await relayed.finished
        return results, relayed.relay.pipe_size

    (sent_ab, got_ab, sent_ba, got_ba), pipe_size = run(loop, scenario())
    assert pipe_size == 65536  # below 64 KiB the pipe keeps its default
    assert got_ab == (5 * MB, sent_ab)
    assert got_ba == (3 * MB + 17, sent_ba)


def test_pipe_is_enlarged(loop: asyncio.AbstractEventLoop, topo: Topology) -> None:
    relay = SpliceRelay(loop, topo.a, topo.b)
    try:
        limit = int(Path("/proc/sys/fs/pipe-max-size").read_text())
        assert relay.pipe_size == min(DEFAULT_PIPE_SIZE, limit) or os.geteuid() != 0
        assert relay.pipe_size >= 65536
    finally:
        relay.close()


def test_client_half_closes_first(
    loop: asyncio.AbstractEventLoop, topo: Topology
) -> None:
    """Request, FIN; the server reads to EOF, then answers and closes."""
    topo.client.sendall(b"queued before start ")

    async def scenario() -> tuple[bytes, bytes, Relayed]:
        relayed = start_relay(loop, topo)
        topo.client.sendall(b"request")
        topo.client.shutdown(socket.SHUT_WR)
        request = await asyncio.to_thread(recv_all, topo.server)
        # The client's direction is over; the other one still works.
        await asyncio.sleep(0.05)
        assert not relayed.finished.done()
        topo.server.sendall(b"response after the client's FIN")
        topo.server.shutdown(socket.SHUT_WR)
        response = await asyncio.to_thread(recv_all, topo.client)
        await relayed.finished
        return request, response, relayed

    request, response, relayed = run(loop, scenario())
    assert request == b"queued before start request"
    assert response == b"response after the client's FIN"
    assert relayed.relay.a_to_b == len(request)
    assert relayed.relay.b_to_a == len(response)
    assert relayed.relay.error is None
    assert len(relayed.calls) == 1
    assert topo.a.fileno() == topo.b.fileno() == -1
    # Both ends saw FINs, not resets: a clean close from the server side.
    assert topo.server.recv(1) == b""


def test_server_half_closes_first(
    loop: asyncio.AbstractEventLoop, topo: Topology
) -> None:
    """Greeting, FIN from the server; the client still talks, then closes."""

    async def scenario() -> tuple[bytes, bytes, Relayed]:
        relayed = start_relay(loop, topo)
        topo.server.sendall(b"greeting")
        topo.server.shutdown(socket.SHUT_WR)
        greeting = await asyncio.to_thread(recv_all, topo.client)
        await asyncio.sleep(0.05)
        assert not relayed.finished.done()
        topo.client.sendall(b"words after the server's FIN" * 1000)
        topo.client.shutdown(socket.SHUT_WR)
        words = await asyncio.to_thread(recv_all, topo.server)
        await relayed.finished
        return greeting, words, relayed

    greeting, words, relayed = run(loop, scenario())
    assert greeting == b"greeting"
    assert words == b"words after the server's FIN" * 1000
    assert relayed.relay.error is None
    assert len(relayed.calls) == 1


@pytest.mark.parametrize("side", ["client", "server"])
def test_reset_propagates(
    loop: asyncio.AbstractEventLoop, topo: Topology, side: str
) -> None:
    """A reset on one side becomes a reset on the other, and ends the relay."""
    resetter, other = (
        (topo.client, topo.server) if side == "client" else (topo.server, topo.client)
    )

    async def scenario() -> tuple[bytes, bool, Relayed]:
        relayed = start_relay(loop, topo)
        resetter.sendall(b"hello")
        other.settimeout(5)
        hello = await asyncio.to_thread(other.recv, 5)
        reset(resetter)
        was_reset = await asyncio.to_thread(sees_reset, other)
        await relayed.finished
        return hello, was_reset, relayed

    hello, was_reset, relayed = run(loop, scenario())
    assert hello == b"hello"
    assert was_reset
    assert relayed.relay.error is not None
    assert relayed.relay.error.errno == errno.ECONNRESET
    assert len(relayed.calls) == 1
    assert topo.a.fileno() == topo.b.fileno() == -1


def test_reset_while_blocked(loop: asyncio.AbstractEventLoop, topo: Topology) -> None:
    """The server stops reading, the relay fills up, then the server resets."""

    async def scenario() -> tuple[bool, Relayed]:
        relayed = start_relay(loop, topo)
        topo.client.setblocking(False)
        payload = b"x" * 65536
        with contextlib.suppress(BlockingIOError):
            for _ in range(4096):
                topo.client.send(payload)
                await asyncio.sleep(0)
        await asyncio.sleep(0.2)
        assert relayed.relay.buffered > 0
        reset(topo.server)
        topo.client.settimeout(5)
        was_reset = await asyncio.to_thread(sees_reset, topo.client)
        await relayed.finished
        return was_reset, relayed

    was_reset, relayed = run(loop, scenario())
    assert was_reset
    assert relayed.relay.error is not None
    assert len(relayed.calls) == 1


def test_close_aborts(loop: asyncio.AbstractEventLoop, topo: Topology) -> None:
    """close(): both peers see a reset, on_done runs once, no fd stays open."""
    before = open_fds()

    async def scenario() -> tuple[bool, bool, Relayed]:
        relayed = start_relay(loop, topo)
        topo.client.sendall(b"ping")
        topo.server.settimeout(5)
        assert await asyncio.to_thread(topo.server.recv, 4) == b"ping"
        relayed.relay.close()
        relayed.relay.close()
        client_reset, server_reset = await asyncio.gather(
            asyncio.to_thread(sees_reset, topo.client),
            asyncio.to_thread(sees_reset, topo.server),
        )
        await relayed.finished
        return client_reset, server_reset, relayed

    closed = {topo.a.fileno(), topo.b.fileno()}
    client_reset, server_reset, relayed = run(loop, scenario())
    assert client_reset
    assert server_reset
    assert relayed.relay.error is None
    assert len(relayed.calls) == 1
    assert open_fds() == before - closed
    with pytest.raises(RuntimeError):
        relayed.relay.start()


def _rss() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize()


@dataclass
class Sender:
    """Sends a deterministic stream from a thread, counting what left."""

    sock: socket.socket
    seed: int
    total: int
    sent: int = 0
    digest: str = ""
    error: BaseException | None = None
    thread: threading.Thread = field(init=False)

    def __post_init__(self) -> None:
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        digest = hashlib.sha256()
        try:
            for chunk in stream(self.seed, self.total):
                view = memoryview(chunk)
                for start in range(0, len(chunk), 65536):
                    self.sock.sendall(view[start : start + 65536])
                    self.sent += len(view[start : start + 65536])
                digest.update(chunk)
            self.sock.shutdown(socket.SHUT_WR)
            self.digest = digest.hexdigest()
        except BaseException as exc:
            self.error = exc


async def _until_still(read: Callable[[], tuple[int, ...]], quiet: float) -> None:
    """Wait until ``read()`` has not changed for ``quiet`` seconds."""
    last, since = read(), time.monotonic()
    while time.monotonic() - since < quiet:
        await asyncio.sleep(0.02)
        now = read()
        if now != last:
            last, since = now, time.monotonic()


def test_backpressure(loop: asyncio.AbstractEventLoop, topo: Topology) -> None:
    """A paused reader stops the relay: no CPU burnt, no memory grows, no loss."""
    total = 160 * MB
    sender = Sender(topo.client, seed=6, total=total)

    async def scenario() -> dict[str, Any]:
        relayed = start_relay(loop, topo)
        relay = relayed.relay
        rss_before = _rss()
        sender.thread.start()
        await _until_still(lambda: (sender.sent, relay.a_to_b), quiet=0.5)
        stalled = {
            "sent": sender.sent,
            "delivered": relay.a_to_b,
            "buffered": relay.buffered,
            "rss_growth": _rss() - rss_before,
        }
        cpu_before, wall_before = time.process_time(), time.monotonic()
        await asyncio.sleep(0.5)
        stalled["cpu"] = time.process_time() - cpu_before
        stalled["wall"] = time.monotonic() - wall_before
        stalled["moved_while_paused"] = relay.a_to_b - stalled["delivered"]
        topo.server.shutdown(socket.SHUT_WR)
        received = await asyncio.to_thread(recv_stream, topo.server)
        await asyncio.to_thread(sender.thread.join, IO_TIMEOUT)
        await relayed.finished
        stalled["received"] = received
        stalled["pipe_size"] = relay.pipe_size
        return stalled

    r = run(loop, scenario())
    assert sender.error is None
    # Stalled for real: the sender is blocked well before the end.
    assert r["sent"] < total - 64 * MB
    assert r["moved_while_paused"] == 0
    # The relay's own buffer is its pipe; nothing piles up in the process.
    assert 0 < r["buffered"] <= r["pipe_size"]
    assert r["rss_growth"] < 16 * MB
    # No busy loop while the reader is paused.
    assert r["cpu"] < 0.1 * r["wall"], r
    assert r["received"] == (total, sender.digest)
