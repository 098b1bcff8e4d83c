# SPDX-License-Identifier: GPL-2.0-or-later
"""``slirpy [OPTION]... -- [COMMAND [ARG]...]``: a command with a network of its own.

This module owns the second form of the command line: make a user and network
namespace, run slirpy for it, run COMMAND (or an interactive shell) inside,
publish ``-p/--publish`` ports into it, and leave with the command's exit
status once everything is torn down. ``parse_publish`` reads the
``--publish`` values for ``slirpy.cli``.

Theory of operation
-------------------
Two processes, made by one ``fork()`` before any event loop or thread exists:

* The child calls ``unshare(CLONE_NEWUSER | CLONE_NEWNET)`` and maps its own
  uid and gid to root inside (``setgroups`` denied first, as an unprivileged
  process must), the way ``unshare --map-root-user`` does. Being root in the
  namespace it owns, it opens ``tap0`` there, configures it as ``-c`` does
  (10.0.2.100/24, default route via 10.0.2.2, MTU 65520 unless ``--mtu``),
  and sends the TAP fd to the parent over a ``SOCK_SEQPACKET`` socketpair
  (``SCM_RIGHTS``; the one data byte says whether the TAP carries the
  virtio-net header), or the reason it failed, as text. It then blocks
  reading the *go* pipe. One byte there means the network is up: it restores
  the signal dispositions Python changed and ``exec``\\ s COMMAND, or
  ``$SHELL`` (``/bin/sh``) if none was given, with the terminal's standard
  streams. End of file means the daemon gave up: it exits without running
  anything. ``PR_SET_PDEATHSIG`` kills it if slirpy dies first.
* The parent is the daemon (``slirpy.daemon.run``), with the received TAP and
  the child as its target (``--port-splice``, ``--enable-sandbox`` reach the
  namespace through ``/proc/PID``). Its ``Companion`` (``CommandCompanion``)
  runs once the network is up, just before the ready byte: it adds the
  published forwards to the same ``HostForwarder`` the API socket uses,
  replaces the daemon's signal handlers (SIGINT and SIGQUIT are ignored: the
  terminal sends them to the command too; SIGTERM and SIGHUP are passed on to
  the command), watches the child through a pidfd, and writes the go byte.
  When the child exits the daemon stops with the child's status (128+N for
  signal N).
* Teardown, whatever ended the daemon: an unreleased child is let go (the go
  pipe closes) or a running one is killed, and reaped; then every process
  still in the command's network namespace (background jobs it left behind)
  gets SIGKILL, so that the namespace goes away with the command. ``/proc``
  and the pidfd are opened before the daemon starts, so this works inside
  ``--enable-sandbox`` and ``--enable-seccomp`` too.

The mode is quiet: option warnings and the banner (stdout) are dropped, so the
command's standard output is its own; errors still go to stderr.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import errno
import ipaddress
import os
import signal
import socket
import sys
from typing import TYPE_CHECKING, Final, NoReturn

from slirpy.config import DaemonConfig, Publish
from slirpy.tap.device import (
    TapDevice,
    TapError,
    configure_network,
    open_tap,
    set_txqueuelen,
)

if TYPE_CHECKING:
    from slirpy.daemon import Daemon

CLONE_NEWUSER: Final = 0x10000000
CLONE_NEWNET: Final = 0x40000000
PR_SET_PDEATHSIG: Final = 1

DEFAULT_SHELL: Final = "/bin/sh"
_TAP_NAME: Final = "tap0"
_OFFLOADS_ON: Final = b"\x01"
_OFFLOADS_OFF: Final = b"\x00"
_FAILED: Final = b"E"
_GO: Final = b"1"
_MESSAGE_MAX: Final = 4096
_SETUP_TIMEOUT: Final = 30.0
"""Seconds the parent waits for the child to report its namespace and TAP."""
_POLL_SECONDS: Final = 0.1
"""How often the child is polled where pidfds are missing (Linux < 5.3)."""
_KILL_ROUNDS: Final = 100

_PUBLISH_HELP: Final = "expected [IP:]HOST:GUEST[/tcp|/udp], ports 1-65535"


# --------------------------------------------------------------------------
# -p/--publish


def parse_publish(text: str) -> Publish:
    """Read one ``-p/--publish`` value: ``[IP:]HOST:GUEST[/tcp|/udp]``.

    IP is an IPv4 address or an IPv6 one in brackets (``[::1]:8080:80``); it
    defaults to ``0.0.0.0``, the protocol to TCP. Raises ``ValueError`` with
    the message to print.
    """
    body, slash, proto = text.partition("/")
    if not slash:
        proto = "tcp"
    if proto not in ("tcp", "udp"):
        raise _publish_error(text)
    host_text = ""
    if body.startswith("["):
        close = body.find("]")
        if close < 0 or body[close + 1 : close + 2] != ":":
            raise _publish_error(text)
        host_text, ports = body[1:close], body[close + 2 :].split(":")
        if not host_text:
            raise _publish_error(text)
    else:
        parts = body.split(":")
        if len(parts) == 3:
            host_text = parts[0]
        ports = parts[-2:] if len(parts) in (2, 3) else []
    if len(ports) != 2:
        raise _publish_error(text)
    try:
        host_addr = ipaddress.ip_address(host_text or "0.0.0.0")
    except ValueError:
        raise _publish_error(text) from None
    if body.startswith("[") != (host_addr.version == 6) or "%" in host_text:
        raise _publish_error(text)
    host_port, guest_port = (_port(port, text) for port in ports)
    return Publish(
        proto="udp" if proto == "udp" else "tcp",
        host_addr=host_addr,
        host_port=host_port,
        guest_port=guest_port,
    )


def _port(text: str, spec: str) -> int:
    if not (text.isascii() and text.isdigit()) or not 0 < int(text) <= 65535:
        raise _publish_error(spec)
    return int(text)


def _publish_error(text: str) -> ValueError:
    return ValueError(f"invalid --publish value: {text} ({_PUBLISH_HELP})")


def describe_publish(spec: Publish) -> str:
    """``spec`` as a user would write it, e.g. ``127.0.0.1:8080:80/tcp``."""
    host = f"[{spec.host_addr}]" if spec.host_addr.version == 6 else str(spec.host_addr)
    return f"{host}:{spec.host_port}:{spec.guest_port}/{spec.proto}"


def exit_status(wstatus: int) -> int:
    """A shell's view of a wait status: the exit code, or 128+N for signal N."""
    if os.WIFSIGNALED(wstatus):
        return 128 + os.WTERMSIG(wstatus)
    if os.WIFEXITED(wstatus):
        return os.WEXITSTATUS(wstatus)
    return 1


