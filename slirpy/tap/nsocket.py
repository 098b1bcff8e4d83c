# SPDX-License-Identifier: GPL-2.0-or-later
"""Sockets made inside the container's network namespace, for a daemon outside it.

This module owns ``NamespaceSockets``: a long-lived helper process, forked at
start-up like ``obtain_tap()``'s child, that joins the target's user and
network namespaces and hands out fresh, unconnected TCP sockets created there.
A socket's network namespace is fixed when the socket is created, so a socket
from the helper reaches the container's own addresses (its loopback included)
while the daemon drives it from the host's namespace. The zero-copy
port-forward path relays host loopback clients through such sockets
(``slirpy.proxy.splice``).

Protocol, on an ``AF_UNIX`` ``SOCK_SEQPACKET`` socketpair, one request in
flight at a time (every integer is a native ``int``):

* once, at start-up, the helper reports whether it joined the namespaces: an
  errno (0: ready), then, on failure, what failed as text;
* a request is the address family (``AF_INET`` or ``AF_INET6``);
* a reply is an errno: 0 with the new socket attached (``SCM_RIGHTS``), or
  the reason ``socket(2)`` failed, with nothing attached.

The helper keeps nothing of the daemon's but its end of the socketpair (its
standard streams point to ``/dev/null``), ignores ``SIGINT`` (a terminal's
Ctrl-C is the daemon's to handle), leaves on EOF (the daemon closed its end or
died) and is killed by ``PR_SET_PDEATHSIG`` when the daemon's thread that
started it exits. It never returns into the caller's code.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import gc
import os
import signal
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Final, NoReturn

from slirpy.config import DaemonConfig, NetnsType
from slirpy.tap.netns import CLONE_NEWNET, CLONE_NEWUSER, namespace_paths

FAMILIES: Final = frozenset({socket.AF_INET, socket.AF_INET6})
"""The address families ``new_socket()`` accepts."""

PR_SET_PDEATHSIG: Final = 1
_INT: Final = struct.Struct("=i")
_FD: Final = struct.Struct("=i")
_TEXT_MAX: Final = 1024
_START_TIMEOUT: Final = 10.0
"""Seconds ``start()`` waits for the helper to join the namespaces."""
_REQUEST_TIMEOUT: Final = 5.0
"""Seconds ``new_socket()`` waits for an answer before giving the helper up."""
_EXIT_GRACE: Final = 1.0
"""Seconds ``close()`` waits for the helper to leave on EOF before killing it."""


@dataclass(frozen=True, slots=True)
class _Calls:
    """The libc functions the helper needs, resolved before ``fork()``."""

    setns: Callable[..., int]
    prctl: Callable[..., int]

    @classmethod
    def resolve(cls) -> _Calls:
        libc = ctypes.CDLL(None, use_errno=True)
        return cls(setns=libc.setns, prctl=libc.prctl)

    def set_pdeathsig(self, sig: int) -> None:
        if self.prctl(ctypes.c_int(PR_SET_PDEATHSIG), ctypes.c_ulong(sig)) != 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err), "prctl(PR_SET_PDEATHSIG)")

    def enter(self, fd: int, nstype: int) -> int:
        """``setns(2)``: 0, or the errno."""
        if self.setns(ctypes.c_int(fd), ctypes.c_int(nstype)) != 0:
            return ctypes.get_errno() or errno.EINVAL
        return 0


class NamespaceSockets:
    """A socket factory for the target network namespace; see the module docstring.

    Create with ``start()``; ``new_socket()`` is a synchronous local round trip
    (tens of microseconds); ``close()`` ends and reaps the helper. Usable as a
    context manager. Safe to call from several threads (requests are
    serialised).
    """

    def __init__(self, pid: int, sock: socket.socket) -> None:
        """Adopt a running helper; use ``start()`` to make one."""
        self._pid = pid
        self._sock: socket.socket | None = sock
        self._lock = threading.Lock()
        self._returncode: int | None = None

    @classmethod
    def start(cls, config: DaemonConfig) -> NamespaceSockets:
        """Fork the helper into the namespaces named by ``config``.

        The namespaces are resolved as ``obtain_tap()`` resolves them
        (``slirpy.tap.netns.namespace_paths``). Must run while the process has
        a single thread (it forks; ``PR_SET_PDEATHSIG`` follows the forking
        thread): call it before any event loop or thread exists. Raises
        ``ValueError`` for ``--netns-type=tapfd`` (no namespace is named) and
        ``OSError`` when the helper cannot be started or cannot join the
        namespaces (the error names the path or the call that failed).
        """
        if config.netns_type is NetnsType.TAPFD:
            raise ValueError(
                "--netns-type=tapfd names no network namespace: "
                "sockets cannot be created inside it"
            )
        netns_path, userns_path = namespace_paths(config)
        calls = _Calls.resolve()
        parent_pid = os.getpid()
        parent_sock, child_sock = socket.socketpair(
            socket.AF_UNIX, socket.SOCK_SEQPACKET
        )
        try:
            pid = os.fork()
        except OSError:
            parent_sock.close()
            child_sock.close()
            raise
        if pid == 0:
            _helper(parent_sock, child_sock, parent_pid, netns_path, userns_path, calls)
        child_sock.close()
        self = cls(pid, parent_sock)
        try:
            self._handshake()
        except BaseException:
            self._abandon()
            raise
        return self

    @property
    def pid(self) -> int:
        """The helper's process id."""
        return self._pid

    @property
    def returncode(self) -> int | None:
        """None while the helper runs; then its exit code, or ``-signal``.

        0 too if something else reaped it (``SIGCHLD`` ignored), as with
        ``subprocess``.
        """
        return self._returncode

    @property
    def closed(self) -> bool:
        return self._sock is None

    def new_socket(self, family: int) -> socket.socket:
        """A fresh, unconnected, non-blocking ``SOCK_STREAM`` socket in the namespace.

        ``OSError`` on failure: the helper's ``socket(2)`` errno, ``EAFNOSUPPORT``
        for a family other than ``AF_INET``/``AF_INET6``, ``EBADF`` once closed.
        If the helper is gone or does not answer, it is reaped and every later
        call fails too.
        """
        if family not in FAMILIES:
            raise OSError(
                errno.EAFNOSUPPORT, os.strerror(errno.EAFNOSUPPORT), f"family {family}"
            )
        with self._lock:
            sock = self._sock
            if sock is None:
                raise OSError(errno.EBADF, "the namespace socket helper is closed")
            try:
                sock.send(_INT.pack(family))
                msg, fds, flags = _recv_fd(sock)
            except OSError as exc:
                self._abandon()
                code = exc.errno or errno.ETIMEDOUT
                raise OSError(
                    code, f"the namespace socket helper failed: {exc}"
                ) from exc
            if not msg:
                self._abandon()
                raise OSError(errno.ESRCH, "the namespace socket helper has exited")
        return _adopt(msg, fds, flags)

    def close(self) -> None:
        """Close the socketpair; the helper leaves on EOF and is reaped here.

        A helper that does not leave within a second is killed. Idempotent.
        """
        with self._lock:
            sock, self._sock = self._sock, None
        if sock is None:
            return
        sock.close()
        self._reap(_EXIT_GRACE)

    def __enter__(self) -> NamespaceSockets:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _handshake(self) -> None:
        sock = self._sock
        assert sock is not None
        sock.settimeout(_START_TIMEOUT)
        try:
            msg = sock.recv(_INT.size + _TEXT_MAX)
        except OSError as exc:
            code = exc.errno or errno.ETIMEDOUT
            raise OSError(code, f"the namespace socket helper failed: {exc}") from exc
        if len(msg) < _INT.size:
            self._abandon()
            raise OSError(
                errno.ESRCH,
                f"the namespace socket helper exited ({_describe(self._returncode)})",
            )
        (code,) = _INT.unpack_from(msg)
        if code:
            what = msg[_INT.size :].decode(errors="replace")
            raise OSError(code, os.strerror(code), what)
        sock.settimeout(_REQUEST_TIMEOUT)

    def _abandon(self) -> None:
        """Close the socketpair and reap the helper without waiting for it."""
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()
        self._reap(0.0)

    def _reap(self, grace: float) -> None:
        if self._returncode is not None:
            return
        deadline = time.monotonic() + grace
        delay = 0.0005
        while True:
            try:
                pid, wstatus = os.waitpid(self._pid, os.WNOHANG)
            except ChildProcessError:
                # Reaped elsewhere (SIGCHLD ignored, or a catch-all reaper).
                self._returncode = 0
                return
            if pid:
                self._returncode = os.waitstatus_to_exitcode(wstatus)
                return
            if time.monotonic() >= deadline:
                break
            time.sleep(delay)
            delay = min(delay * 2, 0.05)
        # Our own unreaped child: the pid cannot have been reused.
        with contextlib.suppress(ProcessLookupError):
            os.kill(self._pid, signal.SIGKILL)
        try:
            _, wstatus = os.waitpid(self._pid, 0)
        except ChildProcessError:
            self._returncode = 0
            return
        self._returncode = os.waitstatus_to_exitcode(wstatus)


