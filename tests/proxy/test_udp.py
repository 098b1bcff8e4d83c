# SPDX-License-Identifier: GPL-2.0-or-later
"""HostUDP on real loopback sockets, under asyncio and uvloop.

A ``RecordingStack`` stands in for the stack; the test plays the host-side
peers with plain sockets and steps the event loop.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from typing import cast

from slirpy.proxy.udp import HostUDP
from slirpy.stack.stack import Stack

FLOW = 3
LOCALHOST = socket.inet_aton("127.0.0.1")


class RecordingStack:
    """What a host UDP socket tells the stack."""

    def __init__(self) -> None:
        self.datagrams: list[tuple[int, bytes]] = []
        self.errors: list[tuple[int, int, int]] = []

    def udp_send(
        self, flow: int, src: bytes, port: int, data: bytes, now: float
    ) -> None:
        self.datagrams.append((port, data))

    def udp_error(
        self,
        flow: int,
        dst: bytes,
        port: int,
        icmp_type: int,
        icmp_code: int,
        quote: bytes,
        now: float,
    ) -> None:
        self.errors.append((port, icmp_type, icmp_code))


def _closed_port() -> int:
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.bind(("127.0.0.1", 0))
    port = int(probe.getsockname()[1])
    probe.close()
    return port


def _step(loop: asyncio.AbstractEventLoop) -> None:
    loop.run_until_complete(asyncio.sleep(0))


def test_an_error_taken_by_a_send_does_not_leave_the_flow_deaf(
    loop: asyncio.AbstractEventLoop,
) -> None:
    """An ICMP error is pending when the loop polls; in the same iteration
    another callback sends on the flow first, which takes the error (the
    kernel reports it on that send), so the socket's readiness reported as
    POLLERR is stale by the time the flow's own reader runs. Replies must
    still be read afterwards."""
    stack = RecordingStack()
    host = HostUDP(cast(Stack, stack), FLOW, loop, lambda: None)
    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server.bind(("127.0.0.1", 0))
    server.settimeout(5)
    server_port = int(server.getsockname()[1])
    r, w = os.pipe()
    try:

        def guest_frame() -> None:
            os.read(r, 1)
            host.send(b"echo", LOCALHOST, server_port)

        # Both watchers registered (uvloop submits registrations when it
        # polls), then the pipe made ready before the host socket: the loop
        # runs the pipe's callback first.
        loop.add_reader(r, guest_frame)
        _step(loop)
        os.write(w, b"x")
        host.send(b"anyone?", LOCALHOST, _closed_port())
        _step(loop)
        loop.remove_reader(r)

        data, peer = server.recvfrom(100)
        assert data == b"echo"
        server.sendto(b"reply", peer)
        deadline = time.monotonic() + 5
        while not stack.datagrams and time.monotonic() < deadline:
            loop.run_until_complete(asyncio.sleep(0.01))
        assert stack.datagrams == [(server_port, b"reply")]
        assert [error[1:] for error in stack.errors] == [(3, 3)]  # port unreachable
    finally:
        host.close()
        server.close()
        os.close(r)
        os.close(w)
