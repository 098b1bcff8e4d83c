# SPDX-License-Identifier: GPL-2.0-or-later
"""Faults around the daemon: resets, timeouts, a vanishing namespace, stopped
peers, and a lossy, reordering link between the stack and the guest.

* A host server that resets mid-transfer: the guest's read fails with
  ``ECONNRESET``.  A guest that resets mid-transfer: the host server sees a
  reset (or EOF).  Either way the flow and its descriptor are gone after.
* A connect to an address whose next hop never answers (the lab's default
  route): the guest's ``connect`` fails within the daemon's bound (30 s, not
  the guest kernel's two minutes), and other connections are served
  meanwhile.
* The container's processes are killed, its namespace goes: the daemon keeps
  running idle, as slirp4netns does, and exits when the exit fd hangs up.
* ``SIGSTOP`` then ``SIGCONT`` of the host sender or of the guest reader in
  the middle of a transfer: it resumes and completes, SHA-256 intact, and the
  daemon's memory stays bounded while it waits.
* A lossy, reordering link, as ``tc qdisc add dev tap0 root netem loss 1%
  delay 1ms reorder 5%`` would make it (the lab's kernel has no
  ``sch_netem``): 1 % of the packets dropped each way between the guest's
  kernel and the daemon (nftables ``numgen random`` rules in the container),
  5 % of the guest's packets held back 1 ms (``tools/reorder_queue.py``
  behind an ``NFQUEUE`` rule), guest segments cut to one MSS
  (``gso_max_segs 1``) so that both hit single segments:
  ``SLIRPY_LOSSY_BYTES`` (default 200 MB) each way, SHA-256 checked;
  ``SLIRPY_LOSSY_BYTES=1000000000`` is the full 1 GB run.  And reordering
  alone, which must not slow an upload down.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import time
from pathlib import Path
from typing import Any

import pytest
from lab import (
    GATEWAY,
    Container,
    Daemon,
    Impl,
    Lab,
    fd_count,
    first_loop_only,
    rand_sha256,
    rss,
    tcp_transfer,
    wait_until,
)

pytestmark = pytest.mark.timeout(180)

LOSSY_BYTES = int(os.environ.get("SLIRPY_LOSSY_BYTES", "200000000"))
LOSS_PER_MILLE = 10
BLACKHOLED = "203.0.113.1"
"""Routed through the lab's default gateway, a neighbour nobody answers."""
MIB = 1024 * 1024
RESET_AFTER = 50_000_000
"""Bytes a peer hands its kernel before it resets: more than the buffers on
the way hold, so the reset always lands mid-transfer."""


# ----------------------------------------------------------------- helpers


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tcp_flows(daemon: Daemon, impl: Impl) -> list[dict[str, Any]] | None:
    if not impl.is_slirpy:
        return None
    flows = daemon.api({"execute": "list_flows"})["return"]["flows"]
    return [f for f in flows if f["proto"] == "tcp"]


def settle(daemon: Daemon, impl: Impl, fds0: int) -> None:
    """The daemon is back to no TCP flow and its baseline descriptors."""
    if impl.is_slirpy:
        wait_until(lambda: not tcp_flows(daemon, impl), 15, "no TCP flow left")
    wait_until(lambda: fd_count(daemon) <= fds0, 15, "descriptors back")


def one_json(proc: Any, timeout: float) -> dict[str, Any]:
    (record,) = proc.json_lines(1, timeout)
    return dict(record)


def quick_transfer(lab: Lab, container: Container) -> None:
    transfer = tcp_transfer(
        lab,
        container,
        server_actions="echo",
        client_actions="send:rand:4:100000,shutwr,recv",
        timeout=20,
    )
    assert transfer.step("client", "recv")["sha256"] == rand_sha256(4, 100000)


# ------------------------------------------------------------------ resets


def test_host_server_reset_mid_transfer(
    lab: Lab, container: Container, impl: Impl
) -> None:
    daemon = lab.start_daemon(container, api_socket=lab.api_socket_path())
    fds0 = fd_count(daemon)
    server = lab.host.start_server(
        "fault_peer",
        "server",
        "--listen=127.0.0.1:0",
        f"--then=send-reset:{RESET_AFTER}",
        "--pause=0",
    )
    # The guest reads at 200 MB/s, slower than the server sends, so the
    # server's socket still holds data when it resets: mid-transfer.
    client = container.python(
        "fault_peer",
        "client",
        f"--connect={GATEWAY}:{server.port}",
        "--then=recv",
        "--recv-rate=200",
        "--timeout=20",
        timeout=30,
    )
    (record,) = client.json_lines()
    assert record.get("connect_error") is None, record
    assert record["end"] == "ECONNRESET", record
    assert record["received"] < RESET_AFTER, record
    # What did arrive is the stream's exact beginning.
    sent = random.Random(RESET_AFTER).randbytes(RESET_AFTER)
    assert hashlib.sha256(sent[: record["received"]]).hexdigest() == record["sha256"]
    assert one_json(server.proc, 10)["end"] == "sent"
    settle(daemon, impl, fds0)
    quick_transfer(lab, container)


