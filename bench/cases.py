# SPDX-License-Identifier: GPL-2.0-or-later
"""The measurements: one function per case, each returning its metrics.

Every case runs its clients and servers inside the lab with bounded
timeouts and raises :class:`~bench.lab.LabError` (or any exception) when it
cannot produce a figure; the runner records that as an error of the case.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bench.impls import GUEST_PORT, Running
from bench.lab import (
    GATEWAY,
    HOST_EXT,
    Container,
    Lab,
    LabError,
    Namespace,
    Proc,
    cpu_seconds,
)

HOST_IPERF_PORT = 5201


@dataclass(frozen=True)
class Durations:
    """How long each kind of case runs, and how often start-up is timed."""

    bulk: float
    rr: float
    udp: float
    startup_repeat: int


FULL = Durations(bulk=5.0, rr=3.0, udp=4.0, startup_repeat=5)
QUICK = Durations(bulk=1.0, rr=0.5, udp=1.0, startup_repeat=2)


@dataclass
class Ctx:
    """What a case needs: the lab, the container and the running daemon."""

    lab: Lab
    container: Container
    running: Running
    dur: Durations
    udp_rate: str
    details: dict[str, Any] = field(default_factory=dict)


def _daemon_cpu(ctx: Ctx) -> float | None:
    if ctx.running.daemon_pid is None:
        return None
    return cpu_seconds(ctx.running.daemon_pid)


def _iperf_server(ns: Namespace, port: int) -> Proc:
    proc = ns.spawn(["iperf3", "-s", "-1", "-p", str(port)], name="iperf3-server")
    try:
        ns.wait_listen(port)
    except LabError:
        proc.kill()
        raise
    return proc


def _iperf(
    ctx: Ctx,
    *,
    client_ns: Namespace,
    server_ns: Namespace,
    connect: str,
    port: int,
    server_port: int,
    reverse: bool = False,
    bind: str | None = None,
    udp_rate: str | None = None,
    seconds: float,
) -> dict[str, Any]:
    """One iperf3 run; returns its ``end`` section plus the daemon's CPU time."""
    server = _iperf_server(server_ns, server_port)
    argv = [
        "iperf3",
        "--client",
        connect,
        "--port",
        str(port),
        "--time",
        f"{seconds:g}",
        "--json",
        "--interval",
        "0",
        "--connect-timeout",
        "5000",
    ]
    if reverse:
        argv.append("--reverse")
    if bind:
        argv += ["--bind", bind]
    if udp_rate:
        argv += ["--udp", "--bitrate", udp_rate, "--length", "1400", "--window", "4M"]
    cpu0 = _daemon_cpu(ctx)
    try:
        result = client_ns.run(argv, timeout=seconds + 25, check=False)
    finally:
        cpu1 = _daemon_cpu(ctx) if ctx.running.alive() else None
        with contextlib.suppress(LabError):
            server.wait(5)
    try:
        report = json.loads(result.stdout)
    except ValueError:
        raise LabError(f"iperf3 gave no JSON: {result.describe()}") from None
    if report.get("error"):
        raise LabError(f"iperf3: {report['error']}")
    end = dict(report.get("end", {}))
    if cpu0 is not None and cpu1 is not None:
        end["daemon_cpu_s"] = cpu1 - cpu0
    return end


def _bulk(ctx: Ctx, key: str, end: dict[str, Any]) -> dict[str, float]:
    received = end.get("sum_received") or {}
    bps = float(received.get("bits_per_second", 0.0))
    gbit = float(received.get("bytes", 0)) * 8 / 1e9
    if bps <= 0:
        raise LabError("iperf3 reported no data received")
    detail: dict[str, Any] = {
        "gbit": gbit,
        "retransmits": end.get("sum_sent", {}).get("retransmits"),
    }
    if "daemon_cpu_s" in end:
        detail["daemon_cpu_s"] = end["daemon_cpu_s"]
    ctx.details[key] = detail
    return {key: bps / 1e9}


def tcp_bulk(reverse: bool) -> Callable[[Ctx], dict[str, float]]:
    """Guest → host (iperf3 client in the container) or host → guest (-R)."""
    key = "tcp_h2g" if reverse else "tcp_g2h"

    def case(ctx: Ctx) -> dict[str, float]:
        end = _iperf(
            ctx,
            client_ns=ctx.container,
            server_ns=ctx.lab.host,
            connect=GATEWAY,
            port=HOST_IPERF_PORT,
            server_port=HOST_IPERF_PORT,
            reverse=reverse,
            seconds=ctx.dur.bulk,
        )
        return _bulk(ctx, key, end)

    return case


def port_forward(path: str, reverse: bool) -> Callable[[Ctx], dict[str, float]]:
    """A host client through a forwarded port to a server in the container.

    ``path`` ``lo``: the client is on the host's loopback (pasta splices
    such connections socket to socket); ``ext``: the client comes from
    198.18.0.2, a non-loopback address (always through the guest's TAP).
    ``reverse``: the server in the container sends (guest → host).
    """
    key = f"pf_{path}_{'g2h' if reverse else 'h2g'}"

    def case(ctx: Ctx) -> dict[str, float]:
        if ctx.running.forward_error and path not in ctx.running.forwards:
            raise LabError(ctx.running.forward_error)
        addr, port = ctx.running.forwards[path]
        end = _iperf(
            ctx,
            client_ns=ctx.lab.host,
            server_ns=ctx.container,
            connect=addr,
            port=port,
            server_port=GUEST_PORT,
            reverse=reverse,
            bind=HOST_EXT if path == "ext" else None,
            seconds=ctx.dur.bulk,
        )
        return _bulk(ctx, key, end)

    return case


