# SPDX-License-Identifier: GPL-2.0-or-later
"""Settings shared by the whole suite: hypothesis without per-example deadlines
(the end-to-end tests load the machine), and derandomised under CI so that a
run is reproducible; and a stop before anything runs when the tree's compiled
core (``setup.py build_ext --inplace``) is older than its source, which would
otherwise be tested in its place."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import settings

settings.register_profile("slirpy", deadline=None)
settings.register_profile("ci", deadline=None, derandomize=True)
settings.load_profile("ci" if os.environ.get("CI") else "slirpy")

ROOT = Path(__file__).resolve().parent.parent
CORE = ROOT / "slirpy" / "stack"


def _stale_core() -> list[str]:
    """Core modules edited since the in-tree mypyc build (none without one)."""
    built = list(CORE.glob("_core__mypyc*.so"))
    if not built:
        return []
    at = min(path.stat().st_mtime for path in built)
    return [
        str(path.relative_to(ROOT))
        for path in CORE.rglob("*.py")
        if path.stat().st_mtime > at and path.name not in ("__init__.py", "errors.py")
    ]


def pytest_configure(config: pytest.Config) -> None:
    stale = _stale_core()
    if stale:
        pytest.exit(
            "slirpy's compiled core is older than "
            + ", ".join(stale)
            + ": rebuild it (python setup.py build_ext --inplace --force) or delete "
            "slirpy/stack/**/*.so to test the pure-Python core",
            returncode=4,
        )
