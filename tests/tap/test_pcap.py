# SPDX-License-Identifier: GPL-2.0-or-later
"""The ``--pcap`` writer, read back by dpkt, and the driver's capture hook."""

from __future__ import annotations

import asyncio
import os
import random
import socket
import struct
import time
from pathlib import Path

import dpkt
import pytest

from slirpy.driver import Driver
from slirpy.stack.config import StackConfig
from slirpy.stack.stack import Stack
from slirpy.tap.pcap import SNAPLEN, PcapWriter
from tests.frames import GUEST_MAC, arp_request, icmp_echo, mac

VNET_HDR = bytes.fromhex("01010000000000000000")  # NEEDS_CSUM, GSO_TCPV4


def read_pcap(path: Path) -> tuple[dpkt.pcap.Reader, list[tuple[float, bytes]]]:
    with path.open("rb") as f:
        reader = dpkt.pcap.Reader(f)
        return reader, list(reader)


def test_file_header(tmp_path: Path):
    path = tmp_path / "empty.pcap"
    PcapWriter.create(str(path)).close()
    data = path.read_bytes()
    assert len(data) == 24
    magic, major, minor, zone, sigfigs, snaplen, linktype = struct.unpack(
        "=IHHiIII", data
    )
    assert (magic, major, minor) == (0xA1B2C3D4, 2, 4)
    assert (zone, sigfigs, snaplen, linktype) == (0, 0, 65535, 1)
    reader, records = read_pcap(path)
    assert reader.datalink() == dpkt.pcap.DLT_EN10MB
    assert records == []
    assert path.stat().st_mode & 0o777 == 0o600


def test_frames_and_timestamps(tmp_path: Path):
    path = tmp_path / "frames.pcap"
    first = arp_request("10.0.2.2")
    second = icmp_echo()
    before = time.time()
    writer = PcapWriter.create(str(path))
    writer.write_frame(first)
    writer.write_frames([second, memoryview(first)])
    writer.close()
    after = time.time()
    assert writer.frames == 3
    _, records = read_pcap(path)
    assert [buf for _, buf in records] == [first, second, first]
    for ts, _ in records:
        assert before - 1e-6 <= ts <= after + 1e-6
    eth = dpkt.ethernet.Ethernet(records[1][1])
    assert isinstance(eth.data, dpkt.ip.IP)
    assert isinstance(eth.data.data, dpkt.icmp.ICMP)


def test_vnet_header_is_stripped(tmp_path: Path):
    path = tmp_path / "vnet.pcap"
    frame = icmp_echo()
    with_header = PcapWriter.create(str(path), vnet_hdr=True)
    with_header.write_frames([VNET_HDR + frame, bytes(10) + frame])
    with_header.close()
    _, records = read_pcap(path)
    assert [buf for _, buf in records] == [frame, frame]


def test_long_frame_is_cut_at_snaplen(tmp_path: Path):
    path = tmp_path / "long.pcap"
    frame = mac("ff:ff:ff:ff:ff:ff") + mac(GUEST_MAC) + b"\x08\x00"
    frame += bytes(range(256)) * 300  # a 76814-byte super-frame
    writer = PcapWriter.create(str(path), vnet_hdr=True)
    writer.write_frame(VNET_HDR + frame)
    writer.close()
    data = path.read_bytes()
    _, _, incl_len, orig_len = struct.unpack_from("=IIII", data, 24)
    assert (incl_len, orig_len) == (SNAPLEN, len(frame))
    _, records = read_pcap(path)
    assert records[0][1] == frame[:SNAPLEN]


def test_many_frames_in_one_call(tmp_path: Path):
    """More buffers than one writev takes."""
    path = tmp_path / "many.pcap"
    frames = [
        icmp_echo(seq=i, payload=bytes([i % 256]) * (i % 97)) for i in range(1500)
    ]
    writer = PcapWriter.create(str(path))
    writer.write_frames(frames)
    writer.close()
    _, records = read_pcap(path)
    assert [buf for _, buf in records] == frames


def test_write_error_stops_the_capture(caplog: pytest.LogCaptureFixture):
    read_end, write_end = os.pipe()
    writer = PcapWriter(write_end)
    os.close(read_end)  # EPIPE from now on (SIGPIPE is ignored by Python)
    writer.write_frame(icmp_echo())
    assert writer.closed
    assert "capture stopped" in caplog.text
    writer.write_frame(icmp_echo())  # a no-op once closed
    writer.close()


def test_driver_captures_both_directions(tmp_path: Path):
    """A frame read from the TAP and the stack's answer both reach the file."""
    path = tmp_path / "driver.pcap"
    guest, tap = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    loop = asyncio.new_event_loop()
    writer = PcapWriter.create(str(path))
    stack = Stack(StackConfig(), random.Random(1))
    driver = Driver(loop, stack, tap.fileno(), capture=writer)
    request = arp_request("10.0.2.2")
    try:
        driver.start()
        guest.send(request)
        guest.settimeout(5)

        async def reply() -> bytes:
            return await loop.sock_recv(guest, 65536)

        guest.setblocking(False)
        answer = loop.run_until_complete(asyncio.wait_for(reply(), 5))
    finally:
        driver.stop()
        loop.close()
        writer.close()
        guest.close()
        tap.close()
    _, records = read_pcap(path)
    assert [buf for _, buf in records] == [request, answer]
    arp = dpkt.ethernet.Ethernet(answer).data
    assert isinstance(arp, dpkt.arp.ARP)
    assert arp.op == dpkt.arp.ARP_OP_REPLY


def test_driver_without_capture_writes_nothing(tmp_path: Path):
    guest, tap = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    loop = asyncio.new_event_loop()
    driver = Driver(loop, Stack(StackConfig(), random.Random(1)), tap.fileno())
    try:
        assert driver.capture is None
        driver.start()
        guest.send(arp_request("10.0.2.2"))
        guest.setblocking(False)
        answer = loop.run_until_complete(
            asyncio.wait_for(loop.sock_recv(guest, 65536), 5)
        )
        assert answer
    finally:
        driver.stop()
        loop.close()
        guest.close()
        tap.close()
    assert list(tmp_path.iterdir()) == []
