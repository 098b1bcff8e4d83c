# SPDX-License-Identifier: GPL-2.0-or-later
"""Builds slirpy; its sans-IO core (``slirpy/stack``) is compiled with mypyc.

The core is plain, strictly typed Python, and runs as such; compiled by
mypyc it processes a frame three to four times faster (``python -m
bench.micro``). Compiling needs a C compiler and Python's headers (``gcc``,
``python3-dev``); ``SLIRPY_PURE=1`` in the environment, or a build environment
without mypyc, installs the pure-Python core instead. ``python setup.py
build_ext --inplace`` compiles it in this tree (what the test suite runs).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from setuptools import Extension, setup

HERE = Path(__file__).resolve().parent
PURE_MODULES = {"__init__.py", "errors.py"}
"""Left to the interpreter: package markers, and exceptions (mypyc cannot
compile subclasses of built-in exceptions)."""


def core_sources() -> list[str]:
    """The core's modules, relative to this directory."""
    stack = HERE / "slirpy" / "stack"
    return sorted(
        str(path.relative_to(HERE))
        for path in stack.rglob("*.py")
        if path.name not in PURE_MODULES
    )


def ext_modules() -> list[Extension]:
    if os.environ.get("SLIRPY_PURE"):
        return []
    try:
        from mypyc.build import mypycify
    except ImportError:
        print("slirpy: mypyc not found, the core stays pure Python", file=sys.stderr)
        return []
    os.chdir(HERE)
    return list(
        mypycify(core_sources(), opt_level="3", group_name="slirpy.stack._core")
    )


setup(ext_modules=ext_modules())
