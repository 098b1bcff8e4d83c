# SPDX-License-Identifier: GPL-2.0-or-later
"""``python -m bench.floor``: what a userspace relay costs per round trip here.

In the host namespace of a fresh lab (loopback only), ``tools/peer.py``'s
64-byte TCP request/response client and server run three ways: directly,
through socat (a C relay, when installed) and through ``tools/relay.py``
(the smallest relay an event loop can run: ``add_reader``, ``recv``,
``send``) under uvloop and under asyncio's default loop. For the relays it
prints the round trips per second, the p50, and the relay's CPU per round
trip.

What it tells: the price of the two wake-ups and the two peer-waking sends
that any proxy pays per round trip on this machine, and whether an event
loop calling into Python is dearer than a C relay's ``poll`` loop. A daemon's
figures in ``python -m bench`` can then be read against this floor: what is
above it is the daemon's own work per frame.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.lab import Lab, LabError, Proc, cpu_seconds
from bench.report import DASH, TIMES

_SOCAT_PORT = 7000


def _client(lab: Lab, port: int, seconds: float) -> dict[str, Any]:
    record = lab.host.peer_client("tcp-rr", f"127.0.0.1:{port}", seconds)
    if not record.get("count"):
        raise LabError("peer client: no round trips")
    return record


def _through(
    lab: Lab, relay: Proc, port: int, seconds: float, *, cpu_pid: int | None
) -> dict[str, Any]:
    """Round trips through ``relay`` (listening on ``port``), then kill it."""
    try:
        lab.host.wait_listen(port)
        cpu0 = cpu_seconds(cpu_pid) if cpu_pid is not None else None
        record = _client(lab, port, seconds)
        if cpu_pid is not None and cpu0 is not None:
            record["cpu_us"] = (cpu_seconds(cpu_pid) - cpu0) * 1e6 / record["count"]
        return record
    finally:
        relay.kill()
        lab.untrack(relay)


def measure(seconds: float, root: Path) -> list[tuple[str, dict[str, Any]]]:
    """Every way that can run here, in order: ``(name, client record)``."""
    rows: list[tuple[str, dict[str, Any]]] = []
    lab = Lab(root, "floor")
    try:
        server = lab.host.spawn_tool(
            "peer", "--mode", "tcp-rr", "--listen", "127.0.0.1:0"
        )
        port = server.listen_port()
        rows.append(("direct", _client(lab, port, seconds)))
        if shutil.which("socat"):
            # Nothing else listens in the lab's fresh namespace.
            relay_port = _SOCAT_PORT if port != _SOCAT_PORT else _SOCAT_PORT + 1
            socat = lab.host.spawn(
                [
                    "socat",
                    f"TCP-LISTEN:{relay_port},bind=127.0.0.1,reuseaddr,fork",
                    f"TCP:127.0.0.1:{port}",
                ],
                name="socat",
            )
            # socat forks a child per connection: its CPU is not measured.
            rows.append(
                ("socat", _through(lab, socat, relay_port, seconds, cpu_pid=None))
            )
        for loop in ("uvloop", "asyncio"):
            relay = lab.host.spawn_tool(
                "relay",
                "--listen",
                "127.0.0.1:0",
                "--to",
                f"127.0.0.1:{port}",
                "--loop",
                loop,
            )
            relay_port = relay.listen_port()
            record = _through(
                lab, relay, relay_port, seconds, cpu_pid=relay.target_pid()
            )
            rows.append((f"relay.py ({loop})", record))
    finally:
        lab.close()
    return rows


def render(rows: list[tuple[str, dict[str, Any]]]) -> str:
    """A markdown table of the rows, rates also as ratios to the direct path."""
    direct = rows[0][1]["rate"]
    out = [
        f"| path | round trips/s | {TIMES} direct | p50, µs "
        "| relay CPU per round trip, µs |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, record in rows:
        rate = f"{record['rate']:,.0f}".replace(",", " ")
        cpu = record.get("cpu_us")
        cpu_text = DASH if cpu is None else f"{cpu:.1f}"
        out.append(
            f"| {name} | {rate} | {record['rate'] / direct:.2f}{TIMES} "
            f"| {record['p50_us']:.1f} | {cpu_text} |"
        )
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.floor", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--seconds", type=float, default=3.0, help="per path")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="slirpy-floor-") as tmp:
        try:
            rows = measure(args.seconds, Path(tmp))
        except LabError as exc:
            print(f"bench.floor: {exc}", file=sys.stderr)
            return 1
    print(render(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
