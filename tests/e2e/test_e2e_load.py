# SPDX-License-Identifier: GPL-2.0-or-later
"""Load and soak: many connections at once, then minutes of mixed traffic,
after which the daemon's descriptors, flows and memory are back to baseline.

* 1 000 TCP connections from the guest held open at the same time through
  the daemon to an echo server on the host (``tools/load_peer.py``, one
  ``selectors`` loop on each side), each with its own data checked byte for
  byte; meanwhile the daemon lists them all; afterwards its descriptors and
  flows return to where they were and its memory to near where it was.
* A soak of ``SLIRPY_SOAK_SECONDS`` (default 60; 600 for the ten-minute run)
  of mixed traffic: guest TCP connections of assorted sizes and UDP echoes to
  the host, DNS-path UDP with a new source port every few datagrams (a new
  flow each time), and, through ``add_hostfwd`` port forwards, host clients
  doing the same to echo servers in the guest.  Every exchange is checked;
  afterwards TCP flows are gone, DNS flows have expired, only the fixed UDP
  sockets' flows remain, and descriptors and memory are back near baseline.
"""

from __future__ import annotations

import hashlib
import os
import time

import pytest
from lab import (
    GATEWAY,
    Container,
    Impl,
    Lab,
    fd_count,
    first_loop_only,
    flows,
    fwd_tcp,
    rand_sha256,
    rss,
    tcp_transfer,
    wait_until,
)

CONNECTIONS = 1000
SOAK_SECONDS = float(os.environ.get("SLIRPY_SOAK_SECONDS", "60"))
MIB = 1024 * 1024
SOAK_RSS_SLACK = 32 * MIB
"""How far above its baseline the daemon's memory may stay after the soak; it
does not grow with the soak's length.  Python-level memory stays at about
10 MiB throughout (tracemalloc); under uvloop the C heap's fragmentation
climbs for some twenty minutes to about +22 MiB and stays there (asyncio:
about +12 MiB at once)."""
HIGH_WATER = 40 * MIB
"""What 1 000 connections at once may leave behind (about 25 MiB is measured:
Python's allocator keeps what it once held)."""
ROUNDS = 6
"""Rounds of 1 000 connections in the leak check."""
LEAK_SPREAD = 16 * MIB
"""How far the last round's RSS may lie above the first's."""


def warm_up(lab: Lab, container: Container) -> None:
    """One connection first, so the baseline includes what the first use
    allocates once (imports, buffers)."""
    transfer = tcp_transfer(
        lab,
        container,
        server_actions="echo",
        client_actions="send:rand:5:300000,shutwr,recv",
        timeout=20,
    )
    assert transfer.step("client", "recv")["sha256"] == rand_sha256(5, 300000)


