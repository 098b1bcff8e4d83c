# SPDX-License-Identifier: GPL-2.0-or-later
"""Getting the TAP fd into the daemon: slirp4netns's fork, setns and fd-passing model.

This module owns ``obtain_tap()``, which the daemon calls once, before any
event loop or thread exists, and ``SetupError``, which it raises after printing
the reason to stderr; the daemon then exits with ``SetupError.exit_code``.

Theory of operation (slirp4netns ``main.c``: ``main``, ``child``, ``nsenter``):

* The daemon itself never leaves the namespaces it was started in: every
  host-side socket it opens later must live in the host's network namespace.
* A forked child joins the target's user namespace (failure ignored: it may
  already be there, or not need to be), then its network namespace (failure
  fatal), opens the TAP there (creating it, or attaching to one the runtime
  made with ``ip tuntap add``), optionally configures it like ``-c``, and sends
  the fd back over an ``AF_UNIX`` socketpair with ``SCM_RIGHTS``. Its one data
  byte says whether the TAP was opened with the virtio-net header and offloads
  (``\\x01``) or as a plain TAP (``\\x00``). The child then leaves through
  ``os._exit``; it never returns into the caller's code, whatever happens.
* The parent reaps the child first (its exit status is the verdict), then
  receives the fd. The vnet header is a property of the TUN file, so it holds
  for the received fd too.
* ``--netns-type=tapfd``: the fd is inherited; no fork, no namespace change.
"""

from __future__ import annotations

import contextlib
import ctypes
import ipaddress
import os
import socket
from typing import Final, NoReturn

from slirpy.config import DaemonConfig, NetnsType
from slirpy.tap.device import (
    IFF_VNET_HDR,
    TapDevice,
    TapError,
    configure_network,
    open_tap,
    set_nonblocking,
    set_txqueuelen,
    tap_from_fd,
    tun_get_iff,
)

CLONE_NEWUSER: Final = 0x10000000
CLONE_NEWNET: Final = 0x40000000

_OFFLOADS_ON: Final = b"\x01"
_OFFLOADS_OFF: Final = b"\x00"


