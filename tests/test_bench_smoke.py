# SPDX-License-Identifier: GPL-2.0-or-later
"""``python -m bench --quick`` runs to the end and writes its outputs,
``python -m bench.micro`` measures every operation and ``python -m
bench.floor`` every path.

A smoke test: it fails only when the benchmark crashes or leaves out a
result; no figure is checked (a case that fails is recorded, not fatal).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _unavailable() -> str | None:
    if sys.platform != "linux":
        return "the benchmark needs Linux namespaces"
    for tool in ("unshare", "nsenter", "setpriv", "ip"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    try:
        probe = subprocess.run(
            [
                "unshare",
                "--user",
                "--map-root-user",
                "--net",
                "--pid",
                "--fork",
                "true",
            ],
            capture_output=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"cannot create namespaces: {exc}"
    if probe.returncode != 0:
        return "cannot create namespaces"
    return None


@pytest.mark.timeout(300)
def test_bench_quick(tmp_path: Path) -> None:
    reason = _unavailable()
    if reason:
        pytest.skip(reason)
    json_path = tmp_path / "results.json"
    png_path = tmp_path / "ratios.png"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "--quick",
            "--markdown",
            "--out",
            str(tmp_path / "out"),
            "--json",
            str(json_path),
            "--png",
            str(png_path),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    data = json.loads(json_path.read_text())
    assert set(data["impls"]) == {
        "veth",
        "slirp4netns",
        "pasta",
        "slirpy",
        "slirpy-splice",
    }
    ran = [name for name, info in data["impls"].items() if not info["skipped"]]
    assert "veth" in ran
    for results in data["results"].values():
        assert sorted(results) == sorted(ran)
        for res in results.values():
            assert set(res) >= {"metrics", "errors", "notes"}
        for name in ("slirp4netns", "slirpy"):
            metrics = results.get(name, {}).get("metrics", {})
            for rate, cpu in (
                ("tcp_rr_rate", "tcp_rr_cpu_us"),
                ("tcp_crr_rate", "tcp_crr_cpu_us"),
            ):
                if rate in metrics:
                    assert cpu in metrics, (name, sorted(metrics))
    assert png_path.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert "| MTU 1500: metric |" in proc.stdout

    # The tables can be printed again from the JSON alone.
    again = subprocess.run(
        [sys.executable, "-m", "bench", "--render", str(json_path), "--markdown"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert again.returncode == 0, again.stderr
    assert "| MTU 1500: metric |" in again.stdout


def test_micro_benchmark_runs_every_operation() -> None:
    """``python -m bench.micro``: every operation runs and gets a figure."""
    proc = subprocess.run(
        [sys.executable, "-m", "bench.micro", "--seconds", "0.05"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    names = [line.split()[0] for line in proc.stdout.splitlines()]
    assert names == [
        "tcp_rr",
        "tcp_ack",
        "tcp_bulk_in",
        "tcp_bulk_out",
        "udp_rr",
        "tcp_crr",
    ]
    for line in proc.stdout.splitlines():
        assert float(line.split()[1]) > 0, line


@pytest.mark.timeout(120)
def test_floor_measures_every_path(tmp_path: Path) -> None:
    """``python -m bench.floor``: a row per path, CPU for the relays it runs."""
    reason = _unavailable()
    if reason:
        pytest.skip(reason)
    proc = subprocess.run(
        [sys.executable, "-m", "bench.floor", "--seconds", "0.3"],
        cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=str(ROOT), TMPDIR=str(tmp_path)),
        capture_output=True,
        text=True,
        timeout=100,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    rows = [line.split("|")[1:-1] for line in proc.stdout.splitlines()[2:]]
    names = [row[0].strip() for row in rows]
    expected = ["direct", "relay.py (uvloop)", "relay.py (asyncio)"]
    if shutil.which("socat"):
        expected.insert(1, "socat")
    assert names == expected
    for row in rows:
        assert float(row[1].replace(" ", "")) > 0, row
    for row in rows[-2:]:
        assert float(row[4]) > 0, row
