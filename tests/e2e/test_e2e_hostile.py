# SPDX-License-Identifier: GPL-2.0-or-later
"""Hostile guests through the real TAP: bad frames, policy, floods, bounds.

Every frame here is written by ``tools/raw_frames.py`` from a raw packet
socket on ``tap0`` in the container, so it reaches the daemon exactly as the
guest's kernel would hand it over, but with whatever bytes the catalogue of
``tests/fuzz/catalogue.py`` (``shared/design/security.md`` §6) holds.

For each class of the catalogue: the daemon is still alive, a normal TCP
connection still carries data both ways (SHA-256 checked), and slirpy's
``stats`` counters grew at least by what the catalogue says each frame must
count.  The policy class runs with ``--disable-host-loopback -6`` and a
tripwire (``tools/sink_peer.py``) listening on every address of the host
namespace on the port the frames aim at: nothing may arrive there.

Then what a guest can make the daemon hold stays bounded: 100 000 SYNs from
random source ports (from the guest's address, and spoofed), 5 000 UDP source
ports, 2 000 ICMP echo identifiers, 5 000 never-completed fragment chains and
a guest that never reads while the host keeps sending: the daemon's resident
memory (``VmRSS``), its open file descriptors and its flows (``list_flows``)
are read from outside before and after.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from lab import (
    GATEWAY,
    GUEST,
    REMOTE,
    Container,
    Daemon,
    Impl,
    Lab,
    Server,
    fd_count,
    first_loop_only,
    flows,
    rand_sha256,
    rss,
    stats,
    tcp_connect_error,
    tcp_transfer,
    udp_echo,
    wait_until,
)

if str(Path(__file__).resolve().parents[1]) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fuzz import catalogue as cat

pytestmark = pytest.mark.timeout(120)

PROFILE_OPTIONS = {
    "default": (),
    "ipv6": ("-6",),
    "noloop": ("-6", "--disable-host-loopback"),
}
REPEAT = 3
"""Each frame of a class is sent this many times."""
CLASSES = sorted({c.cls for c in cat.catalogue() if c.tap})
MIB = 1024 * 1024
RSS_BOUND = 30 * MIB
HALF_OPEN = 256
"""``--max-half-open``'s default."""
SPOOFED = "10.0.2.99"
"""A source address in the virtual network that the container does not own."""


# ----------------------------------------------------------------- helpers


def tap_mac(container: Container) -> bytes:
    link = json.loads(container.run(["ip", "-json", "link", "show", "tap0"]).stdout)
    return bytes.fromhex(link[0]["address"].replace(":", ""))


def send_frames(
    lab: Lab, container: Container, frames: list[bytes], capture: float = 0.0
) -> dict[str, Any]:
    """Write ``frames`` onto tap0 from the container; the tool's record."""
    path = lab.dir / f"frames-{time.monotonic_ns()}.hex"
    path.write_text("".join(f.hex() + "\n" for f in frames))
    path.chmod(0o644)
    args = ["send", f"--file={path}"]
    if capture:
        args.append(f"--capture={capture}")
    result = container.python("raw_frames", *args, timeout=120)
    records = result.json_lines()
    assert result.returncode == 0, result.describe()
    assert len(records) == 1, result.describe()
    return records[0]


def normal_connection(lab: Lab, container: Container, *, remote: bool) -> None:
    """A guest connection carries 256 KiB to an echo server and back intact."""
    where = REMOTE if remote else GATEWAY
    transfer = tcp_transfer(
        lab,
        container,
        server_actions="echo",
        client_actions="send:rand:7:262144,shutwr,recv",
        bind=REMOTE if remote else "127.0.0.1",
        connect=where,
        timeout=30,
    )
    assert transfer.step("client", "recv")["sha256"] == rand_sha256(7, 262144)


def tripwire(lab: Lab) -> Server:
    """TCP and UDP listeners on every host address, one port."""
    return lab.host.start_server("sink_peer", "--timeout=110", name="tripwire")


def tripped(sink: Server) -> list[dict[str, Any]]:
    return [json.loads(line) for line in sink.proc.stdout().splitlines() if "{" in line]


