# SPDX-License-Identifier: GPL-2.0-or-later
"""UDP port forwards: an echo server in the container reached from the host.

The guest server is ``tools/udp_peer.py`` (it echoes each datagram to its
sender and reports the sender's address); the host client is
``tools/fwd_peer.py udp``, which checks every echo byte for byte.

Bulk over UDP is measured by count, not volume: a client keeping at most
``WINDOW`` datagrams in flight must get every one of ``MANY`` echoes back.
The window keeps the rate modest and every queue on the way far from full,
so no loss is tolerated.
"""

from __future__ import annotations

import hashlib

import pytest
from lab import (
    GATEWAY,
    REMOTE,
    Container,
    Daemon,
    Lab,
    Server,
    fwd_udp,
    rand_bytes,
)

pytestmark = pytest.mark.timeout(60)

HOST_PORT = 18053
SIZES = [1, 2, 17, 100, 512, 999, 1200, 1400]
MANY = 20000
MANY_SIZES = [64, 333, 700, 1024, 1400]
WINDOW = 16


@pytest.fixture
def api_daemon(lab: Lab, container: Container) -> Daemon:
    """The daemon under test with an API socket, ready."""
    return lab.start_daemon(container, api_socket=lab.api_socket_path())


def echo_server(container: Container, count: int) -> Server:
    """A UDP echo server on 0.0.0.0 in the container for ``count`` datagrams."""
    return container.start_server(
        "udp_peer", "--listen=0.0.0.0:0", f"--count={count}", "--timeout=50"
    )


def sent_sha256(index: int, sizes: list[int]) -> str:
    """SHA-256 of datagram ``index`` as ``fwd_peer.py udp`` sends it."""
    return hashlib.sha256(rand_bytes(index, sizes[index % len(sizes)])).hexdigest()


def test_echo_sizes(lab: Lab, container: Container, api_daemon: Daemon) -> None:
    """Datagrams of 1 to 1400 bytes go to the guest and come back exactly."""
    server = echo_server(container, 100)
    api_daemon.add_hostfwd("udp", HOST_PORT, server.port)
    count = 2 * len(SIZES)
    summary = fwd_udp(lab.host, f"127.0.0.1:{HOST_PORT}", count=count, sizes=SIZES)
    assert summary["error"] is None, summary
    assert (summary["echoed"], summary["garbled"], summary["lost"]) == (count, 0, 0)
    seen = server.results(count, timeout=10)
    assert [s["sha256"] for s in seen] == [sent_sha256(i, SIZES) for i in range(count)]
    assert [s["bytes"] for s in seen] == [SIZES[i % len(SIZES)] for i in range(count)]


def test_many_datagrams(lab: Lab, container: Container, api_daemon: Daemon) -> None:
    """20000 datagrams (about 14 MB), 16 in flight: every echo comes back."""
    server = echo_server(container, MANY + 10)
    api_daemon.add_hostfwd("udp", HOST_PORT, server.port)
    summary = fwd_udp(
        lab.host,
        f"127.0.0.1:{HOST_PORT}",
        count=MANY,
        sizes=MANY_SIZES,
        window=WINDOW,
        timeout=40,
    )
    assert summary["error"] is None, summary
    assert summary["sent"] == MANY, summary
    assert (summary["echoed"], summary["garbled"], summary["lost"]) == (MANY, 0, 0)
    seen = server.results(MANY, timeout=20)
    assert len({s["peer"] for s in seen}) == 1
    expected = sorted(sent_sha256(i, MANY_SIZES) for i in range(MANY))
    assert sorted(s["sha256"] for s in seen) == expected


def test_source_address(lab: Lab, container: Container, api_daemon: Daemon) -> None:
    """The guest sees a loopback client as 10.0.2.2 and a client on 198.18.0.2
    as 198.18.0.2; each gets its own echoes."""
    server = echo_server(container, 100)
    api_daemon.add_hostfwd("udp", HOST_PORT, server.port)
    loopback = fwd_udp(lab.host, f"127.0.0.1:{HOST_PORT}", count=3, sizes=[10])
    remote = fwd_udp(
        lab.host, f"{REMOTE}:{HOST_PORT}", count=3, sizes=[20], bind=REMOTE
    )
    for summary in (loopback, remote):
        assert summary["error"] is None, summary
        assert summary["echoed"] == 3, summary
    seen = server.results(6, timeout=10)
    peers = [s["peer"] for s in seen]
    assert all(p.startswith(f"{GATEWAY}:") for p in peers[:3]), peers
    assert peers[3:] == [remote["local"]] * 3, peers
