# SPDX-License-Identifier: GPL-2.0-or-later
"""IPv6 with ``-6``: SLAAC from the router's advertisements, fd00::2 as the
host's ``::1``, fd00::3:53 as the host's IPv6 resolver, other hosts as
themselves, ping.

The container turns duplicate address detection off first, as podman does
around start-up, so its SLAAC address is usable at once.
"""

from __future__ import annotations

import ipaddress
import json
import time

import pytest
from lab import (
    Container,
    Daemon,
    Lab,
    LabError,
    Server,
    fwd_tcp,
    rand_sha256,
    tcp_connect_error,
    tcp_server,
    tcp_transfer,
    udp_echo,
)

pytestmark = pytest.mark.timeout(90)

HOST6 = "fd00::2"
DNS6 = "fd00::3"
REMOTE6 = "2001:db8::2"
"""An IPv6 address of the host namespace's veth0 (added by the tests)."""


def _global_address(container: Container, timeout: float = 15.0) -> str:
    """Wait for the container's SLAAC address in fd00::/64."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = container.run(["ip", "-6", "-json", "addr", "show", "dev", "tap0"])
        for link in json.loads(result.stdout):
            for info in link.get("addr_info", []):
                addr = ipaddress.IPv6Address(info["local"])
                if addr in ipaddress.IPv6Network("fd00::/64"):
                    return str(addr)
        time.sleep(0.2)
    raise LabError("no SLAAC address in fd00::/64")


def _start(lab: Lab, container: Container, *options: str) -> Daemon:
    container.run(["sysctl", "-qw", "net.ipv6.conf.default.accept_dad=0"])
    container.run(["sysctl", "-qw", "net.ipv6.conf.all.accept_dad=0"])
    daemon = lab.start_daemon(container, "--enable-ipv6", *options)
    _global_address(container)
    return daemon


@pytest.fixture
def daemon6(lab: Lab, container: Container) -> Daemon:
    return _start(lab, container)


def test_slaac_and_default_route(container: Container, daemon6: Daemon) -> None:
    """The router's advertisement gives the guest an fd00:: address and a
    default route via fe80::2."""
    result = container.run(["ip", "-6", "-json", "route", "show", "default"])
    (route,) = json.loads(result.stdout)
    assert route["gateway"] == "fe80::2"
    assert route["dev"] == "tap0"


def test_tcp_to_host_loopback(lab: Lab, container: Container, daemon6: Daemon) -> None:
    """[fd00::2]:P is the host's [::1]:P; 4 MB each way, SHA-256 checked."""
    size = 4 << 20
    down = tcp_transfer(
        lab,
        container,
        server_actions=f"send:rand:61:{size},shutwr,recv",
        client_actions=f"recv,send:rand:62:{size},shutwr",
        bind="::1",
        connect=f"[{HOST6}]",
    )
    assert down.step("client", "recv")["sha256"] == rand_sha256(61, size)
    assert down.step("server", "recv")["sha256"] == rand_sha256(62, size)
    assert down.server["peer"].startswith("::1:")


def test_udp_to_host_loopback(lab: Lab, container: Container, daemon6: Daemon) -> None:
    udp_echo(lab, container, bind="[::1]", connect=f"[{HOST6}]", count=10)


def test_remote_host(lab: Lab, container: Container, daemon6: Daemon) -> None:
    """Any other IPv6 address is reached from the host as itself."""
    lab.host.run(["ip", "-6", "addr", "add", f"{REMOTE6}/64", "dev", "veth0", "nodad"])
    transfer = tcp_transfer(
        lab,
        container,
        server_actions="send:rand:63:100000,shutwr",
        client_actions="recv",
        bind=REMOTE6,
        connect=f"[{REMOTE6}]",
    )
    assert transfer.step("client", "recv")["sha256"] == rand_sha256(63, 100000)
    udp_echo(lab, container, bind=f"[{REMOTE6}]", connect=f"[{REMOTE6}]", count=5)


def test_connection_refused(lab: Lab, container: Container, daemon6: Daemon) -> None:
    port = 1  # nothing listens there on the host's ::1
    assert tcp_connect_error(lab, container, f"[{HOST6}]", port) == "ECONNREFUSED"