def _recv_fd(sock: socket.socket) -> tuple[bytes, list[int], int]:
    """One reply: its bytes, the fds attached (close-on-exec), the msg flags.

    ``socket.recv_fds()`` drops its ``flags`` argument before Python 3.12, so
    ``MSG_CMSG_CLOEXEC`` is passed to ``recvmsg`` here.
    """
    msg, ancdata, flags, _ = sock.recvmsg(
        _INT.size, socket.CMSG_SPACE(_FD.size), socket.MSG_CMSG_CLOEXEC
    )
    fds: list[int] = []
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            usable = len(data) - len(data) % _FD.size
            fds.extend(fd for (fd,) in _FD.iter_unpack(data[:usable]))
    return msg, fds, flags


def _adopt(msg: bytes, fds: list[int], flags: int) -> socket.socket:
    """The reply's socket, made non-blocking; ``OSError`` for an error reply."""
    try:
        if flags & (socket.MSG_CTRUNC | socket.MSG_TRUNC) or len(msg) != _INT.size:
            raise OSError(errno.EPROTO, "malformed reply from the namespace helper")
        (code,) = _INT.unpack(msg)
        if code:
            raise OSError(code, os.strerror(code))
        if len(fds) != 1:
            raise OSError(errno.EPROTO, "the namespace helper sent no socket")
        sock = socket.socket(fileno=fds[0])
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise
    sock.setblocking(False)
    return sock


