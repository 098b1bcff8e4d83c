# SPDX-License-Identifier: GPL-2.0-or-later
"""The daemon's lifetime: ``--ready-fd``, ``--exit-fd`` and signals."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest
from lab import GUEST, Container, Lab, rand_sha256, tcp_transfer

pytestmark = pytest.mark.timeout(60)

PROMPT = 5.0
"""Seconds within which the daemon must have exited."""


def guest_addresses(container: Container) -> list[str]:
    """IPv4 addresses on the container's tap0."""
    result = container.run(["ip", "-json", "-4", "addr", "show", "dev", "tap0"])
    return [a["local"] for link in json.loads(result.stdout) for a in link["addr_info"]]


def small_transfer_works(lab: Lab, container: Container) -> None:
    """A short download through the gateway, checked by SHA-256."""
    transfer = tcp_transfer(
        lab,
        container,
        server_actions="send:rand:7:100000,shutwr",
        client_actions="recv",
        timeout=20,
    )
    assert transfer.step("client", "recv")["sha256"] == rand_sha256(7, 100000)


def test_ready_fd(lab: Lab, container: Container) -> None:
    """Exactly b"1" then EOF, and only once the guest is configured."""
    daemon = lab.start_daemon(container)
    # -c happens before the ready byte: the address is already there.
    assert guest_addresses(container) == [GUEST]
    assert daemon.read_ready_to_eof(timeout=10) == b"1"
    assert daemon.proc.alive(), daemon.describe()
    small_transfer_works(lab, container)


def test_exit_fd(lab: Lab, container: Container) -> None:
    """Data on the exit fd is ignored; closing its write end ends the daemon (0)."""
    daemon = lab.start_daemon(container, exit_fd=True)
    assert daemon.exit_fd is not None
    os.write(daemon.exit_fd, b"x")
    small_transfer_works(lab, container)
    assert daemon.proc.alive(), daemon.describe()
    start = time.monotonic()
    daemon.close_exit_fd()
    assert daemon.proc.wait(timeout=10) == 0, daemon.describe()
    assert time.monotonic() - start < PROMPT


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["TERM", "INT"])
def test_signal_stops_daemon(lab: Lab, container: Container, signum: int) -> None:
    """SIGTERM/SIGINT: the daemon exits promptly."""
    daemon = lab.start_daemon(container)
    small_transfer_works(lab, container)
    start = time.monotonic()
    daemon.proc.send_signal(signum)
    rc = daemon.proc.wait(timeout=10)
    assert time.monotonic() - start < PROMPT
    # slirp4netns dies of the signal; a clean exit (0) is fine too.
    assert rc in (0, -signum, 128 + signum), daemon.describe()
    assert "Traceback" not in daemon.proc.stderr(), daemon.describe()
