# SPDX-License-Identifier: GPL-2.0-or-later
"""The host-socket tests run under asyncio's default loop and under uvloop."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator

import pytest
import uvloop

LOOPS: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
    "asyncio": asyncio.new_event_loop,
    "uvloop": uvloop.new_event_loop,
}


@pytest.fixture(params=sorted(LOOPS))
def loop(request: pytest.FixtureRequest) -> Iterator[asyncio.AbstractEventLoop]:
    """A fresh event loop of each kind, closed afterwards."""
    the_loop = LOOPS[request.param]()
    yield the_loop
    the_loop.close()
