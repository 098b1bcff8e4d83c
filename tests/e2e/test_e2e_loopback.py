# SPDX-License-Identifier: GPL-2.0-or-later
"""``--disable-host-loopback``: the gateway no longer leads to 127.0.0.1."""

from __future__ import annotations

import pytest
from lab import (
    GATEWAY,
    REMOTE,
    Container,
    Lab,
    rand_sha256,
    tcp_connect_error,
    tcp_transfer,
)

pytestmark = pytest.mark.timeout(60)


def test_disable_host_loopback(lab: Lab, container: Container) -> None:
    """TCP to 10.0.2.2:P fails with ENETUNREACH although host 127.0.0.1:P listens."""
    lab.start_daemon(container, "--disable-host-loopback")
    # The daemon does forward: a "remote" address still works.
    transfer = tcp_transfer(
        lab,
        container,
        bind=REMOTE,
        connect=REMOTE,
        server_actions="send:rand:6:1000,shutwr",
        client_actions="recv",
        timeout=20,
    )
    assert transfer.step("client", "recv")["sha256"] == rand_sha256(6, 1000)
    server = lab.host.start_server(
        "tcp_peer", "--listen=127.0.0.1:0", "--actions=", "--timeout=30"
    )
    assert tcp_connect_error(lab, container, GATEWAY, server.port) == "ENETUNREACH"


def test_host_loopback_allowed_by_default(lab: Lab, container: Container) -> None:
    """The control: without the option the same connection works."""
    lab.start_daemon(container)
    transfer = tcp_transfer(
        lab, container, server_actions="send:rand:5:1000,shutwr", client_actions="recv"
    )
    assert transfer.step("client", "recv")["sha256"] == rand_sha256(5, 1000)
