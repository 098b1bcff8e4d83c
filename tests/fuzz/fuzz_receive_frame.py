# SPDX-License-Identifier: GPL-2.0-or-later
"""Coverage-guided fuzzing of ``Stack.receive_frame`` with atheris (libFuzzer).

Run from anywhere::

    python tests/fuzz/fuzz_receive_frame.py -runs=100000 CORPUS_DIR
    python tests/fuzz/fuzz_receive_frame.py -max_total_time=3600 -jobs=4 CORPUS_DIR
    python tests/fuzz/fuzz_receive_frame.py --make-corpus CORPUS_DIR

Every libFuzzer option works (``-runs``, ``-max_total_time``, ``-jobs``,
``-dict``...).  ``--make-corpus`` writes the seed corpus: one input per case
of ``catalogue.py`` and a few frame sequences that open connections.  The
fuzzer runs the pure-Python core (a copy of the package without the compiled
modules, whose code atheris cannot instrument).

An input is a little script for one fresh stack, with deliberately small
limits so that fuzzing reaches them: byte 0 picks the configuration (bit 0
virtio-net header, bit 1 IPv6, bit 2 host loopback disabled, bit 3 accept
connection requests rather than refuse them, bit 4 open a port forward's TCP
connection and UDP flow toward the guest 10.0.2.100 first); then frames, each a 2-byte
big-endian length and that many bytes; a length of 0 means "a second passes"
(timers run).

The invariants, checked after every frame: nothing but ``WireError``-free
return comes out of ``receive_frame`` (atheris reports any exception as a
crash); every counted drop is at most one per frame; the flows, the half-open
set, the neighbour table and the UDP flows stay within their limits; every
frame the stack sends is a whole Ethernet frame whose IP length fields match
its size.
"""

from __future__ import annotations

import os
import random
import shutil
import struct
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
for path in (str(REPO), str(HERE.parent)):
    if path not in sys.path:
        sys.path.insert(0, path)

FLAG_VNET = 1
FLAG_IPV6 = 2
FLAG_NOLOOP = 4
FLAG_ACCEPT = 8
FLAG_FORWARD = 16
FORWARD_CLIENT = b"\x7f\x00\x00\x01"
GUEST_IP = b"\x0a\x00\x02\x64"
VNET_LEN = 10
LIMITS = {
    "max_tcp_flows": 8,
    "max_half_open": 4,
    "max_udp_flows": 4,
    "max_neighbours": 4,
    "tcp_rcv_window": 4096,
    "tcp_snd_buffer": 4096,
}
DROPS = (
    "rx_truncated",
    "rx_malformed",
    "rx_not_for_us",
    "rx_unknown_ethertype",
    "rx_ipv6",
    "rx_fragments",
    "rx_unknown_protocol",
    "rx_policy_drop",
)


def split(data: bytes) -> tuple[int, list[bytes | None]]:
    """The flags byte and the frames of an input (None: a second passes)."""
    if not data:
        return 0, []
    flags = data[0]
    frames: list[bytes | None] = []
    i = 1
    while i + 2 <= len(data) and len(frames) < 64:
        (n,) = struct.unpack_from("!H", data, i)
        i += 2
        if n == 0:
            frames.append(None)
            continue
        frames.append(data[i : i + n])
        i += n
    return flags, frames


def join(flags: int, frames: list[bytes | None]) -> bytes:
    """The inverse of :func:`split` (for the seed corpus)."""
    out = bytes([flags])
    for frame in frames:
        if frame is None:
            out += b"\x00\x00"
        else:
            out += struct.pack("!H", len(frame)) + frame
    return out


def check_frame(frame: bytes, vnet: bool) -> None:
    """An outgoing frame is whole: Ethernet, and IP lengths that match it."""
    data = frame[VNET_LEN:] if vnet else frame
    assert len(data) >= 14, "short frame sent"
    ethertype = data[12:14]
    if ethertype == b"\x08\x00":
        ip = data[14:]
        assert len(ip) >= 20, "short IPv4 header sent"
        assert ip[0] >> 4 == 4, "bad IPv4 version sent"
        assert struct.unpack_from("!H", ip, 2)[0] == len(ip), "IPv4 length lies"
    elif ethertype == b"\x86\xdd":
        ip = data[14:]
        assert len(ip) >= 40, "short IPv6 header sent"
        assert ip[0] >> 4 == 6, "bad IPv6 version sent"
        assert struct.unpack_from("!H", ip, 4)[0] == len(ip) - 40, "IPv6 length lies"
    else:
        assert ethertype == b"\x08\x06", "unexpected ethertype sent"
        assert len(data) == 42, "ARP frame of the wrong size sent"


