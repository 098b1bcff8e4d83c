# SPDX-License-Identifier: GPL-2.0-or-later
"""The ``virtio_net_hdr`` that precedes every frame on a TAP opened with offloads.

This module owns the 10-byte legacy layout (``linux/virtio_net.h``) and its
constants; it does no I/O. Field order: ``flags`` u8, ``gso_type`` u8,
``hdr_len`` u16, ``gso_size`` u16, ``csum_start`` u16, ``csum_offset`` u16.

The legacy header is in the host's byte order unless ``TUNSETVNETLE`` says
otherwise; ``slirpy.tap.device.enable_offloads`` makes it little-endian on
big-endian hosts, so little-endian is right everywhere.

Toward the guest, ``F_NEEDS_CSUM`` with ``csum_start``/``csum_offset`` (counted
from the start of the Ethernet frame) asks the kernel to finish a checksum whose
field holds the pseudo-header sum; a ``gso_type`` other than ``GSO_NONE`` with
``gso_size`` = MSS asks it to cut the frame into segments. ``F_DATA_VALID`` is
ignored on that path. From the guest, the kernel sets the same fields on the
super-frames and partially checksummed frames it hands over.
"""

from __future__ import annotations

import struct
from typing import Final, TypeAlias

VNET_HDR_LEN: Final = 10
"""Bytes of the legacy ``struct virtio_net_hdr`` (no ``num_buffers``)."""

VNET_HDR_STRUCT: Final = struct.Struct("<BBHHHH")
"""``flags, gso_type, hdr_len, gso_size, csum_start, csum_offset``."""

# flags
F_NEEDS_CSUM: Final = 1
"""The checksum at ``csum_start + csum_offset`` still has to be completed."""
F_DATA_VALID: Final = 2
"""The checksum has been verified (frames from the kernel only)."""
F_RSC_INFO: Final = 4
"""The ``csum_*`` fields carry receive-segment-coalescing info (not for TAP)."""

# gso_type
GSO_NONE: Final = 0
GSO_TCPV4: Final = 1
GSO_UDP: Final = 3
"""UFO: IPv4 UDP fragmentation offload (obsolete, never negotiated here)."""
GSO_TCPV6: Final = 4
GSO_UDP_L4: Final = 5
"""USO: UDP segmentation (``TUN_F_USO4``/``TUN_F_USO6``; not negotiated here)."""
GSO_ECN: Final = 0x80
"""A bit ORed into ``gso_type``: the TCP segments carry ECN (CWR set)."""

VNET_HDR_NONE: Final = bytes(VNET_HDR_LEN)
"""The header of a frame that needs nothing from the kernel."""

VnetHeader: TypeAlias = tuple[int, int, int, int, int, int]
"""``(flags, gso_type, hdr_len, gso_size, csum_start, csum_offset)``."""


def pack_vnet_hdr(
    flags: int = 0,
    gso_type: int = GSO_NONE,
    hdr_len: int = 0,
    gso_size: int = 0,
    csum_start: int = 0,
    csum_offset: int = 0,
) -> bytes:
    """Return the 10 header bytes; ``struct.error`` if a field is out of range."""
    return VNET_HDR_STRUCT.pack(
        flags, gso_type, hdr_len, gso_size, csum_start, csum_offset
    )


def pack_vnet_hdr_into(
    buf: bytearray | memoryview,
    offset: int,
    flags: int = 0,
    gso_type: int = GSO_NONE,
    hdr_len: int = 0,
    gso_size: int = 0,
    csum_start: int = 0,
    csum_offset: int = 0,
) -> None:
    """Write the header at ``buf[offset:offset + VNET_HDR_LEN]``."""
    VNET_HDR_STRUCT.pack_into(
        buf, offset, flags, gso_type, hdr_len, gso_size, csum_start, csum_offset
    )


def unpack_vnet_hdr(buf: bytes | bytearray | memoryview) -> VnetHeader:
    """Parse the header at the start of ``buf``; ``ValueError`` if it is short.

    The frame itself starts at ``buf[VNET_HDR_LEN:]``.
    """
    if len(buf) < VNET_HDR_LEN:
        raise ValueError(f"virtio_net_hdr needs {VNET_HDR_LEN} bytes, got {len(buf)}")
    flags, gso_type, hdr_len, gso_size, csum_start, csum_offset = (
        VNET_HDR_STRUCT.unpack_from(buf)
    )
    return flags, gso_type, hdr_len, gso_size, csum_start, csum_offset
