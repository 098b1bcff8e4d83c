# SPDX-License-Identifier: GPL-2.0-or-later
"""``--pcap FILE``: every frame on the TAP, both ways, in a file tshark can read.

The daemon captures while the guest pings the gateway, downloads from the
host's loopback and is reached through a port forward; once it has stopped the
file is read back with dpkt (and with tshark when it is installed) and must
hold the echo request and reply and both TCP handshakes, in both directions,
as plain Ethernet frames (no virtio-net header).
"""

from __future__ import annotations

import shutil
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

import dpkt
import pytest
from lab import (
    GATEWAY,
    GUEST,
    Container,
    Lab,
    fwd_tcp,
    rand_sha256,
    tcp_server,
    tcp_transfer,
)

pytestmark = [pytest.mark.timeout(90), pytest.mark.usefixtures("slirpy_only")]

PING = (
    ["ping", "-n", "-c", "2", "-i", "0.2", "-W", "2", GATEWAY]
    if shutil.which("ping")
    else ["busybox", "ping", "-c", "2", "-W", "2", GATEWAY]
)
DOWNLOAD = 300_000
UPLOAD = 5_000
FORWARD_PORT = 8090


@dataclass(frozen=True)
class Segment:
    """One TCP segment of the capture."""

    src: str
    sport: int
    dst: str
    dport: int
    flags: int
    payload: int


@dataclass
class Capture:
    """What the daemon wrote, decoded by dpkt."""

    path: Path
    echo: list[tuple[str, str, int, int, int]]
    """ICMP echo: (src, dst, type, id, seq)."""
    tcp: list[Segment]
    ethertypes: set[int]
    records: int

    def handshake(self, client: str, server: str, port: int) -> bool:
        """SYN client -> server:port, SYN-ACK back, then the client's ACK."""
        syn = synack = False
        for seg in self.tcp:
            if seg.dport == port and (seg.src, seg.dst) == (client, server):
                if seg.flags & dpkt.tcp.TH_SYN and not seg.flags & dpkt.tcp.TH_ACK:
                    syn = True
                elif synack and seg.flags & dpkt.tcp.TH_ACK:
                    return True
            elif seg.sport == port and (seg.src, seg.dst) == (server, client):
                syn_ack = dpkt.tcp.TH_SYN | dpkt.tcp.TH_ACK
                if syn and seg.flags & syn_ack == syn_ack:
                    synack = True
        return False


def _addr(raw: bytes) -> str:
    return ".".join(str(b) for b in raw)


def read_capture(path: Path) -> Capture:
    capture = Capture(path, [], [], set(), 0)
    with path.open("rb") as f:
        reader = dpkt.pcap.Reader(f)
        assert reader.datalink() == dpkt.pcap.DLT_EN10MB
        assert reader.snaplen == 65535
        for _, buf in reader:
            capture.records += 1
            eth = dpkt.ethernet.Ethernet(buf)
            capture.ethertypes.add(eth.type)
            ip = eth.data
            if not isinstance(ip, dpkt.ip.IP):
                continue
            # A virtio-net header left in would shift every field: the IPv4
            # total length would not match what the record holds.
            assert ip.len == len(buf) - 14 or len(buf) == 65535, len(buf)
            src, dst = _addr(ip.src), _addr(ip.dst)
            if isinstance(ip.data, dpkt.icmp.ICMP) and ip.data.type in (0, 8):
                echo = ip.data.data
                capture.echo.append((src, dst, ip.data.type, echo.id, echo.seq))
            elif isinstance(ip.data, dpkt.tcp.TCP):
                seg = ip.data
                capture.tcp.append(
                    Segment(src, seg.sport, dst, seg.dport, seg.flags, len(seg.data))
                )
    return capture


