# SPDX-License-Identifier: GPL-2.0-or-later
"""Fixtures of the end-to-end lab (see ``lab.py`` for how the lab is built).

``impl``: the implementation under test (``SLIRPY_E2E_IMPL=slirpy|slirp4netns``;
slirpy runs once per event loop, ``SLIRPY_E2E_LOOP=uvloop|asyncio|both``).
``lab``: a fresh outer host namespace (function scope), closed after the test.
``container``: a child user+net namespace inside it.  ``daemon``: the daemon
under test started with ``-c`` for ``container`` and ready.  ``big_file``:
50 MiB of seeded data.  ``slirpy_only``: skips under slirp4netns.

A new test, e.g. a download from a server on the host's loopback::

    from lab import GATEWAY, Container, Daemon, Lab, rand_sha256, tcp_transfer

    def test_small_download(lab: Lab, container: Container, daemon: Daemon) -> None:
        transfer = tcp_transfer(
            lab, container, connect=GATEWAY,
            server_actions="send:rand:1:100000,shutwr", client_actions="recv",
        )
        assert transfer.step("client", "recv")["sha256"] == rand_sha256(1, 100000)

Other building blocks: ``lab.start_daemon(container, *options, ...)``,
``lab.host`` / ``container`` ``.run()``, ``.sh()``, ``.python(tool, ...)``,
``.start_server(tool, ...)``, ``udp_echo()``, ``tcp_connect_error()``.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

if str(Path(__file__).parent) not in sys.path:  # any --import-mode
    sys.path.insert(0, str(Path(__file__).parent))

from lab import (
    SLIRP4NETNS,
    Container,
    Daemon,
    DataFile,
    Impl,
    Lab,
    Session,
    impl_name,
    lab_unavailable_reason,
    loop_names,
    make_impl,
    open_lab,
)

BIG = 50 * 1024 * 1024


def pytest_report_header() -> str:
    """Show which daemon the end-to-end tests drive."""
    loops = ", ".join(loop or "-" for loop in loop_names())
    return f"slirpy e2e: SLIRPY_E2E_IMPL={impl_name()} (event loops: {loops})"


@pytest.fixture(scope="session", params=loop_names(), ids=lambda loop: loop or "")
def impl(request: pytest.FixtureRequest) -> Impl:
    """The implementation under test (slirpy once per event loop)."""
    name = impl_name()
    if name == "slirp4netns" and shutil.which(SLIRP4NETNS) is None:
        pytest.skip(f"{SLIRP4NETNS} is not installed")
    return make_impl(name, loop=request.param)


@pytest.fixture(scope="session")
def e2e_session() -> Iterator[Session]:
    """World-readable files shared by all labs."""
    reason = lab_unavailable_reason()
    if reason:
        pytest.skip(reason)
    session = Session()
    yield session
    session.close()


@pytest.fixture
def lab(e2e_session: Session, impl: Impl) -> Iterator[Lab]:
    """A fresh outer host namespace; everything in it dies afterwards."""
    with open_lab(e2e_session, impl) as the_lab:
        yield the_lab


@pytest.fixture
def container(lab: Lab) -> Container:
    """A container (child user+net namespace) in ``lab``."""
    return lab.new_container()


@pytest.fixture
def daemon(lab: Lab, container: Container) -> Daemon:
    """The daemon under test, ``-c``, pid mode, ready."""
    return lab.start_daemon(container)


@pytest.fixture(scope="session")
def big_file(e2e_session: Session) -> DataFile:
    """50 MiB of seeded pseudo-random bytes."""
    return e2e_session.data_file(BIG, seed=50)


@pytest.fixture
def slirpy_only(impl: Impl) -> None:
    """Skip when the reference implementation runs (slirpy-only expectation)."""
    if not impl.is_slirpy:
        pytest.skip("slirpy-only expectation; slirp4netns does not have this")
