# SPDX-License-Identifier: GPL-2.0-or-later
"""The API socket end to end: a real APIServer on a temporary UNIX socket.

Every scenario runs on both event loops the daemon may use (asyncio, uvloop),
under an overall deadline, with a fake in-memory ``HostFwdService``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import socket
import stat
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from dataclasses import dataclass

import pytest
import uvloop
from api_fakes import (
    FakeService,
    podman,
    read_all,
    rootlesskit,
    stream_exchange,
)

from slirpy.api import schema
from slirpy.api.schema import MAX_REQUEST
from slirpy.api.server import SUN_PATH_MAX, APIServer, APISocketPathTooLongError

pytestmark = pytest.mark.timeout(60)

SCENARIO_DEADLINE = 20.0
SHORT_TIMEOUT = 1.0

PODMAN_ADD = (
    b'{"execute":"add_hostfwd","arguments":{"proto":"tcp","host_addr":"0.0.0.0",'
    b'"host_port":8080,"guest_addr":"","guest_port":80}}\n'
)
LIST = b'{"execute":"list_hostfwd"}'
EMPTY_LIST = b'{"return":{"entries":[]},"entries":[]}'


def err(desc: str) -> bytes:
    return b'{"error":{"desc":"' + desc.encode() + b'"}}'


def rootlesskit_add(host_port: int, guest_port: int = 80) -> bytes:
    # Go's json.Encoder: compact, struct field order, one trailing newline.
    return (
        b'{"execute":"add_hostfwd","arguments":{"proto":"tcp","host_addr":"",'
        b'"host_port":%d,"guest_addr":"10.0.2.100","guest_port":%d}}\n'
        % (host_port, guest_port)
    )


LOOPS: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
    "asyncio": asyncio.new_event_loop,
    "uvloop": uvloop.new_event_loop,
}

Run = Callable[[Coroutine[object, object, object]], object]


@pytest.fixture(params=sorted(LOOPS))
def run(request: pytest.FixtureRequest) -> Run:
    """Run one scenario coroutine to completion on a fresh loop of each kind."""
    factory = LOOPS[request.param]

    def runner(coro: Coroutine[object, object, object]) -> object:
        with asyncio.Runner(loop_factory=factory) as r:
            return r.run(asyncio.wait_for(coro, SCENARIO_DEADLINE))

    return runner


@pytest.fixture
def sock_dir() -> Iterator[str]:
    """A short private directory (tmp_path can push sun_path past 108 bytes)."""
    path = tempfile.mkdtemp(prefix="slirpy-api-", dir="/tmp")
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@dataclass
class API:
    server: APIServer
    path: str
    service: FakeService


@contextlib.asynccontextmanager
async def serving(
    sock_dir: str,
    *,
    api_timeout: float = 5.0,
    max_connections: int = 64,
) -> AsyncIterator[API]:
    service = FakeService()
    server = APIServer(service, timeout=api_timeout, max_connections=max_connections)
    path = os.path.join(sock_dir, "api.sock")
    await server.start(path)
    try:
        yield API(server, path, service)
    finally:
        server.close()
        await server.wait_closed()


def exists(path: str) -> bool:
    return os.path.lexists(path)


def write_file(path: str, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


# --- the two real clients -----------------------------------------------------


def test_podman_add(run: Run, sock_dir: str) -> None:
    async def scenario() -> None:
        async with serving(sock_dir) as api:
            assert await podman(api.path, PODMAN_ADD) == b'{"return":{"id":1}}'
            assert await podman(api.path, PODMAN_ADD) == err(schema.ADD_FAILED)
            assert [e.host_port for e in api.service.entries()] == [8080]

    run(scenario())


def test_rootlesskit_add_remove(run: Run, sock_dir: str) -> None:
    async def scenario() -> None:
        async with serving(sock_dir) as api:
            assert await rootlesskit(api.path, rootlesskit_add(8080)) == (
                b'{"return":{"id":1}}'
            )
            assert await rootlesskit(api.path, rootlesskit_add(8081)) == (
                b'{"return":{"id":2}}'
            )
            remove = b'{"execute":"remove_hostfwd","arguments":{"id":1}}\n'
            assert await rootlesskit(api.path, remove) == b'{"return":{}}'
            assert await rootlesskit(api.path, remove) == err(schema.BAD_ID)
            assert [e.id for e in api.service.entries()] == [2]

    run(scenario())


def test_list(run: Run, sock_dir: str) -> None:
    async def scenario() -> None:
        async with serving(sock_dir) as api:
            assert await rootlesskit(api.path, LIST) == EMPTY_LIST
            await podman(api.path, PODMAN_ADD)
            assert await rootlesskit(api.path, LIST + b"\n") == (
                b'{"return":{"entries":[{"id":1,"proto":"tcp","host_addr":"0.0.0.0",'
                b'"host_port":8080,"guest_addr":"10.0.2.100","guest_port":80}]},'
                b'"entries":[{"id":1,"proto":"tcp","host_addr":"0.0.0.0",'
                b'"host_port":8080,"guest_addr":"10.0.2.100","guest_port":80}]}'
            )

    run(scenario())


def test_extensions_list_flows_and_stats(run: Run, sock_dir: str) -> None:
    """slirpy's own ``list_flows`` and ``stats`` answer from the service."""

    async def scenario() -> None:
        async with serving(sock_dir) as api:
            reply = await rootlesskit(api.path, b'{"execute":"list_flows"}')
            assert reply == (
                b'{"return":{"flows":[{"id":7,"proto":"tcp","state":"ESTABLISHED"}]}}'
            )
            reply = await rootlesskit(api.path, b'{"execute":"stats"}\n')
            assert reply == b'{"return":{"rx_frames":3,"tx_frames":2}}'

    run(scenario())


