# SPDX-License-Identifier: GPL-2.0-or-later
"""The composition root: TAP, stack, driver, signals, ready and exit fds.

``run`` follows slirp4netns's order of start-up (``slirp4netns.c:
do_slirp``): obtain the TAP fd from the target namespace (before any event
loop or thread exists), print the banner, build the stack and its driver,
then write the ready byte, and serve until the exit fd hangs up or a
SIGTERM/SIGINT arrives. Nothing is written to the ready fd on failure.

``slirpy -- COMMAND`` (``slirpy.run``) hands ``run`` a TAP it opened itself and
a ``Companion`` that starts the command once the network is up and ends the
daemon with the command's exit status.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import ipaddress
import logging
import os
import random
import resource
import signal
import sys
from collections.abc import Callable
from typing import Protocol

from slirpy.api.schema import AddHostFwd, HostFwdEntry
from slirpy.api.server import APIServer, APISocketPathTooLongError
from slirpy.banner import core_kind, format_banner
from slirpy.config import DaemonConfig
from slirpy.driver import Driver, FrameCapture
from slirpy.proxy.forward import HostForwarder
from slirpy.proxy.resolv import ResolvWatcher
from slirpy.sandbox import SandboxError, enter_sandbox
from slirpy.seccomp import SeccompError, enable_seccomp
from slirpy.stack.stack import Stack
from slirpy.tap.device import TapDevice
from slirpy.tap.netns import SetupError, obtain_tap
from slirpy.tap.nsocket import NamespaceSockets
from slirpy.tap.pcap import PcapWriter

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


class ForwardService:
    """The API's view of the daemon (``slirpy.api.server.HostFwdService``): the
    port forwards, and the stack's flows and counters."""

    def __init__(
        self,
        forwarder: HostForwarder,
        default_guest: ipaddress.IPv4Address,
        stack: Stack,
        tx_dropped: Callable[[], int],
        *,
        splice: bool = False,
    ) -> None:
        """``splice``: whether TCP rules splice loopback clients unless the
        request says otherwise (``--port-splice``)."""
        self._forwarder = forwarder
        self._default_guest = default_guest
        self._splice = splice
        self._stack = stack
        self._tx_dropped = tx_dropped

    def add(self, cmd: AddHostFwd) -> tuple[int, int] | None:
        guest = cmd.guest_addr or self._default_guest
        try:
            splice = self._splice if cmd.splice is None else cmd.splice
            rule = self._forwarder.add(
                cmd.proto,
                cmd.host_addr,
                cmd.host_port,
                guest,
                cmd.guest_port,
                splice=splice and cmd.proto == "tcp",
            )
        except OSError as exc:
            log.warning(
                "add_hostfwd %s %s:%d failed: %s",
                cmd.proto,
                cmd.host_addr,
                cmd.host_port,
                exc,
            )
            return None
        return rule.id, rule.host_port

    def remove(self, id: int) -> bool:
        return self._forwarder.remove(id)

    def flows(self) -> list[dict[str, object]]:
        return self._stack.flows.describe()

    def stats(self) -> dict[str, object]:
        counters: dict[str, object] = dict(self._stack.stats.as_dict())
        counters["tx_dropped"] = self._tx_dropped()
        return counters

    def entries(self) -> list[HostFwdEntry]:
        return [
            HostFwdEntry(
                id=rule.id,
                proto=rule.proto,
                host_addr=rule.host_addr,
                host_port=rule.host_port,
                guest_addr=rule.guest_addr,
                guest_port=rule.guest_port,
                splice=rule.splice,
            )
            for rule in self._forwarder.rules()
        ]


class Companion(Protocol):
    """Runs beside the daemon: ``slirpy -- COMMAND``'s command (``slirpy.run``)."""

    def start(self, daemon: Daemon) -> None:
        """The network is up: called once, just before the ready byte, with the
        daemon's signal handlers in place (it may replace them). It ends the
        daemon with ``daemon.stop(status)``."""


