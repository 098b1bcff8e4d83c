# SPDX-License-Identifier: GPL-2.0-or-later
"""How the daemon finds the container: pid mode, path mode, an existing TAP."""

from __future__ import annotations

import json

import pytest
from lab import GATEWAY, GUEST, Container, Lab, link_mtu, rand_sha256, tcp_transfer

pytestmark = pytest.mark.timeout(60)

SIZE = 2 * 1024 * 1024


def check_both_ways(lab: Lab, container: Container) -> None:
    """Download and upload of 2 MiB each, checked by SHA-256."""
    transfer = tcp_transfer(
        lab,
        container,
        server_actions=f"send:rand:41:{SIZE},shutwr,recv",
        client_actions=f"recv,send:rand:42:{SIZE},shutwr",
        timeout=30,
    )
    assert transfer.step("client", "recv")["sha256"] == rand_sha256(41, SIZE)
    assert transfer.step("server", "recv")["sha256"] == rand_sha256(42, SIZE)


def ipv4_of(container: Container, ifname: str) -> list[str]:
    """IPv4 addresses of ``ifname`` in the container."""
    result = container.run(["ip", "-json", "-4", "addr", "show", "dev", ifname])
    return [a["local"] for link in json.loads(result.stdout) for a in link["addr_info"]]


def test_pid_mode(lab: Lab, container: Container) -> None:
    """``slirp4netns -c PID tap0``."""
    lab.start_daemon(container, mode="pid")
    assert ipv4_of(container, "tap0") == [GUEST]
    check_both_ways(lab, container)


def test_path_mode(lab: Lab, container: Container) -> None:
    """``--netns-type=path /proc/PID/ns/net --userns-path=/proc/PID/ns/user``."""
    lab.start_daemon(container, mode="path")
    assert ipv4_of(container, "tap0") == [GUEST]
    check_both_ways(lab, container)


@pytest.mark.usefixtures("slirpy_only")
def test_netns_path_option(lab: Lab, container: Container) -> None:
    """slirpy's ``--netns-path=PATH`` (no PID positional)."""
    lab.start_daemon(container, mode="netns-path")
    assert ipv4_of(container, "tap0") == [GUEST]
    check_both_ways(lab, container)


def test_existing_tap_without_configure(lab: Lab, container: Container) -> None:
    """Rootlesskit's way: the TAP exists, the daemon attaches, the caller configures."""
    container.sh("ip tuntap add name tap0 mode tap && ip link set tap0 up")
    lab.start_daemon(container, "--mtu", "65520", configure=False)
    # Without -c the daemon leaves the interface alone.
    assert ipv4_of(container, "tap0") == []
    container.sh(
        "ip link set lo up\n"
        "ip link set dev tap0 mtu 65520\n"
        f"ip addr add {GUEST}/24 dev tap0\n"
        f"ip route add default via {GATEWAY} dev tap0\n"
    )
    assert link_mtu(container, "tap0") == 65520
    check_both_ways(lab, container)
