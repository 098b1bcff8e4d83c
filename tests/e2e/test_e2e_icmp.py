# SPDX-License-Identifier: GPL-2.0-or-later
"""ICMP echo: the gateway (and the DNS address) answer the guest's ping."""

from __future__ import annotations

import re
import shutil

import pytest
from lab import DNS, GATEWAY, Container, Daemon

pytestmark = pytest.mark.timeout(60)


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
