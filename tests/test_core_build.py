# SPDX-License-Identifier: GPL-2.0-or-later
"""The sans-IO core as built: compiled by mypyc in this tree (what the rest of
the suite then runs), and the same unit tests passing on the pure-Python
source, which is what runs where no compiler was at hand."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from slirpy.cli import version_text
from slirpy.stack import COMPILED

ROOT = Path(__file__).resolve().parent.parent


def test_core_is_compiled_unless_asked_not_to() -> None:
    if os.environ.get("SLIRPY_PURE"):
        assert not COMPILED, "SLIRPY_PURE is set, yet compiled modules were found"
        assert "core: Python" in version_text()
        return
    assert COMPILED, (
        "the tree's core is not compiled: run scripts/install.sh --test (or "
        "python setup.py build_ext --inplace), or set SLIRPY_PURE=1"
    )
    assert "core: compiled (mypyc)" in version_text()


def test_unit_suites_pass_on_the_pure_core(tmp_path: Path) -> None:
    if not COMPILED:
        pytest.skip("the whole suite already runs the pure-Python core")
    shutil.copytree(
        ROOT / "slirpy",
        tmp_path / "slirpy",
        ignore=shutil.ignore_patterns("*.so", "__pycache__"),
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["SLIRPY_PURE"] = "1"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "--rootdir",
            str(ROOT),
            "-c",
            str(ROOT / "pyproject.toml"),
            str(ROOT / "tests" / "wire"),
            str(ROOT / "tests" / "stack"),
            str(ROOT / "tests" / "test_core_build.py"),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert " passed" in proc.stdout


def test_installed_daemon_runs_the_compiled_core() -> None:
    """What ``scripts/install.sh`` put in the virtual environment (the main
    job's daemon) runs the compiled core too."""
    exe = Path(sys.executable).parent / "slirpy"
    if not exe.exists():
        pytest.skip("slirpy is not installed next to this interpreter")
    if os.environ.get("SLIRPY_PURE"):
        pytest.skip("SLIRPY_PURE is set: installed uncompiled")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run(
        [str(exe), "--version"],
        cwd="/",
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "core: compiled (mypyc)" in proc.stdout, proc.stdout