def test_guest_reset_mid_transfer(lab: Lab, container: Container, impl: Impl) -> None:
    daemon = lab.start_daemon(container, api_socket=lab.api_socket_path())
    fds0 = fd_count(daemon)
    server = lab.host.start_server(
        "fault_peer", "server", "--listen=127.0.0.1:0", "--then=recv", "--timeout=20"
    )
    client = container.python(
        "fault_peer",
        "client",
        f"--connect={GATEWAY}:{server.port}",
        f"--then=send-reset:{RESET_AFTER}",
        "--pause=0",
        timeout=30,
    )
    (sent,) = client.json_lines()
    assert sent["end"] == "sent", sent
    served = one_json(server.proc, 20)
    assert served["end"] in ("ECONNRESET", "EOF"), served
    assert served["received"] < RESET_AFTER, served
    settle(daemon, impl, fds0)
    quick_transfer(lab, container)


# --------------------------------------------------------- connect timeout


def test_connect_to_a_blackholed_address_fails_in_bounded_time(
    lab: Lab, container: Container, impl: Impl
) -> None:
    """Nobody answers the host's SYNs: the daemon gives up (its connect
    timeout) and tells the guest, long before the guest's kernel would; the
    data path serves other connections meanwhile."""
    first_loop_only(impl)
    daemon = lab.start_daemon(container, api_socket=lab.api_socket_path())
    fds0 = fd_count(daemon)
    client = container.spawn_python(
        "fault_peer", "client", f"--connect={BLACKHOLED}:80", "--timeout=150"
    )
    time.sleep(1.0)
    if impl.is_slirpy:
        pending = tcp_flows(daemon, impl)
        assert pending is not None
        assert [f["state"] for f in pending] == ["SYN-RECEIVED"], pending
    quick_transfer(lab, container)
    record = one_json(client, 60)
    assert record.get("connect_error") in (
        "ECONNREFUSED",
        "ETIMEDOUT",
        "EHOSTUNREACH",
        "ENETUNREACH",
    ), record
    assert record["connect_seconds"] < 45, record
    settle(daemon, impl, fds0)


# --------------------------------------------------- the namespace vanishes


def test_daemon_outlives_its_namespace_until_the_exit_fd(
    lab: Lab, container: Container, impl: Impl
) -> None:
    daemon = lab.start_daemon(container, exit_fd=True, api_socket=lab.api_socket_path())
    quick_transfer(lab, container)
    pid = daemon.proc.target_pid()
    container.keeper.kill()
    assert not container.keeper.alive()
    time.sleep(0.5)
    cpu0 = cpu_seconds(pid)
    time.sleep(2.0)
    assert daemon.proc.alive(), daemon.describe()
    assert cpu_seconds(pid) - cpu0 < 0.5, "the daemon spins without its namespace"
    if impl.is_slirpy:
        assert "return" in daemon.api({"execute": "stats"})
    start = time.monotonic()
    daemon.close_exit_fd()
    assert daemon.proc.wait(10) == 0, daemon.describe()
    assert time.monotonic() - start < 5
    assert "exitfd event" in daemon.proc.stderr()


# ------------------------------------------------------- stopped peers


@pytest.mark.parametrize("stopped", ["host-sender", "guest-reader"])
def test_stopped_peer_resumes_mid_transfer(
    lab: Lab, container: Container, impl: Impl, stopped: str
) -> None:
    """200 MB from the host to the guest; one end is stopped once the flow is
    established, for 2 s (the transfer cannot finish meanwhile: the data is
    far beyond every buffer), then continued."""
    first_loop_only(impl)
    size = 200_000_000
    daemon = lab.start_daemon(container, api_socket=lab.api_socket_path())
    server = lab.host.start_server(
        "tcp_peer",
        "--listen=127.0.0.1:0",
        f"--actions=send:rand:9:{size},shutwr",
        "--timeout=60",
    )
    client = container.spawn_python(
        "tcp_peer",
        f"--connect={GATEWAY}:{server.port}",
        "--actions=recv",
        "--timeout=60",
        name="reader",
    )
    if impl.is_slirpy:
        wait_until(
            lambda: (
                [f["state"] for f in tcp_flows(daemon, impl) or []] == ["ESTABLISHED"]
            ),
            10,
            "the flow is established",
        )
    else:
        time.sleep(0.5)
    victim = server.proc if stopped == "host-sender" else client
    rss0 = rss(daemon)
    victim.send_signal(signal.SIGSTOP)
    try:
        time.sleep(2.0)
        assert daemon.proc.alive()
        assert "{" not in client.stdout(), "the transfer ended while a peer was stopped"
        assert rss(daemon) - rss0 < 30 * MIB
    finally:
        victim.send_signal(signal.SIGCONT)
    record = one_json(client, 60)
    assert record.get("error") is None, record
    assert record["steps"][0]["bytes"] == size
    assert record["steps"][0]["sha256"] == rand_sha256(9, size)


