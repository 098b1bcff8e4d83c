# SPDX-License-Identifier: GPL-2.0-or-later
"""Metric definitions, ratios, and the tables (plain text and Markdown)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

REFERENCES = ("slirp4netns", "veth")
TIMES = "\u00d7"
"""The multiplication sign after a ratio."""
DASH = "\u2013"
"""An empty cell."""
SHORT = {
    "slirp4netns": "s4n",
    "slirpy": "slirpy",
    "slirpy-splice": "splice",
    "pasta": "pasta",
    "veth": "veth",
}


@dataclass(frozen=True)
class Metric:
    """One figure of the table."""

    key: str
    label: str
    unit: str
    higher_is_better: bool
    digits: int = 2
    chart: bool = True

    @property
    def title(self) -> str:
        """Label, unit and which way is better."""
        arrow = "↑" if self.higher_is_better else "↓"
        return f"{self.label}, {self.unit} {arrow}"


METRICS: tuple[Metric, ...] = (
    Metric("tcp_g2h", "TCP bulk guest→host", "Gbit/s", True),
    Metric("tcp_h2g", "TCP bulk host→guest", "Gbit/s", True),
    Metric("pf_lo_h2g", "port fwd, loopback client, host→guest", "Gbit/s", True),
    Metric("pf_lo_g2h", "port fwd, loopback client, guest→host", "Gbit/s", True),
    Metric("pf_ext_h2g", "port fwd, non-loopback client, host→guest", "Gbit/s", True),
    Metric("pf_ext_g2h", "port fwd, non-loopback client, guest→host", "Gbit/s", True),
    Metric("tcp_rr_rate", "TCP request/response 64 B", "round trips/s", True, 0),
    Metric("tcp_rr_p50", "TCP request/response p50", "µs", False, 1),
    Metric("tcp_rr_p99", "TCP request/response p99", "µs", False, 1),
    Metric("tcp_rr_cpu_us", "daemon CPU per round trip", "µs", False, 1, False),
    Metric("tcp_crr_rate", "TCP connect + 1 B each way + close", "per s", True, 0),
    Metric("tcp_crr_p99", "TCP connect + 1 B + close p99", "µs", False, 0, False),
    Metric("tcp_crr_cpu_us", "daemon CPU per connection", "µs", False, 0, False),
    Metric("udp_rr_rate", "UDP request/response 64 B", "round trips/s", True, 0),
    Metric("udp_rr_p50", "UDP request/response p50", "µs", False, 1),
    Metric("udp_rr_p99", "UDP request/response p99", "µs", False, 1, False),
    Metric("udp_loss_pct", "UDP at fixed rate guest→host, loss", "%", False, 2, False),
    Metric("udp_recv_mbps", "UDP at fixed rate, received", "Mbit/s", True, 0),
    Metric("startup_ms", "start-up to ready (median)", "ms", False, 1),
    Metric("rss_idle_mib", "daemon RSS idle", "MiB", False, 1),
    Metric("rss_peak_mib", "daemon RSS peak (VmHWM)", "MiB", False, 1),
    Metric("cpu_s_per_gbit", "daemon CPU per Gbit, bulk TCP", "s/Gbit", False, 3),
)
BY_KEY = {m.key: m for m in METRICS}


def ratio(value: Any, ref: Any) -> float | None:
    """``value / ref`` when both are finite numbers and ``ref`` is not 0."""
    if not isinstance(value, int | float) or not isinstance(ref, int | float):
        return None
    if not (math.isfinite(value) and math.isfinite(ref)) or ref == 0:
        return None
    return float(value) / float(ref)


def compute_ratios(results: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per implementation: ``{"vs_slirp4netns": {metric: r}, "vs_veth": {...}}``."""
    out: dict[str, dict[str, Any]] = {}
    for impl, res in results.items():
        entry: dict[str, Any] = {}
        for ref in REFERENCES:
            if ref == impl or ref not in results:
                continue
            ref_metrics = results[ref].get("metrics", {})
            entry[f"vs_{ref}"] = {
                key: r
                for key, value in res.get("metrics", {}).items()
                if (r := ratio(value, ref_metrics.get(key))) is not None
            }
        out[impl] = entry
    return out


def fmt_value(metric: Metric, value: float) -> str:
    """A figure with the metric's precision and a thousands separator."""
    if not math.isfinite(value):
        return DASH
    if abs(value) >= 1000:
        return f"{value:,.0f}".replace(",", " ")
    return f"{value:.{metric.digits}f}"


def fmt_ratio(value: float) -> str:
    """A ratio as ``1.23`` followed by a multiplication sign."""
    if value >= 100:
        return f"{value:.0f}{TIMES}"
    if value >= 10:
        return f"{value:.1f}{TIMES}"
    return f"{value:.2f}{TIMES}"


