# SPDX-License-Identifier: GPL-2.0-or-later
"""TCP semantics through the daemon: many flows, half-close, refusal.

All with ``-c`` and a server on the host namespace's loopback reached via
the gateway 10.0.2.2.
"""

from __future__ import annotations

import pytest
from lab import (
    GATEWAY,
    Container,
    Daemon,
    Lab,
    rand_sha256,
    tcp_connect_error,
    tcp_transfer,
)

pytestmark = pytest.mark.timeout(120)

PARALLEL = 50
PER_FLOW = 256 * 1024


def test_parallel_connections(lab: Lab, container: Container, daemon: Daemon) -> None:
    """50 connections at once; each echoes its own payload back intact."""
    server = lab.host.start_server(
        "tcp_peer",
        "--listen=127.0.0.1:0",
        "--actions=echo",
        f"--count={PARALLEL}",
        "--timeout=90",
        name="echo-server",
    )
    result = container.python(
        "tcp_peer",
        f"--connect={GATEWAY}:{server.port}",
        f"--actions=send:rand:{{i}}:{PER_FLOW},shutwr,recv",
        f"--parallel={PARALLEL}",
        "--timeout=60",
        timeout=100,
    )
    records = result.json_lines()
    assert result.returncode == 0, result.describe()
    assert len(records) == PARALLEL, result.describe()
    for record in records:
        expected = rand_sha256(record["index"], PER_FLOW)
        sent, received = record["steps"]
        assert sent == {"op": "send", "sha256": expected, "bytes": PER_FLOW}
        assert received == {"op": "recv", "sha256": expected, "bytes": PER_FLOW}
    served = server.results(PARALLEL, timeout=30)
    assert sorted(s["steps"][0]["sha256"] for s in served) == sorted(
        rand_sha256(i, PER_FLOW) for i in range(PARALLEL)
    )
    assert len({s["peer"] for s in served}) == PARALLEL


def test_half_close_guest_shuts_write(
    lab: Lab, container: Container, daemon: Daemon
) -> None:
    """The guest sends and shuts its write side; the host answers after EOF."""
    transfer = tcp_transfer(
        lab,
        container,
        server_actions="recv,send:rand:11:3000000,shutwr",
        client_actions="send:rand:10:2000000,shutwr,recv",
    )
    assert transfer.step("server", "recv") == {
        "op": "recv",
        "sha256": rand_sha256(10, 2000000),
        "bytes": 2000000,
    }
    assert transfer.step("client", "recv") == {
        "op": "recv",
        "sha256": rand_sha256(11, 3000000),
        "bytes": 3000000,
    }


def test_half_close_host_shuts_write(
    lab: Lab, container: Container, daemon: Daemon
) -> None:
    """The host sends and shuts its write side; the guest answers after EOF."""
    transfer = tcp_transfer(
        lab,
        container,
        server_actions="send:rand:21:3000000,shutwr,recv",
        client_actions="recv,send:rand:20:2000000,shutwr",
    )
    assert transfer.step("client", "recv") == {
        "op": "recv",
        "sha256": rand_sha256(21, 3000000),
        "bytes": 3000000,
    }
    assert transfer.step("server", "recv") == {
        "op": "recv",
        "sha256": rand_sha256(20, 2000000),
        "bytes": 2000000,
    }


def test_connection_refused(lab: Lab, container: Container, daemon: Daemon) -> None:
    """A closed port on the host's loopback: ECONNREFUSED in the guest."""
    closed_port = 1  # nothing listens in a fresh network namespace
    assert tcp_connect_error(lab, container, GATEWAY, closed_port) == "ECONNREFUSED"
    # The same path works once something listens there.
    transfer = tcp_transfer(
        lab, container, server_actions="send:rand:1:1000,shutwr", client_actions="recv"
    )
    assert transfer.step("client", "recv")["sha256"] == rand_sha256(1, 1000)