def make_runner():  # type: ignore[no-untyped-def]
    """The per-input function, with slirpy imported (instrumented if asked)."""
    from slirpy.stack.config import Limits, StackConfig
    from slirpy.stack.events import TCPConnectRequest
    from slirpy.stack.stack import RejectReason, Stack

    limits = Limits(**LIMITS)  # type: ignore[arg-type]
    configs = {
        flags: StackConfig(
            vnet_hdr=bool(flags & FLAG_VNET),
            enable_ipv6=bool(flags & FLAG_IPV6),
            disable_host_loopback=bool(flags & FLAG_NOLOOP),
            limits=limits,
        )
        for flags in range(8)
    }

    def run(data: bytes) -> None:
        flags, frames = split(data)
        vnet = bool(flags & FLAG_VNET)
        stack = Stack(configs[flags & 7], random.Random(1))
        stack.nat.dns_upstream = b"\xc0\x00\x02\x35"
        stack.nat.dns_upstream6 = b"\x20\x01\x0d\xb8" + bytes(11) + b"\x35"
        if flags & FLAG_FORWARD:
            stack.open_tcp(FORWARD_CLIENT, 40000, GUEST_IP, 80, 0.0)
            stack.udp_inbound(FORWARD_CLIENT, 40001, GUEST_IP, 53, b"query", 0.0)
            stack.frames_to_send()
        now = 0.0
        stats = stack.stats
        for frame in frames:
            if frame is None:
                now += 1.0
                stack.handle_timer(now)
            else:
                before = sum(getattr(stats, name) for name in DROPS)
                stack.receive_frame(frame, now)
                after = sum(getattr(stats, name) for name in DROPS)
                assert after - before <= 1, "one frame counted twice"
            for event in stack.pop_events():
                if isinstance(event, TCPConnectRequest):
                    if flags & FLAG_ACCEPT:
                        if stack.accept(event.flow, now):
                            stack.tcp_send(event.flow, b"hello guest" * 50, now)
                    else:
                        stack.reject(event.flow, RejectReason.REFUSED)
            for out in stack.frames_to_send():
                check_frame(out, vnet)
            flows = stack.flows
            assert len(flows.tcp_by_id) <= limits.max_tcp_flows
            assert len(flows.tcp_by_key) <= len(flows.tcp_by_id)
            assert len(flows.half_open) <= limits.max_half_open
            assert len(flows.udp_by_id) <= limits.max_udp_flows
            assert len(flows.udp_by_key) == len(flows.udp_by_id)
            assert len(stack._neighbours) <= limits.max_neighbours
            for conn in flows.tcp_by_id.values():
                assert len(conn.snd_buf) <= limits.tcp_snd_buffer + 550

    return run


