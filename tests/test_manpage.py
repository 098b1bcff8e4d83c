# SPDX-License-Identifier: GPL-2.0-or-later
"""The man page: built from its markdown, renders cleanly, documents everything.

``docs/slirpy.1`` must be what ``scripts/md2man.py`` makes of
``docs/slirpy.1.md`` (rebuild it with ``python3 scripts/md2man.py
docs/slirpy.1.md docs/slirpy.1``), groff and man must render it without a
warning, and every option ``--help`` lists, every API command and every
section a man page is expected to have must be in it.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
from pathlib import Path
from types import ModuleType

import pytest

from slirpy.cli import OPTIONS, usage_text

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "docs" / "slirpy.1.md"
PAGE = ROOT / "docs" / "slirpy.1"

SECTIONS = [
    "NAME",
    "SYNOPSIS",
    "DESCRIPTION",
    "OPTIONS",
    "RUNNING A COMMAND",
    "API SOCKET",
    "EXIT STATUS",
    "ENVIRONMENT",
    "EXAMPLES",
    "SEE ALSO",
]
API_COMMANDS = ["add_hostfwd", "list_hostfwd", "remove_hostfwd", "list_flows", "stats"]


def _md2man() -> ModuleType:
    spec = importlib.util.spec_from_file_location("md2man", ROOT / "scripts/md2man.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def rendered() -> str:
    """The page as ``man`` shows it, in plain text, 80 columns."""
    if shutil.which("groff") is None:
        pytest.skip("groff is not installed")
    proc = subprocess.run(
        ["groff", "-man", "-Tutf8", "-rLL=80n", "-P", "-cbou", str(PAGE)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return proc.stdout


def test_page_is_built_from_the_markdown():
    expected = _md2man().convert(SOURCE.read_text(), "docs/slirpy.1.md")
    assert PAGE.read_text() == expected, (
        "docs/slirpy.1 is stale: python3 scripts/md2man.py docs/slirpy.1.md "
        "docs/slirpy.1"
    )


@pytest.mark.skipif(shutil.which("groff") is None, reason="groff is not installed")
def test_groff_renders_without_warnings():
    proc = subprocess.run(
        ["groff", "-man", "-Tutf8", "-ww", "-z", str(PAGE)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0
    assert proc.stderr == ""


@pytest.mark.skipif(shutil.which("man") is None, reason="man is not installed")
def test_man_renders_without_warnings():
    env = dict(os.environ, MANPAGER="cat", PAGER="cat", MANWIDTH="80")
    proc = subprocess.run(
        ["man", "--warnings", "-l", str(PAGE)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert "RUNNING A COMMAND" in proc.stdout


def test_sections_in_order(rendered: str):
    headings = [
        line for line in rendered.splitlines() if re.fullmatch(r"[A-Z][A-Z ]+", line)
    ]
    assert headings == SECTIONS


def test_every_option_of_help_is_documented(rendered: str):
    help_text = usage_text("slirpy")
    listed = [spec for spec in OPTIONS if spec.listed]
    assert listed
    for spec in listed:
        assert f"--{spec.name}" in help_text
        # the option's own entry in OPTIONS: "-m, --mtu=MTU" on a line of its own
        assert re.search(rf"^ {{7}}{re.escape(spec.column())}$", rendered, re.M), (
            spec.column()
        )


def test_hidden_aliases_are_documented(rendered: str):
    for spec in OPTIONS:
        if spec.supported and not spec.listed:
            assert f"--{spec.name}" in rendered, spec.name


def test_usage_forms_match_help(rendered: str):
    forms = [line.split(": ", 1)[1] for line in usage_text("slirpy").splitlines()[:2]]
    synopsis = rendered.split("SYNOPSIS", 1)[1].split("DESCRIPTION", 1)[0]
    assert [line.strip() for line in synopsis.splitlines() if line.strip()] == forms


def test_api_commands_and_extensions(rendered: str):
    api = rendered.split("API SOCKET", 1)[1].split("EXIT STATUS", 1)[0]
    for command in API_COMMANDS:
        assert f'"execute": "{command}"' in api, command
    assert "host_port 0" in api
    assert "IPv6" in api
    assert '"splice": true' in api


def test_examples_cover_the_callers(rendered: str):
    examples = rendered.split("EXAMPLES", 1)[1]
    for needle in ("podman run", "network_cmd_path", "rootlesskit --net=slirp4netns"):
        assert needle in examples
    assert "slirpy -- " in examples
    assert "slirpy --configure" in examples


def test_source_is_ascii_and_converter_refuses_other_input():
    assert SOURCE.read_text().isascii()
    md2man = _md2man()
    with pytest.raises(ValueError, match="ASCII"):
        md2man.convert("T 1\n=\n\n# NAME\n\nx \u2014 y\n")
    with pytest.raises(ValueError, match="title"):
        md2man.convert("# NAME\n")


def test_converter_markup():
    md2man = _md2man()
    page = md2man.convert(
        'T 1 "" "src" "Manual"\n=====\n\n# S\n\n'
        "**-a**, **--all**=*N*\n:   Text `a\\b` and\n    more.\n\n"
        "* item one\n  continued\n\n"
        "    .code -x\n\n"
        ".dot at start\n"
    )
    assert page.splitlines() == [
        '.\\" SPDX-License-Identifier: GPL-2.0-or-later',
        '.TH "T" "1" "" "src" "Manual"',
        ".nh",
        ".ad l",
        '.SH "S"',
        ".TP",
        "\\fB\\-a\\fR, \\fB\\-\\-all\\fR=\\fIN\\fR",
        "Text \\fBa\\eb\\fR and",
        "more.",
        ".IP \\(bu 2",
        "item one",
        "continued",
        ".PP",
        ".RS 4",
        ".nf",
        "\\&.code \\-x",
        ".fi",
        ".RE",
        ".PP",
        "\\&.dot at start",
    ]
