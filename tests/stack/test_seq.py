# SPDX-License-Identifier: GPL-2.0-or-later
"""The laws of 32-bit sequence arithmetic (RFC 9293 §3.4, RFC 1982)."""

from __future__ import annotations

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from slirpy.stack.tcp.seq import seq_add, seq_diff, seq_ge, seq_gt, seq_le, seq_lt

seqs = st.integers(0, 0xFFFFFFFF)
steps = st.integers(-(1 << 31) + 1, (1 << 31) - 1)
HALF = 1 << 31


@pytest.mark.parametrize(
    ("a", "b", "diff"),
    [
        (0, 0, 0),
        (1, 0, 1),
        (0, 1, -1),
        (0, 0xFFFFFFFF, 1),
        (0xFFFFFFFF, 0, -1),
        (5, 0xFFFFFFF0, 21),
        (HALF - 1, 0, HALF - 1),
        (HALF, 0, -HALF),
    ],
    ids=[
        "equal",
        "ahead",
        "behind",
        "wrap-ahead",
        "wrap-behind",
        "wrap-far",
        "max",
        "half",
    ],
)
def test_known_distances(a: int, b: int, diff: int) -> None:
    assert seq_diff(a, b) == diff


@given(a=seqs, n=st.integers(-(1 << 40), 1 << 40))
def test_add_wraps(a: int, n: int) -> None:
    result = seq_add(a, n)
    assert 0 <= result <= 0xFFFFFFFF
    assert result == (a + n) % (1 << 32)


@given(a=seqs, n=steps)
def test_diff_inverts_add(a: int, n: int) -> None:
    assert seq_diff(seq_add(a, n), a) == n


@given(a=seqs, b=seqs)
def test_diff_range_and_add_back(a: int, b: int) -> None:
    d = seq_diff(a, b)
    assert -HALF <= d < HALF
    assert seq_add(b, d) == a


@given(a=seqs, b=seqs)
def test_exactly_one_order(a: int, b: int) -> None:
    assume(seq_diff(a, b) != -HALF)  # undefined in RFC 1982
    assert [seq_lt(a, b), a == b, seq_gt(a, b)].count(True) == 1


@given(a=seqs, b=seqs)
def test_antisymmetry(a: int, b: int) -> None:
    assume(seq_diff(a, b) != -HALF)
    assert seq_lt(a, b) == seq_gt(b, a)
    assert seq_le(a, b) == seq_ge(b, a)
    assert seq_diff(a, b) == -seq_diff(b, a)


@given(a=seqs, b=seqs)
def test_le_is_lt_or_equal(a: int, b: int) -> None:
    assert seq_le(a, b) == (seq_lt(a, b) or a == b)
    assert seq_ge(a, b) == (seq_gt(a, b) or a == b)


@given(a=seqs, x=st.integers(0, (1 << 30) - 1), y=st.integers(0, (1 << 30) - 1))
def test_transitive_within_a_quarter(a: int, x: int, y: int) -> None:
    b = seq_add(a, x)
    c = seq_add(b, y)
    assert seq_le(a, b)
    assert seq_le(b, c)
    assert seq_le(a, c)
    if x and y:
        assert seq_lt(a, c)


@given(a=seqs, n=st.integers(1, HALF - 1))
def test_adding_moves_forward(a: int, n: int) -> None:
    assert seq_gt(seq_add(a, n), a)
    assert seq_lt(seq_add(a, -n), a)


@given(a=seqs, b=seqs, n=steps)
def test_order_is_translation_invariant(a: int, b: int, n: int) -> None:
    assert seq_diff(seq_add(a, n), seq_add(b, n)) == seq_diff(a, b)