def test_host_port_zero(run: Run, sock_dir: str) -> None:
    async def scenario() -> None:
        async with serving(sock_dir) as api:
            request = (
                b'{"execute":"add_hostfwd","arguments":{"proto":"udp",'
                b'"host_port":0,"guest_port":53}}'
            )
            assert await podman(api.path, request) == (
                b'{"return":{"id":1,"host_port":40001}}'
            )

    run(scenario())


def test_many_forwards_listed(run: Run, sock_dir: str) -> None:
    """A list reply far bigger than one read still arrives whole before EOF."""

    async def scenario() -> None:
        async with serving(sock_dir) as api:
            for port in range(1000, 1400):
                reply = await stream_exchange(api.path, rootlesskit_add(port))
                assert reply.startswith(b'{"return":{"id":')
            reply = await rootlesskit(api.path, LIST)
            assert len(reply) > 40000
            assert reply.count(b'"guest_port":80') == 800

    run(scenario())


# --- the error catalogue over the wire ----------------------------------------


@pytest.mark.parametrize(
    ("request_bytes", "desc"),
    [
        pytest.param(b"", schema.CANNOT_PARSE_JSON, id="empty"),
        pytest.param(b"badjson\n", schema.CANNOT_PARSE_JSON, id="garbage"),
        pytest.param(b"\xff\xfe\x00garbage", schema.CANNOT_PARSE_JSON, id="binary"),
        pytest.param(b"[1,2]\n", schema.NOT_AN_OBJECT, id="array"),
        pytest.param(b'"x"', schema.NOT_AN_OBJECT, id="string"),
        pytest.param(b'{"unexpectedjson": 42}\n', schema.NO_EXECUTE, id="no-execute"),
        pytest.param(b'{"execute": "bad"}\n', schema.UNKNOWN_EXECUTE, id="unknown"),
        pytest.param(
            b'{"execute": "add_hostfwd", "arguments":{"proto": "bad"}}\n',
            schema.BAD_PROTO,
            id="bad-proto",
        ),
        pytest.param(
            b'{"execute":"add_hostfwd","arguments":{"host_port":1,"guest_port":1}}',
            schema.BAD_PROTO,
            id="missing-proto",
        ),
        pytest.param(
            b'{"execute":"add_hostfwd","arguments":{"proto":"tcp",'
            b'"host_addr":"localhost","host_port":1,"guest_port":1}}',
            schema.BAD_HOST_ADDR,
            id="bad-host-addr",
        ),
        pytest.param(
            b'{"execute":"add_hostfwd","arguments":{"proto":"tcp",'
            b'"host_port":70000,"guest_port":1}}',
            schema.BAD_HOST_PORT,
            id="bad-host-port",
        ),
        pytest.param(
            b'{"execute":"add_hostfwd","arguments":{"proto":"tcp",'
            b'"host_port":1,"guest_addr":"localhost","guest_port":1}}',
            schema.BAD_GUEST_ADDR,
            id="bad-guest-addr",
        ),
        pytest.param(
            b'{"execute":"add_hostfwd","arguments":{"proto":"tcp",'
            b'"host_port":1,"guest_port":0}}',
            schema.BAD_GUEST_PORT,
            id="bad-guest-port",
        ),
        pytest.param(
            b'{"execute":"remove_hostfwd","arguments":{"id":"1"}}',
            schema.BAD_ID,
            id="bad-id",
        ),
        pytest.param(
            b'{"execute":"remove_hostfwd","arguments":{"id":99}}',
            schema.BAD_ID,
            id="unknown-id",
        ),
        pytest.param(b"x" * 5000, schema.TOO_LARGE, id="oversize"),
        pytest.param(
            b'{"execute":"add_hostfwd","arguments":{"proto":"tcp","host_addr":"'
            + b"1" * 5000
            + b'"}}',
            schema.TOO_LARGE,
            id="oversize-json",
        ),
        pytest.param(
            b" " * (MAX_REQUEST - len(LIST)) + LIST, schema.TOO_LARGE, id="4096"
        ),
    ],
)
def test_errors(run: Run, sock_dir: str, request_bytes: bytes, desc: str) -> None:
    async def scenario() -> None:
        async with serving(sock_dir) as api:
            assert await rootlesskit(api.path, request_bytes) == err(desc)
            assert await podman(api.path, request_bytes) == err(desc)
            assert api.service.entries() == []

    run(scenario())


