# SPDX-License-Identifier: GPL-2.0-or-later
"""slirpy's API extensions seen from outside: ``list_flows`` and ``stats``."""

from __future__ import annotations

import time

import pytest
from lab import GATEWAY, Container, Lab

pytestmark = [pytest.mark.timeout(60), pytest.mark.usefixtures("slirpy_only")]


def test_list_flows_and_stats(lab: Lab, container: Container) -> None:
    """A guest connection that stays open is listed with both ends and its
    state; the counters show the frames that carried it."""
    daemon = lab.start_daemon(container, api_socket=lab.api_socket_path())
    server = lab.host.start_server(
        "tcp_peer", "--listen=127.0.0.1:0", "--actions=recv", "--timeout=40"
    )
    client = container.spawn_python(
        "tcp_peer",
        f"--connect={GATEWAY}:{server.port}",
        "--actions=send:rand:1:1000,recv",
        "--timeout=30",
    )
    try:
        deadline = time.monotonic() + 10
        flows: list[dict[str, object]] = []
        while time.monotonic() < deadline:
            reply = daemon.api({"execute": "list_flows"})
            flows = [f for f in reply["return"]["flows"] if f["proto"] == "tcp"]
            if flows and flows[0]["state"] == "ESTABLISHED":
                break
            time.sleep(0.1)
        (flow,) = flows
        assert str(flow["guest"]).startswith("10.0.2.100:")
        assert flow["remote"] == f"{GATEWAY}:{server.port}"
        assert flow["state"] == "ESTABLISHED"
        assert flow["inbound"] is False
        stats = daemon.api({"execute": "stats"})["return"]
        assert stats["tcp_segments"] >= 3
        assert stats["rx_frames"] >= stats["tcp_segments"]
        assert stats["tx_frames"] >= 2
    finally:
        client.kill()
