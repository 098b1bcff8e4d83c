# SPDX-License-Identifier: GPL-2.0-or-later
"""A PNG bar chart of the ratios to slirp4netns, drawn without any library.

One panel per MTU; one group of bars per metric (veth, pasta, slirpy), on a
logarithmic axis centred on 1 = slirp4netns.  Bars are oriented so that
"right of 1" always means better than slirp4netns: for metrics where lower
is better (latency, memory, CPU) the bar shows slirp4netns ÷ value.

The PNG is written with ``zlib`` and a built-in 5x7 pixel font.
"""

from __future__ import annotations

import math
import struct
import zlib
from pathlib import Path
from typing import Any

from bench.report import BY_KEY, METRICS

# fmt: off
_FONT = {
    " ": "..... ..... ..... ..... ..... ..... .....",
    "!": "..#.. ..#.. ..#.. ..#.. ..#.. ..... ..#..",
    '"': ".#.#. .#.#. ..... ..... ..... ..... .....",
    "#": ".#.#. .#.#. ##### .#.#. ##### .#.#. .#.#.",
    "$": "..#.. .#### #.#.. .###. ..#.# ####. ..#..",
    "%": "##..# ##..# ...#. ..#.. .#... #..## #..##",
    "&": ".##.. #..#. #.#.. .#... #.#.# #..#. .##.#",
    "'": "..#.. ..#.. ..... ..... ..... ..... .....",
    "(": "...#. ..#.. .#... .#... .#... ..#.. ...#.",
    ")": ".#... ..#.. ...#. ...#. ...#. ..#.. .#...",
    "*": "..... ..#.. #.#.# .###. #.#.# ..#.. .....",
    "+": "..... ..#.. ..#.. ##### ..#.. ..#.. .....",
    ",": "..... ..... ..... ..... ..... .##.. .##.. ..#.. .#...",
    "-": "..... ..... ..... ##### ..... ..... .....",
    ".": "..... ..... ..... ..... ..... .##.. .##..",
    "/": "....# ...#. ...#. ..#.. .#... .#... #....",
    "0": ".###. #...# #..## #.#.# ##..# #...# .###.",
    "1": "..#.. .##.. ..#.. ..#.. ..#.. ..#.. .###.",
    "2": ".###. #...# ....# ...#. ..#.. .#... #####",
    "3": "##### ...#. ..#.. ...#. ....# #...# .###.",
    "4": "...#. ..##. .#.#. #..#. ##### ...#. ...#.",
    "5": "##### #.... ####. ....# ....# #...# .###.",
    "6": "..##. .#... #.... ####. #...# #...# .###.",
    "7": "##### ....# ...#. ..#.. .#... .#... .#...",
    "8": ".###. #...# #...# .###. #...# #...# .###.",
    "9": ".###. #...# #...# .#### ....# ...#. .##..",
    ":": "..... .##.. .##.. ..... .##.. .##.. .....",
    ";": "..... .##.. .##.. ..... ..... .##.. .##.. ..#.. .#...",
    "<": "...#. ..#.. .#... #.... .#... ..#.. ...#.",
    "=": "..... ..... ##### ..... ##### ..... .....",
    ">": ".#... ..#.. ...#. ....# ...#. ..#.. .#...",
    "?": ".###. #...# ....# ...#. ..#.. ..... ..#..",
    "@": ".###. #...# ....# .##.# #.#.# #.#.# .###.",
    "A": ".###. #...# #...# ##### #...# #...# #...#",
    "B": "####. #...# #...# ####. #...# #...# ####.",
    "C": ".###. #...# #.... #.... #.... #...# .###.",
    "D": "###.. #..#. #...# #...# #...# #..#. ###..",
    "E": "##### #.... #.... ####. #.... #.... #####",
    "F": "##### #.... #.... ####. #.... #.... #....",
    "G": ".###. #...# #.... #.### #...# #...# .####",
    "H": "#...# #...# #...# ##### #...# #...# #...#",
    "I": ".###. ..#.. ..#.. ..#.. ..#.. ..#.. .###.",
    "J": "..### ...#. ...#. ...#. ...#. #..#. .##..",
    "K": "#...# #..#. #.#.. ##... #.#.. #..#. #...#",
    "L": "#.... #.... #.... #.... #.... #.... #####",
    "M": "#...# ##.## #.#.# #.#.# #...# #...# #...#",
    "N": "#...# #...# ##..# #.#.# #..## #...# #...#",
    "O": ".###. #...# #...# #...# #...# #...# .###.",
    "P": "####. #...# #...# ####. #.... #.... #....",
    "Q": ".###. #...# #...# #...# #.#.# #..#. .##.#",
    "R": "####. #...# #...# ####. #.#.. #..#. #...#",
    "S": ".#### #.... #.... .###. ....# ....# ####.",
    "T": "##### ..#.. ..#.. ..#.. ..#.. ..#.. ..#..",
    "U": "#...# #...# #...# #...# #...# #...# .###.",
    "V": "#...# #...# #...# #...# #...# .#.#. ..#..",
    "W": "#...# #...# #...# #.#.# #.#.# #.#.# .#.#.",
    "X": "#...# #...# .#.#. ..#.. .#.#. #...# #...#",
    "Y": "#...# #...# .#.#. ..#.. ..#.. ..#.. ..#..",
    "Z": "##### ....# ...#. ..#.. .#... #.... #####",
    "[": ".###. .#... .#... .#... .#... .#... .###.",
    "\\": "#.... .#... .#... ..#.. ...#. ...#. ....#",
    "]": ".###. ...#. ...#. ...#. ...#. ...#. .###.",
    "^": "..#.. .#.#. #...# ..... ..... ..... .....",
    "_": "..... ..... ..... ..... ..... ..... #####",
    "`": ".#... ..#.. ..... ..... ..... ..... .....",
    "a": "..... ..... .###. ....# .#### #...# .####",
    "b": "#.... #.... #.##. ##..# #...# #...# ####.",
    "c": "..... ..... .###. #.... #.... #...# .###.",
    "d": "....# ....# .##.# #..## #...# #...# .####",
    "e": "..... ..... .###. #...# ##### #.... .###.",
    "f": "..##. .#..# .#... ###.. .#... .#... .#...",
    "g": "..... ..... .#### #...# #...# #...# .#### ....# .###.",
    "h": "#.... #.... #.##. ##..# #...# #...# #...#",
    "i": "..#.. ..... .##.. ..#.. ..#.. ..#.. .###.",
    "j": "...#. ..... ..##. ...#. ...#. ...#. ...#. #..#. .##..",
    "k": "#.... #.... #..#. #.#.. ##... #.#.. #..#.",
    "l": ".##.. ..#.. ..#.. ..#.. ..#.. ..#.. .###.",
    "m": "..... ..... ##.#. #.#.# #.#.# #...# #...#",
    "n": "..... ..... #.##. ##..# #...# #...# #...#",
    "o": "..... ..... .###. #...# #...# #...# .###.",
    "p": "..... ..... ####. #...# #...# #...# ####. #.... #....",
    "q": "..... ..... .#### #...# #...# #...# .#### ....# ....#",
    "r": "..... ..... #.##. ##..# #.... #.... #....",
    "s": "..... ..... .###. #.... .###. ....# ####.",
    "t": ".#... .#... ###.. .#... .#... .#..# ..##.",
    "u": "..... ..... #...# #...# #...# #..## .##.#",
    "v": "..... ..... #...# #...# #...# .#.#. ..#..",
    "w": "..... ..... #...# #...# #.#.# #.#.# .#.#.",
    "x": "..... ..... #...# .#.#. ..#.. .#.#. #...#",
    "y": "..... ..... #...# #...# #...# #...# .#### ....# .###.",
    "z": "..... ..... ##### ...#. ..#.. .#... #####",
    "{": "...#. ..#.. ..#.. .#... ..#.. ..#.. ...#.",
    "|": "..#.. ..#.. ..#.. ..#.. ..#.. ..#.. ..#..",
    "}": ".#... ..#.. ..#.. ...#. ..#.. ..#.. .#...",
    "~": "..... ..... .#... #.#.# ...#. ..... .....",
}
# fmt: on
_ASCII = str.maketrans(
    {"\u2192": "->", "\u00f7": "/", "\u00d7": "x", "\u00b5": "u", "\u2013": "-"}
)
"""Characters of the labels the font lacks, and what is drawn instead."""