def cell(res: dict[str, Any], key: str) -> str:
    """The table cell of one implementation for one metric."""
    metrics = res.get("metrics", {})
    if key in metrics:
        return fmt_value(BY_KEY[key], metrics[key])
    if res.get("skipped"):
        return "skipped"
    case = res.get("missing", {}).get(key, key)
    error = res.get("errors", {}).get(case, "")
    if error.startswith("n/a"):
        return "n/a"
    if error:
        return "error"
    return DASH


def ratio_columns(impls: list[str]) -> list[tuple[str, str]]:
    """(implementation, reference) pairs shown as ratio columns."""
    cols = [
        (impl, ref)
        for impl in impls
        for ref in REFERENCES
        if impl not in (ref, "veth") and ref in impls
    ]
    # slirp4netns ÷ veth only once, at the end.
    return [c for c in cols if c[0] != "slirp4netns"] + [
        c for c in cols if c[0] == "slirp4netns"
    ]


def table_rows(
    results: dict[str, dict[str, Any]],
    ratios: dict[str, dict[str, Any]],
    impls: list[str],
) -> tuple[list[str], list[list[str]]]:
    """Header and rows: metric, absolute figures, then ratios."""
    cols = ratio_columns(impls)
    header = ["metric", *impls, *(f"{SHORT[a]} ÷ {SHORT[b]}" for a, b in cols)]
    rows: list[list[str]] = []
    for metric in METRICS:
        if not any(
            metric.key in results.get(i, {}).get("metrics", {})
            or metric.key in results.get(i, {}).get("missing", {})
            for i in impls
        ):
            continue
        row = [metric.title]
        row += [cell(results.get(i, {}), metric.key) for i in impls]
        for impl, ref in cols:
            r = ratios.get(impl, {}).get(f"vs_{ref}", {}).get(metric.key)
            row.append(fmt_ratio(r) if r is not None else DASH)
        rows.append(row)
    return header, rows


def text_table(header: list[str], rows: list[list[str]]) -> str:
    """Column-aligned plain text."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = []
    for n, row in enumerate([header, *rows]):
        parts = [row[0].ljust(widths[0])]
        parts += [row[i].rjust(widths[i]) for i in range(1, len(row))]
        lines.append("  ".join(parts))
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    """A GitHub Markdown table."""
    lines = ["| " + " | ".join(header) + " |"]
    lines.append("|---|" + "---:|" * (len(header) - 1))
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def render(data: dict[str, Any], markdown: bool) -> str:
    """Every MTU's table, with the notes and errors, as text or Markdown."""
    out: list[str] = []
    machine = data.get("machine", {})
    when = data.get("date", "")
    desc = (
        f"{when}, {machine.get('cpu', '?')} ({machine.get('cpus', '?')} vCPU), "
        f"kernel {machine.get('kernel', '?')}, Python {machine.get('python', '?')}"
    )
    settings = data.get("settings", {})
    if settings:
        dur = settings.get("durations", {})
        desc += (
            f"; bulk {dur.get('bulk', '?')} s, request/response "
            f"{dur.get('rr', '?')} s, UDP {settings.get('udp_rate', '?')}"
            f" for {dur.get('udp', '?')} s"
        )
    versions = ", ".join(
        _version(name, str(info.get("version") or ""))
        for name, info in data.get("impls", {}).items()
        if not info.get("skipped")
    )
    if markdown:
        out.append(f"Measured {desc}; {versions}.")
        out.append(f"Command: `{data.get('command', '')}`")
    else:
        out.append(f"Measured {desc}")
        out.append(f"Implementations: {versions}")
    impls = [n for n in data.get("impls", {}) if not data["impls"][n].get("skipped")]
    for mtu, results in data.get("results", {}).items():
        shown = [i for i in impls if i in results]
        header, rows = table_rows(results, data["ratios"][mtu], shown)
        header[0] = f"MTU {mtu}: {header[0]}"
        out.append("")
        out.append(
            markdown_table(header, rows) if markdown else text_table(header, rows)
        )
    notes: list[str] = []
    for name, info in data.get("impls", {}).items():
        if info.get("skipped"):
            notes.append(f"{name} skipped: {info['skipped']}")
    for mtu, results in data.get("results", {}).items():
        for impl, res in results.items():
            notes += [f"{impl} MTU {mtu}: {n}" for n in res.get("notes", [])]
            for key, error in res.get("errors", {}).items():
                notes.append(f"{impl} MTU {mtu} {key}: {error}")
    if notes:
        out.append("")
        out.append("Notes and errors:" if not markdown else "Notes and errors:\n")
        out += [f"- {n}" for n in _dedupe(notes)]
    return "\n".join(out)


def _version(name: str, version: str) -> str:
    """``name 1.2.3`` from whatever ``--version`` printed."""
    words = version.split()
    while words and words[0].lower() in (name.lower(), "version"):
        words.pop(0)
    return " ".join([name, *words])


def _dedupe(items: list[str]) -> list[str]:
    seen: set[str] = set()
    out = []
    for item in items:
        short = item if len(item) < 400 else item[:400] + " …"
        if short not in seen:
            seen.add(short)
            out.append(short)
    return out