def test_4095_bytes_is_not_too_large(run: Run, sock_dir: str) -> None:
    async def scenario() -> None:
        async with serving(sock_dir) as api:
            padded = b" " * (MAX_REQUEST - 1 - len(LIST)) + LIST
            assert len(padded) == MAX_REQUEST - 1
            assert await rootlesskit(api.path, padded) == EMPTY_LIST

    run(scenario())


def test_complete_value_then_more_bytes(run: Run, sock_dir: str) -> None:
    """The first value decides; what follows it (even past 4 KiB) is discarded."""

    async def scenario() -> None:
        async with serving(sock_dir) as api:
            trailing = LIST + b" " + b"x" * 10000
            assert await rootlesskit(api.path, trailing) == EMPTY_LIST

    run(scenario())


def test_endless_stream_is_too_large(run: Run, sock_dir: str) -> None:
    """``cat /dev/zero | ncat -U`` (upstream test): the reply still arrives."""

    async def scenario() -> None:
        async with serving(sock_dir) as api:
            reader, writer = await asyncio.open_unix_connection(api.path)

            async def flood() -> None:
                with contextlib.suppress(ConnectionError, OSError):
                    while True:
                        writer.write(b"\x00" * 65536)
                        await writer.drain()

            flooder = asyncio.create_task(flood())
            data, _exc = await read_all(reader)
            assert data == err(schema.TOO_LARGE)
            await asyncio.wait_for(flooder, 5)
            writer.close()

    run(scenario())


# --- framing: trailing newline, slow, partial and silent clients --------------


def test_answers_before_eof(run: Run, sock_dir: str) -> None:
    """A client that never shuts down its side still gets the reply, then EOF."""

    async def scenario() -> None:
        async with serving(sock_dir) as api:
            assert await stream_exchange(api.path, LIST, eof=False) == EMPTY_LIST

    run(scenario())


def test_newline_after_the_reply_no_reset(run: Run, sock_dir: str) -> None:
    """The newline arrives after the server has answered: reading to EOF still
    ends cleanly (no ECONNRESET), as ``io.ReadAll`` needs."""

    async def scenario() -> None:
        async with serving(sock_dir) as api:
            reader, writer = await asyncio.open_unix_connection(api.path)
            writer.write(PODMAN_ADD[:-1])
            await writer.drain()
            first = await asyncio.wait_for(reader.read(2048), 5)
            assert first == b'{"return":{"id":1}}'
            writer.write(b"\n")
            writer.write_eof()
            await writer.drain()
            rest, exc = await read_all(reader)
            assert (rest, exc) == (b"", None)
            writer.close()

    run(scenario())