WHITE = (255, 255, 255)
BLACK = (0, 0, 0)
GREY = (200, 200, 200)
DARK = (90, 90, 90)
COLOURS = {
    "veth": (150, 150, 150),
    "pasta": (230, 140, 30),
    "slirpy": (40, 110, 200),
    "slirpy-splice": (120, 60, 180),
    "slirp4netns": (60, 160, 60),
}


class Canvas:
    """An RGB image in memory."""

    def __init__(self, width: int, height: int) -> None:
        self.width = width
        self.height = height
        self.pixels = bytearray(WHITE * (width * height))

    def rect(
        self, x0: int, y0: int, x1: int, y1: int, colour: tuple[int, int, int]
    ) -> None:
        """Fill x0 <= x < x1, y0 <= y < y1, clipped to the canvas."""
        x0, x1 = max(0, min(x0, x1)), min(self.width, max(x0, x1))
        y0, y1 = max(0, min(y0, y1)), min(self.height, max(y0, y1))
        if x0 >= x1:
            return
        line = bytes(colour) * (x1 - x0)
        for y in range(y0, y1):
            start = (y * self.width + x0) * 3
            self.pixels[start : start + len(line)] = line

    def text(
        self,
        x: int,
        y: int,
        text: str,
        colour: tuple[int, int, int] = BLACK,
        scale: int = 2,
    ) -> int:
        """Draw ``text`` with its top-left corner at (x, y); returns the end x."""
        for char in text.translate(_ASCII):
            glyph = _FONT.get(char, _FONT["?"])
            for row, bits in enumerate(glyph.split()):
                for col, bit in enumerate(bits):
                    if bit == "#":
                        self.rect(
                            x + col * scale,
                            y + row * scale,
                            x + (col + 1) * scale,
                            y + (row + 1) * scale,
                            colour,
                        )
            x += 6 * scale
        return x

    def png(self) -> bytes:
        """The image as PNG bytes."""
        stride = self.width * 3
        raw = b"".join(
            b"\x00" + bytes(self.pixels[y * stride : (y + 1) * stride])
            for y in range(self.height)
        )

        def chunk(kind: bytes, data: bytes) -> bytes:
            body = kind + data
            return (
                struct.pack("!I", len(data))
                + body
                + struct.pack("!I", zlib.crc32(body))
            )

        header = struct.pack("!IIBBBBB", self.width, self.height, 8, 2, 0, 0, 0)
        return (
            b"\x89PNG\r\n\x1a\n"
            + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(raw, 9))
            + chunk(b"IEND", b"")
        )


