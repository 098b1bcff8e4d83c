# SPDX-License-Identifier: GPL-2.0-or-later
"""The layering rules, checked on the source: a sans-IO core, lazy heavy imports."""

from __future__ import annotations

import ast
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "slirpy"
IO_MODULES = {
    "asyncio",
    "socket",
    "os",
    "select",
    "selectors",
    "threading",
    "subprocess",
    "time",
    "random",
}
HEAVY = {"scapy", "dpkt"}


def _imports(path: pathlib.Path) -> list[tuple[str, int, bool]]:
    """(top-level module, line, at module level) for every import in ``path``."""
    tree = ast.parse(path.read_text(), str(path))
    top_level = {id(node) for node in tree.body}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names = [node.module]
        else:
            continue
        top = id(node) in top_level
        found.extend((name.split(".")[0], node.lineno, top) for name in names)
    return found


STACK_FILES = sorted((PACKAGE / "stack").rglob("*.py"))


@pytest.mark.parametrize("path", STACK_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_stack_is_sans_io(path: pathlib.Path) -> None:
    bad = [(m, line) for m, line, _ in _imports(path) if m in IO_MODULES]
    assert not bad, f"{path} imports I/O or clock modules: {bad}"


@pytest.mark.parametrize(
    "path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(ROOT))
)
def test_no_heavy_imports_at_module_level(path: pathlib.Path) -> None:
    bad = [(m, line) for m, line, top in _imports(path) if m in HEAVY and top]
    assert not bad, f"{path} imports scapy/dpkt at module level: {bad}"


def test_start_up_imports_stay_light() -> None:
    """Importing the daemon pulls in neither scapy, dpkt nor pyroute2."""
    code = (
        "import sys, slirpy.cli, slirpy.daemon;"
        "print(sorted(m for m in ('scapy', 'dpkt', 'pyroute2') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )
    assert out.stdout.strip() == "[]"
