# SPDX-License-Identifier: GPL-2.0-or-later
"""The driver's one timer on both event loops: a deadline fires once, after
the loop's clock has reached it."""

from __future__ import annotations

import asyncio
import socket
from typing import Any, cast

import pytest
import uvloop

from slirpy.driver import Driver
from slirpy.stack.stack import Stack


class TimerStack:
    """Stands in for the stack: one deadline, and a count of timer calls."""

    def __init__(self) -> None:
        self.at: float | None = None
        self.calls: list[float] = []

    def next_timer(self) -> float | None:
        return self.at

    def handle_timer(self, now: float) -> None:
        self.calls.append(now)
        if self.at is not None and now >= self.at:
            self.at = None

    def pop_events(self) -> list[Any]:
        return []

    def drain_frames(self) -> list[bytes]:
        return []


@pytest.mark.parametrize("make_loop", [uvloop.new_event_loop, asyncio.new_event_loop])
@pytest.mark.parametrize("ahead", [0.0, 0.0002, 0.0004, 0.0006, 0.003])
def test_a_deadline_fires_once_when_due(make_loop: Any, ahead: float) -> None:
    """uvloop counts whole milliseconds: a deadline less than half of one
    ahead must not run before ``loop.time()`` reaches it, over and over."""
    loop = make_loop()
    stack = TimerStack()
    tap, other = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    driver = Driver(loop, cast(Stack, stack), tap.fileno())
    try:

        async def scenario() -> None:
            stack.at = loop.time() + ahead
            driver.process()
            await asyncio.sleep(0.02)

        loop.run_until_complete(scenario())
    finally:
        driver.stop()
        loop.close()
        tap.close()
        other.close()
    assert stack.at is None
    assert len(stack.calls) == 1, stack.calls
