# SPDX-License-Identifier: GPL-2.0-or-later
"""DHCP: ``udhcpc`` in a container whose TAP slirpy did not configure gets
network+15, the gateway as router and the DNS address as its resolver."""

from __future__ import annotations

import shutil

import pytest
from lab import Container, Lab

pytestmark = pytest.mark.timeout(60)


def _udhcpc() -> list[str]:
    if shutil.which("udhcpc"):
        return ["udhcpc"]
    if shutil.which("busybox"):
        return ["busybox", "udhcpc"]
    pytest.skip("udhcpc (busybox) is not installed")


@pytest.mark.parametrize(
    ("cidr", "lease", "router", "dns"),
    [
        (None, "10.0.2.15", "10.0.2.2", "10.0.2.3"),
        ("10.0.135.128/25", "10.0.135.143", "10.0.135.130", "10.0.135.131"),
    ],
    ids=["default", "cidr"],
)
def test_udhcpc_lease(
    lab: Lab,
    container: Container,
    cidr: str | None,
    lease: str,
    router: str,
    dns: str,
) -> None:
    options = [] if cidr is None else ["--cidr", cidr]
    lab.start_daemon(container, *options, configure=False)
    container.run(["ip", "link", "set", "tap0", "up"])
    # The script udhcpc runs for each event prints what the lease says.
    script = lab.dir / "udhcpc-event.sh"
    script.write_text(
        '#!/bin/sh\necho "event=$1 ip=$ip router=$router dns=$dns '
        'subnet=$subnet serverid=$serverid lease=$lease"\n'
    )
    script.chmod(0o755)
    result = container.run(
        [*_udhcpc(), "-i", "tap0", "-n", "-q", "-f", "-t", "5", "-s", str(script)],
        timeout=40,
        check=False,
    )
    assert result.returncode == 0, result.describe()
    bound = [line for line in result.stdout.splitlines() if "event=bound" in line]
    assert bound, result.describe()
    fields = dict(item.split("=", 1) for item in bound[0].split())
    assert fields["ip"] == lease
    assert fields["router"] == router
    assert fields["dns"] == dns
    assert fields["serverid"] == router
    assert fields["lease"] == "86400"
