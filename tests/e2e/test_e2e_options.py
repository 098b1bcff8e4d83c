# SPDX-License-Identifier: GPL-2.0-or-later
"""Options that change what the guest or the host sees: ``--disable-dns``,
``--macaddress``, ``--outbound-addr``."""

from __future__ import annotations

import json
import time

import pytest
from lab import (
    DNS,
    GATEWAY,
    REMOTE,
    Container,
    Lab,
    Server,
    tcp_connect_error,
    tcp_transfer,
    udp_echo,
)

pytestmark = pytest.mark.timeout(90)


@pytest.fixture
def resolver(lab: Lab) -> Server:
    """A resolver on the host's 127.0.0.1:53, named by the lab's resolv.conf."""
    return lab.host.start_server("dns_peer", "--listen=127.0.0.1:53", "--timeout=80")


def _query(container: Container) -> int:
    result = container.python(
        "dns_peer",
        "--query=disable-dns.e2e.test",
        f"--server={DNS}:53",
        "--timeout=3",
        timeout=30,
    )
    return result.returncode


def test_disable_dns(lab: Lab, container: Container, resolver: Server) -> None:
    """With ``--disable-dns`` the DNS address is an ordinary (unreachable)
    address: a query to it gets no answer, although the host resolver that
    answers it without the option is running."""
    lab.start_daemon(container, "--disable-dns")
    assert _query(container) != 0


def test_dns_works_without_disable_dns(
    lab: Lab, container: Container, resolver: Server
) -> None:
    """The same query succeeds without the option (the control case)."""
    lab.start_daemon(container)
    assert _query(container) == 0


def test_macaddress(lab: Lab, container: Container) -> None:
    """``--macaddress`` with ``-c`` sets the TAP's MAC address."""
    lab.start_daemon(container, "--macaddress", "0e:d4:18:d9:38:fb")
    result = container.run(["ip", "-json", "link", "show", "dev", "tap0"])
    (link,) = json.loads(result.stdout)
    assert link["address"] == "0e:d4:18:d9:38:fb"


OUTBOUND = "198.18.0.3"
"""A second address of the host namespace's veth0, added by the test."""


@pytest.mark.parametrize(
    ("option", "source"),
    [(OUTBOUND, OUTBOUND), ("veth0", REMOTE)],
    ids=["address", "interface"],
)
def test_outbound_addr(
    lab: Lab, container: Container, option: str, source: str
) -> None:
    """Every outbound host socket (TCP, UDP) leaves from ``--outbound-addr``."""
    lab.host.run(["ip", "addr", "add", f"{OUTBOUND}/24", "dev", "veth0"])
    lab.start_daemon(container, f"--outbound-addr={option}")
    transfer = tcp_transfer(
        lab,
        container,
        server_actions="send:rand:3:1000,shutwr",
        client_actions="recv",
        bind=REMOTE,
        connect=REMOTE,
    )
    assert transfer.server["peer"].split(":")[0] == source
    records = udp_echo(lab, container, bind=REMOTE, connect=REMOTE, count=3)
    assert {r["peer"].split(":")[0] for r in records} == {source}


def established(container: Container, port: int) -> int:
    """The container's established TCP connections to ``port``."""
    result = container.run(
        ["ss", "-Htn", "state", "established", "dport", "=", f":{port}"], timeout=10
    )
    return len(result.stdout.splitlines())


def test_max_flows(lab: Lab, container: Container, slirpy_only: None) -> None:
    """``--max-flows``: connections beyond the bound are reset at once; the
    ones tracked go on, and a slot frees when one closes."""
    lab.start_daemon(container, "--max-flows=2")
    server = lab.host.start_server(
        "tcp_peer",
        "--listen=127.0.0.1:0",
        "--actions=recv",
        "--count=20",
        "--timeout=40",
    )
    holders = [
        container.spawn_python(
            "tcp_peer",
            f"--connect={GATEWAY}:{server.port}",
            "--actions=send:rand:1:10,recv",
            "--timeout=30",
            name=f"holder-{i}",
        )
        for i in range(2)
    ]
    try:
        # Both holders connected first: a probe that got in before them would
        # use up the server's connections and be refused by the host instead.
        deadline = time.monotonic() + 30
        while established(container, server.port) < 2:
            assert time.monotonic() < deadline, "the holders did not connect"
            time.sleep(0.2)
        deadline = time.monotonic() + 10
        error = ""
        while time.monotonic() < deadline:
            error = tcp_connect_error(lab, container, GATEWAY, server.port)
            if error:
                break
            time.sleep(0.2)
        assert error == "ECONNREFUSED"
    finally:
        for holder in holders:
            holder.kill()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if tcp_connect_error(lab, container, GATEWAY, server.port) == "":
            break
        time.sleep(0.5)
    else:
        pytest.fail("no connection got through after the holders closed")