@pytest.mark.timeout(150)
def test_thousand_concurrent_connections(
    lab: Lab, container: Container, impl: Impl
) -> None:
    first_loop_only(impl)
    daemon = lab.start_daemon(container, api_socket=lab.api_socket_path())
    server = lab.host.start_server(
        "load_peer", "echo-server", "--listen=127.0.0.1:0", "--timeout=100"
    )
    warm_up(lab, container)
    time.sleep(2.5)  # the warm-up connection's TIME-WAIT
    rss0, fds0, flows0 = rss(daemon), fd_count(daemon), len(flows(daemon, impl))
    one_round = (
        "load_peer",
        "clients",
        f"--connect={GATEWAY}:{server.port}",
        f"--count={CONNECTIONS}",
        "--bytes=30000",
        "--hold=1.5",
        "--timeout=90",
    )
    clients = container.spawn_python(*one_round)
    line = clients.readline(60)
    assert line == f"HOLDING {CONNECTIONS}", line
    held_fds = fd_count(daemon)
    assert held_fds - fds0 >= CONNECTIONS, (fds0, held_fds)
    if impl.is_slirpy:
        live = [f for f in flows(daemon, impl) if f["state"] == "ESTABLISHED"]
        assert len(live) >= CONNECTIONS
    (summary,) = clients.json_lines(1, 90)
    assert summary["ok"] == CONNECTIONS, summary
    assert summary["failed"] == 0, summary
    peak = rss(daemon)
    wait_until(lambda: fd_count(daemon) <= fds0, 20, "descriptors back to baseline")
    wait_until(lambda: len(flows(daemon, impl)) <= flows0, 20, "flows back to baseline")
    # Python and malloc keep memory they once needed, and how much of it
    # stays with the process depends on where freed blocks lie: from round to
    # round the RSS here has moved by up to ~12 MiB either way and settled
    # (e.g. 39, 51, 39, 50, 50, 51 MiB), with the fixed thresholds and with
    # glibc's dynamic ones alike. A leak instead grows every round, so: the
    # last of six rounds within LEAK_SPREAD of the first (a leak of 4 KiB per
    # connection would be 20 MiB by then), and all of them under HIGH_WATER.
    first = rss(daemon)
    assert first - rss0 < HIGH_WATER, (rss0, peak, first)
    after = [first]
    for _ in range(ROUNDS - 1):
        again = container.python(*one_round, timeout=100)
        assert again.json_lines()[0]["ok"] == CONNECTIONS, again.describe()
        wait_until(lambda: fd_count(daemon) <= fds0, 20, "descriptors back again")
        after.append(rss(daemon))
    series = [round(x / MIB, 1) for x in [rss0, *after]]
    assert after[-1] - first < LEAK_SPREAD, series
    assert max(after) - rss0 < HIGH_WATER, series
    warm_up(lab, container)


