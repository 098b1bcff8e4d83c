# SPDX-License-Identifier: GPL-2.0-or-later
"""The benchmark's command line and runner.

For every MTU and implementation: a fresh lab (host and container
namespaces), start-up timing, one daemon instance that serves every case in
turn, idle and peak RSS and CPU time of that daemon.  A failing case is
recorded as an error and the run goes on; a failing implementation is
recorded as failed at that MTU.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

from bench import cases, chart, report
from bench.impls import Impl, Running, make_impls
from bench.lab import Container, Lab, LabError, memory_kib

ORDER = ("veth", "slirp4netns", "pasta", "slirpy", "slirpy-splice")
DERIVED = {
    "startup_ms": "startup",
    "rss_idle_mib": "rss",
    "rss_peak_mib": "rss",
    "cpu_s_per_gbit": "cpu",
}


def log(message: str) -> None:
    """Progress on stderr."""
    print(message, file=sys.stderr, flush=True)


def short_error(exc: BaseException) -> str:
    """One line (or a few) describing ``exc``."""
    text = str(exc).strip() or type(exc).__name__
    if not isinstance(exc, LabError | OSError | ValueError | KeyError):
        text = f"{type(exc).__name__}: {text}"
    return " ".join(text.split())[:1500]


class ImplRun:
    """One implementation at one MTU: its lab, daemon and results so far."""

    def __init__(
        self,
        impl: Impl,
        mtu: int,
        selected: list[cases.Case],
        dur: cases.Durations,
        args: argparse.Namespace,
        root: Path,
    ) -> None:
        self.impl = impl
        self.mtu = mtu
        self.dur = dur
        self.args = args
        self.root = root
        self.res: dict[str, Any] = {
            "metrics": {},
            "errors": {},
            "missing": {},
            "details": {},
            "notes": [],
        }
        self.lab: Lab | None = None
        self.container: Container | None = None
        self.running: Running | None = None
        self.ctx: cases.Ctx | None = None
        self.rss_trace: dict[str, float] = {}
        self.all_metrics = [k for c in selected for k in self.keys(c)]
        if impl.has_daemon:
            self.all_metrics += list(DERIVED)

    def keys(self, case: cases.Case) -> tuple[str, ...]:
        """The metrics ``case`` yields for this implementation."""
        if self.impl.has_daemon:
            return case.metrics + case.daemon_metrics
        return case.metrics

    def tag(self) -> str:
        """``[impl MTU m]`` for progress lines."""
        return f"[{self.impl.name} MTU {self.mtu}]"

    def fail(
        self, case: str, metrics: list[str] | tuple[str, ...], message: str
    ) -> None:
        """Record a failed case and the metrics it leaves without a figure."""
        self.res["errors"][case] = message
        for key in metrics:
            self.res["missing"][key] = case
        log(f"{self.tag()} {case}: ERROR {message[:300]}")

    def fail_rest(self, case: str, message: str) -> None:
        """Every metric without a figure yet is lost to ``case``."""
        self.fail(
            case, [k for k in self.all_metrics if k not in self.res["metrics"]], message
        )

    def open(self) -> None:
        """Lab, container and the start-up timing (no daemon kept yet)."""
        try:
            self.lab = Lab(self.root, f"{self.impl.name}-{self.mtu}")
            self.container = self.lab.new_container()
        except Exception as exc:
            self.fail_rest("lab", short_error(exc))
            self.close()
            return
        if self.impl.has_daemon:
            try:
                samples = self.impl.startup_ms(
                    self.lab, self.container, self.mtu, self.dur.startup_repeat
                )
                median = statistics.median(samples)
                self.res["metrics"]["startup_ms"] = median
                self.res["details"]["startup_ms"] = samples
                log(f"{self.tag()} startup: {median:.1f} ms")
            except Exception as exc:
                self.fail("startup", ["startup_ms"], short_error(exc))

    def start(self) -> None:
        """Start the daemon that serves every case."""
        if self.lab is None or self.container is None:
            return
        try:
            running = self.impl.start(self.lab, self.container, self.mtu)
        except Exception as exc:
            self.fail_rest("start", f"could not start: {short_error(exc)}")
            self.close()
            return
        self.running = running
        self.res["notes"] += running.notes
        if running.forward_error:
            self.res["notes"].append(f"port forwards: {running.forward_error}")
        self.ctx = cases.Ctx(
            self.lab, self.container, running, self.dur, self.args.udp_rate
        )

    def idle_rss(self) -> None:
        """RSS of the daemon before any traffic."""
        if self.running is None or self.running.daemon_pid is None:
            return
        try:
            rss, _hwm = memory_kib(self.running.daemon_pid)
            self.res["metrics"]["rss_idle_mib"] = rss / 1024
        except LabError as exc:
            self.fail("rss", ["rss_idle_mib"], short_error(exc))

    def run_case(self, case: cases.Case) -> None:
        """One case; errors are recorded, never raised."""
        if self.running is None or self.ctx is None:
            return
        running = self.running
        if not running.alive():
            self.fail(case.name, self.keys(case), f"not run: {running.why_dead()}")
            return
        t0 = time.monotonic()
        try:
            metrics = case.run(self.ctx)
        except Exception as exc:
            message = short_error(exc)
            if not running.alive():
                message += f" [{running.why_dead()}]"
            if self.args.verbose:
                traceback.print_exc()
            self.fail(case.name, self.keys(case), message)
            return
        self.res["metrics"].update(metrics)
        shown = ", ".join(
            f"{k}={report.fmt_value(report.BY_KEY[k], v)}" for k, v in metrics.items()
        )
        log(f"{self.tag()} {case.name}: {shown} ({time.monotonic() - t0:.1f} s)")
        if running.daemon_pid is not None and running.alive():
            with contextlib.suppress(LabError):
                self.rss_trace[case.name] = memory_kib(running.daemon_pid)[0] / 1024

    def finish(self) -> None:
        """Peak RSS and CPU per Gbit; then tear the lab down."""
        try:
            if self.running is not None and self.ctx is not None:
                self._derive(self.running, self.ctx)
        finally:
            self.close()

    def _derive(self, running: Running, ctx: cases.Ctx) -> None:
        self.res["details"].update(ctx.details)
        if self.rss_trace:
            self.res["details"]["rss_after_case_mib"] = self.rss_trace
        if running.daemon_pid is None:
            return
        if running.alive():
            _rss, hwm = memory_kib(running.daemon_pid)
            self.res["metrics"]["rss_peak_mib"] = hwm / 1024
        else:
            self.fail("rss", ["rss_peak_mib"], running.why_dead())
            self.res["notes"].append(
                f"{running.why_dead()} during the run; its last words: "
                f"{running.stderr_tail()}"
            )
        cpu = [ctx.details.get(k, {}).get("daemon_cpu_s") for k in cases.BULK_FOR_CPU]
        gbit = [ctx.details.get(k, {}).get("gbit") for k in cases.BULK_FOR_CPU]
        if all(c is not None for c in cpu) and all(gbit):
            total_cpu = sum(c for c in cpu if c is not None)
            total_gbit = sum(g for g in gbit if g is not None)
            self.res["metrics"]["cpu_s_per_gbit"] = total_cpu / total_gbit
        else:
            self.fail("cpu", ["cpu_s_per_gbit"], "needs both TCP bulk cases")

    def close(self) -> None:
        """Kill everything of this lab."""
        if self.lab is not None:
            self.lab.close()


def run_mtu(
    impls: list[Impl],
    mtu: int,
    selected: list[cases.Case],
    dur: cases.Durations,
    args: argparse.Namespace,
    root: Path,
) -> dict[str, Any]:
    """Every implementation at one MTU, the cases interleaved.

    Start-up is timed for each implementation while nothing else runs; then
    every daemon is started and each case runs for every implementation in
    turn, so that the figures compared in a ratio are taken seconds apart.
    """
    runs = [ImplRun(impl, mtu, selected, dur, args, root) for impl in impls]
    try:
        for run in runs:
            run.open()
        for run in runs:
            run.start()
        cases.settle(0.5)
        for run in runs:
            run.idle_rss()
        for case in selected:
            for run in runs:
                run.run_case(case)
    finally:
        for run in runs:
            run.finish()
    return {run.impl.name: run.res for run in runs}


def machine_info() -> dict[str, Any]:
    """CPU, memory, kernel and tools of this machine."""
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    iperf = ""
    try:
        out = subprocess.run(
            ["iperf3", "--version"], capture_output=True, text=True, timeout=10
        )
        iperf = (out.stdout.splitlines() or [""])[0]
    except (OSError, subprocess.TimeoutExpired):
        pass
    return {
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "memory": mem,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "iperf3": iperf,
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="slirpy beside slirp4netns, pasta and a veth pair, "
        "in namespaces this command creates.",
    )
    parser.add_argument("--quick", action="store_true", help="short runs, fewer cases")
    parser.add_argument("--impl", default=",".join(ORDER), help="comma-separated list")
    parser.add_argument(
        "--mtu", default=None, help="comma-separated (default 1500,65520; quick: 1500)"
    )
    parser.add_argument("--cases", default=None, help="comma-separated case names")
    parser.add_argument(
        "--udp-rate", default="1G", help="iperf3 -b for the UDP loss case"
    )
    parser.add_argument(
        "--json", type=Path, help="results JSON (default: OUT/results.json)"
    )
    parser.add_argument(
        "--png", type=Path, help="ratio chart (default: OUT/ratios.png)"
    )
    parser.add_argument(
        "--markdown", action="store_true", help="also print Markdown tables"
    )
    parser.add_argument(
        "--out",
        type=Path,
        help="directory for logs and results (default: a new one in /tmp)",
    )
    parser.add_argument(
        "--verbose", action="store_true", help="tracebacks of failing cases"
    )
    parser.add_argument(
        "--render",
        type=Path,
        metavar="JSON",
        help="only print tables (and --png) of a results file",
    )
    args = parser.parse_args(argv)
    known = make_impls()
    args.impls = [i.strip() for i in args.impl.split(",") if i.strip()]
    for name in args.impls:
        if name not in known:
            parser.error(f"unknown implementation {name!r} (known: {', '.join(known)})")
    mtu = args.mtu or ("1500" if args.quick else "1500,65520")
    try:
        args.mtus = [int(m) for m in mtu.split(",") if m.strip()]
    except ValueError:
        parser.error(f"bad --mtu {mtu!r}")
    names = {c.name for c in cases.CASES}
    args.case_names = None
    if args.cases:
        args.case_names = [c.strip() for c in args.cases.split(",") if c.strip()]
        bad = [c for c in args.case_names if c not in names]
        if bad:
            parser.error(f"unknown case(s) {bad} (known: {', '.join(sorted(names))})")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print tables; write JSON and PNG."""
    args = parse_args(argv)
    if args.render:
        saved = json.loads(args.render.read_text())
        print(report.render(saved, markdown=args.markdown))
        if args.png:
            chart.draw(saved, args.png)
        return 0
    t_start = time.monotonic()
    out = args.out or Path(tempfile.mkdtemp(prefix="slirpy-bench-"))
    out.mkdir(parents=True, exist_ok=True)
    json_path = args.json or out / "results.json"
    png_path = args.png or out / "ratios.png"
    dur = cases.QUICK if args.quick else cases.FULL
    selected = [
        c
        for c in cases.CASES
        if (
            c.name in args.case_names
            if args.case_names
            else (c.quick or not args.quick)
        )
    ]
    known = make_impls()
    order = [n for n in ORDER if n in args.impls] + [
        n for n in args.impls if n not in ORDER
    ]
    command = shlex.join(
        ["python", "-m", "bench", *(argv if argv is not None else sys.argv[1:])]
    )
    data: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": command,
        "machine": machine_info(),
        "settings": {
            "quick": args.quick,
            "mtus": args.mtus,
            "cases": [c.name for c in selected],
            "durations": dur.__dict__,
            "udp_rate": args.udp_rate,
        },
        "impls": {},
        "results": {},
        "ratios": {},
    }
    for name in order:
        impl = known[name]
        reason = impl.unavailable()
        version = getattr(impl, "version", lambda: "")() if reason is None else ""
        data["impls"][name] = {"skipped": reason, "version": version}
        if reason:
            log(f"{name}: skipped ({reason})")
    root = out / "labs"
    for mtu in args.mtus:
        impls = [known[n] for n in order if not data["impls"][n]["skipped"]]
        t_mtu = time.monotonic()
        results = run_mtu(impls, mtu, selected, dur, args, root)
        log(f"MTU {mtu}: {time.monotonic() - t_mtu:.0f} s")
        data["results"][str(mtu)] = results
        data["ratios"][str(mtu)] = report.compute_ratios(results)
    data["seconds"] = time.monotonic() - t_start
    json_path.write_text(json.dumps(data, indent=1, sort_keys=False) + "\n")
    try:
        chart.draw(data, png_path)
        png_note = str(png_path)
    except Exception as exc:
        png_note = f"not drawn: {short_error(exc)}"
    print(report.render(data, markdown=False))
    if args.markdown:
        print()
        print(report.render(data, markdown=True))
    print()
    print(f"JSON: {json_path}")
    print(f"PNG:  {png_note}")
    print(f"logs: {root}")
    print(f"run time: {data['seconds']:.0f} s")
    return 0