# --------------------------------------------------------------------------
# The parent


class SpawnError(Exception):
    """The namespace or its TAP could not be made; the message says why."""


@dataclasses.dataclass(slots=True)
class _Child:
    """The forked child, seen from the parent."""

    pid: int
    go: int
    """The write end of the go pipe; -1 once written or closed."""
    tap: TapDevice
    netns: str
    """Its network namespace, as ``readlink /proc/PID/ns/net`` shows it."""
    status: int | None = None
    """Its exit status once reaped (``exit_status``)."""


def run_command(config: DaemonConfig, *, prog: str = "slirpy") -> int:
    """Run ``config.command`` in a new user and network namespace served by slirpy.

    Returns the command's exit status (128+N if killed by signal N), or 1 if
    the namespace or the daemon could not be set up (the reason is on stderr).
    """
    if config.command is None:
        raise ValueError("run_command needs config.command")
    sys.stdout.flush()
    sys.stderr.flush()
    old_int = signal.getsignal(signal.SIGINT)
    old_quit = signal.getsignal(signal.SIGQUIT)
    proc_fd = os.open("/proc", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        try:
            child = _spawn(config, prog)
        except SpawnError as exc:
            _say(f"{prog}: {exc}")
            return 1
        return _run_daemon(config, child, proc_fd, prog)
    finally:
        os.close(proc_fd)
        signal.signal(signal.SIGINT, old_int)
        signal.signal(signal.SIGQUIT, old_quit)


def _run_daemon(config: DaemonConfig, child: _Child, proc_fd: int, prog: str) -> int:
    pidfd = _pidfd_open(child.pid)
    companion = CommandCompanion(config, child, pidfd, prog)
    try:
        from slirpy import daemon

        target = dataclasses.replace(config, target=str(child.pid))
        with (
            open(os.devnull, "w") as devnull,
            contextlib.redirect_stdout(devnull),
        ):
            status = daemon.run(target, tap=child.tap, companion=companion)
    finally:
        # The loop is closed and its signal handlers with it.
        _ignore_terminal_signals()
        companion.finish(proc_fd)
        if pidfd is not None:
            os.close(pidfd)
    if companion.released and child.status is not None:
        return child.status
    return status or 1


class CommandCompanion:
    """Starts the command once the network is up and ends the daemon with it
    (``slirpy.daemon.Companion``); see the module docstring."""

    def __init__(
        self, config: DaemonConfig, child: _Child, pidfd: int | None, prog: str
    ) -> None:
        self._config = config
        self._child = child
        self._pidfd = pidfd
        self._prog = prog
        self._daemon: Daemon | None = None
        self.released = False
        """Whether the command was told to start."""

    def start(self, daemon: Daemon) -> None:
        self._daemon = daemon
        if not self._publish(daemon):
            daemon.stop(1)
            return
        loop = daemon.loop
        for sig in (signal.SIGINT, signal.SIGQUIT):
            loop.add_signal_handler(sig, _ignore)
        for sig in (signal.SIGTERM, signal.SIGHUP):
            loop.add_signal_handler(sig, self._pass_on, sig)
        if self._pidfd is not None:
            loop.add_reader(self._pidfd, self._check)
        else:
            self._poll()
        self._release()
        self._check()

    def _publish(self, daemon: Daemon) -> bool:
        forwarder = daemon.driver.forwarder
        guest = self._config.stack.guest
        splice = self._config.port_splice
        for spec in self._config.publish:
            try:
                forwarder.add(
                    spec.proto,
                    spec.host_addr,
                    spec.host_port,
                    guest,
                    spec.guest_port,
                    splice=splice and spec.proto == "tcp",
                )
            except OSError as exc:
                _say(
                    f"{self._prog}: cannot publish {describe_publish(spec)}: "
                    f"{exc.strerror or exc}"
                )
                return False
        return True

    def _release(self) -> None:
        child = self._child
        try:
            os.write(child.go, _GO)
        except OSError:
            pass  # it is gone already; _check reaps it
        else:
            self.released = True
        _close_go(child)

    def _pass_on(self, sig: int) -> None:
        if self._child.status is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._child.pid, sig)

    def _poll(self) -> None:
        daemon = self._daemon
        if daemon is not None and self._child.status is None:
            daemon.loop.call_later(_POLL_SECONDS, self._poll)
            self._check()

    def _check(self) -> None:
        """Reap the child if it has exited; the daemon then stops with its status."""
        child = self._child
        if child.status is not None or not _reap(child, block=False):
            return
        daemon = self._daemon
        if daemon is not None:
            if self._pidfd is not None:
                daemon.loop.remove_reader(self._pidfd)
            daemon.stop(child.status)

    def finish(self, proc_fd: int) -> None:
        """Teardown: the child let go or killed and reaped, then every process
        left in its network namespace killed."""
        child = self._child
        _close_go(child)
        if child.status is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child.pid, signal.SIGKILL)
            _reap(child, block=True)
        kill_namespace(proc_fd, child.netns)
        child.tap.close()


