# SPDX-License-Identifier: GPL-2.0-or-later
"""The guest reaches a "remote" address: a test host in the outer namespace.

198.18.0.2 is an address of the lab's host namespace (on a veth whose far
end is silent), standing in for a public server.  The guest's flows to it go
through the daemon exactly as they would to the internet.
"""

from __future__ import annotations

import pytest
from lab import REMOTE, Container, Daemon, Lab, rand_sha256, tcp_transfer, udp_echo

pytestmark = pytest.mark.timeout(90)

SIZE = 4 * 1024 * 1024


def test_tcp_to_remote(lab: Lab, container: Container, daemon: Daemon) -> None:
    """Download and upload to 198.18.0.2, checked by SHA-256."""
    transfer = tcp_transfer(
        lab,
        container,
        bind=REMOTE,
        connect=REMOTE,
        server_actions=f"send:rand:31:{SIZE},shutwr,recv",
        timeout=30,
        client_actions=f"recv,send:rand:32:{SIZE},shutwr",
    )
    assert transfer.step("client", "recv")["sha256"] == rand_sha256(31, SIZE)
    assert transfer.step("server", "recv")["sha256"] == rand_sha256(32, SIZE)
    # The remote server does not see the guest's private address.
    assert not transfer.server["peer"].startswith("10.0.2.")


def test_udp_to_remote(lab: Lab, container: Container, daemon: Daemon) -> None:
    """UDP echo with a server bound to 198.18.0.2."""
    seen = udp_echo(lab, container, bind=REMOTE, connect=REMOTE, count=20)
    assert not any(s["peer"].startswith("10.0.2.") for s in seen)