def drain(daemon: Daemon, impl: Impl, frames: int, before: int = 0) -> None:
    """Wait until the daemon has read ``frames`` more frames than ``before``
    (the TAP queues what the tool wrote faster than the daemon reads)."""
    if not impl.is_slirpy:
        time.sleep(3)
        return

    def done() -> bool:
        counters = stats(daemon, impl)
        return counters is not None and counters["rx_frames"] >= before + frames

    wait_until(done, 30, f"the daemon reads {frames} frames")


# ------------------------------------------------------ the catalogue, live


@pytest.mark.parametrize("cls", CLASSES)
def test_catalogue_class_through_the_tap(
    lab: Lab, container: Container, impl: Impl, cls: str
) -> None:
    profile = next(c.profile for c in cat.catalogue() if c.cls == cls)
    daemon = lab.start_daemon(
        container, *PROFILE_OPTIONS[profile], api_socket=lab.api_socket_path()
    )
    sink = tripwire(lab)
    everything = [
        c for c in cat.catalogue(tap_mac(container), sink.port) if c.cls == cls
    ]
    cases = [c for c in everything if c.tap]
    untappable = [c.frame for c in everything if not c.tap and c.frame]
    if untappable:
        # Shorter than an Ethernet header: the kernel will not send them (the
        # sans-IO tests cover them); prove it rather than assume it.
        refused = send_frames(lab, container, untappable)["refused"]
        assert sum(refused.values()) == len(untappable), refused
    frames = [c.frame for c in cases] * REPEAT
    before = stats(daemon, impl)
    record = send_frames(lab, container, frames)
    assert record["refused"] == {}, record
    assert record["delivered"] >= len(frames), record
    assert daemon.proc.alive(), daemon.describe()
    normal_connection(lab, container, remote=profile == "noloop")
    if profile == "noloop":
        assert tcp_connect_error(lab, container, GATEWAY, sink.port)
    after = stats(daemon, impl)
    if before is not None and after is not None:
        expected: dict[str, int] = {"rx_frames": len(frames)}
        for case in cases:
            for counter, n in case.counters.items():
                expected[counter] = expected.get(counter, 0) + n * REPEAT
        short = {
            k: (after[k] - before[k], v)
            for k, v in expected.items()
            if after[k] - before[k] < v
        }
        assert not short, f"counters (got, wanted): {short}"
    time.sleep(0.2)
    assert tripped(sink) == [], "a hostile frame reached the host namespace"
    assert daemon.proc.alive(), daemon.describe()


def test_echo_replies_carry_nothing_past_the_declared_length(
    lab: Lab, container: Container
) -> None:
    """CVE-2020-10756: bytes after IPv4 ``tot_len`` or IPv6 ``payload_len``
    (here a secret) never come back in an echo reply."""
    lab.start_daemon(container, "-6")
    mac = tap_mac(container)
    body4 = b"exactly-this"
    packet4 = cat.ipv4(GUEST, GATEWAY, 1, cat.icmp_echo(0x77, 1, body4))
    body6 = b"\x00\x78\x00\x01exactly-that"
    packet6 = cat.ipv6(
        "fe80::100",
        cat.ROUTER_LL,
        58,
        cat.icmpv6("fe80::100", cat.ROUTER_LL, 128, body6),
    )
    frames = [
        cat.eth(cat.ETH_IPV4, packet4 + b"SECRET-SECRET", src=mac),
        cat.eth(cat.ETH_IPV6, packet6 + b"SECRET-SECRET", src=mac, dst=cat.ROUTER_MAC),
    ]
    record = send_frames(lab, container, frames, capture=1.5)
    captured = [bytes.fromhex(h) for h in record["captured"]]
    replies4 = [f for f in captured if f[12:14] == b"\x08\x00" and f[23] == 1]
    replies6 = [f for f in captured if f[12:14] == b"\x86\xdd" and f[54] == 129]
    assert replies4, [f.hex() for f in captured]
    assert replies6, [f.hex() for f in captured]
    for frame in captured:
        assert b"SECRET" not in frame
    assert replies4[0].endswith(body4)
    assert replies4[0][16:18] == (20 + 8 + len(body4)).to_bytes(2, "big")
    assert replies6[0].endswith(body6[4:])
    assert replies6[0][18:20] == (4 + len(body6)).to_bytes(2, "big")