def _ignore() -> None:
    """A signal handler that does nothing (the command gets the signal)."""


def _ignore_terminal_signals() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGQUIT, signal.SIG_IGN)


def _close_go(child: _Child) -> None:
    fd, child.go = child.go, -1
    if fd >= 0:
        os.close(fd)


def _reap(child: _Child, *, block: bool) -> bool:
    """``waitpid`` the child; True once it is reaped (``child.status`` set)."""
    while True:
        try:
            pid, wstatus = os.waitpid(child.pid, 0 if block else os.WNOHANG)
        except InterruptedError:
            continue
        except ChildProcessError:
            child.status = 1 if child.status is None else child.status
            return True
        break
    if pid == 0:
        return False
    child.status = exit_status(wstatus)
    return True


def _pidfd_open(pid: int) -> int | None:
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):
        return None


def kill_namespace(proc_fd: int, netns: str) -> int:
    """SIGKILL every process whose network namespace is ``netns``; how many.

    ``proc_fd`` is an open ``/proc``. Scans until a pass finds nobody left
    (killed processes are zombies, whose namespace links are gone), so that
    children forked meanwhile are caught too.
    """
    own = os.getpid()
    killed = 0
    for _ in range(_KILL_ROUNDS):
        found = 0
        try:
            names = os.listdir(proc_fd)
        except OSError:
            return killed
        for name in names:
            if not name.isdigit() or int(name) == own:
                continue
            try:
                if os.readlink(f"{name}/ns/net", dir_fd=proc_fd) != netns:
                    continue
                os.kill(int(name), signal.SIGKILL)
            except OSError:
                continue
            found += 1
        if not found:
            break
        killed += found
    return killed


