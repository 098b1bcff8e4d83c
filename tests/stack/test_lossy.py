# SPDX-License-Identifier: GPL-2.0-or-later
"""Bulk transfers both ways through loss, duplication and reordering.

A ``GuestTCP`` talks to the stack over two ``LossyLink``s; a small in-test
driver plays the host side (accepts, collects ``TCPData``, writes its own
data with ``tcp_send`` under backpressure, shuts down after the guest's EOF).
Virtual time jumps from one deadline to the next (link deliveries, the
stack's ``next_timer``, the guest's timer). Both byte streams must arrive
bit for bit (SHA-256), the close must be clean, and the stack must forget
the connection. Every loop is bounded.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field

import pytest
from checks import verify_checksums
from frames import GUEST_IP, GUEST_MAC, GW_IP, GW_MAC, ip4, mac

from slirpy.stack.events import (
    FlowClosed,
    TCPConnectRequest,
    TCPData,
    TCPEof,
    TCPReset,
    TCPWritable,
)
from stack.guest_tcp import GuestTCP
from stack.harness import Harness
from stack.lossy import LossyLink

MAX_STEPS = 400_000
CHUNK = 16 * 1024
PAUSE = 0.05


def blob(n: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(n)


@dataclass
class Host:
    """The host side of the driver: one connection's socket, simulated."""

    data: bytes
    flow: int = 0
    sent: int = 0
    blocked: bool = False
    eof: bool = False
    shut: bool = False
    closed: int = 0
    received: bytearray = field(default_factory=bytearray)
    resets: int = 0
    pause_every: int = 0
    """Pause receiving for ``PAUSE`` seconds after this many bytes (0: never)."""
    unread: int = 0
    paused_until: float | None = None
    pauses: int = 0


@dataclass
class Outcome:
    guest: GuestTCP
    host: Host
    h: Harness
    now: float
    steps: int
    to_stack: LossyLink
    to_guest: LossyLink


def run_transfer(
    *,
    size_up: int,
    size_down: int,
    drop: float,
    seed: int,
    vnet: bool = False,
    guest_window: int = 65535,
    guest_wscale: int | None = None,
    host_closes_first: bool = False,
    snd_buffer: int = 256 * 1024,
    pause_every: int = 0,
    delayed_ack: float = 0.0,
    rcv_window: int = 1 << 20,
) -> Outcome:
    rng = random.Random(seed)
    h = Harness(
        vnet=vnet,
        seed=seed,
        tcp_snd_buffer=snd_buffer,
        tcp_delayed_ack=delayed_ack,
        tcp_rcv_window=rcv_window,
    )
    link = {"drop": drop, "duplicate": drop / 2, "reorder": drop * 2}
    to_stack = LossyLink(random.Random(rng.random()), **link)
    to_guest = LossyLink(random.Random(rng.random()), **link)
    guest = GuestTCP(
        mac=mac(GUEST_MAC),
        ip=ip4(GUEST_IP),
        port=45678,
        gw_mac=mac(GW_MAC),
        remote_ip=ip4(GW_IP),
        remote_port=9000,
        to_send=blob(size_up, seed + 1),
        rcv_window=guest_window,
        wscale=guest_wscale,
        vnet=vnet,
    )
    host = Host(data=blob(size_down, seed + 2), pause_every=pause_every)
    stack = h.stack
    now = 0.0
    guest.connect(now)
    if not host_closes_first:
        guest.close()
    for steps in range(MAX_STEPS):  # noqa: B007 - reported in the Outcome
        for frame in to_stack.due(now):
            stack.receive_frame(frame, now)
        for frame in to_guest.due(now):
            guest.receive(frame, now)
        deadline = stack.next_timer()
        if deadline is not None and deadline <= now:
            stack.handle_timer(now)
        guest.on_timer(now)
        _drive_host(h, host, now, host_closes_first)
        for frame in stack.frames_to_send():
            verify_checksums(frame, vnet=vnet, fast=True)
            to_guest.transmit(frame, now)
        if host_closes_first and host.shut and guest.state == "CLOSE_WAIT":
            guest.close()
        for frame in guest.frames():
            to_stack.transmit(frame, now)
        if guest.done and h.flows_empty() and not to_stack and not to_guest:
            break
        candidates = [
            t
            for t in (
                to_stack.next_delivery(),
                to_guest.next_delivery(),
                stack.next_timer(),
                guest.next_timer(),
                host.paused_until,
            )
            if t is not None
        ]
        if not candidates:
            break
        now = max(now, min(candidates))
    else:
        pytest.fail(f"no end after {MAX_STEPS} steps (t={now:.1f})")
    return Outcome(guest, host, h, now, steps, to_stack, to_guest)