def test_slow_client_byte_by_byte(run: Run, sock_dir: str) -> None:
    async def scenario() -> None:
        async with serving(sock_dir, api_timeout=10.0) as api:
            reader, writer = await asyncio.open_unix_connection(api.path)
            for byte in PODMAN_ADD[:-1]:
                writer.write(bytes([byte]))
                await writer.drain()
                await asyncio.sleep(0.002)
            data, exc = await read_all(reader)
            assert (data, exc) == (b'{"return":{"id":1}}', None)
            writer.close()

    run(scenario())


def test_slow_client_byte_by_byte_with_eof(run: Run, sock_dir: str) -> None:
    async def scenario() -> None:
        async with serving(sock_dir, api_timeout=10.0) as api:
            reader, writer = await asyncio.open_unix_connection(api.path)
            for byte in b"badjson\n":
                writer.write(bytes([byte]))
                await writer.drain()
                await asyncio.sleep(0.01)
            writer.write_eof()
            data, exc = await read_all(reader)
            assert (data, exc) == (err(schema.CANNOT_PARSE_JSON), None)
            writer.close()

    run(scenario())


def test_partial_request_answered_at_timeout(run: Run, sock_dir: str) -> None:
    async def scenario() -> None:
        async with serving(sock_dir, api_timeout=SHORT_TIMEOUT) as api:
            reader, writer = await asyncio.open_unix_connection(api.path)
            writer.write(b'{"execute":')
            await writer.drain()
            started = time.monotonic()
            data, _exc = await read_all(reader)
            assert data == err(schema.CANNOT_PARSE_JSON)
            assert time.monotonic() - started >= SHORT_TIMEOUT * 0.8
            writer.close()

    run(scenario())


def test_silent_client_does_not_block_others(run: Run, sock_dir: str) -> None:
    """A silent client is closed unanswered after the timeout; while it is still
    connected, 20 concurrent clients are all answered."""
    api_timeout = 2.0

    async def scenario() -> None:
        async with serving(sock_dir, api_timeout=api_timeout) as api:
            silent_reader, silent_writer = await asyncio.open_unix_connection(api.path)
            opened = time.monotonic()
            await asyncio.sleep(0.05)

            replies = await asyncio.gather(
                *(
                    stream_exchange(api.path, rootlesskit_add(10000 + n))
                    for n in range(20)
                )
            )
            assert time.monotonic() - opened < api_timeout / 2
            assert not silent_reader.at_eof()
            assert sorted(replies) == sorted(
                b'{"return":{"id":%d}}' % n for n in range(1, 21)
            )
            assert len(api.service.entries()) == 20

            data, _exc = await read_all(silent_reader)
            assert data == b""
            waited = time.monotonic() - opened
            assert api_timeout * 0.8 <= waited < api_timeout + 3
            silent_writer.close()

    run(scenario())


def test_connection_cap(run: Run, sock_dir: str) -> None:
    """Beyond max_connections in progress, a new connection is closed at once."""

    async def scenario() -> None:
        async with serving(sock_dir, api_timeout=10.0, max_connections=4) as api:
            silent = [await asyncio.open_unix_connection(api.path) for _ in range(4)]
            await asyncio.sleep(0.1)
            started = time.monotonic()
            reader, writer = await asyncio.open_unix_connection(api.path)
            data, _exc = await read_all(reader)
            assert data == b""
            assert time.monotonic() - started < 2
            writer.close()
            for _reader, silent_writer in silent:
                silent_writer.close()
            await asyncio.sleep(0.1)
            assert await stream_exchange(api.path, LIST) == EMPTY_LIST

    run(scenario())


