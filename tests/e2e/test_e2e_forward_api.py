# SPDX-License-Identifier: GPL-2.0-or-later
"""The ``--api-socket`` of the real daemon, spoken to the way its clients do.

Podman (``port_handler=slirp4netns``) writes its request with a trailing
newline, shuts its write side and does one read of at most 2048 bytes;
rootlesskit (``--port-driver=slirp4netns``) does the same but reads to EOF.
Both must get ``{"return":{"id":N}}`` byte for byte.  Ids start at 1 and are
never reused; errors have slirp4netns's exact texts; the socket file exists
once the daemon is ready and is gone after it exits.
"""

from __future__ import annotations

import json
import os
import signal
import stat

import pytest
from lab import (
    GUEST,
    Container,
    Daemon,
    Impl,
    Lab,
    api_request,
    fwd_tcp,
    rand_sha256,
    tcp_server,
)

pytestmark = pytest.mark.timeout(60)

PODMAN_ADD = (
    b'{"execute":"add_hostfwd","arguments":{"proto":"%s","host_addr":"0.0.0.0",'
    b'"host_port":%d,"guest_addr":"","guest_port":%d}}\n'
)
"""What podman's ``json.Marshal`` plus ``"%s\\n"`` sends (guest_addr always "")."""
ROOTLESSKIT_ADD = (
    b'{"execute":"add_hostfwd","arguments":{"proto":"%s","host_addr":"",'
    b'"host_port":%d,"guest_addr":"%s","guest_port":%d}}\n'
)
"""What rootlesskit's ``json.Encoder`` sends (no parent IP given)."""
ROOTLESSKIT_REMOVE = b'{"execute":"remove_hostfwd","arguments":{"id":%d}}\n'
LIST = b'{"execute":"list_hostfwd"}\n'
REMOVED = b'{"return":{}}'


def added(fwd_id: int) -> bytes:
    """The exact reply to a successful ``add_hostfwd``."""
    return b'{"return":{"id":%d}}' % fwd_id


def error(desc: str) -> bytes:
    """The exact reply carrying error ``desc``."""
    return b'{"error":{"desc":"bad request: %s"}}' % desc.encode()


def podman(path: str, proto: str, host_port: int, guest_port: int) -> bytes:
    """Podman's ``add_hostfwd``: trailing newline, CloseWrite, one 2048-byte read."""
    request = PODMAN_ADD % (proto.encode(), host_port, guest_port)
    return api_request(path, request, read_to_eof=False)


def rootlesskit(path: str, proto: str, host_port: int, guest_port: int) -> bytes:
    """Rootlesskit's ``add_hostfwd``: trailing newline, CloseWrite, read to EOF."""
    request = ROOTLESSKIT_ADD % (proto.encode(), host_port, GUEST.encode(), guest_port)
    return api_request(path, request)


def entry(fwd_id: int, proto: str, host_port: int, guest_port: int) -> dict:
    """One ``list_hostfwd`` entry for a forward from 0.0.0.0 to the guest."""
    return {
        "id": fwd_id,
        "proto": proto,
        "host_addr": "0.0.0.0",
        "host_port": host_port,
        "guest_addr": GUEST,
        "guest_port": guest_port,
    }


@pytest.fixture
def api_daemon(lab: Lab, container: Container) -> Daemon:
    """The daemon under test with an API socket, ready."""
    return lab.start_daemon(container, api_socket=lab.api_socket_path())


def test_podman_and_rootlesskit_requests(
    lab: Lab, container: Container, api_daemon: Daemon, impl: Impl
) -> None:
    """Both clients' exact bytes; ids 1, 2, 3... never reused; list; traffic."""
    path = api_daemon.api_socket
    assert path is not None
    server = tcp_server(container, "send:rand:3:300000,shutwr", count=2)
    assert podman(path, "tcp", 18080, server.port) == added(1)
    assert rootlesskit(path, "tcp", 18081, server.port) == added(2)
    assert podman(path, "udp", 18080, 53) == added(3)
    assert api_request(path, ROOTLESSKIT_REMOVE % 2) == REMOVED
    assert rootlesskit(path, "tcp", 18082, 80) == added(4)
    assert api_request(path, ROOTLESSKIT_REMOVE % 3) == REMOVED
    assert api_request(path, ROOTLESSKIT_REMOVE % 3) == error(
        "remove_hostfwd: bad arguments.id"
    )
    assert podman(path, "udp", 18080, 53) == added(5)
    assert api_request(path, ROOTLESSKIT_REMOVE % 4) == REMOVED

    entries = [entry(1, "tcp", 18080, server.port), entry(5, "udp", 18080, 53)]
    reply = api_request(path, LIST)
    compact = json.dumps(entries, separators=(",", ":")).encode()
    if impl.is_slirpy:
        # Both the man page's shape and the real binary's in one reply.
        assert reply == b'{"return":{"entries":%s},"entries":%s}' % (compact, compact)
    else:
        assert reply == b'{"entries":%s}' % compact
    assert json.loads(reply)["entries"] == entries
    assert api_daemon.list_hostfwd() == entries

    # The forward podman added carries data; the removed one is closed.
    first, removed = fwd_tcp(lab.host, ["127.0.0.1:18080", "127.0.0.1:18081"])
    assert first["error"] is None, first
    assert first["rx_sha256"] == rand_sha256(3, 300000)
    assert removed["connect_error"] == "ECONNREFUSED", removed