@pytest.mark.timeout(SOAK_SECONDS + 150)
def test_soak_mixed_traffic_returns_to_baseline(
    lab: Lab, container: Container, impl: Impl
) -> None:
    first_loop_only(impl)
    daemon = lab.start_daemon(container, api_socket=lab.api_socket_path())
    # Host side: TCP and UDP echo on loopback, and a UDP echo on port 53 of
    # loopback, which is the lab's name server (the daemon's DNS upstream).
    host_echo = lab.host.start_server(
        "load_peer", "echo-server", "--listen=127.0.0.1:0", "--udp",
        f"--timeout={SOAK_SECONDS + 100}", name="host-echo",
    )  # fmt: skip
    dns_echo = lab.host.start_server(
        "load_peer", "echo-server", "--listen=127.0.0.1:53", "--udp",
        f"--timeout={SOAK_SECONDS + 100}", name="dns-echo",
    )  # fmt: skip
    assert dns_echo.port == 53
    # Guest side: an echo server behind TCP and UDP port forwards.
    guest_echo = container.start_server(
        "load_peer", "echo-server", "--listen=0.0.0.0:0", "--udp",
        f"--timeout={SOAK_SECONDS + 100}", name="guest-echo",
    )  # fmt: skip
    tcp_fwd = daemon.add_hostfwd("tcp", 0, guest_echo.port, host_addr="127.0.0.1")
    udp_fwd = daemon.add_hostfwd("udp", 0, guest_echo.port, host_addr="127.0.0.1")
    ports = {e["id"]: e["host_port"] for e in daemon.list_hostfwd()}
    # Each soak connection leaves its client's port in TIME-WAIT for 60 s (the
    # client sends the first FIN): the default 28 000 ports would cap the
    # soak at ~470 connections a second per direction, which slirpy exceeds.
    for ns in (container, lab.host):
        ns.run(["sysctl", "-qw", "net.ipv4.ip_local_port_range=1024 65535"])
    warm_up(lab, container)
    time.sleep(2.5)
    rss0, fds0, flows0 = rss(daemon), fd_count(daemon), len(flows(daemon, impl))
    seconds = f"--seconds={SOAK_SECONDS}"
    outbound = container.spawn_python(
        "load_peer", "soak", f"--tcp={GATEWAY}:{host_echo.port}",
        f"--udp={GATEWAY}:{host_echo.port}", "--udp-churn=10.0.2.3:53",
        "--churn=20", "--workers=3", seconds, name="soak-out",
    )  # fmt: skip
    inbound = lab.host.spawn_python(
        "load_peer", "soak", f"--tcp=127.0.0.1:{ports[tcp_fwd]}",
        f"--udp=127.0.0.1:{ports[udp_fwd]}", "--workers=2", seconds,
        name="soak-in",
    )  # fmt: skip
    samples = []
    deadline = time.monotonic() + SOAK_SECONDS
    while time.monotonic() < deadline:
        time.sleep(min(5.0, max(0.1, deadline - time.monotonic())))
        assert daemon.proc.alive(), daemon.describe()
        samples.append(rss(daemon))
    results = {
        "out": outbound.json_lines(1, 60)[0],
        "in": inbound.json_lines(1, 60)[0],
    }
    for name, result in results.items():
        assert result["tcp"] > 10, (name, result)
        assert result["udp"] > 100, (name, result)
        # TCP must never fail; a UDP echo may, rarely, be lost under load.
        assert not [e for e in result["first_errors"] if e.startswith("tcp")], (
            name,
            result,
        )
        assert result["errors"] <= result["udp"] // 100, (name, result)
    # Back to baseline: TCP flows leave after TIME-WAIT, DNS flows after their
    # 10 s; the two fixed UDP sockets keep one flow each (240 s idle timeout).
    if impl.is_slirpy:
        wait_until(
            lambda: len(flows(daemon, impl)) <= flows0 + 2, 30, "flows back to baseline"
        )
        assert not [f for f in flows(daemon, impl) if f["proto"] == "tcp"]
    wait_until(lambda: fd_count(daemon) <= fds0 + 2, 30, "descriptors back")
    after = rss(daemon)
    assert after - rss0 < SOAK_RSS_SLACK, (rss0, samples, after)
    assert max(samples) - rss0 < SOAK_RSS_SLACK + 8 * MIB, (rss0, samples)
    warm_up(lab, container)


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    "isn",
    [
        pytest.param(1 << 30, id="isn-2**30"),
        pytest.param((1 << 31) - 1000, id="isn-2**31-1000"),
        pytest.param((1 << 32) - 1000, id="isn-2**32-1000"),
    ],
)
def test_forwarded_connection_carries_the_guests_data_whatever_its_isn(
    lab: Lab, container: Container, impl: Impl, isn: int
) -> None:
    """The guest end of a port forward is played by ``raw_frames.py answer``
    on an address the container's kernel does not own, with a chosen initial
    sequence number: whatever it is, slirpy opens its receive window and the
    guest's data reaches the client.  (With the window's edge once computed
    from 0 instead of the guest's ISN, one forwarded connection in 4096 got
    a zero window for ever; the soak met it every few thousand
    connections.)"""
    daemon = lab.start_daemon(container, api_socket=lab.api_socket_path())
    fwd = daemon.add_hostfwd(
        "tcp", 0, 8080, host_addr="127.0.0.1", guest_addr="10.0.2.99"
    )
    host_port = {e["id"]: e["host_port"] for e in daemon.list_hostfwd()}[fwd]
    text = "hello from the guest"
    guest = container.spawn_python(
        "raw_frames", "answer", "--ip=10.0.2.99", "--port=8080", f"--isn={isn}",
        f"--data={text}", "--timeout=3", name="answer",
    )  # fmt: skip
    assert guest.readline(10) == "READY"
    (client,) = fwd_tcp(lab.host, [f"127.0.0.1:{host_port}"], "recv", timeout=3)
    (answered,) = guest.json_lines(1, 15)
    assert answered["syn"], answered
    assert client["rx_sha256"] == hashlib.sha256(text.encode()).hexdigest(), (
        client,
        answered,
    )
    assert answered.get("fin_acked"), answered
    assert min(answered["windows"]) > 0, answered