def udp_rate(ctx: Ctx) -> dict[str, float]:
    """Guest → host UDP at a fixed rate (iperf3 -u): loss and received rate."""
    end = _iperf(
        ctx,
        client_ns=ctx.container,
        server_ns=ctx.lab.host,
        connect=GATEWAY,
        port=HOST_IPERF_PORT,
        server_port=HOST_IPERF_PORT,
        udp_rate=ctx.udp_rate,
        seconds=ctx.dur.udp,
    )
    received = end.get("sum_received") or end.get("sum") or {}
    if not received.get("packets"):
        raise LabError("iperf3 reported no UDP packets")
    ctx.details["udp_rate"] = {
        "rate": ctx.udp_rate,
        "lost_packets": received.get("lost_packets"),
        "packets": received.get("packets"),
        "jitter_ms": received.get("jitter_ms"),
    }
    return {
        "udp_loss_pct": float(received.get("lost_percent", 0.0)),
        "udp_recv_mbps": float(received.get("bits_per_second", 0.0)) / 1e6,
    }


def _peer(ctx: Ctx, mode: str, seconds: float) -> dict[str, Any]:
    """A ``tools/peer.py`` server on the host, its client in the container."""
    server = ctx.lab.host.spawn_tool("peer", "--mode", mode, "--listen", "0.0.0.0:0")
    cpu0 = cpu1 = None
    try:
        port = server.listen_port()
        cpu0 = _daemon_cpu(ctx)
        record = ctx.container.peer_client(mode, f"{GATEWAY}:{port}", seconds)
    finally:
        cpu1 = _daemon_cpu(ctx) if ctx.running.alive() else None
        server.kill()
        ctx.lab.untrack(server)
    if cpu0 is not None and cpu1 is not None:
        record["daemon_cpu_s"] = cpu1 - cpu0
    ctx.details[mode] = record
    return record


def _cpu_per(record: dict[str, Any], key: str) -> dict[str, float]:
    """``{key: µs of daemon CPU per transaction}``, if the daemon was measured."""
    cpu, count = record.get("daemon_cpu_s"), record.get("count")
    if cpu is None or not count:
        return {}
    return {key: cpu * 1e6 / count}


def tcp_rr(ctx: Ctx) -> dict[str, float]:
    """64-byte request/response over one TCP connection."""
    r = _peer(ctx, "tcp-rr", ctx.dur.rr)
    return {
        "tcp_rr_rate": r["rate"],
        "tcp_rr_p50": r["p50_us"],
        "tcp_rr_p99": r["p99_us"],
    } | _cpu_per(r, "tcp_rr_cpu_us")


def tcp_crr(ctx: Ctx) -> dict[str, float]:
    """New TCP connection per transaction: connect, 1 byte each way, close."""
    r = _peer(ctx, "tcp-crr", ctx.dur.rr)
    return {"tcp_crr_rate": r["rate"], "tcp_crr_p99": r["p99_us"]} | _cpu_per(
        r, "tcp_crr_cpu_us"
    )


def udp_rr(ctx: Ctx) -> dict[str, float]:
    """64-byte UDP request/response."""
    r = _peer(ctx, "udp-rr", ctx.dur.rr)
    return {
        "udp_rr_rate": r["rate"],
        "udp_rr_p50": r["p50_us"],
        "udp_rr_p99": r["p99_us"],
    }


@dataclass(frozen=True)
class Case:
    """A named measurement, the metrics it yields, and whether --quick runs it.

    ``daemon_metrics``: further metrics it yields for implementations with a
    daemon (its CPU time per transaction)."""

    name: str
    run: Callable[[Ctx], dict[str, float]]
    metrics: tuple[str, ...]
    quick: bool
    daemon_metrics: tuple[str, ...] = ()


CASES: tuple[Case, ...] = (
    Case("tcp_g2h", tcp_bulk(False), ("tcp_g2h",), True),
    Case("tcp_h2g", tcp_bulk(True), ("tcp_h2g",), True),
    Case("pf_lo_h2g", port_forward("lo", False), ("pf_lo_h2g",), True),
    Case("pf_lo_g2h", port_forward("lo", True), ("pf_lo_g2h",), False),
    Case("pf_ext_h2g", port_forward("ext", False), ("pf_ext_h2g",), True),
    Case("pf_ext_g2h", port_forward("ext", True), ("pf_ext_g2h",), False),
    Case(
        "tcp_rr",
        tcp_rr,
        ("tcp_rr_rate", "tcp_rr_p50", "tcp_rr_p99"),
        True,
        ("tcp_rr_cpu_us",),
    ),
    Case("udp_rr", udp_rr, ("udp_rr_rate", "udp_rr_p50", "udp_rr_p99"), True),
    Case("udp_rate", udp_rate, ("udp_loss_pct", "udp_recv_mbps"), True),
    # Last: slirp4netns's memory grows to ~1 GiB here and stays there, which
    # slows everything after it on the same instance.
    Case(
        "tcp_crr",
        tcp_crr,
        ("tcp_crr_rate", "tcp_crr_p99"),
        True,
        ("tcp_crr_cpu_us",),
    ),
)
"""In the order they run on one daemon instance."""

BULK_FOR_CPU = ("tcp_g2h", "tcp_h2g")
"""The cases whose daemon CPU time and volume give CPU seconds per Gbit."""


def settle(seconds: float) -> None:
    """Let the daemon go idle between start-up and the idle RSS reading."""
    time.sleep(seconds)