def test_socket_ready_before_ready_byte(lab: Lab, container: Container) -> None:
    """The socket answers as soon as the ready byte is out."""
    path = lab.api_socket_path()
    daemon = lab.start_daemon(container, api_socket=path)
    assert stat.S_ISSOCK(os.lstat(path).st_mode)
    assert api_request(path, LIST, read_to_eof=False).endswith(b'"entries":[]}')
    assert daemon.proc.alive()


ERRORS = [
    (b"garbage\n", "cannot parse JSON"),
    (b"", "cannot parse JSON"),
    (b"[1,2]\n", "json_object() failed"),
    (b"{}\n", "no execute found"),
    (b'{"execute":1}\n', "no execute found"),
    (b'{"execute":"nope"}\n', "unknown execute"),
    (b'{"execute":"list_hostfwd","pad":"' + b"a" * 4061 + b'"}', "too large message"),
    (
        b'{"execute":"add_hostfwd","arguments":'
        b'{"proto":"sctp","host_port":18090,"guest_port":80}}\n',
        "add_hostfwd: bad arguments.proto",
    ),
    (
        b'{"execute":"add_hostfwd","arguments":'
        b'{"proto":"TCP","host_port":18090,"guest_port":80}}\n',
        "add_hostfwd: bad arguments.proto",
    ),
    (
        b'{"execute":"add_hostfwd","arguments":{"proto":"tcp",'
        b'"host_addr":"localhost","host_port":18090,"guest_port":80}}\n',
        "add_hostfwd: bad arguments.host_addr",
    ),
    (
        b'{"execute":"add_hostfwd","arguments":'
        b'{"proto":"tcp","host_port":"18090","guest_port":80}}\n',
        "add_hostfwd: bad arguments.host_port",
    ),
    (
        b'{"execute":"add_hostfwd","arguments":{"proto":"tcp","guest_port":80}}\n',
        "add_hostfwd: bad arguments.host_port",
    ),
    (
        b'{"execute":"add_hostfwd","arguments":{"proto":"udp",'
        b'"host_port":18090,"guest_addr":"10.0.2","guest_port":80}}\n',
        "add_hostfwd: bad arguments.guest_addr",
    ),
    (
        b'{"execute":"add_hostfwd","arguments":{"proto":"tcp","host_port":18090}}\n',
        "add_hostfwd: bad arguments.guest_port",
    ),
    (
        b'{"execute":"add_hostfwd","arguments":'
        b'{"proto":"tcp","host_port":18090,"guest_port":0}}\n',
        "add_hostfwd: bad arguments.guest_port",
    ),
    (b'{"execute":"remove_hostfwd"}\n', "remove_hostfwd: bad arguments.id"),
    (
        b'{"execute":"remove_hostfwd","arguments":{"id":"1"}}\n',
        "remove_hostfwd: bad arguments.id",
    ),
    (
        b'{"execute":"remove_hostfwd","arguments":{"id":99}}\n',
        "remove_hostfwd: bad arguments.id",
    ),
]
"""Requests both daemons refuse, and the text they refuse them with."""