def test_request_logged(
    run: Run, sock_dir: str, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario() -> None:
        async with serving(sock_dir) as api:
            await podman(api.path, PODMAN_ADD)
            await podman(api.path, b'{"execute":"bad\x1b[2J"}\r\nsecond line')

    with caplog.at_level(logging.DEBUG, logger="slirpy.api.server"):
        run(scenario())
    messages = [r.getMessage() for r in caplog.records]
    assert "api_handler: got request: " + PODMAN_ADD[:-1].decode() in messages
    logged = [m for m in messages if '"bad' in m]
    assert logged
    assert all("\n" not in m and "\x1b" not in m for m in logged)


# --- the socket file ----------------------------------------------------------


def test_socket_mode_0600(run: Run, sock_dir: str) -> None:
    async def scenario() -> None:
        old = os.umask(0)
        try:
            async with serving(sock_dir) as api:
                st = os.stat(api.path)
                assert stat.S_ISSOCK(st.st_mode)
                assert stat.S_IMODE(st.st_mode) == 0o600
        finally:
            os.umask(old)

    run(scenario())


def test_replaces_stale_file(run: Run, sock_dir: str) -> None:
    async def scenario() -> None:
        path = os.path.join(sock_dir, "api.sock")
        write_file(path, "stale")
        async with serving(sock_dir) as api:
            assert api.path == path
            assert stat.S_ISSOCK(os.stat(path).st_mode)
            assert await podman(path, LIST) == EMPTY_LIST

    run(scenario())


def test_close_unlinks(run: Run, sock_dir: str) -> None:
    async def scenario() -> None:
        server = APIServer(FakeService())
        path = os.path.join(sock_dir, "api.sock")
        await server.start(path)
        assert exists(path)
        paths = [server.path]
        server.close()
        await server.wait_closed()
        assert not exists(path)
        paths.append(server.path)
        assert paths == [path, None]
        server.close()
        with pytest.raises(FileNotFoundError):
            await podman(path, LIST)

    run(scenario())


def test_close_leaves_a_foreign_file(run: Run, sock_dir: str) -> None:
    async def scenario() -> None:
        server = APIServer(FakeService())
        path = os.path.join(sock_dir, "api.sock")
        await server.start(path)
        os.unlink(path)
        write_file(path, "someone else's")
        server.close()
        await server.wait_closed()
        assert exists(path)

    run(scenario())


def test_close_drops_connections_in_progress(run: Run, sock_dir: str) -> None:
    async def scenario() -> None:
        server = APIServer(FakeService(), timeout=30.0)
        await server.start(os.path.join(sock_dir, "api.sock"))
        reader, writer = await asyncio.open_unix_connection(server.path)
        await asyncio.sleep(0.05)
        started = time.monotonic()
        server.close()
        await server.wait_closed()
        data, _exc = await read_all(reader)
        assert data == b""
        assert time.monotonic() - started < 2
        writer.close()

    run(scenario())


def test_path_too_long(run: Run, sock_dir: str) -> None:
    async def scenario() -> None:
        base = os.path.join(sock_dir, "")
        too_long = base + "a" * (SUN_PATH_MAX - len(base))
        assert len(too_long) == SUN_PATH_MAX
        server = APIServer(FakeService())
        with pytest.raises(APISocketPathTooLongError) as info:
            await server.start(too_long)
        assert str(info.value) == "the specified API socket path is too long (>= 108)"
        assert not exists(too_long)

        longest = too_long[:-1]
        await server.start(longest)
        try:
            assert await podman(longest, LIST) == EMPTY_LIST
        finally:
            server.close()
        assert not exists(longest)

    run(scenario())


def test_start_twice_refused(run: Run, sock_dir: str) -> None:
    async def scenario() -> None:
        async with serving(sock_dir) as api:
            with pytest.raises(RuntimeError):
                await api.server.start(os.path.join(sock_dir, "other.sock"))

    run(scenario())


def test_bind_failure_raises(run: Run, sock_dir: str) -> None:
    async def scenario() -> None:
        path = os.path.join(sock_dir, "a-directory")
        os.mkdir(path)
        server = APIServer(FakeService())
        with pytest.raises(OSError):
            await server.start(path)
        assert server.path is None

    run(scenario())


def test_podman_reply_is_followed_by_eof(run: Run, sock_dir: str) -> None:
    """One read gets the whole reply; the next read sees EOF, not an error."""

    async def scenario() -> None:
        async with serving(sock_dir) as api:

            def client() -> tuple[bytes, bytes]:
                with socket.socket(socket.AF_UNIX) as sock:
                    sock.settimeout(5)
                    sock.connect(api.path)
                    sock.sendall(PODMAN_ADD)
                    sock.shutdown(socket.SHUT_WR)
                    return sock.recv(2048), sock.recv(2048)

            reply, after = await asyncio.to_thread(client)
            assert (reply, after) == (b'{"return":{"id":1}}', b"")

    run(scenario())