def _drive_host(h: Harness, host: Host, now: float, closes_first: bool) -> None:
    stack = h.stack
    for event in stack.pop_events():
        if isinstance(event, TCPConnectRequest):
            assert host.flow == 0, "second connection"
            host.flow = event.flow
            assert stack.accept(event.flow, now)
        elif isinstance(event, TCPData):
            host.received += event.data
            host.unread += len(event.data)
        elif isinstance(event, TCPEof):
            assert not host.eof, "EOF twice"
            host.eof = True
        elif isinstance(event, TCPWritable):
            host.blocked = False
        elif isinstance(event, FlowClosed):
            host.closed += 1
        elif isinstance(event, TCPReset):
            host.resets += 1
    if host.flow and host.pause_every and not host.closed:
        if host.paused_until is not None and now >= host.paused_until:
            host.paused_until = None
            host.unread = 0
            stack.set_receive_paused(host.flow, False, now)
        elif host.paused_until is None and host.unread >= host.pause_every:
            host.paused_until = now + PAUSE
            host.pauses += 1
            stack.set_receive_paused(host.flow, True, now)
    if host.flow == 0 or host.closed or host.shut:
        return
    while not host.blocked and host.sent < len(host.data):
        chunk = host.data[host.sent : host.sent + CHUNK]
        host.sent += len(chunk)
        if not stack.tcp_send(host.flow, chunk, now):
            host.blocked = True
    if host.sent == len(host.data) and (host.eof or closes_first):
        host.shut = True
        stack.tcp_shutdown(host.flow, now)


def digest(data: bytes | bytearray) -> str:
    return hashlib.sha256(data).hexdigest()


def assert_clean(out: Outcome) -> None:
    guest, host = out.guest, out.host
    assert guest.violations == []
    assert host.resets == 0
    assert digest(host.received) == digest(guest.to_send)
    assert digest(guest.received) == digest(host.data)
    assert host.eof
    assert host.closed == 1
    assert guest.done
    assert out.h.flows_empty()
    assert out.h.stack.next_timer() is None


MB = 1 << 20


@pytest.mark.parametrize(
    ("drop", "vnet", "window", "wscale", "seed"),
    [
        (0.0, False, 65535, None, 1),
        (0.01, False, 65535, None, 2),
        (0.03, False, 16384, None, 3),
        (0.05, False, 262144, 3, 4),
        (0.01, True, 65535, None, 5),
        (0.05, True, 262144, 3, 6),
    ],
    ids=[
        "clean",
        "1pct-64k",
        "3pct-16k",
        "5pct-256k-wscale",
        "vnet-1pct-64k",
        "vnet-5pct-256k",
    ],
)
def test_megabyte_each_way(
    drop: float, vnet: bool, window: int, wscale: int | None, seed: int
) -> None:
    out = run_transfer(
        size_up=MB,
        size_down=MB,
        drop=drop,
        seed=seed,
        vnet=vnet,
        guest_window=window,
        guest_wscale=wscale,
    )
    assert_clean(out)
    if drop:
        assert out.to_guest.dropped
        assert out.to_stack.dropped
        assert out.to_guest.reordered
        assert out.to_stack.duplicated


def test_backpressure_under_loss() -> None:
    """A send buffer far below the data keeps ``tcp_send`` saying False."""
    out = run_transfer(
        size_up=64 * 1024, size_down=MB // 2, drop=0.02, seed=11, snd_buffer=32 * 1024
    )
    assert_clean(out)


@pytest.mark.parametrize("vnet", [False, True], ids=["plain", "vnet"])
def test_slow_host_reader_under_loss(vnet: bool) -> None:
    """The host pauses receiving now and then: windows close and reopen."""
    out = run_transfer(
        size_up=MB,
        size_down=64 * 1024,
        drop=0.02,
        seed=13,
        vnet=vnet,
        guest_window=262144,
        guest_wscale=3,
        pause_every=100_000,
        rcv_window=64 * 1024,
    )
    assert_clean(out)
    assert out.host.pauses >= 5


def test_small_transfers_many_seeds() -> None:
    for seed in range(20, 30):
        assert_clean(run_transfer(size_up=3000, size_down=5000, drop=0.05, seed=seed))


def test_host_closes_first_under_loss() -> None:
    out = run_transfer(
        size_up=256 * 1024, size_down=4096, drop=0.01, seed=42, host_closes_first=True
    )
    assert_clean(out)


@pytest.mark.parametrize("seed", [3, 4])
def test_delayed_ack_under_loss(seed: int) -> None:
    """With the daemon's default delayed ACK, transfers still complete whole."""
    out = run_transfer(
        size_up=256 * 1024,
        size_down=256 * 1024,
        drop=0.02,
        seed=seed,
        delayed_ack=0.001,
    )
    assert_clean(out)