class Daemon:
    """One running slirpy: owns the loop, the stack, the driver and the fds."""

    def __init__(
        self,
        config: DaemonConfig,
        tap_fd: int,
        offload: bool,
        ns_sockets: NamespaceSockets | None = None,
        *,
        capture: FrameCapture | None = None,
        companion: Companion | None = None,
    ) -> None:
        self.config = config
        self.companion = companion
        self.exit_status = 0
        """What ``run`` returns once stopped (``stop(status)`` sets it)."""
        self.loop = _new_event_loop()
        stack_config = dataclasses.replace(config.stack, vnet_hdr=offload)
        self.stack = Stack(stack_config, random.SystemRandom())
        outbound = config.outbound_addr
        self.driver = Driver(
            self.loop,
            self.stack,
            tap_fd,
            outbound_addr=None if outbound is None else str(outbound),
            outbound_addr6=(
                None if config.outbound_addr6 is None else str(config.outbound_addr6)
            ),
            ns_sockets=ns_sockets,
            capture=capture,
        )
        self.resolv = ResolvWatcher()
        self.api: APIServer | None = None
        if config.api_socket is not None:
            driver = self.driver
            service = ForwardService(
                driver.forwarder,
                config.stack.guest,
                self.stack,
                lambda: driver.tx_dropped,
                splice=config.port_splice,
            )
            self.api = APIServer(service)
        self._stopped = asyncio.Event()
        self._resolv_timer: asyncio.TimerHandle | None = None

    def _check_resolv(self) -> None:
        if self.resolv.refresh():
            ns = self.resolv.nameserver
            ns6 = self.resolv.nameserver6
            self.stack.nat.dns_upstream = ns.packed if ns is not None else None
            self.stack.nat.dns_upstream6 = ns6.packed if ns6 is not None else None
            log.debug("upstream DNS: %s, %s", ns, ns6)
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
                self.loop.remove_reader(fd)
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

    def stop(self, status: int | None = None) -> None:
        """End serving; ``status``, if given, becomes the exit status."""
        if status is not None:
            self.exit_status = status
        self._stopped.set()

    async def _serve(self) -> int:
        self.driver.start()
        if self.api is not None and self.config.api_socket is not None:
            try:
                await self.api.start(self.config.api_socket)
            except APISocketPathTooLongError as exc:
                print(exc, file=sys.stderr, flush=True)
                return 1
            except OSError as exc:
                print(f"api_bindlisten: bind: {exc.strerror}", file=sys.stderr)
                return 1
        if self.config.enable_sandbox:
            try:
                enter_sandbox(self.config)
            except SandboxError as exc:
                log.error("%s", exc)
                print("create_sandbox failed", file=sys.stderr, flush=True)
                return 1
        if self.config.enable_seccomp:
            try:
                enable_seccomp()
            except SeccompError as exc:
                log.error("%s", exc)
                print("enable_seccomp failed", file=sys.stderr, flush=True)
                return 1
        self._check_resolv()
        for sig in (signal.SIGTERM, signal.SIGINT):
            self.loop.add_signal_handler(sig, self.stop)
        if self.config.exit_fd is not None:
            self._watch_exit_fd(self.config.exit_fd)
        if self.companion is not None:
            self.companion.start(self)
            if self._stopped.is_set():
                return self.exit_status
        if self.config.ready_fd is not None:
            _write_ready(self.config.ready_fd)
        await self._stopped.wait()
        return self.exit_status

    def run(self) -> int:
        asyncio.set_event_loop(self.loop)
        try:
            return self.loop.run_until_complete(self._serve())
        finally:
            if self.api is not None:
                self.api.close()
            if self._resolv_timer is not None:
                self._resolv_timer.cancel()
            self.driver.stop()
            self.loop.close()


def run(
    config: DaemonConfig,
    *,
    tap: TapDevice | None = None,
    companion: Companion | None = None,
) -> int:
    """Start slirpy with ``config``; the process exit status.

    ``tap``: a TAP already open in the target namespace (it is closed on
    return); by default it is obtained as ``config`` says. ``companion``: see
    ``Companion``.
    """
    _raise_fd_limit()
    if tap is None:
        try:
            tap = obtain_tap(config)
        except SetupError as exc:
            return exc.exit_code
    ns_sockets = None
    capture = None
    try:
        if config.port_splice:
            try:
                ns_sockets = NamespaceSockets.start(config)
            except (OSError, ValueError) as exc:
                print(
                    f"cannot reach the namespace for --port-splice: {exc}",
                    file=sys.stderr,
                )
                return 1
        if config.pcap is not None:
            try:
                capture = PcapWriter.create(config.pcap, vnet_hdr=tap.vnet_hdr)
            except OSError as exc:
                print(f"{config.pcap}: {exc.strerror}", file=sys.stderr)
                return 1
        print(format_banner(config, offload=tap.vnet_hdr, core=core_kind()), flush=True)
        daemon = Daemon(
            config,
            tap.fileno(),
            tap.vnet_hdr,
            ns_sockets,
            capture=capture,
            companion=companion,
        )
        return daemon.run()
    finally:
        tap.close()
        if ns_sockets is not None:
            ns_sockets.close()
        if capture is not None:
            capture.close()
