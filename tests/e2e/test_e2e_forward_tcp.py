# SPDX-License-Identifier: GPL-2.0-or-later
"""TCP port forwards: a server in the container reached from the host.

The forwards are added through the API socket; the guest server is
``tools/tcp_peer.py`` on 0.0.0.0 in the container (the forward's guest
address is the default, 10.0.2.100), the host clients ``tools/fwd_peer.py``
in the lab's host namespace.
"""

from __future__ import annotations

import json
import re

import pytest
from lab import (
    GATEWAY,
    REMOTE,
    Container,
    Daemon,
    DataFile,
    Lab,
    api_encode,
    api_request,
    fwd_tcp,
    hostfwd_command,
    rand_sha256,
    spawn_fwd_tcp,
    tcp_server,
)

pytestmark = pytest.mark.timeout(120)

HOST_PORT = 18080
PROMPT = 2.0
"""Seconds within which a connection the guest refuses must be over."""


@pytest.fixture
def api_daemon(lab: Lab, container: Container) -> Daemon:
    """The daemon under test with an API socket, ready."""
    return lab.start_daemon(container, api_socket=lab.api_socket_path())


@pytest.mark.parametrize("mtu", [1500, 65520])
def test_bulk_both_ways(
    lab: Lab, container: Container, big_file: DataFile, mtu: int
) -> None:
    """50 MiB host → guest, then 50 MiB guest → host, through one forward, at
    the default MTU and at podman's and rootlesskit's 65520."""
    daemon = lab.start_daemon(
        container, f"--mtu={mtu}", api_socket=lab.api_socket_path()
    )
    server = tcp_server(container, f"recv,send:file:{big_file.path},shutwr")
    assert daemon.add_hostfwd("tcp", HOST_PORT, server.port) == 1
    (client,) = fwd_tcp(
        lab.host,
        [f"127.0.0.1:{HOST_PORT}"],
        f"send:file:{big_file.path},shutwr,recv",
        timeout=90,
    )
    (served,) = server.results(1, timeout=30)
    assert client["error"] is None, client
    assert served["error"] is None, served
    assert served["steps"][0] == {
        "op": "recv",
        "sha256": big_file.sha256,
        "bytes": big_file.size,
    }
    assert client["rx_bytes"] == big_file.size
    assert client["rx_sha256"] == big_file.sha256
    assert client["eof"]
    assert served["peer"].startswith(f"{GATEWAY}:")


def test_guest_refuses(lab: Lab, container: Container, api_daemon: Daemon) -> None:
    """No listener behind the forward: the client's connection is accepted by
    the kernel, then ends at once with no data.

    slirp4netns closes it with a FIN (a reset if the client had sent bytes);
    slirpy resets it, so fast that ``connect()`` itself may report the reset.
    Any of these is a prompt reset or end, never a refusal or a hang.
    """
    closed_port = 9  # nothing listens in the container
    assert api_daemon.add_hostfwd("tcp", HOST_PORT, closed_port) == 1
    # Several in a row: the first connection also waits for ARP, the later
    # ones find the guest's MAC known and its RST comes back at once.
    target = f"127.0.0.1:{HOST_PORT}"
    records = fwd_tcp(lab.host, [target] * 3, "recv", timeout=PROMPT + 1)
    records += fwd_tcp(lab.host, [target], "send:rand:1:1000,recv", timeout=PROMPT + 1)
    for record in records:
        assert record.get("connect_error") in (None, "ECONNRESET"), record
        assert record.get("rx_bytes", 0) == 0, record
        assert record["error"] == "ECONNRESET" or (
            record["error"] is None and record["eof"]
        ), record
        assert record["elapsed"] < PROMPT, record


def test_remove_while_connected(
    lab: Lab, container: Container, api_daemon: Daemon, big_file: DataFile
) -> None:
    """``remove_hostfwd`` closes the listener at once; a transfer in progress
    through it runs to the end in both directions."""
    server = tcp_server(
        container, f"send:file:{big_file.path},shutwr,recv", name="bulk-server"
    )
    fwd_id = api_daemon.add_hostfwd("tcp", HOST_PORT, server.port)
    go_on = lab.dir / "go-on"
    client = spawn_fwd_tcp(
        lab.host,
        f"127.0.0.1:{HOST_PORT}",
        f"recv:{4 << 20},mark:paused,waitfile:{go_on},recv,send:rand:9:8000000,shutwr",
        timeout=90,
    )
    assert client.readline(timeout=30) == "MARK paused", client.describe()
    api_daemon.remove_hostfwd(fwd_id)
    assert api_daemon.list_hostfwd() == []
    (refused,) = fwd_tcp(lab.host, [f"127.0.0.1:{HOST_PORT}"], timeout=10)
    assert refused["connect_error"] == "ECONNREFUSED", refused
    go_on.touch()
    (record,) = client.json_lines(1, timeout=60)
    assert record["error"] is None, f"{record}\n{api_daemon.describe()}"
    assert record["rx_bytes"] == big_file.size
    assert record["rx_sha256"] == big_file.sha256
    assert record["tx_sha256"] == rand_sha256(9, 8000000)
    (served,) = server.results(1, timeout=30)
    assert served["error"] is None, served
    assert served["steps"][1] == {
        "op": "recv",
        "sha256": rand_sha256(9, 8000000),
        "bytes": 8000000,
    }


