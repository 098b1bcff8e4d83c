# SPDX-License-Identifier: GPL-2.0-or-later
"""Bulk TCP through the daemon: 50 MiB each way, checked by SHA-256.

The container (``-c``) talks to a server on the host namespace's loopback
reached through the gateway 10.0.2.2, at the default MTU and at 65520 (what
podman and rootlesskit use).
"""

from __future__ import annotations

import pytest
from lab import GATEWAY, Container, DataFile, Lab, link_mtu, tcp_transfer

pytestmark = pytest.mark.timeout(240)

MTUS = [1500, 65520]


def start(lab: Lab, container: Container, mtu: int) -> None:
    """Start the daemon with ``--mtu`` and check the guest's link MTU."""
    lab.start_daemon(container, f"--mtu={mtu}")
    assert link_mtu(container, "tap0") == mtu


@pytest.mark.parametrize("mtu", MTUS)
def test_download(lab: Lab, container: Container, big_file: DataFile, mtu: int) -> None:
    """Host server sends the file; the guest reads it to EOF."""
    start(lab, container, mtu)
    transfer = tcp_transfer(
        lab,
        container,
        server_actions=f"send:file:{big_file.path},shutwr,recv",
        client_actions="recv",
        connect=GATEWAY,
    )
    received = transfer.step("client", "recv")
    assert received["bytes"] == big_file.size
    assert received["sha256"] == big_file.sha256
    assert transfer.server["peer"].startswith("127.0.0.1:")


@pytest.mark.parametrize("mtu", MTUS)
def test_upload(lab: Lab, container: Container, big_file: DataFile, mtu: int) -> None:
    """The guest sends the file; the host server reads it to EOF."""
    start(lab, container, mtu)
    transfer = tcp_transfer(
        lab,
        container,
        server_actions="recv",
        client_actions=f"send:file:{big_file.path},shutwr,recv",
        connect=GATEWAY,
    )
    received = transfer.step("server", "recv")
    assert received["bytes"] == big_file.size
    assert received["sha256"] == big_file.sha256
    assert transfer.step("client", "send")["sha256"] == big_file.sha256
