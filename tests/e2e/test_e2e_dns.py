# SPDX-License-Identifier: GPL-2.0-or-later
"""DNS through the daemon: 10.0.2.3:53 reaches the host's resolver.

Every lab's host namespace has a private mount namespace whose
``/etc/resolv.conf`` names ``127.0.0.1``; the daemon runs there, so the test
resolver (``tools/dns_peer.py`` on host 127.0.0.1:53, UDP and TCP) is what
the guest's queries to 10.0.2.3 must reach.
"""

from __future__ import annotations

import pytest
from lab import DNS, GATEWAY, Container, Daemon, Lab, Server, tcp_connect_error

pytestmark = pytest.mark.timeout(60)

UDP_ANSWER = "192.0.2.53"
TCP_ANSWER = "192.0.2.54"


@pytest.fixture
def resolver(lab: Lab) -> Server:
    """The test resolver on the host namespace's 127.0.0.1:53."""
    return lab.host.start_server("dns_peer", "--listen=127.0.0.1:53", "--timeout=50")


@pytest.mark.parametrize(
    ("transport", "answer"), [("udp", UDP_ANSWER), ("tcp", TCP_ANSWER)]
)
def test_dns_query(
    lab: Lab,
    container: Container,
    daemon: Daemon,
    resolver,
    transport: str,
    answer: str,
) -> None:
    """A query to 10.0.2.3:53 is answered by the host's resolver."""
    name = f"{transport}-check.e2e.test"
    args = [f"--query={name}", f"--server={DNS}:53", "--timeout=20"]
    if transport == "tcp":
        args.append("--tcp")
    result = container.python("dns_peer", *args, timeout=30)
    assert result.returncode == 0, result.describe()
    (reply,) = result.json_lines()
    assert reply["addresses"] == [answer]
    (handled,) = resolver.results(1, timeout=10)
    assert handled["transport"] == transport
    assert handled["name"] == name


def test_dns_address_other_port_unreachable(
    lab: Lab, container: Container, daemon: Daemon
) -> None:
    """Only port 53 of 10.0.2.3 is mapped; TCP to another port fails.

    The listener on host 127.0.0.1:P is reachable as 10.0.2.2:P (checked
    first), but not as 10.0.2.3:P.
    """
    server = lab.host.start_server(
        "tcp_peer", "--listen=127.0.0.1:0", "--actions=", "--count=1", "--timeout=30"
    )
    assert tcp_connect_error(lab, container, GATEWAY, server.port) == ""
    assert tcp_connect_error(lab, container, DNS, server.port) == "ENETUNREACH"