def test_ipv6_host_addr(
    slirpy_only: None, lab: Lab, container: Container, api_daemon: Daemon
) -> None:
    """``host_addr`` ``::1``: an IPv6 client reaches the IPv4 guest server, which
    sees the gateway; the forward does not listen on IPv4."""
    server = tcp_server(container, "send:rand:61:500000,shutwr,recv")
    fwd_id = api_daemon.add_hostfwd("tcp", HOST_PORT, server.port, host_addr="::1")
    (entry,) = api_daemon.list_hostfwd()
    assert (entry["id"], entry["host_addr"], entry["host_port"]) == (
        fwd_id,
        "::1",
        HOST_PORT,
    )
    (record,) = fwd_tcp(
        lab.host, [f"[::1]:{HOST_PORT}"], "recv,send:rand:62:300000,shutwr"
    )
    assert record["error"] is None, record
    assert record["local"].startswith("::1:")
    assert record["rx_sha256"] == rand_sha256(61, 500000)
    (served,) = server.results(1)
    assert served["error"] is None, served
    assert served["steps"][1]["sha256"] == rand_sha256(62, 300000)
    assert served["peer"].startswith(f"{GATEWAY}:")
    (v4,) = fwd_tcp(lab.host, [f"127.0.0.1:{HOST_PORT}"], timeout=10)
    assert v4["connect_error"] == "ECONNREFUSED", v4


def test_host_port_zero(
    slirpy_only: None, lab: Lab, container: Container, api_daemon: Daemon
) -> None:
    """``host_port`` 0: the reply carries the port picked, which forwards."""
    assert api_daemon.api_socket is not None
    server = tcp_server(container, "send:rand:71:200000,shutwr")
    reply = api_request(
        api_daemon.api_socket,
        api_encode(hostfwd_command("tcp", 0, server.port)),
        read_to_eof=False,
    )
    match = re.fullmatch(rb'\{"return":\{"id":1,"host_port":(\d+)\}\}', reply)
    assert match, reply
    port = int(match[1])
    assert 0 < port < 65536
    assert [e["host_port"] for e in api_daemon.list_hostfwd()] == [port]
    (record,) = fwd_tcp(lab.host, [f"127.0.0.1:{port}"])
    assert record["error"] is None, record
    assert record["rx_sha256"] == rand_sha256(71, 200000)


def test_guest_addr_explicit(
    lab: Lab, container: Container, api_daemon: Daemon
) -> None:
    """A forward with the guest address spelt out (rootlesskit's way) and one
    with ``host_addr`` 127.0.0.1 behave like the defaults."""
    server = tcp_server(container, "send:rand:81:100000,shutwr", count=2)
    api_daemon.add_hostfwd("tcp", HOST_PORT, server.port, guest_addr="10.0.2.100")
    api_daemon.add_hostfwd("tcp", HOST_PORT + 1, server.port, host_addr="127.0.0.1")
    entries = api_daemon.list_hostfwd()
    assert [(e["host_addr"], e["guest_addr"]) for e in entries] == [
        ("0.0.0.0", "10.0.2.100"),
        ("127.0.0.1", "10.0.2.100"),
    ], json.dumps(entries)
    records = fwd_tcp(
        lab.host, [f"127.0.0.1:{HOST_PORT}", f"127.0.0.1:{HOST_PORT + 1}"]
    )
    for record in records:
        assert record["error"] is None, record
        assert record["rx_sha256"] == rand_sha256(81, 100000)


def test_source_address(lab: Lab, container: Container, api_daemon: Daemon) -> None:
    """The guest sees a loopback client as the gateway 10.0.2.2, and a client
    on 198.18.0.2 (another address of the host namespace) as itself."""
    server = tcp_server(container, "recv,send:rand:91:10000,shutwr", count=2)
    api_daemon.add_hostfwd("tcp", HOST_PORT, server.port)
    (loopback,) = fwd_tcp(
        lab.host, [f"127.0.0.1:{HOST_PORT}"], "send:rand:92:1000,shutwr,recv"
    )
    (remote,) = fwd_tcp(
        lab.host,
        [f"{REMOTE}:{HOST_PORT}"],
        "send:rand:93:1000,shutwr,recv",
        bind=REMOTE,
    )
    served = server.results(2)
    for record in (loopback, remote, *served):
        assert record["error"] is None, record
    assert loopback["rx_sha256"] == remote["rx_sha256"] == rand_sha256(91, 10000)
    assert remote["local"].startswith(f"{REMOTE}:")
    peers = {s["steps"][0]["sha256"]: s["peer"] for s in served}
    assert peers[rand_sha256(92, 1000)].startswith(f"{GATEWAY}:"), served
    assert peers[rand_sha256(93, 1000)] == remote["local"], served
