# SPDX-License-Identifier: GPL-2.0-or-later
"""The virtio_net_hdr layout and helpers, against hand-written header bytes."""

from __future__ import annotations

import struct

import pytest

from slirpy.tap import vnet

# A TCPv4 super-frame as the guest kernel hands it over (MSS 1448).
GSO_TCPV4_HDR = bytes.fromhex(
    "01"  # flags: NEEDS_CSUM
    "01"  # gso_type: TCPV4
    "4200"  # hdr_len 66 (14 + 20 + 32), little-endian
    "a805"  # gso_size 1448
    "2200"  # csum_start 34 (14 + 20)
    "1000"  # csum_offset 16 (TCP checksum)
)

# A UDP/IPv6 frame with a partial checksum, no segmentation.
UDP6_CSUM_HDR = bytes.fromhex(
    "01"  # flags: NEEDS_CSUM
    "00"  # gso_type: NONE
    "0000"  # hdr_len 0
    "0000"  # gso_size 0
    "3600"  # csum_start 54 (14 + 40)
    "0600"  # csum_offset 6 (UDP checksum)
)


def test_constants_match_linux_virtio_net_h():
    assert vnet.VNET_HDR_LEN == 10
    assert vnet.VNET_HDR_STRUCT.size == vnet.VNET_HDR_LEN
    assert (vnet.F_NEEDS_CSUM, vnet.F_DATA_VALID, vnet.F_RSC_INFO) == (1, 2, 4)
    assert (vnet.GSO_NONE, vnet.GSO_TCPV4, vnet.GSO_UDP, vnet.GSO_TCPV6) == (
        0,
        1,
        3,
        4,
    )
    assert vnet.GSO_UDP_L4 == 5
    assert vnet.GSO_ECN == 0x80
    assert vnet.VNET_HDR_NONE == b"\0" * 10


def test_pack_gso_tcpv4():
    hdr = vnet.pack_vnet_hdr(
        flags=vnet.F_NEEDS_CSUM,
        gso_type=vnet.GSO_TCPV4,
        hdr_len=66,
        gso_size=1448,
        csum_start=34,
        csum_offset=16,
    )
    assert hdr == GSO_TCPV4_HDR


def test_pack_defaults_is_all_zero():
    assert vnet.pack_vnet_hdr() == vnet.VNET_HDR_NONE


def test_unpack():
    assert vnet.unpack_vnet_hdr(GSO_TCPV4_HDR) == (1, 1, 66, 1448, 34, 16)
    assert vnet.unpack_vnet_hdr(UDP6_CSUM_HDR) == (1, 0, 0, 0, 54, 6)


def test_unpack_ignores_the_frame_after_the_header():
    frame = GSO_TCPV4_HDR + b"\xff" * 60
    assert vnet.unpack_vnet_hdr(memoryview(frame)) == (1, 1, 66, 1448, 34, 16)


def test_unpack_ecn_bit_stays_in_gso_type():
    hdr = bytes([0, vnet.GSO_TCPV6 | vnet.GSO_ECN]) + bytes(8)
    flags, gso_type, *_ = vnet.unpack_vnet_hdr(bytearray(hdr))
    assert flags == 0
    assert gso_type & ~vnet.GSO_ECN == vnet.GSO_TCPV6
    assert gso_type & vnet.GSO_ECN


@pytest.mark.parametrize(
    "fields",
    [
        (0, 0, 0, 0, 0, 0),
        (vnet.F_DATA_VALID, vnet.GSO_NONE, 0, 0, 0, 0),
        (vnet.F_NEEDS_CSUM, vnet.GSO_TCPV6, 86, 65000, 54, 16),
        (0xFF, 0xFF, 0xFFFF, 0xFFFF, 0xFFFF, 0xFFFF),
    ],
    ids=["zero", "data-valid", "tcpv6-gso", "all-ones"],
)
def test_roundtrip(fields):
    assert vnet.unpack_vnet_hdr(vnet.pack_vnet_hdr(*fields)) == fields


def test_pack_into_at_offset():
    buf = bytearray(b"\xee" * 14)
    vnet.pack_vnet_hdr_into(buf, 2, vnet.F_NEEDS_CSUM, vnet.GSO_TCPV4, 66, 1448, 34, 16)
    assert buf[:2] == b"\xee\xee"
    assert bytes(buf[2:12]) == GSO_TCPV4_HDR
    assert buf[12:] == b"\xee\xee"


@pytest.mark.parametrize("length", [0, 1, 9], ids=["empty", "one", "nine"])
def test_unpack_truncated(length):
    with pytest.raises(ValueError):
        vnet.unpack_vnet_hdr(GSO_TCPV4_HDR[:length])


def test_pack_out_of_range():
    with pytest.raises(struct.error):
        vnet.pack_vnet_hdr(gso_size=0x10000)
