# SPDX-License-Identifier: GPL-2.0-or-later
"""32-bit sequence-number arithmetic (RFC 9293 §3.4, RFC 1982)."""

from __future__ import annotations

from typing import Final

MOD: Final = 1 << 32
_HALF: Final = 1 << 31


def seq_add(a: int, n: int) -> int:
    return (a + n) & 0xFFFFFFFF


def seq_diff(a: int, b: int) -> int:
    """``a - b`` as a signed distance in -2**31 .. 2**31-1."""
    d = (a - b) & 0xFFFFFFFF
    return d - MOD if d >= _HALF else d


def seq_lt(a: int, b: int) -> bool:
    return seq_diff(a, b) < 0


def seq_le(a: int, b: int) -> bool:
    return seq_diff(a, b) <= 0


def seq_gt(a: int, b: int) -> bool:
    return seq_diff(a, b) > 0


def seq_ge(a: int, b: int) -> bool:
    return seq_diff(a, b) >= 0