def text_width(text: str, scale: int = 2) -> int:
    """Width in pixels of ``text``."""
    return len(text.translate(_ASCII)) * 6 * scale


def _goodness(impl: str, key: str, data: dict[str, Any], mtu: str) -> float | None:
    """Ratio to slirp4netns, inverted for lower-is-better metrics."""
    r = data["ratios"].get(mtu, {}).get(impl, {}).get("vs_slirp4netns", {}).get(key)
    if not isinstance(r, int | float) or r <= 0:
        return None
    r = float(r)
    return r if BY_KEY[key].higher_is_better else 1 / r


def draw(data: dict[str, Any], path: Path) -> None:
    """Write the chart of ``data`` (the benchmark's JSON) to ``path``."""
    impls = [
        n
        for n in ("veth", "pasta", "slirpy", "slirpy-splice")
        if n in data.get("impls", {}) and not data["impls"][n].get("skipped")
    ]
    mtus = list(data.get("results", {}))
    metrics = [
        m
        for m in METRICS
        if m.chart
        and any(
            _goodness(i, m.key, data, mtu) is not None for i in impls for mtu in mtus
        )
    ]
    values = [
        g
        for mtu in mtus
        for m in metrics
        for i in impls
        if (g := _goodness(i, m.key, data, mtu)) is not None
    ]
    lo = 10 ** math.floor(math.log10(min([*values, 0.5])))
    hi = 10 ** math.ceil(math.log10(max([*values, 2.0])))
    lo, hi = max(lo, 1e-3), min(hi, 1e3)

    label_w = max([text_width(f"{m.label} ({m.unit})") for m in metrics] + [200]) + 20
    plot_w = 640
    bar_h = 13
    group_h = bar_h * max(1, len(impls)) + 10
    panel_h = 40 + group_h * len(metrics) + 30
    width = label_w + plot_w + 100
    top = 90
    height = top + panel_h * max(1, len(mtus)) + 20
    canvas = Canvas(width, height)

    title = (
        "Ratio to slirp4netns (right of 1 = better; lower-is-better metrics inverted)"
    )
    canvas.text(10, 10, title, BLACK, 2)
    x = 10
    for impl in impls:
        canvas.rect(x, 40, x + 20, 54, COLOURS[impl])
        x = canvas.text(x + 26, 41, impl, BLACK, 2) + 20
    canvas.rect(x, 40, x + 3, 56, COLOURS["slirp4netns"])
    canvas.text(x + 10, 41, "slirp4netns = 1", BLACK, 2)
    canvas.text(
        10,
        64,
        str(data.get("date", ""))[:19]
        + "  "
        + str(data.get("machine", {}).get("cpu", "")),
        DARK,
        1,
    )

    def xpos(v: float) -> int:
        v = min(max(v, lo), hi)
        frac = (math.log10(v) - math.log10(lo)) / (math.log10(hi) - math.log10(lo))
        return label_w + int(frac * plot_w)

    for p, mtu in enumerate(mtus):
        y0 = top + p * panel_h
        canvas.text(10, y0, f"MTU {mtu}", BLACK, 3)
        grid_top, grid_bottom = y0 + 32, y0 + 32 + group_h * len(metrics)
        decade = lo
        while decade <= hi * 1.0001:
            for mult in (1, 2, 5):
                v = decade * mult
                if v > hi * 1.0001:
                    break
                gx = xpos(v)
                canvas.rect(
                    gx, grid_top, gx + 1, grid_bottom, GREY if mult > 1 else DARK
                )
                if mult == 1 or (hi / lo <= 100):
                    label = f"{v:g}x"
                    canvas.text(
                        gx - text_width(label, 1) // 2, grid_bottom + 4, label, DARK, 1
                    )
            decade *= 10
        one = xpos(1.0)
        canvas.rect(one - 1, grid_top, one + 2, grid_bottom, COLOURS["slirp4netns"])
        for n, metric in enumerate(metrics):
            gy = grid_top + n * group_h
            canvas.text(10, gy + 4, f"{metric.label} ({metric.unit})", BLACK, 2)
            for k, impl in enumerate(impls):
                by = gy + 4 + k * bar_h
                g = _goodness(impl, metric.key, data, mtu)
                if g is None:
                    canvas.text(one + 6, by + 2, "n/a", DARK, 1)
                    continue
                bx = xpos(g)
                canvas.rect(
                    min(one, bx), by, max(one, bx) + 1, by + bar_h - 2, COLOURS[impl]
                )
                label = f"{g:.2f}x" if g < 10 else f"{g:.1f}x"
                lx = bx + 4 if g >= 1 else bx - 4 - text_width(label, 1)
                canvas.text(lx, by + 2, label, BLACK, 1)
    path.write_bytes(canvas.png())
