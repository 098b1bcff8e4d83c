#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Turn the man page's markdown (``docs/slirpy.1.md``) into roff (``slirpy.1``).

    python3 scripts/md2man.py docs/slirpy.1.md slirpy.1

The markdown is the subset go-md2man also reads, so either tool can build the
page; this one needs nothing beyond Python and is what ``tests/test_manpage.py``
checks the committed ``slirpy.1`` against:

* the title, a setext heading: ``SLIRPY 1 "DATE" "SOURCE" "MANUAL"`` over a
  line of ``=`` (becomes ``.TH``);
* ``# SECTION`` (``.SH``) and ``## Subsection`` (``.SS``);
* paragraphs (``.PP``), separated by blank lines;
* definition lists, a term line then ``:   definition`` with continuation
  lines indented by four spaces (``.TP``);
* bullet lists, ``* item`` with continuation lines indented by two spaces
  (``.IP \\(bu 2``);
* code blocks indented by four spaces (``.nf`` ... ``.fi``, indented);
* inline ``**bold**``, ``*italic*`` and ``` `code` ``` (bold).

Input must be ASCII. Every ``-`` becomes ``\\-`` so that options can be
copied from the rendered page, and ``\\`` becomes ``\\e``.
"""

from __future__ import annotations

import re
import shlex
import sys
from pathlib import Path

_INLINE = re.compile(r"`([^`]+)`|\*\*(.+?)\*\*|\*(.+?)\*")


def escape(text: str) -> str:
    """Plain text for roff: backslashes and hyphens escaped."""
    return text.replace("\\", "\\e").replace("-", "\\-")


def inline(text: str) -> str:
    """Markdown inline markup to roff font escapes."""
    out: list[str] = []
    pos = 0
    for match in _INLINE.finditer(text):
        out.append(escape(text[pos : match.start()]))
        code, bold, italic = match.groups()
        if code is not None:
            out.append(f"\\fB{escape(code)}\\fR")
        elif bold is not None:
            out.append(f"\\fB{inline(bold)}\\fR")
        else:
            out.append(f"\\fI{inline(italic)}\\fR")
        pos = match.end()
    out.append(escape(text[pos:]))
    return "".join(out)


def _text_lines(lines: list[str]) -> list[str]:
    """Filled text: one roff line per source line, guarded against requests."""
    result = []
    for line in lines:
        rendered = inline(line.strip())
        if rendered.startswith((".", "'")):
            rendered = "\\&" + rendered
        result.append(rendered)
    return result


def _quote(arg: str) -> str:
    return '"' + arg.replace('"', "\\(dq") + '"'


def convert(markdown: str, source: str | None = None) -> str:
    """The roff source for ``markdown``; ``ValueError`` on what it cannot read.

    ``source``, the markdown file's name, is named in a comment at the top.
    """
    if not markdown.isascii():
        raise ValueError("the man page source must be ASCII")
    lines = markdown.splitlines()
    while lines and not lines[0].strip():
        lines.pop(0)
    if len(lines) < 2 or not re.fullmatch(r"=+", lines[1]):
        raise ValueError("the first line must be the title, underlined with '='")
    title = shlex.split(lines[0])
    out = ['.\\" SPDX-License-Identifier: GPL-2.0-or-later']
    if source is not None:
        out.append(f'.\\" Made from {source} by scripts/md2man.py: edit that file.')
    out += [".TH " + " ".join(_quote(word) for word in title), ".nh", ".ad l"]
    index = 2
    while index < len(lines):
        line = lines[index]
        if not line.strip():
            index += 1
            continue
        if line.startswith("## "):
            out.append(".SS " + _quote(line[3:].strip()))
            index += 1
        elif line.startswith("# "):
            out.append(".SH " + _quote(line[2:].strip()))
            index += 1
        elif line.startswith("    "):
            index = _code(lines, index, out)
        elif line.startswith("* "):
            index = _bullet(lines, index, out)
        elif index + 1 < len(lines) and lines[index + 1].startswith(":   "):
            index = _definition(lines, index, out)
        else:
            index = _paragraph(lines, index, out)
    return "\n".join(out) + "\n"


def _code(lines: list[str], index: int, out: list[str]) -> int:
    block: list[str] = []
    while index < len(lines) and (
        lines[index].startswith("    ")
        or (
            not lines[index].strip()
            and index + 1 < len(lines)
            and lines[index + 1].startswith("    ")
        )
    ):
        block.append(lines[index][4:])
        index += 1
    out += [".PP", ".RS 4", ".nf"]
    for line in block:
        text = escape(line)
        out.append("\\&" + text if text.startswith((".", "'")) or not text else text)
    out += [".fi", ".RE"]
    return index


def _bullet(lines: list[str], index: int, out: list[str]) -> int:
    item = [lines[index][2:]]
    index += 1
    while index < len(lines) and lines[index].startswith("  ") and lines[index][2:3]:
        item.append(lines[index])
        index += 1
    out.append(".IP \\(bu 2")
    out += _text_lines(item)
    return index


def _definition(lines: list[str], index: int, out: list[str]) -> int:
    term = lines[index]
    body = [lines[index + 1][4:]]
    index += 2
    while index < len(lines) and lines[index].startswith("    "):
        body.append(lines[index])
        index += 1
    out.append(".TP")
    out += _text_lines([term])
    out += _text_lines(body)
    return index


def _paragraph(lines: list[str], index: int, out: list[str]) -> int:
    block: list[str] = []
    while index < len(lines) and lines[index].strip():
        line = lines[index]
        if block and (line.startswith(("#", "* ", "    "))):
            break
        block.append(line)
        index += 1
    out.append(".PP")
    out += _text_lines(block)
    return index


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(f"usage: {argv[0]} INPUT.md OUTPUT", file=sys.stderr)
        return 2
    source, target = Path(argv[1]), Path(argv[2])
    target.write_text(convert(source.read_text(), argv[1]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
