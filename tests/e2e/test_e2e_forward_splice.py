# SPDX-License-Identifier: GPL-2.0-or-later
"""The zero-copy forward path (``--port-splice``, or ``"splice": true``).

A loopback client of a splicing forward reaches the guest through a socket
made inside the container's network namespace, its bytes moved by
``splice(2)``: the guest sees the connection come from its own address.
Clients from other addresses keep the stack's path and their real address.
"""

from __future__ import annotations

import pytest
from lab import (
    GUEST,
    REMOTE,
    Container,
    DataFile,
    Lab,
    fwd_tcp,
    hostfwd_command,
    tcp_server,
)

pytestmark = [pytest.mark.timeout(120), pytest.mark.usefixtures("slirpy_only")]

HOST_PORT = 18090


def test_bulk_both_ways(lab: Lab, container: Container, big_file: DataFile) -> None:
    """50 MiB each way through a spliced forward, SHA-256 checked."""
    daemon = lab.start_daemon(
        container, "--port-splice", api_socket=lab.api_socket_path()
    )
    server = tcp_server(container, f"recv,send:file:{big_file.path},shutwr")
    daemon.add_hostfwd("tcp", HOST_PORT, server.port)
    (entry,) = daemon.list_hostfwd()
    assert entry["splice"] is True
    (client,) = fwd_tcp(
        lab.host,
        [f"127.0.0.1:{HOST_PORT}"],
        f"send:file:{big_file.path},shutwr,recv",
        timeout=90,
    )
    (served,) = server.results(1, timeout=30)
    assert client["error"] is None, client
    assert served["error"] is None, served
    assert served["steps"][0]["sha256"] == big_file.sha256
    assert client["rx_sha256"] == big_file.sha256
    assert client["eof"]
    # The connection was made inside the namespace, to the guest's address.
    assert served["peer"].startswith(f"{GUEST}:")


def test_other_clients_keep_their_address(lab: Lab, container: Container) -> None:
    """A client that is not on loopback takes the stack's path."""
    daemon = lab.start_daemon(
        container, "--port-splice", api_socket=lab.api_socket_path()
    )
    server = tcp_server(container, "send:rand:5:1000,shutwr")
    daemon.add_hostfwd("tcp", HOST_PORT, server.port)
    (client,) = fwd_tcp(lab.host, [f"{REMOTE}:{HOST_PORT}"], "recv", bind=REMOTE)
    (served,) = server.results(1, timeout=30)
    assert client["error"] is None, client
    assert served["peer"].startswith(f"{REMOTE}:")


def test_api_can_opt_out(lab: Lab, container: Container) -> None:
    """``"splice": false`` keeps the stack's path even with ``--port-splice``:
    the guest sees a loopback client as the gateway."""
    daemon = lab.start_daemon(
        container, "--port-splice", api_socket=lab.api_socket_path()
    )
    server = tcp_server(container, "send:rand:6:1000,shutwr")
    command = hostfwd_command("tcp", HOST_PORT, server.port)
    command["arguments"]["splice"] = False
    assert daemon.api(command) == {"return": {"id": 1}}
    (client,) = fwd_tcp(lab.host, [f"127.0.0.1:{HOST_PORT}"], "recv")
    (served,) = server.results(1, timeout=30)
    assert client["error"] is None, client
    assert served["peer"].startswith("10.0.2.2:")


def test_splice_needs_the_option(lab: Lab, container: Container) -> None:
    """Without ``--port-splice`` there is no helper in the namespace to make
    sockets, so ``"splice": true`` is refused."""
    daemon = lab.start_daemon(container, api_socket=lab.api_socket_path())
    command = hostfwd_command("tcp", HOST_PORT, 80)
    command["arguments"]["splice"] = True
    assert daemon.api(command) == {
        "error": {"desc": "bad request: add_hostfwd: slirp_add_hostfwd failed"}
    }
