# SPDX-License-Identifier: GPL-2.0-or-later
"""Fixtures of the stack scenarios: a harness per test, connections per state.

``h`` is a fresh stack; ``established``, ``close_wait``, ``fin_wait_1`` and the
other state fixtures are a ``Peer`` whose connection on ``h`` has been brought
to that state by the frames a guest would send (``harness.tcp_in_state``).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from slirpy.stack.tcp.state import TCPState
from stack.harness import Harness, Peer, tcp_in_state


@pytest.fixture
def h() -> Harness:
    """A stack with default settings and no virtio-net header."""
    return Harness()


@pytest.fixture(params=[False, True], ids=["plain", "vnet"])
def hv(request: pytest.FixtureRequest) -> Harness:
    """A stack without, then with, the virtio-net header."""
    return Harness(vnet=request.param)


def _state_fixture(state: TCPState) -> Callable[[Harness], Peer]:
    def fixture(h: Harness) -> Peer:
        return tcp_in_state(h, state)

    fixture.__doc__ = f"A connection on ``h`` in {state.value}."
    return pytest.fixture(fixture, name=state.name.lower())


syn_received = _state_fixture(TCPState.SYN_RECEIVED)
established = _state_fixture(TCPState.ESTABLISHED)
close_wait = _state_fixture(TCPState.CLOSE_WAIT)
last_ack = _state_fixture(TCPState.LAST_ACK)
fin_wait_1 = _state_fixture(TCPState.FIN_WAIT_1)
fin_wait_2 = _state_fixture(TCPState.FIN_WAIT_2)
closing = _state_fixture(TCPState.CLOSING)
time_wait = _state_fixture(TCPState.TIME_WAIT)