def test_udp_length_shorter_than_the_payload_is_what_reaches_the_host(
    lab: Lab, container: Container
) -> None:
    """A UDP length field shorter than the IP payload: the host receives
    exactly the declared bytes, none of the rest."""
    lab.start_daemon(container)
    sink = tripwire(lab)
    mac = tap_mac(container)
    seg = cat.udp(GUEST, GATEWAY, 40000, sink.port, b"ok" + b"SECRET" * 5, length=10)
    send_frames(
        lab,
        container,
        [cat.eth(cat.ETH_IPV4, cat.ipv4(GUEST, GATEWAY, 17, seg), src=mac)],
    )
    wait_until(lambda: tripped(sink), 5, "the datagram arrives")
    assert tripped(sink) == [{"event": "datagram", "peer": "127.0.0.1", "len": 2}]


def test_dhcp_with_a_giant_option_55_and_no_end_is_answered(
    lab: Lab, container: Container
) -> None:
    lab.start_daemon(container)
    mac = tap_mac(container)
    frames = [
        cat.dhcp_frame(mac, cat.DISCOVER + b"\x37\xff" + bytes(range(255))),
        cat.dhcp_frame(mac, cat.DISCOVER + b"\x0c\xff" + b"overrun"),
    ]
    record = send_frames(lab, container, frames, capture=1.0)
    offers = [
        bytes.fromhex(h)
        for h in record["captured"]
        if bytes.fromhex(h)[12:14] == b"\x08\x00" and bytes.fromhex(h)[23] == 17
    ]
    assert len(offers) == 1, record["captured"]
    options = offers[0][14 + 20 + 8 + 240 :]
    assert options[:3] == b"\x35\x01\x02", options.hex()  # an OFFER
    assert offers[0][14 + 20 + 8 + 28 : 14 + 20 + 8 + 34] == mac


def test_live_connection_survives_hostile_segments(
    lab: Lab, container: Container, impl: Impl
) -> None:
    """A connection played by hand from an address the container's kernel
    does not own: urgent pointers past the segment or without data, RSTs with
    bad sequence numbers, SYN+FIN and SYN in the window, then its data still
    arrives whole at the host server and both FINs are acknowledged."""
    daemon = lab.start_daemon(container, api_socket=lab.api_socket_path())
    server = lab.host.start_server(
        "tcp_peer", "--listen=127.0.0.1:0", "--actions=recv", "--timeout=30"
    )
    script = [
        {"flags": "PAU", "data": "urgent-past-end,", "urgent": 60000},
        {"flags": "AU", "urgent": 5},
        {"flags": "PAU", "data": "urgent-zero,", "urgent": 0},
        {"flags": "R", "seq": 100_000},
        {"flags": "R", "seq": 1},
        {"flags": "RA", "seq": -1},
        {"flags": "SF", "seq": 0, "advance": False},
        {"flags": "S", "seq": 5, "advance": False},
        {"flags": "SA", "seq": 0, "advance": False},
        {"flags": "A", "seq": 2_000_000_000, "advance": False},
        {"flags": "PA", "data": "out-of-window", "seq": 3_000_000, "advance": False},
        {"flags": "PA", "data": "tail"},
        {"sleep": 0.2},
    ]
    path = lab.dir / "script.json"
    path.write_text(json.dumps(script))
    path.chmod(0o644)
    result = container.python(
        "raw_frames",
        "session",
        "--timeout=20",
        f"--src={SPOOFED}",
        f"--dst={GATEWAY}",
        f"--dport={server.port}",
        f"--script={path}",
        timeout=40,
    )
    assert result.returncode == 0, result.describe()
    (record,) = result.json_lines()
    assert record["handshake"], result.describe()
    assert record["fin_acked"], record
    assert record["peer_fin"], record
    assert not [s for s in record["segments"] if "R" in s["flags"]], record
    (served,) = server.results(1, 20)
    expected = b"urgent-past-end,urgent-zero,tail"
    assert served["steps"][0]["sha256"] == hashlib.sha256(expected).hexdigest()
    assert daemon.proc.alive()
    if impl.is_slirpy:
        wait_until(lambda: not flows(daemon, impl), 10, "the flow leaves the table")


# ------------------------------------------------------------------ bounds


def syn_flood(
    lab: Lab, container: Container, daemon: Daemon, impl: Impl, src: str, port: int
) -> None:
    """100 000 SYNs from ``src``, random source ports, to the gateway's ``port``;
    returns once the daemon has read them all."""
    rx0 = (stats(daemon, impl) or {}).get("rx_frames", 0)
    result = container.python(
        "raw_frames",
        "flood",
        "--kind=syn",
        "--count=100000",
        f"--src={src}",
        f"--dst={GATEWAY}",
        f"--dport={port}",
        timeout=90,
    )
    (record,) = result.json_lines()
    assert record["delivered"] >= 100_000, record
    drain(daemon, impl, 100_000, rx0)


