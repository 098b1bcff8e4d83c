# SPDX-License-Identifier: GPL-2.0-or-later
"""The Internet checksum (RFC 1071) against a word-by-word reference."""

from __future__ import annotations

import pytest
from checks import ref_checksum, ref_ones_sum, ref_pseudo_header
from hypothesis import given
from hypothesis import strategies as st
from scapy.utils import checksum as scapy_checksum

from slirpy.stack.wire.checksum import (
    add_sums,
    finish,
    internet_checksum,
    ones_sum,
    pseudo_header_sum,
)

sums = st.integers(0, 0xFFFF)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ("", 0x0000),
        ("0000", 0x0000),
        ("ffff", 0xFFFF),
        ("0001f203f4f5f6f7", 0xDDF2),
        ("0001f203f4f5f6", 0xDCFB),
        ("ff", 0xFF00),
        ("fffe0001", 0xFFFF),
        ("8000" * 4, 0x0002),
    ],
    ids=[
        "empty",
        "zero-word",
        "all-ones",
        "rfc1071-example",
        "odd-length",
        "single-byte",
        "sum-to-negative-zero",
        "carries",
    ],
)
def test_known_sums(data: str, expected: int) -> None:
    assert ones_sum(bytes.fromhex(data)) == expected
    assert ref_ones_sum(bytes.fromhex(data)) == expected


def test_rfc1071_checksum() -> None:
    assert internet_checksum(bytes.fromhex("0001f203f4f5f6f7")) == 0x220D


@given(data=st.binary(max_size=300), initial=sums)
def test_ones_sum_matches_reference(data: bytes, initial: int) -> None:
    assert ones_sum(data, initial) == ref_ones_sum(data, initial)


@given(data=st.binary(min_size=1, max_size=300).filter(lambda b: len(b) % 2 == 1))
def test_odd_lengths_pad_with_zero(data: bytes) -> None:
    assert ones_sum(data) == ref_ones_sum(data + b"\x00")


@given(data=st.binary(max_size=300), initial=sums)
def test_internet_checksum_matches_reference(data: bytes, initial: int) -> None:
    assert internet_checksum(data, initial) == ref_checksum(data, initial)


@given(data=st.binary(max_size=300))
def test_matches_scapy(data: bytes) -> None:
    assert internet_checksum(data) == scapy_checksum(data)


@given(data=st.binary(max_size=200))
def test_checksum_verifies(data: bytes) -> None:
    """A message with its checksum appended sums to all ones."""
    even = data + b"\x00" * (len(data) % 2)
    message = even + internet_checksum(even).to_bytes(2, "big")
    assert ref_ones_sum(message) == 0xFFFF


@given(a=st.binary(max_size=100).map(lambda b: b[: len(b) & ~1]), b=st.binary())
def test_add_sums_splits_at_even_offsets(a: bytes, b: bytes) -> None:
    assert add_sums(ones_sum(a), ones_sum(b)) == ref_ones_sum(a + b)


@given(a=sums, b=sums)
def test_add_sums_is_ones_complement_addition(a: int, b: int) -> None:
    word = a.to_bytes(2, "big") + b.to_bytes(2, "big")
    expected = ref_ones_sum(word)
    result = add_sums(a, b)
    assert 0 <= result <= 0xFFFF
    # 0x0000 and 0xFFFF are both zero in one's complement.
    assert result % 0xFFFF == expected % 0xFFFF


@given(value=sums)
def test_finish_inverts(value: int) -> None:
    assert finish(value) == 0xFFFF - value


@given(
    src=st.binary(min_size=4, max_size=4),
    dst=st.binary(min_size=4, max_size=4),
    protocol=st.integers(0, 255),
    length=sums,
)
def test_pseudo_header_sum(src: bytes, dst: bytes, protocol: int, length: int) -> None:
    expected = ref_ones_sum(ref_pseudo_header(src, dst, protocol, length))
    assert pseudo_header_sum(src, dst, protocol, length) == expected


@given(data=st.binary(max_size=4000))
def test_large_buffers(data: bytes) -> None:
    assert ones_sum(data) == ref_ones_sum(data)