class SetupError(Exception):
    """Obtaining the TAP failed; the reason is already on stderr.

    The daemon exits with ``exit_code`` (the child's exit status, like
    slirp4netns, or 1).
    """

    def __init__(self, message: str, *, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def obtain_tap(config: DaemonConfig) -> TapDevice:
    """Return the TAP named by ``config``, opened in the target network namespace.

    Must run while the process has a single thread (it forks, and the child
    calls ``setns``). Prints slirp4netns's messages to stderr (``sent tapfd=N
    for NAME`` from the child, ``received tapfd=N``, or the failure) and raises
    ``SetupError`` on failure.
    """
    if config.netns_type is NetnsType.TAPFD:
        return _adopt_fd(config.target)
    if not config.tap_name:
        raise ValueError("a TAP name is required unless --netns-type=tapfd")
    netns_path, userns_path = namespace_paths(config)
    try:
        parent_sock, child_sock = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    except OSError as exc:
        _fail(f"socketpair: {exc.strerror}")
    with parent_sock, child_sock:
        try:
            pid = os.fork()
        except OSError as exc:
            _fail(f"fork: {exc.strerror}")
        if pid == 0:
            parent_sock.close()
            _child(child_sock, config, config.tap_name, netns_path, userns_path)
        child_sock.close()
        _reap(pid)
        return _receive_tap(parent_sock)


def namespace_paths(config: DaemonConfig) -> tuple[str, str | None]:
    """The network and user namespace files the child joins, as slirp4netns picks them.

    PID mode: ``/proc/PID/ns/net`` and ``--userns-path`` or ``/proc/PID/ns/user``.
    Path mode: the given path and ``--userns-path`` if any (no default: the
    caller is expected to run in a suitable user namespace already).
    """
    if config.netns_type is NetnsType.PID:
        pid = int(config.target)
        return f"/proc/{pid}/ns/net", config.userns_path or f"/proc/{pid}/ns/user"
    return config.target, config.userns_path


def child_failure(wstatus: int) -> tuple[str, int] | None:
    """What the parent prints and exits with for the child's wait status, if failed."""
    if os.WIFEXITED(wstatus):
        code = os.WEXITSTATUS(wstatus)
        return None if code == 0 else (f"child failed({code})", code)
    return f"child failed(wstatus={wstatus}, !WIFEXITED)", 1


def _adopt_fd(target: str) -> TapDevice:
    try:
        fd = int(target, 10)
    except ValueError:
        _fail(f"TAPFD must be a file descriptor: {target}")
    try:
        return tap_from_fd(fd)
    except TapError as exc:
        _fail(str(exc))


def _reap(pid: int) -> None:
    while True:
        try:
            _, wstatus = os.waitpid(pid, 0)
        except InterruptedError:
            continue
        except ChildProcessError:
            # Reaped elsewhere (SIGCHLD ignored): the message tells.
            return
        break
    failure = child_failure(wstatus)
    if failure is not None:
        message, code = failure
        _fail(message, code)


def _receive_tap(sock: socket.socket) -> TapDevice:
    try:
        msg, fds, _, _ = socket.recv_fds(sock, 1, 1, socket.MSG_CMSG_CLOEXEC)
    except OSError as exc:
        _fail(f"recvmsg: {exc.strerror}")
    if not msg:
        for fd in fds:
            os.close(fd)
        _fail("the message is empty")
    if not fds:
        _fail("the message does not contain fd")
    fd = fds[0]
    for extra in fds[1:]:
        os.close(extra)
    _say(f"received tapfd={fd}")
    os.set_inheritable(fd, False)
    set_nonblocking(fd)
    vnet_hdr = msg == _OFFLOADS_ON
    try:
        name, flags = tun_get_iff(fd)
    except TapError:
        os.close(fd)
        _fail("the received fd is not a TAP device")
    return TapDevice(fd, name, vnet_hdr=vnet_hdr and bool(flags & IFF_VNET_HDR))


def _child(
    sock: socket.socket,
    config: DaemonConfig,
    tap_name: str,
    netns_path: str,
    userns_path: str | None,
) -> NoReturn:
    """The forked child: never returns, whatever is raised."""
    code = 1
    try:
        try:
            _enter_namespaces(netns_path, userns_path)
            tap = open_tap(tap_name, vnet_hdr=True)
            set_txqueuelen(tap.name)
            if config.configure:
                stack = config.stack
                configure_network(
                    tap.name,
                    mtu=stack.mtu,
                    address=ipaddress.IPv4Interface(
                        (stack.guest, stack.network.prefixlen)
                    ),
                    gateway=stack.gateway,
                    mac=config.macaddress,
                )
            data = _OFFLOADS_ON if tap.vnet_hdr else _OFFLOADS_OFF
            try:
                socket.send_fds(sock, [data], [tap.fd])
            except OSError as exc:
                raise TapError.wrap("sendmsg", exc) from None
            _say(f"sent tapfd={tap.fd} for {tap.name}")
            code = 0
        except TapError as exc:
            _say(str(exc))
        except BaseException as exc:
            _say(f"{type(exc).__name__}: {exc}")
    finally:
        os._exit(code)


def _enter_namespaces(netns_path: str, userns_path: str | None) -> None:
    netns_fd = _open_ns(netns_path)
    if userns_path is not None:
        userns_fd = _open_ns(userns_path)
        # EINVAL when already a member, EPERM without the rights: either way
        # the netns join below decides.
        with contextlib.suppress(OSError):
            _setns(userns_fd, CLONE_NEWUSER)
        os.close(userns_fd)
    try:
        _setns(netns_fd, CLONE_NEWNET)
    except OSError as exc:
        raise TapError.wrap("setns(CLONE_NEWNET)", exc) from None
    os.close(netns_fd)


def _open_ns(path: str) -> int:
    try:
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise TapError.wrap(path, exc) from None


def _setns(fd: int, nstype: int) -> None:
    """``setns(2)``; ``os.setns`` exists only from Python 3.12."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, nstype) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def _say(line: str) -> None:
    """One line to fd 2, unbuffered (the child never flushes Python's buffers)."""
    with contextlib.suppress(OSError):
        os.write(2, line.encode(errors="replace") + b"\n")


def _fail(message: str, exit_code: int = 1) -> NoReturn:
    _say(message)
    raise SetupError(message, exit_code=exit_code)