@pytest.mark.parametrize("source", ["guest", "spoofed"])
def test_syn_flood_of_100k_keeps_memory_bounded(
    lab: Lab, container: Container, impl: Impl, source: str
) -> None:
    """100 000 SYNs from random source ports to an open host port, from the
    guest's own address (its kernel resets every SYN-ACK) or from one the
    container does not own (nobody answers: each connection stays embryonic
    while its SYN-ACK is retransmitted).  A normal connection started with
    the flood is served, and one right after it; memory, descriptors and
    flows stay bounded, and go back to their baseline (from the guest's
    address) or to at most ``max_half_open`` embryonic flows (spoofed)."""
    first_loop_only(impl)
    daemon = lab.start_daemon(container, api_socket=lab.api_socket_path())
    server = lab.host.start_server(
        "load_peer", "echo-server", "--listen=127.0.0.1:0", "--timeout=100"
    )
    normal_connection(lab, container, remote=False)
    rss0, fds0 = rss(daemon), fd_count(daemon)
    client = container.spawn_python(
        "tcp_peer",
        f"--connect={GATEWAY}:{server.port}",
        "--actions=send:rand:3:100000,shutwr,recv",
        "--timeout=40",
        name="during-flood",
    )
    src = GUEST if source == "guest" else SPOOFED
    syn_flood(lab, container, daemon, impl, src, server.port)
    assert daemon.proc.alive(), daemon.describe()
    peak_rss, peak_fds = rss(daemon), fd_count(daemon)
    assert peak_rss - rss0 < RSS_BOUND, (rss0, peak_rss)
    assert peak_fds - fds0 <= 4096 + 16, (fds0, peak_fds)
    (during,) = client.json_lines(1, 45)
    assert during.get("error") is None, during
    assert during["steps"][0]["sha256"] == rand_sha256(3, 100000)
    normal_connection(lab, container, remote=False)
    lingering = 0 if source == "guest" else HALF_OPEN
    if impl.is_slirpy:
        counters = stats(daemon, impl)
        assert counters is not None
        assert counters["tcp_segments"] >= 100_000
        assert counters["tcp_syn_dropped"] > 0

        def tcp_flows() -> list[dict[str, Any]]:
            return [f for f in flows(daemon, impl) if f["proto"] == "tcp"]

        # A flow may wait out its host connect (30 s) or a few SYN-ACK
        # retransmissions when the TAP's queue was full.
        try:
            wait_until(lambda: len(tcp_flows()) <= lingering, 40, "TCP flows")
        except AssertionError:
            left = tcp_flows()
            raise AssertionError(
                f"{len(left)} TCP flows left, e.g. {left[:5]}; {stats(daemon, impl)}"
            ) from None
    wait_until(
        lambda: fd_count(daemon) <= fds0 + lingering + 2, 20, "descriptors return"
    )
    assert rss(daemon) - rss0 < RSS_BOUND


def test_many_udp_source_ports_stay_capped(
    lab: Lab, container: Container, impl: Impl
) -> None:
    """5 000 UDP source ports: at most ``max_udp_flows`` (1024) flows and host
    sockets at once, the oldest evicted; UDP still works afterwards."""
    daemon = lab.start_daemon(container, api_socket=lab.api_socket_path())
    rss0, fds0 = rss(daemon), fd_count(daemon)
    result = container.python(
        "raw_frames",
        "flood",
        "--kind=udp",
        "--count=5000",
        f"--src={GUEST}",
        f"--dst={REMOTE}",
        "--dport=9",
        "--first-port=20000",
        timeout=90,
    )
    (record,) = result.json_lines()
    assert record["delivered"] >= 5000, record
    drain(daemon, impl, 5000)
    assert daemon.proc.alive(), daemon.describe()
    assert fd_count(daemon) - fds0 <= 1024 + 8
    assert rss(daemon) - rss0 < RSS_BOUND
    if impl.is_slirpy:
        udp = [f for f in flows(daemon, impl) if f["proto"] == "udp"]
        assert 0 < len(udp) <= 1024
        counters = stats(daemon, impl)
        assert counters is not None
        assert counters["udp_flows_evicted"] >= 5000 - 1024
    udp_echo(lab, container, count=10)
    normal_connection(lab, container, remote=False)