def _describe(returncode: int | None) -> str:
    if returncode is None:
        return "still running"
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit status {returncode}"


# --- the helper process ----------------------------------------------------


def _helper(
    parent_sock: socket.socket,
    child_sock: socket.socket,
    parent_pid: int,
    netns_path: str,
    userns_path: str | None,
    calls: _Calls,
) -> NoReturn:
    """The forked helper: never returns, whatever is raised."""
    code = 1
    try:
        # The daemon's objects stay alive in the frames above; never let the
        # collector finalise one, which would close a reused fd number.
        gc.disable()
        parent_sock.detach()
        fd = child_sock.detach()
        code = _serve(fd, parent_pid, netns_path, userns_path, calls)
    except BaseException:
        code = 1
    finally:
        os._exit(code)


def _serve(
    fd: int,
    parent_pid: int,
    netns_path: str,
    userns_path: str | None,
    calls: _Calls,
) -> int:
    _die_with_parent(parent_pid, calls)
    _quiet_signals()
    fd = _keep_only(fd)
    sock = socket.socket(fileno=fd)
    sock.setblocking(True)
    failure = _enter_namespaces(netns_path, userns_path, calls)
    # Joining a user namespace changes credentials, which may clear the
    # parent-death signal: set it again.
    _die_with_parent(parent_pid, calls)
    if failure is not None:
        code, what = failure
        sock.send(_INT.pack(code) + what.encode(errors="replace")[:_TEXT_MAX])
        return 1
    sock.send(_INT.pack(0))
    while True:
        request = sock.recv(_INT.size + 1)
        if not request:
            return 0
        _answer(sock, request)


def _answer(sock: socket.socket, request: bytes) -> None:
    if len(request) != _INT.size:
        sock.send(_INT.pack(errno.EINVAL))
        return
    (family,) = _INT.unpack(request)
    if family not in FAMILIES:
        sock.send(_INT.pack(errno.EAFNOSUPPORT))
        return
    try:
        made = socket.socket(family, socket.SOCK_STREAM | socket.SOCK_NONBLOCK)
    except OSError as exc:
        sock.send(_INT.pack(exc.errno or errno.EIO))
        return
    try:
        socket.send_fds(sock, [_INT.pack(0)], [made.fileno()])
    finally:
        made.close()


def _die_with_parent(parent_pid: int, calls: _Calls) -> None:
    calls.set_pdeathsig(signal.SIGKILL)
    if os.getppid() != parent_pid:
        # The daemon died before the signal was armed.
        os._exit(1)


def _quiet_signals() -> None:
    """Default dispositions instead of the daemon's Python handlers; no SIGINT."""
    with contextlib.suppress(ValueError):
        signal.set_wakeup_fd(-1)
    for sig in signal.valid_signals():
        with contextlib.suppress(OSError, ValueError, TypeError):
            if callable(signal.getsignal(sig)):
                signal.signal(sig, signal.SIG_DFL)
    with contextlib.suppress(OSError, ValueError):
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def _keep_only(fd: int) -> int:
    """Close every fd but ``fd`` (moved above 2 if needed); 0-2 → ``/dev/null``."""
    if fd <= 2:
        fd = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3)
    try:
        null = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        null = -1
    for std in (0, 1, 2):
        if null < 0:
            with contextlib.suppress(OSError):
                os.close(std)
        elif std != null:
            os.dup2(null, std, inheritable=False)
    top = _highest_fd()
    os.closerange(3, fd)
    os.closerange(fd + 1, max(top, fd) + 1)
    return fd


def _highest_fd() -> int:
    try:
        return max((int(name) for name in os.listdir("/proc/self/fd")), default=2)
    except (OSError, ValueError):
        return max(os.sysconf("SC_OPEN_MAX"), 1 << 16)


def _enter_namespaces(
    netns_path: str, userns_path: str | None, calls: _Calls
) -> tuple[int, str] | None:
    """Join the user namespace (failure ignored), then the network namespace.

    None on success, else the errno and what failed (a path or the call),
    as ``slirpy.tap.netns`` reports them.
    """
    try:
        netns_fd = os.open(netns_path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        return exc.errno or errno.EIO, netns_path
    try:
        if userns_path is not None:
            try:
                userns_fd = os.open(userns_path, os.O_RDONLY | os.O_CLOEXEC)
            except OSError as exc:
                return exc.errno or errno.EIO, userns_path
            # EINVAL when already a member, EPERM without the rights: either
            # way the netns join decides.
            calls.enter(userns_fd, CLONE_NEWUSER)
            os.close(userns_fd)
        code = calls.enter(netns_fd, CLONE_NEWNET)
        if code:
            return code, "setns(CLONE_NEWNET)"
        return None
    finally:
        os.close(netns_fd)
