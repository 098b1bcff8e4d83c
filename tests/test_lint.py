# SPDX-License-Identifier: GPL-2.0-or-later
"""The house style as tests: ruff, ruff format, mypy --strict and the import layers."""

from __future__ import annotations

import pathlib
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
BIN = pathlib.Path(sys.executable).parent


def _tool(name: str) -> str:
    path = BIN / name
    if path.exists():
        return str(path)
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed (scripts/install.sh --test installs it)")
    return found


def _run(*argv: str) -> None:
    proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr


PYTHON_PATHS = ("slirpy", "tests", "bench", "scripts", "setup.py")


def test_ruff_check() -> None:
    _run(_tool("ruff"), "check", *PYTHON_PATHS)


def test_ruff_format() -> None:
    _run(
        _tool("ruff"),
        "format",
        "--check",
        "slirpy",
        "tests",
        "bench",
        "scripts",
        "setup.py",
    )


def test_mypy_strict() -> None:
    _run(_tool("mypy"))


def test_import_layers() -> None:
    _run(_tool("lint-imports"))