# --------------------------------------------------------------------------
# The fork


def _spawn(config: DaemonConfig, prog: str) -> _Child:
    """Fork the child; return once it reported its namespace and TAP."""
    uid, gid = os.geteuid(), os.getegid()
    parent_pid = os.getpid()
    libc = ctypes.CDLL(None, use_errno=True)
    parent_sock, child_sock = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    go_r, go_w = os.pipe()
    try:
        pid = os.fork()
    except OSError as exc:
        parent_sock.close()
        child_sock.close()
        os.close(go_r)
        os.close(go_w)
        raise SpawnError(f"fork: {exc.strerror}") from None
    if pid == 0:
        _child(libc, config, prog, uid, gid, parent_pid, child_sock, go_r, go_w)
    # Ctrl-C and Ctrl-\ are the command's: from now on only the child may die
    # of them (the companion keeps them ignored while the daemon runs).
    _ignore_terminal_signals()
    child_sock.close()
    os.close(go_r)
    with parent_sock:
        try:
            tap = _receive_tap(parent_sock)
            netns = os.readlink(f"/proc/{pid}/ns/net")
        except (SpawnError, OSError) as exc:
            os.close(go_w)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
            if isinstance(exc, SpawnError):
                raise
            raise SpawnError(f"cannot reach the new namespace: {exc}") from None
    return _Child(pid, go_w, tap, netns)


def _receive_tap(sock: socket.socket) -> TapDevice:
    sock.settimeout(_SETUP_TIMEOUT)
    try:
        msg, fds, _, _ = socket.recv_fds(sock, _MESSAGE_MAX, 1, socket.MSG_CMSG_CLOEXEC)
    except TimeoutError:
        raise SpawnError("the new namespace did not report back in time") from None
    except OSError as exc:
        raise SpawnError(f"recvmsg: {exc.strerror}") from None
    if msg in (_OFFLOADS_ON, _OFFLOADS_OFF) and len(fds) == 1:
        fd = fds[0]
        os.set_blocking(fd, False)
        return TapDevice(fd, _TAP_NAME, vnet_hdr=msg == _OFFLOADS_ON)
    for fd in fds:
        os.close(fd)
    if msg.startswith(_FAILED):
        raise SpawnError(msg[1:].decode(errors="replace"))
    raise SpawnError("the new namespace could not be set up")


