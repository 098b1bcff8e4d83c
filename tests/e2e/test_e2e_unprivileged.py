# SPDX-License-Identifier: GPL-2.0-or-later
"""The daemon run by an unprivileged user, as rootless runtimes run it.

As real root the lab enters a private mount namespace, mounts a tmpfs on
``/dev/net`` with a ``tun`` node of mode 0666 (the machine's own node is
root-only and stays untouched), then drops to uid 65534, which creates the
outer user+net namespace and everything inside.  The daemon therefore has no
privilege outside the user namespace that user made.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from lab import (
    UNPRIVILEGED_UID,
    Impl,
    Lab,
    Session,
    make_impl,
    open_lab,
    proc_uids,
    rand_sha256,
    tcp_transfer,
)

pytestmark = pytest.mark.timeout(90)

SIZE = 8 * 1024 * 1024


@pytest.fixture
def unprivileged_lab(e2e_session: Session, impl: Impl) -> Iterator[Lab]:
    """A lab whose namespaces belong to uid 65534."""
    if os.geteuid() != 0:
        pytest.skip("making the unprivileged lab needs real root (tmpfs, mknod)")
    pythonpath = e2e_session.unprivileged_pylib() if impl.is_slirpy else None
    unprivileged_impl = make_impl(impl.name, pythonpath, impl.loop)
    with open_lab(e2e_session, unprivileged_impl, unprivileged=True) as lab:
        yield lab


def test_unprivileged_daemon(unprivileged_lab: Lab) -> None:
    """uid 65534 runs the daemon; a transfer both ways is intact."""
    lab = unprivileged_lab
    assert proc_uids(lab.host.host_pid) == [UNPRIVILEGED_UID] * 4
    container = lab.new_container()
    daemon = lab.start_daemon(container)
    assert proc_uids(daemon.proc.target_pid()) == [UNPRIVILEGED_UID] * 4
    transfer = tcp_transfer(
        lab,
        container,
        server_actions=f"send:rand:61:{SIZE},shutwr,recv",
        client_actions=f"recv,send:rand:62:{SIZE},shutwr",
        timeout=40,
    )
    assert transfer.step("client", "recv")["sha256"] == rand_sha256(61, SIZE)
    assert transfer.step("server", "recv")["sha256"] == rand_sha256(62, SIZE)
