# SPDX-License-Identifier: GPL-2.0-or-later
"""Usage and start-up errors, end to end: exit status 1, nothing created.

The exact messages are tested by the CLI's own tests; here the daemon runs
inside the lab, so a bad PID can never name a real process of the machine.
"""

from __future__ import annotations

import json

import pytest
from lab import Container, Lab

pytestmark = pytest.mark.timeout(60)


def links(container: Container) -> list[str]:
    """Interface names in the container."""
    result = container.run(["ip", "-json", "link", "show"])
    return [link["ifname"] for link in json.loads(result.stdout)]


@pytest.mark.parametrize("pid", ["abc", "0", "12x"])
def test_bad_pid(lab: Lab, container: Container, pid: str) -> None:
    """A PID that is not a positive integer: exit 1."""
    result = lab.run_daemon("-c", pid, "tap0", timeout=15)
    assert result.returncode == 1, result.describe()
    assert links(container) == ["lo"]


def test_missing_tapname(lab: Lab, container: Container) -> None:
    """No TAPNAME in pid mode: exit 1, no TAP created."""
    result = lab.run_daemon("-c", str(container.pid), timeout=15)
    assert result.returncode == 1, result.describe()
    assert links(container) == ["lo"]


def test_no_such_process(lab: Lab, container: Container) -> None:
    """A PID that does not exist: exit 1 and the ready fd is never written."""
    daemon = lab.start_daemon(None, target=["999999"], wait=False)
    assert daemon.proc.wait(timeout=20) == 1, daemon.describe()
    assert daemon.read_ready_to_eof(timeout=5) == b""
    assert links(container) == ["lo"]