def test_dns6(lab: Lab, container: Container) -> None:
    """fd00::3:53 reaches the first IPv6 nameserver of the host's resolv.conf."""
    (lab.dir / "resolv.conf").write_text("nameserver 127.0.0.1\nnameserver ::1\n")
    resolver: Server = lab.host.start_server(
        "dns_peer", "--listen=[::1]:53", "--timeout=60"
    )
    _start(lab, container)
    result = container.python(
        "dns_peer", "--query=v6.e2e.test", f"--server=[{DNS6}]:53", "--timeout=20"
    )
    assert result.returncode == 0, result.describe()
    (reply,) = result.json_lines()
    assert reply["addresses"]
    (handled,) = resolver.results(1, timeout=10)
    assert handled["name"] == "v6.e2e.test"


def test_ping6(lab: Lab, container: Container, daemon6: Daemon) -> None:
    """The router answers ping itself; other hosts through host ping sockets."""
    result = container.run(["ping", "-6", "-c", "2", "-W", "2", HOST6], check=False)
    assert result.returncode == 0, result.describe()


def test_ping6_remote(
    lab: Lab, container: Container, daemon6: Daemon, slirpy_only: None
) -> None:
    """libslirp up to 4.7 forwards no ICMPv6 echo; slirpy uses a ping socket."""
    lab.host.run(["ip", "-6", "addr", "add", f"{REMOTE6}/64", "dev", "veth0", "nodad"])
    lab.host.sh("echo '0 0' > /proc/sys/net/ipv4/ping_group_range")
    result = container.run(["ping", "-6", "-c", "2", "-W", "2", REMOTE6], check=False)
    assert result.returncode == 0, result.describe()


def test_disable_host_loopback6(lab: Lab, container: Container) -> None:
    """With ``--disable-host-loopback`` fd00::2 is unreachable too."""
    server = lab.host.start_server(
        "tcp_peer", "--listen=::1:0", "--actions=", "--count=1", "--timeout=30"
    )
    _start(lab, container, "--disable-host-loopback")
    assert tcp_connect_error(lab, container, f"[{HOST6}]", server.port) == (
        "ENETUNREACH"
    )


def test_forward_to_ipv6_guest(
    lab: Lab, container: Container, slirpy_only: None
) -> None:
    """A forward to the guest's IPv6 address: an IPv6 client on the host's
    loopback reaches it and appears as fd00::2 (slirpy's API takes an IPv6
    ``guest_addr``; slirp4netns's takes none)."""
    container.run(["sysctl", "-qw", "net.ipv6.conf.default.accept_dad=0"])
    daemon = lab.start_daemon(
        container, "--enable-ipv6", api_socket=lab.api_socket_path()
    )
    guest6 = _global_address(container)
    server = tcp_server(container, "send:rand:64:200000,shutwr", bind="::")
    fwd_id = daemon.add_hostfwd(
        "tcp", 18086, server.port, host_addr="::1", guest_addr=guest6
    )
    assert fwd_id == 1
    (client,) = fwd_tcp(lab.host, ["[::1]:18086"], "recv")
    (served,) = server.results(1, timeout=30)
    assert client["error"] is None, client
    assert client["rx_sha256"] == rand_sha256(64, 200000)
    assert served["peer"].startswith(f"{HOST6}:")


def test_outbound_addr6(lab: Lab, container: Container) -> None:
    """IPv6 host sockets leave from ``--outbound-addr6``."""
    lab.host.run(["ip", "-6", "addr", "add", f"{REMOTE6}/64", "dev", "veth0", "nodad"])
    lab.host.run(["ip", "-6", "addr", "add", "2001:db8::3/64", "dev", "veth0", "nodad"])
    _start(lab, container, "--outbound-addr6=2001:db8::3")
    transfer = tcp_transfer(
        lab,
        container,
        server_actions="send:rand:65:1000,shutwr",
        client_actions="recv",
        bind=REMOTE6,
        connect=f"[{REMOTE6}]",
    )
    assert transfer.server["peer"].startswith("2001:db8::3:")