# ------------------------------------------------------- lossy and reordering


def impair(container: Container, *, loss_per_mille: int) -> None:
    """Drop ``loss_per_mille`` of the packets each way on tap0, one MSS each."""
    container.run(["ip", "link", "set", "tap0", "gso_max_segs", "1"])
    rules = f"""
table inet lossy {{
    chain out {{
        type filter hook postrouting priority 0; policy accept;
        oifname "tap0" numgen random mod 1000 < {loss_per_mille} counter drop
    }}
    chain in {{
        type filter hook prerouting priority 0; policy accept;
        iifname "tap0" numgen random mod 1000 < {loss_per_mille} counter drop
    }}
}}
"""
    path = container.lab.dir / "lossy.nft"
    path.write_text(rules)
    path.chmod(0o644)
    container.run(["nft", "-f", str(path)])


def dropped(container: Container) -> int:
    ruleset = json.loads(
        container.run(["nft", "-j", "list", "table", "inet", "lossy"]).stdout
    )
    total = 0
    for item in ruleset["nftables"]:
        for expr in item.get("rule", {}).get("expr", []):
            if "counter" in expr:
                total += int(expr["counter"]["packets"])
    return total


def payload_file(lab: Lab, size: int) -> tuple[str, str]:
    """A file of ``size`` seeded bytes in the lab directory, and its SHA-256
    (written in pieces: one ``randbytes`` call stops at 256 MiB)."""
    path = lab.dir / f"payload-{size}.bin"
    digest = hashlib.sha256()
    with open(path, "wb") as f:
        for piece, offset in enumerate(range(0, size, 64 * MIB)):
            chunk = random.Random(piece).randbytes(min(64 * MIB, size - offset))
            f.write(chunk)
            digest.update(chunk)
    path.chmod(0o644)
    return str(path), digest.hexdigest()


def reorder(container: Container, percent: float) -> Any:
    """Hold ``percent`` of the guest's packets back 1 ms (NFQUEUE and
    ``tools/reorder_queue.py``); the tool's process."""
    queue = container.spawn_python(
        "reorder_queue", "--delay-ms=1", "--seconds=900", name="reorder"
    )
    assert queue.readline(10) == "READY"
    container.sh(
        "iptables -t mangle -A POSTROUTING -o tap0 -m statistic --mode random "
        f"--probability {percent / 100} -j NFQUEUE --queue-num 0 --queue-bypass"
    )
    return queue


@pytest.mark.timeout(120 + 2 * LOSSY_BYTES / 4e6)
def test_lossy_reordering_link_moves_data_intact_both_ways(
    lab: Lab, container: Container, impl: Impl
) -> None:
    """As ``netem loss 1% delay 1ms reorder 5%`` would: 1 % of the packets
    lost each way, 5 % of the guest's held back 1 ms; ``SLIRPY_LOSSY_BYTES``
    each way, SHA-256 checked."""
    first_loop_only(impl)
    data, digest = payload_file(lab, LOSSY_BYTES)
    lab.start_daemon(container)
    impair(container, loss_per_mille=LOSS_PER_MILLE)
    queue = reorder(container, 5)
    budget = max(60.0, LOSSY_BYTES / 4e6)
    down = tcp_transfer(
        lab,
        container,
        server_actions=f"send:file:{data},shutwr,recv",
        client_actions="recv",
        timeout=budget,
    )
    got = down.step("client", "recv")
    assert got["bytes"] == LOSSY_BYTES
    assert got["sha256"] == digest
    up = tcp_transfer(
        lab,
        container,
        server_actions="recv",
        client_actions=f"send:file:{data},shutwr,recv",
        timeout=budget,
    )
    got = up.step("server", "recv")
    assert got["bytes"] == LOSSY_BYTES
    assert got["sha256"] == digest
    assert dropped(container) > 100, "the link lost (almost) nothing"
    queue.send_signal(signal.SIGTERM)
    assert one_json(queue, 10)["delayed"] > 100, "the link reordered (almost) nothing"


def test_reordering_link_keeps_uploads_moving(
    lab: Lab, container: Container, impl: Impl
) -> None:
    """Reordering alone: early segments are held, not dropped, so an upload
    goes on at speed (20 MB within 12 s)."""
    first_loop_only(impl)
    lab.start_daemon(container)
    container.run(["ip", "link", "set", "tap0", "gso_max_segs", "1"])
    queue = reorder(container, 5)
    size = 20_000_000
    up = tcp_transfer(
        lab,
        container,
        server_actions="recv",
        client_actions=f"send:rand:23:{size},shutwr,recv",
        timeout=12,
    )
    assert up.step("server", "recv")["sha256"] == rand_sha256(23, size)
    queue.send_signal(signal.SIGTERM)
    assert one_json(queue, 10)["delayed"] > 100, "the link reordered (almost) nothing"
