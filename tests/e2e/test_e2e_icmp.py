# SPDX-License-Identifier: GPL-2.0-or-later
"""ICMP echo: the gateway (and the DNS address) answer the guest's ping; other
hosts are pinged through host ping sockets."""

from __future__ import annotations

import re
import shutil

import pytest
from lab import DNS, GATEWAY, REMOTE, Container, Daemon, Lab

pytestmark = pytest.mark.timeout(60)

UNANSWERED = "198.18.0.77"
"""An address on the remote link that nobody answers."""


def ping_argv(address: str, count: int) -> list[str]:
    """iputils ``ping`` if installed, else busybox's."""
    if shutil.which("ping"):
        return ["ping", "-n", "-c", str(count), "-i", "0.2", "-W", "2", address]
    return ["busybox", "ping", "-c", str(count), "-W", "2", address]


@pytest.mark.parametrize("address", [GATEWAY, DNS])
def test_ping(container: Container, daemon: Daemon, address: str) -> None:
    """Every echo request gets its reply."""
    result = container.run(ping_argv(address, 3), timeout=30, check=False)
    assert result.returncode == 0, result.describe()
    match = re.search(
        r"(\d+) packets transmitted, (\d+) (?:packets )?received", result.stdout
    )
    assert match, result.describe()
    assert match.group(1) == match.group(2) == "3"


def _received(output: str) -> tuple[int, int]:
    match = re.search(r"(\d+) packets transmitted, (\d+) (?:packets )?received", output)
    assert match, output
    return int(match.group(1)), int(match.group(2))


def test_ping_remote_host(lab: Lab, container: Container, daemon: Daemon) -> None:
    """Echo to a host beyond the gateway goes out through a host ping socket and
    only real replies come back: a live address answers, a dead one does not."""
    # Ping sockets are allowed for the groups in this range (per namespace).
    lab.host.sh("echo '0 0' > /proc/sys/net/ipv4/ping_group_range")
    result = container.run(ping_argv(REMOTE, 3), timeout=30, check=False)
    assert result.returncode == 0, result.describe()
    assert _received(result.stdout) == (3, 3)
    dead = container.run(ping_argv(UNANSWERED, 2), timeout=30, check=False)
    assert dead.returncode != 0, dead.describe()
    assert _received(dead.stdout) == (2, 0)