def test_many_icmp_echo_ids_stay_capped(
    lab: Lab, container: Container, impl: Impl
) -> None:
    """2 000 echo identifiers to a live remote host: each is a ping socket,
    at most ``max_udp_flows`` of them at once."""
    lab.host.sh("echo '0 0' > /proc/sys/net/ipv4/ping_group_range")
    daemon = lab.start_daemon(container, api_socket=lab.api_socket_path())
    rss0, fds0 = rss(daemon), fd_count(daemon)
    result = container.python(
        "raw_frames",
        "flood",
        "--kind=icmp",
        "--count=2000",
        f"--src={GUEST}",
        f"--dst={REMOTE}",
        "--first-port=1",
        timeout=90,
    )
    (record,) = result.json_lines()
    assert record["delivered"] >= 2000, record
    drain(daemon, impl, 2000)
    assert daemon.proc.alive(), daemon.describe()
    assert fd_count(daemon) - fds0 <= 1024 + 8
    assert rss(daemon) - rss0 < RSS_BOUND
    if impl.is_slirpy:
        pings = [f for f in flows(daemon, impl) if f["proto"] == "icmp"]
        assert 0 < len(pings) <= 1024
        counters = stats(daemon, impl)
        assert counters is not None
        assert counters["icmp_echo_requests"] >= 2000
        assert counters["udp_flows_evicted"] >= 2000 - 1024
    normal_connection(lab, container, remote=False)


def test_fragment_chains_leave_nothing_behind(
    lab: Lab, container: Container, impl: Impl
) -> None:
    """5 000 first fragments that never complete and a 64 KiB first fragment
    (MTU 65520): all dropped and counted, no memory kept."""
    daemon = lab.start_daemon(
        container, "--mtu=65520", api_socket=lab.api_socket_path()
    )
    mac = tap_mac(container)
    rss0 = rss(daemon)
    frames = cat.fragment_chains(mac, 5000)
    frames.append(cat.huge_fragment(mac, 65000))
    before = stats(daemon, impl)
    record = send_frames(lab, container, frames)
    assert record["delivered"] >= len(frames), record
    assert record["refused"] == {}, record
    drain(daemon, impl, len(frames), (before or {}).get("rx_frames", 0))
    assert rss(daemon) - rss0 < 10 * MIB
    normal_connection(lab, container, remote=False)
    after = stats(daemon, impl)
    if before is not None and after is not None:
        assert after["rx_fragments"] - before["rx_fragments"] >= len(frames)
        assert not [f for f in flows(daemon, impl) if f["proto"] != "tcp"]


def test_guest_that_never_reads_holds_the_host_sender(
    lab: Lab, container: Container, impl: Impl
) -> None:
    """The host sends as fast as it can to a guest socket that is never
    read: the guest's window closes, the daemon stops reading the host
    socket, the host sender blocks, and the daemon's memory stays flat."""
    first_loop_only(impl)
    daemon = lab.start_daemon(container)
    server = lab.host.start_server(
        "load_peer",
        "blast-server",
        "--listen=127.0.0.1:0",
        "--every=0.5",
        "--timeout=30",
        name="blast",
    )
    rss0 = rss(daemon)
    client = container.spawn_python(
        "load_peer", "idle-client", f"--connect={GATEWAY}:{server.port}", "--seconds=20"
    )
    assert client.readline(10) == "CONNECTED"
    samples: list[int] = []
    sent: list[int] = []
    for _ in range(12):
        time.sleep(0.5)
        samples.append(rss(daemon))
        progress = [
            json.loads(x) for x in server.proc.stdout().splitlines() if "{" in x
        ]
        sent.append(progress[-1]["sent"] if progress else 0)
    assert daemon.proc.alive()
    assert max(samples) - rss0 < RSS_BOUND, (rss0, samples)
    # Blocked: nothing more goes out in the last few seconds ...
    assert sent[-1] == sent[-5], sent
    # ... after at most the buffers along the way (guest, daemon, host).
    assert sent[-1] < 64 * MIB, sent
    assert max(samples[-5:]) - min(samples[-5:]) < 2 * MIB, samples
