# SPDX-License-Identifier: GPL-2.0-or-later
"""An in-memory ``HostFwdService``; API clients that talk like podman/rootlesskit."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass, field

from slirpy.api.schema import AddHostFwd, HostFwdEntry

DEFAULT_GUEST = ipaddress.IPv4Address("10.0.2.100")
AUTO_PORT_BASE = 40000
CLIENT_TIMEOUT = 5.0


@dataclass
class FakeService:
    """Forwards kept in a dict; ids from 1, never reused; a (proto, addr, port)
    already in use fails like a bind would.  ``fail_add``/``fail_remove`` and
    ``raise_on`` make the next calls fail or raise."""

    forwards: dict[int, HostFwdEntry] = field(default_factory=dict)
    next_id: int = 1
    fail_add: bool = False
    fail_remove: bool = False
    raise_on: set[str] = field(default_factory=set)
    calls: list[str] = field(default_factory=list)

    def add(self, cmd: AddHostFwd) -> tuple[int, int] | None:
        self.calls.append("add")
        if "add" in self.raise_on:
            raise OSError("bind failed")
        if self.fail_add:
            return None
        port = cmd.host_port or AUTO_PORT_BASE + self.next_id
        for fwd in self.forwards.values():
            if (fwd.proto, fwd.host_addr, fwd.host_port) == (
                cmd.proto,
                cmd.host_addr,
                port,
            ):
                return None
        fwd_id = self.next_id
        self.next_id += 1
        self.forwards[fwd_id] = HostFwdEntry(
            id=fwd_id,
            proto=cmd.proto,
            host_addr=cmd.host_addr,
            host_port=port,
            guest_addr=cmd.guest_addr or DEFAULT_GUEST,
            guest_port=cmd.guest_port,
            splice=bool(cmd.splice),
        )
        return fwd_id, port

    def remove(self, id: int) -> bool:
        self.calls.append("remove")
        if "remove" in self.raise_on:
            raise OSError("close failed")
        if self.fail_remove or id not in self.forwards:
            return False
        del self.forwards[id]
        return True

    def entries(self) -> list[HostFwdEntry]:
        self.calls.append("entries")
        if "entries" in self.raise_on:
            raise RuntimeError("broken")
        return list(self.forwards.values())

    def flows(self) -> list[dict[str, object]]:
        self.calls.append("flows")
        return [{"id": 7, "proto": "tcp", "state": "ESTABLISHED"}]

    def stats(self) -> dict[str, object]:
        self.calls.append("stats")
        return {"rx_frames": 3, "tx_frames": 2}


def _connect(path: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(CLIENT_TIMEOUT)
    sock.connect(path)
    return sock


def podman_exchange(path: str, request: bytes) -> bytes:
    """podman's ``openSlirp4netnsPort``: write, CloseWrite, one read of <= 2048."""
    with _connect(path) as sock:
        sock.sendall(request)
        sock.shutdown(socket.SHUT_WR)
        return sock.recv(2048)


def rootlesskit_exchange(path: str, request: bytes) -> bytes:
    """rootlesskit's ``callAPI``: json.Encoder write, CloseWrite, ``io.ReadAll``.

    A read error (ECONNRESET) propagates, as it fails ``io.ReadAll``.
    """
    with _connect(path) as sock:
        sock.sendall(request)
        sock.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
        return b"".join(chunks)


async def podman(path: str, request: bytes) -> bytes:
    return await asyncio.to_thread(podman_exchange, path, request)


async def rootlesskit(path: str, request: bytes) -> bytes:
    return await asyncio.to_thread(rootlesskit_exchange, path, request)


async def read_all(reader: asyncio.StreamReader) -> tuple[bytes, BaseException | None]:
    """Everything up to EOF, and the error that ended the read early, if any."""
    data = bytearray()
    try:
        while chunk := await asyncio.wait_for(reader.read(65536), CLIENT_TIMEOUT):
            data += chunk
    except (ConnectionError, OSError) as exc:
        return bytes(data), exc
    return bytes(data), None


async def stream_exchange(path: str, request: bytes, *, eof: bool = True) -> bytes:
    """One request over asyncio streams; the reply read to EOF (errors raise)."""
    reader, writer = await asyncio.open_unix_connection(path)
    try:
        writer.write(request)
        if eof:
            writer.write_eof()
        await writer.drain()
        data, exc = await read_all(reader)
        if exc is not None:
            raise exc
        return data
    finally:
        writer.close()