def seed_inputs() -> list[bytes]:
    """The seed corpus: every catalogue case, and sequences that open flows."""
    from fuzz import catalogue as cat

    profile_flags = {"default": 0, "ipv6": FLAG_IPV6, "noloop": FLAG_IPV6 | FLAG_NOLOOP}
    seeds = []
    for case in cat.catalogue():
        flags = profile_flags[case.profile]
        seeds.append(join(flags, [case.frame]))
        seeds.append(join(flags | FLAG_VNET, [bytes(VNET_LEN) + case.frame]))
    mac = cat.DEFAULT_GUEST_MAC
    syn = cat.tcp(cat.GUEST, cat.REMOTE, 40000, 80, seq=100, options=cat.mss(1460))
    ack = cat.tcp(cat.GUEST, cat.REMOTE, 40000, 80, seq=101, ack=0, flags=cat.TCP_ACK)
    data = cat.tcp(
        cat.GUEST,
        cat.REMOTE,
        40000,
        80,
        seq=101,
        flags=cat.TCP_ACK | cat.TCP_PSH,
        payload=b"GET / HTTP/1.0\r\n\r\n",
    )
    fin = cat.tcp(
        cat.GUEST, cat.REMOTE, 40000, 80, seq=119, flags=cat.TCP_ACK | cat.TCP_FIN
    )

    def v4(seg: bytes, proto: int = 6, dst: str = cat.REMOTE) -> bytes:
        return cat.eth(cat.ETH_IPV4, cat.ipv4(cat.GUEST, dst, proto, seg), src=mac)

    seeds.append(join(FLAG_ACCEPT, [v4(syn), v4(ack), v4(data), None, v4(fin), None]))
    seeds.append(join(0, [v4(syn), None, v4(syn), None, None]))
    udp_flows = [
        v4(cat.udp(cat.GUEST, cat.REMOTE, 1000 + i, 53, b"q"), 17) for i in range(6)
    ]
    seeds.append(join(0, [*udp_flows, None]))
    pings = [v4(cat.icmp_echo(i, 1, b"p"), 1) for i in range(6)]
    seeds.append(join(0, pings))
    # A guest answering a port forward: its ARP, then a SYN-ACK to slirpy's SYN
    # (the stack's first ISN comes from random.Random(1), as in the target).
    iss = random.Random(1).getrandbits(32)
    arp = struct.pack(
        "!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 2, mac, GUEST_IP, cat.GW_MAC,
        cat.addr(cat.GATEWAY),
    )  # fmt: skip
    synack = cat.tcp(
        cat.GUEST,
        cat.GATEWAY,
        80,
        40000,
        seq=5000,
        ack=iss + 1,
        flags=cat.TCP_SYN | cat.TCP_ACK,
        options=cat.mss(1460),
    )
    reply = cat.tcp(
        cat.GUEST,
        cat.GATEWAY,
        80,
        40000,
        seq=5001,
        ack=iss + 1,
        flags=cat.TCP_ACK | cat.TCP_PSH,
        payload=b"HTTP/1.0 200 OK\r\n",
    )
    answer = cat.udp(cat.GUEST, cat.GATEWAY, 53, 40001, b"answer")
    seeds.append(
        join(
            FLAG_FORWARD,
            [
                cat.eth(cat.ETH_ARP, arp, src=mac),
                v4(synack, dst=cat.GATEWAY),
                v4(reply, dst=cat.GATEWAY),
                v4(answer, 17, dst=cat.GATEWAY),
                None,
            ],
        )
    )
    return seeds


def make_corpus(directory: str) -> int:
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    seeds = seed_inputs()
    for i, seed in enumerate(seeds):
        (out / f"seed-{i:04d}").write_bytes(seed)
    print(f"wrote {len(seeds)} seeds to {out}")
    return 0


def _use_pure_core() -> None:
    """Import the pure-Python core: atheris instruments bytecode, and the
    tree's mypyc-compiled modules have none (the same source, so what the
    fuzzer finds holds for both)."""
    if "slirpy" in sys.modules or not any((REPO / "slirpy").rglob("*.so")):
        return
    pure = Path(tempfile.mkdtemp(prefix="slirpy-fuzz-"))
    shutil.copytree(
        REPO / "slirpy",
        pure / "slirpy",
        ignore=shutil.ignore_patterns("*.so", "__pycache__"),
    )
    sys.path.insert(0, str(pure))
    print(f"fuzzing the pure-Python core copied to {pure}", file=sys.stderr)


def main() -> int:
    if len(sys.argv) >= 3 and sys.argv[1] == "--make-corpus":
        return make_corpus(sys.argv[2])
    if len(sys.argv) >= 2 and sys.argv[1] == "--replay":
        run = make_runner()
        for name in sys.argv[2:]:
            run(Path(name).read_bytes())
        print(f"replayed {len(sys.argv) - 2} inputs")
        return 0
    import atheris

    _use_pure_core()
    with atheris.instrument_imports(include=["slirpy"]):
        run = make_runner()
    atheris.Setup(sys.argv, run)
    atheris.Fuzz()
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    sys.exit(main())