@pytest.fixture
def capture(lab: Lab, container: Container) -> Capture:
    """Traffic both ways through a daemon started with --pcap, then the file."""
    path = lab.dir / "capture.pcap"
    daemon = lab.start_daemon(
        container, f"--pcap={path}", api_socket=lab.api_socket_path()
    )
    ping = container.run(PING, timeout=30, check=False)
    assert ping.returncode == 0, ping.describe()
    transfer = tcp_transfer(
        lab,
        container,
        server_actions=f"send:rand:91:{DOWNLOAD},shutwr",
        client_actions="recv",
    )
    assert transfer.step("client", "recv")["sha256"] == rand_sha256(91, DOWNLOAD)
    guest_server = tcp_server(container, "recv")
    daemon.add_hostfwd("tcp", FORWARD_PORT, guest_server.port)
    (client,) = fwd_tcp(
        lab.host, [f"127.0.0.1:{FORWARD_PORT}"], f"send:rand:92:{UPLOAD},shutwr"
    )
    assert client.get("error") is None, client
    (served,) = guest_server.results(1)
    assert served["steps"][0]["sha256"] == rand_sha256(92, UPLOAD)
    daemon.proc.send_signal(signal.SIGTERM)
    assert daemon.proc.wait(30) == 0, daemon.describe()
    return read_capture(path)


def test_echo_request_and_reply(capture: Capture) -> None:
    requests = [e for e in capture.echo if e[:3] == (GUEST, GATEWAY, 8)]
    replies = [e for e in capture.echo if e[:3] == (GATEWAY, GUEST, 0)]
    assert len(requests) == 2, capture.echo
    assert [r[3:] for r in replies] == [r[3:] for r in requests]


def test_tcp_handshakes_both_ways(capture: Capture) -> None:
    """The guest's connection out and the forwarded connection in."""
    outbound = {s.dport for s in capture.tcp if s.src == GUEST and s.dst == GATEWAY}
    assert any(capture.handshake(GUEST, GATEWAY, port) for port in outbound), (
        capture.tcp[:10]
    )
    inbound = {s.dport for s in capture.tcp if s.src == GATEWAY and s.dst == GUEST}
    assert any(capture.handshake(GATEWAY, GUEST, port) for port in inbound), (
        capture.tcp[:10]
    )


def test_payload_is_all_there(capture: Capture) -> None:
    """Every byte of the download crossed the TAP, so every byte is in the file
    (the kernel's super-frames are recorded as they are)."""
    to_guest = sum(s.payload for s in capture.tcp if s.dst == GUEST)
    from_guest = sum(s.payload for s in capture.tcp if s.src == GUEST)
    # No retransmission is expected on a TAP; allow for one anyway.
    assert DOWNLOAD + UPLOAD <= to_guest < DOWNLOAD + UPLOAD + 65536, to_guest
    assert from_guest < 65536, from_guest
    ip, arp = dpkt.ethernet.ETH_TYPE_IP, dpkt.ethernet.ETH_TYPE_ARP
    assert {ip, arp} <= capture.ethertypes
    assert capture.ethertypes <= {ip, arp, dpkt.ethernet.ETH_TYPE_IP6}


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed")
def test_tshark_reads_it(capture: Capture) -> None:
    def fields(display_filter: str, *names: str) -> list[list[str]]:
        argv = ["tshark", "-n", "-r", str(capture.path), "-Y", display_filter]
        argv += ["-T", "fields", *(arg for name in names for arg in ("-e", name))]
        proc = subprocess.run(
            argv, capture_output=True, text=True, timeout=60, check=False
        )
        assert proc.returncode == 0, proc.stderr
        return [line.split("\t") for line in proc.stdout.splitlines()]

    echoes = fields("icmp.type == 8 || icmp.type == 0", "ip.src", "icmp.type")
    assert [GUEST, "8"] in echoes
    assert [GATEWAY, "0"] in echoes
    syns = fields("tcp.flags.syn == 1", "ip.src", "tcp.flags.ack")
    assert [GUEST, "0"] in syns or [GUEST, "False"] in syns  # out: SYN
    assert [GATEWAY, "1"] in syns or [GATEWAY, "True"] in syns  # its SYN-ACK
    assert len(syns) >= 4  # and the forwarded connection's pair
    everything = fields("frame", "frame.protocols")
    assert len(everything) == capture.records
    assert all(row[0].startswith("eth:ethertype:") for row in everything)
