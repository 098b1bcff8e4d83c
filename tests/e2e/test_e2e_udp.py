# SPDX-License-Identifier: GPL-2.0-or-later
"""UDP through the daemon: echo via the gateway to the host's loopback."""

from __future__ import annotations

import pytest
from lab import GATEWAY, PYTHON, Container, Daemon, Lab, udp_echo

pytestmark = pytest.mark.timeout(60)


def test_udp_echo_via_gateway(lab: Lab, container: Container, daemon: Daemon) -> None:
    """Datagrams to 10.0.2.2:P reach host 127.0.0.1:P and come back intact."""
    seen = udp_echo(lab, container, bind="127.0.0.1", connect=GATEWAY, count=30)
    # The host socket the daemon sends from is on the host's loopback.
    assert all(s["peer"].startswith("127.0.0.1:") for s in seen)
    assert len({s["peer"] for s in seen}) == 1


def test_icmp_error_reaches_the_guest(
    lab: Lab, container: Container, daemon: Daemon
) -> None:
    """A datagram to a closed host port: the host's ICMP port unreachable is
    relayed, so the guest's connected UDP socket sees ECONNREFUSED."""
    code = (
        "import socket\n"
        "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
        f"s.connect(('{GATEWAY}', 9))\n"
        "s.settimeout(5)\n"
        "s.send(b'anyone?')\n"
        "try:\n"
        "    s.recv(100)\n"
        "    print('ANSWER')\n"
        "except ConnectionRefusedError:\n"
        "    print('REFUSED')\n"
        "except TimeoutError:\n"
        "    print('TIMEOUT')\n"
    )
    result = container.run([PYTHON, "-c", code], timeout=20)
    assert result.stdout.strip() == "REFUSED", result.describe()


def test_a_flow_keeps_working_after_icmp_errors(
    lab: Lab, container: Container, daemon: Daemon
) -> None:
    """One guest socket sends to a closed host port, then to a live one:
    first with a pause between (the error is read from the flow's host socket
    before the next send), then straight after (the kernel reports the error
    on the next send instead). Both times the echo must come back: a real
    network would deliver the second datagram, and a socket error must not
    leave the flow deaf."""
    server = lab.host.start_server(
        "udp_peer", "--listen=127.0.0.1:0", "--count=50", "--timeout=30"
    )
    code = (
        "import socket, time\n"
        "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
        "s.settimeout(2)\n"
        "for pause in (0.3, 0):\n"
        f"    s.sendto(b'anyone?', ('{GATEWAY}', 9))\n"
        "    time.sleep(pause)\n"
        f"    s.sendto(b'echo', ('{GATEWAY}', {server.port}))\n"
        "    try:\n"
        "        print(s.recvfrom(100)[0].decode())\n"
        "    except TimeoutError:\n"
        "        print('TIMEOUT')\n"
    )
    result = container.run([PYTHON, "-c", code], timeout=20)
    assert result.stdout.split() == ["echo", "echo"], result.describe()