def _child(
    libc: ctypes.CDLL,
    config: DaemonConfig,
    prog: str,
    uid: int,
    gid: int,
    parent_pid: int,
    sock: socket.socket,
    go_r: int,
    go_w: int,
) -> NoReturn:
    """The forked child: never returns, whatever is raised."""
    code = 1
    try:
        # Python's Ctrl-C handler becomes the default action again (unless
        # SIGINT was ignored from the start), so that until the exec Ctrl-C
        # ends the child the way it would end the command.
        if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.close(go_w)
        try:
            tap = _make_namespace(libc, config, uid, gid)
        except OSError as exc:
            reason = str(exc) if isinstance(exc, TapError) else exc.strerror
            text = (reason or str(exc)).encode(errors="replace")[: _MESSAGE_MAX - 1]
            with contextlib.suppress(OSError):
                sock.send(_FAILED + text)
            os._exit(1)
        data = _OFFLOADS_ON if tap.vnet_hdr else _OFFLOADS_OFF
        socket.send_fds(sock, [data], [tap.fd])
        tap.close()
        sock.close()
        _set_pdeathsig(libc, signal.SIGKILL)
        if os.getppid() != parent_pid or _read_go(go_r) != _GO:
            os._exit(1)  # the daemon is gone or gave up, and said why
        os.close(go_r)
        for fd in (config.ready_fd, config.exit_fd):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        for sig in (signal.SIGPIPE, signal.SIGXFSZ):
            signal.signal(sig, signal.SIG_DFL)
        argv = list(config.command or ()) or [os.environ.get("SHELL") or DEFAULT_SHELL]
        try:
            os.execvp(argv[0], argv)
        except OSError as exc:
            _say(f"{prog}: {argv[0]}: {exc.strerror}")
            code = 127 if exc.errno == errno.ENOENT else 126
    except BaseException as exc:
        with contextlib.suppress(BaseException):
            _say(f"{prog}: {type(exc).__name__}: {exc}")
    finally:
        os._exit(code)


def _make_namespace(
    libc: ctypes.CDLL, config: DaemonConfig, uid: int, gid: int
) -> TapDevice:
    """In the child: the namespaces, the id maps, then ``tap0`` configured."""
    if libc.unshare(ctypes.c_int(CLONE_NEWUSER | CLONE_NEWNET)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"unshare(CLONE_NEWUSER|CLONE_NEWNET): {os.strerror(err)}")
    with contextlib.suppress(FileNotFoundError):  # Linux < 3.19
        _write_proc("/proc/self/setgroups", "deny")
    _write_proc("/proc/self/uid_map", f"0 {uid} 1")
    _write_proc("/proc/self/gid_map", f"0 {gid} 1")
    tap = open_tap(config.tap_name or _TAP_NAME, vnet_hdr=True)
    try:
        set_txqueuelen(tap.name)
        stack = config.stack
        if stack.enable_ipv6:
            # The address from the router advertisement is usable at once.
            with contextlib.suppress(OSError):
                _write_proc(f"/proc/sys/net/ipv6/conf/{tap.name}/accept_dad", "0")
        configure_network(
            tap.name,
            mtu=stack.mtu,
            address=ipaddress.IPv4Interface((stack.guest, stack.network.prefixlen)),
            gateway=stack.gateway,
            mac=config.macaddress,
        )
    except BaseException:
        tap.close()
        raise
    return tap


def _write_proc(path: str, text: str) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise type(exc)(exc.errno, f"{path}: {exc.strerror}") from None
    try:
        os.write(fd, text.encode())
    except OSError as exc:
        raise OSError(exc.errno, f"{path}: {exc.strerror}") from None
    finally:
        os.close(fd)


def _set_pdeathsig(libc: ctypes.CDLL, sig: int) -> None:
    if libc.prctl(ctypes.c_int(PR_SET_PDEATHSIG), ctypes.c_ulong(sig)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"prctl(PR_SET_PDEATHSIG): {os.strerror(err)}")


def _read_go(fd: int) -> bytes:
    while True:
        try:
            return os.read(fd, 1)
        except InterruptedError:
            continue


def _say(line: str) -> None:
    """One line to fd 2, unbuffered (a forked child never flushes Python's)."""
    with contextlib.suppress(OSError):
        os.write(2, line.encode(errors="replace") + b"\n")
