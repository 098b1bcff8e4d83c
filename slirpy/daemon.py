# SPDX-License-Identifier: GPL-2.0-or-later
"""The composition root: TAP, stack, driver, signals, ready and exit fds.

``run`` follows slirp4netns's order of start-up (``slirp4netns.c:
do_slirp``): obtain the TAP fd from the target namespace (before any event
loop or thread exists), print the banner, build the stack and its driver,
then write the ready byte, and serve until the exit fd hangs up or a
SIGTERM/SIGINT arrives. Nothing is written to the ready fd on failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import logging
import os
import random
import resource
import signal
import sys

from slirpy.banner import format_banner
from slirpy.config import DaemonConfig
from slirpy.driver import Driver
from slirpy.proxy.resolv import ResolvWatcher
from slirpy.stack.stack import Stack
from slirpy.tap.netns import SetupError, obtain_tap

log = logging.getLogger(__name__)

_RESOLV_CHECK_SECONDS = 1.0


def _raise_fd_limit() -> None:
    """Each flow holds a host socket: allow as many as the hard limit."""
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft < hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (OSError, ValueError):
        pass


def _new_event_loop() -> asyncio.AbstractEventLoop:
    if os.environ.get("SLIRPY_LOOP") != "asyncio":
        try:
            import uvloop
        except ImportError:
            pass
        else:
            loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
            return loop
    return asyncio.new_event_loop()


def _write_ready(fd: int) -> None:
    while True:
        try:
            os.write(fd, b"1")
            break
        except InterruptedError:
            continue
        except OSError as exc:
            log.warning("cannot write to the ready fd %d: %s", fd, exc)
            break
    with contextlib.suppress(OSError):
        os.close(fd)


class Daemon:
    """One running slirpy: owns the loop, the stack, the driver and the fds."""

    def __init__(self, config: DaemonConfig, tap_fd: int, offload: bool) -> None:
        self.config = config
        self.loop = _new_event_loop()
        stack_config = dataclasses.replace(config.stack, vnet_hdr=offload)
        self.stack = Stack(stack_config, random.SystemRandom())
        self.driver = Driver(self.loop, self.stack, tap_fd)
        self.resolv = ResolvWatcher()
        self._stopped = asyncio.Event()
        self._resolv_timer: asyncio.TimerHandle | None = None

    def _check_resolv(self) -> None:
        if self.resolv.refresh():
            ns = self.resolv.nameserver
            self.stack.nat.dns_upstream = ns.packed if ns is not None else None
            log.debug("upstream DNS: %s", ns)
        self._resolv_timer = self.loop.call_later(
            _RESOLV_CHECK_SECONDS, self._check_resolv
        )

    def _watch_exit_fd(self, fd: int) -> None:
        def on_event() -> None:
            try:
                data = os.read(fd, 4096)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:
                print("exitfd event", file=sys.stderr, flush=True)
                self.stop()

        try:
            os.set_blocking(fd, False)
            self.loop.add_reader(fd, on_event)
        except OSError as exc:
            # POLLNVAL in slirp4netns: an fd that cannot be watched means exit.
            if exc.errno in (errno.EBADF, errno.EINVAL, errno.EPERM):
                print("exitfd event", file=sys.stderr, flush=True)
                self.loop.call_soon(self.stop)
            else:
                raise

    def stop(self) -> None:
        self._stopped.set()

    async def _serve(self) -> None:
        self.driver.start()
        self._check_resolv()
        for sig in (signal.SIGTERM, signal.SIGINT):
            self.loop.add_signal_handler(sig, self.stop)
        if self.config.exit_fd is not None:
            self._watch_exit_fd(self.config.exit_fd)
        if self.config.ready_fd is not None:
            _write_ready(self.config.ready_fd)
        await self._stopped.wait()

    def run(self) -> int:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self._serve())
        finally:
            if self._resolv_timer is not None:
                self._resolv_timer.cancel()
            self.driver.stop()
            self.loop.close()
        return 0


def run(config: DaemonConfig) -> int:
    """Start slirpy with ``config``; the process exit status."""
    _raise_fd_limit()
    try:
        tap = obtain_tap(config)
    except SetupError as exc:
        return exc.exit_code
    print(format_banner(config, offload=tap.vnet_hdr), flush=True)
    daemon = Daemon(config, tap.fileno(), tap.vnet_hdr)
    try:
        return daemon.run()
    finally:
        tap.close()
