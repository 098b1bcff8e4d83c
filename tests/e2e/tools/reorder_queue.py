# SPDX-License-Identifier: GPL-2.0-or-later
"""Delay the packets of an NFQUEUE queue: a reordering link without netem.

The kernels the lab runs on may lack ``sch_netem``.  This tool stands in for
its ``delay``/``reorder``: a firewall rule sends a random share of packets to
queue ``--queue`` (``iptables ... -m statistic --mode random --probability P
-j NFQUEUE --queue-num N --queue-bypass``), and the tool holds each of them
``--delay-ms`` before accepting it, while every other packet goes straight
on, so the held ones arrive behind packets sent after them.

It speaks the nfnetlink_queue protocol over a plain netlink socket (no
library): binds the queue, asks for metadata only, and answers each packet
with an ``NF_ACCEPT`` verdict once its time has come.  Prints ``READY`` when
bound, then runs for ``--seconds`` (or until ``SIGTERM``), releases what it
holds and prints ``{"delayed": N}``.
"""

from __future__ import annotations

import argparse
import heapq
import json
import select
import signal
import socket
import struct
import sys
import time

NETLINK_NETFILTER = 12
NFNL_SUBSYS_QUEUE = 3
NFQNL_MSG_PACKET = 0
NFQNL_MSG_VERDICT = 1
NFQNL_MSG_CONFIG = 2
NFQA_PACKET_HDR = 1
NFQA_VERDICT_HDR = 2
NFQA_CFG_CMD = 1
NFQA_CFG_PARAMS = 2
NFQNL_CFG_CMD_BIND = 1
NFQNL_COPY_META = 1
NF_ACCEPT = 1
NLM_F_REQUEST = 1
NLMSG_ERROR = 2
_NLMSGHDR = struct.Struct("=IHHII")
_NFGENMSG = struct.Struct("=BBH")


def attr(kind: int, payload: bytes) -> bytes:
    data = struct.pack("=HH", 4 + len(payload), kind) + payload
    return data + b"\x00" * (-len(data) % 4)


class Queue:
    def __init__(self, num: int) -> None:
        self.num = num
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
        self.sock.bind((0, 0))
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        self.seq = 0

    def _send(self, msg_type: int, attrs: bytes) -> None:
        self.seq += 1
        body = _NFGENMSG.pack(socket.AF_UNSPEC, 0, socket.htons(self.num)) + attrs
        kind = (NFNL_SUBSYS_QUEUE << 8) | msg_type
        head = _NLMSGHDR.pack(
            _NLMSGHDR.size + len(body), kind, NLM_F_REQUEST, self.seq, 0
        )
        self.sock.send(head + body)

    def bind(self) -> None:
        self._send(
            NFQNL_MSG_CONFIG,
            attr(NFQA_CFG_CMD, struct.pack("!BxH", NFQNL_CFG_CMD_BIND, 0)),
        )
        self._send(
            NFQNL_MSG_CONFIG,
            attr(NFQA_CFG_PARAMS, struct.pack("!IB", 0, NFQNL_COPY_META)),
        )

    def accept(self, packet_id: int) -> None:
        self._send(
            NFQNL_MSG_VERDICT,
            attr(NFQA_VERDICT_HDR, struct.pack("!II", NF_ACCEPT, packet_id)),
        )

    def packets(self) -> list[int]:
        """Ids of the packets in one read from the socket."""
        data = self.sock.recv(1 << 16)
        ids: list[int] = []
        offset = 0
        while offset + _NLMSGHDR.size <= len(data):
            length, kind, _flags, _seq, _pid = _NLMSGHDR.unpack_from(data, offset)
            if length < _NLMSGHDR.size:
                break
            if kind == NLMSG_ERROR:
                (error,) = struct.unpack_from("=i", data, offset + _NLMSGHDR.size)
                if error:
                    raise OSError(-error, "nfnetlink_queue refused a request")
            elif kind == (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET:
                pos = offset + _NLMSGHDR.size + _NFGENMSG.size
                end = offset + length
                while pos + 4 <= end:
                    alen, atype = struct.unpack_from("=HH", data, pos)
                    if alen < 4:
                        break
                    if atype & 0x7FFF == NFQA_PACKET_HDR:
                        ids.append(struct.unpack_from("!I", data, pos + 4)[0])
                    pos += (alen + 3) & ~3
            offset += (length + 3) & ~3
        return ids


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queue", type=int, default=0)
    parser.add_argument("--delay-ms", type=float, default=1.0)
    parser.add_argument("--seconds", type=float, default=60.0)
    args = parser.parse_args()
    queue = Queue(args.queue)
    queue.bind()
    print("READY", flush=True)
    delay = args.delay_ms / 1000
    held: list[tuple[float, int]] = []
    delayed = 0
    deadline = time.monotonic() + args.seconds
    stop = False

    def on_term(_signum: int, _frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    while True:
        now = time.monotonic()
        while held and (held[0][0] <= now or stop):
            queue.accept(heapq.heappop(held)[1])
        if now >= deadline or stop:
            break
        wait = min(deadline - now, held[0][0] - now if held else 0.5)
        ready, _, _ = select.select([queue.sock], [], [], max(0.0, wait))
        if ready:
            for packet_id in queue.packets():
                heapq.heappush(held, (time.monotonic() + delay, packet_id))
                delayed += 1
    print(json.dumps({"delayed": delayed}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