SLIRPY_ERRORS = [
    (
        b'{"execute":"add_hostfwd","arguments":{"host_port":18090,"guest_port":80}}\n',
        "add_hostfwd: bad arguments.proto",
    ),
    (
        b'{"execute":"add_hostfwd","arguments":'
        b'{"proto":"tcp","host_port":70000,"guest_port":80}}\n',
        "add_hostfwd: bad arguments.host_port",
    ),
    (
        b'{"execute":"add_hostfwd","arguments":'
        b'{"proto":"tcp","host_port":-5,"guest_port":80}}\n',
        "add_hostfwd: bad arguments.host_port",
    ),
    (
        b'{"execute":"add_hostfwd","arguments":'
        b'{"proto":"udp","host_port":18090,"guest_port":65536}}\n',
        "add_hostfwd: bad arguments.guest_port",
    ),
    (
        b'{"execute":"add_hostfwd","arguments":{"proto":"tcp",'
        b'"host_addr":"fe80::1%lo","host_port":18090,"guest_port":80}}\n',
        "add_hostfwd: bad arguments.host_addr",
    ),
]
"""Requests slirp4netns crashes on (no proto) or wraps (ports); slirpy refuses."""


def check_errors(path: str, cases: list[tuple[bytes, str]]) -> None:
    """Send every request; all replies must be the exact error texts."""
    wrong = []
    for request, desc in cases:
        reply = api_request(path, request)
        if reply != error(desc):
            wrong.append((request[:80], reply))
    assert not wrong


def test_error_replies(api_daemon: Daemon) -> None:
    """slirp4netns's error catalogue, byte for byte; nothing was added."""
    assert api_daemon.api_socket is not None
    check_errors(api_daemon.api_socket, ERRORS)
    assert api_daemon.list_hostfwd() == []
    assert api_daemon.proc.alive()


def test_error_replies_slirpy(slirpy_only: None, api_daemon: Daemon) -> None:
    """Where slirp4netns crashes or wraps ports around, slirpy says no."""
    assert api_daemon.api_socket is not None
    check_errors(api_daemon.api_socket, SLIRPY_ERRORS)
    assert api_daemon.list_hostfwd() == []


def test_port_in_use(lab: Lab, container: Container, api_daemon: Daemon) -> None:
    """A duplicate TCP forward or a port another program holds: ``slirp_add_hostfwd
    failed``; the same port number with the other protocol is fine."""
    path = api_daemon.api_socket
    assert path is not None
    failed = error("add_hostfwd: slirp_add_hostfwd failed")
    assert podman(path, "tcp", 18080, 80) == added(1)
    assert podman(path, "tcp", 18080, 81) == failed
    assert rootlesskit(path, "udp", 18080, 80) == added(2)
    holder = tcp_server(lab.host, "", name="port-holder")
    assert podman(path, "tcp", holder.port, 80) == failed
    # A failure uses up no id.
    assert podman(path, "tcp", 18081, 80) == added(3)
    assert [e["id"] for e in api_daemon.list_hostfwd()] == [1, 2, 3]


def test_duplicate_udp_forward(api_daemon: Daemon) -> None:
    """A second UDP forward on the same host address and port is refused."""
    path = api_daemon.api_socket
    assert path is not None
    assert rootlesskit(path, "udp", 18080, 80) == added(1)
    assert rootlesskit(path, "udp", 18080, 81) == error(
        "add_hostfwd: slirp_add_hostfwd failed"
    )
    assert [e["id"] for e in api_daemon.list_hostfwd()] == [1]


def test_socket_removed_on_exit_fd(lab: Lab, container: Container, impl: Impl) -> None:
    """The socket file is there while the daemon runs and gone after exit-fd."""
    path = lab.api_socket_path()
    daemon = lab.start_daemon(container, exit_fd=True, api_socket=path)
    mode = os.lstat(path).st_mode
    assert stat.S_ISSOCK(mode)
    if impl.is_slirpy:  # slirp4netns leaves the mode to the umask
        assert stat.S_IMODE(mode) == 0o600
    assert daemon.add_hostfwd("tcp", 18080, 80) == 1
    daemon.close_exit_fd()
    assert daemon.proc.wait(timeout=10) == 0, daemon.describe()
    assert not os.path.lexists(path)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["TERM", "INT"])
def test_socket_removed_on_signal(
    slirpy_only: None, lab: Lab, container: Container, signum: int
) -> None:
    """SIGTERM / SIGINT also remove the socket (slirp4netns leaves it behind)."""
    path = lab.api_socket_path()
    daemon = lab.start_daemon(container, api_socket=path)
    assert daemon.add_hostfwd("tcp", 18080, 80) == 1
    daemon.proc.send_signal(signum)
    daemon.proc.wait(timeout=10)
    assert not os.path.lexists(path), daemon.describe()
