# SPDX-License-Identifier: GPL-2.0-or-later
"""NamespaceSockets: sockets made in the container's network namespace.

Each test starts an nslab ``Host`` (the "host" network namespace, with only
``lo``); a script inside it starts a ``Container`` (``unshare --user
--map-root-user --net``) with ``lo`` up and a server on ``127.0.0.1:PORT``
that answers every client with a random token only it knows. The script, in
the host's namespace, then uses ``NamespaceSockets`` and reports.
"""

from __future__ import annotations

import errno
import os
import textwrap

import nslab
import pytest

_UNAVAILABLE = nslab.namespaces_unavailable()
pytestmark = pytest.mark.skipif(
    _UNAVAILABLE is not None, reason=f"namespaces unavailable: {_UNAVAILABLE}"
)

PORT = 4711

PRELUDE = f"""
import ctypes, errno, fcntl, json, os, signal, socket, subprocess, sys, time
from nslab import PYTHON, Container, emit, wait_until
from slirpy.config import DaemonConfig, NetnsType
from slirpy.tap.nsocket import NamespaceSockets

PORT = {PORT}
SIOCGSKNS = 0x894C

SERVER = '''
import json, secrets, select, socket
token = secrets.token_hex(16)
listeners = []
for family, addr in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
    try:
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.bind((addr, {PORT}))
        sock.listen(16)
    except OSError:
        continue
    listeners.append(sock)
print(json.dumps({{"token": token, "v6": len(listeners) == 2}}), flush=True)
while True:
    ready, _, _ = select.select(listeners, [], [], 60)
    if not ready:
        break
    for sock in ready:
        conn, _ = sock.accept()
        conn.sendall(("token " + token).encode())
        conn.close()
'''

KILLED_DAEMON = '''
import subprocess, sys, time
from slirpy.config import DaemonConfig, NetnsType
from slirpy.tap.nsocket import NamespaceSockets
ns = NamespaceSockets.start(
    DaemonConfig(netns_type=NetnsType.PID, target=sys.argv[1], tap_name="tap0"))
# A holder keeps the daemon's end of the socketpair open: no EOF for the
# helper, only the parent-death signal can end it.
end = ns._sock.fileno()
holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"],
                          pass_fds=[end])
print(ns.pid, holder.pid, flush=True)
time.sleep(60)
'''

EXITING_DAEMON = '''
import os, sys
from slirpy.config import DaemonConfig, NetnsType
from slirpy.tap.nsocket import NamespaceSockets
ns = NamespaceSockets.start(
    DaemonConfig(netns_type=NetnsType.PID, target=sys.argv[1], tap_name="tap0"))
print(ns.pid, flush=True)
sys.stdin.read()
os._exit(0)
'''

def config(target, netns_type=NetnsType.PID, **kw):
    return DaemonConfig(
        netns_type=netns_type, target=str(target), tap_name="tap0", **kw
    )

def fds(pid="self"):
    found = {{}}
    for name in os.listdir(f"/proc/{{pid}}/fd"):
        try:  # listdir's own fd is gone by now
            found[int(name)] = os.readlink(f"/proc/{{pid}}/fd/{{name}}")
        except FileNotFoundError:
            pass
    return found

def kinds(pid):
    return sorted("socket" if t.startswith("socket:") else t
                  for t in fds(pid).values())

def netns_of(sock):
    nsfd = fcntl.ioctl(sock.fileno(), SIOCGSKNS)
    try:
        return os.fstat(nsfd).st_ino
    finally:
        os.close(nsfd)

def ino(path):
    return os.stat(path).st_ino

def children():
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                stat = open(f"/proc/{{name}}/stat").read()
            except OSError:
                continue
            if int(stat[stat.rindex(")") + 2:].split()[1]) == os.getpid():
                found.append(int(name))
    return sorted(found)

def ask(sock, addr):
    sock.settimeout(5)
    try:
        sock.connect(addr)
    except OSError as exc:
        return errno.errorcode.get(exc.errno, str(exc))
    parts = []
    while part := sock.recv(4096):
        parts.append(part)
    sock.close()
    return b"".join(parts).decode()

def start_server(c):
    c.run(["ip", "link", "set", "lo", "up"])
    srv = subprocess.Popen([*c.enter_argv(), PYTHON, "-c", SERVER],
                           stdout=subprocess.PIPE, text=True)
    hello = json.loads(srv.stdout.readline())
    return srv, hello

def stop_server(srv):
    srv.kill()
    srv.wait(timeout=10)
"""


def run_script(code: str) -> nslab.ScriptResult:
    with nslab.Host() as host:
        res = host.python(PRELUDE + textwrap.dedent(code))
    assert res.returncode == 0, str(res)
    return res


def test_socket_reaches_the_container():
    """The helper's sockets connect inside the container; the host's do not."""
    res = run_script(
        """
        out = {}
        extra = [os.pipe(), socket.socket(), open("/proc/self/status")]
        with Container() as c:
            srv, hello = start_server(c)
            try:
                out["hello"] = hello
                ns = NamespaceSockets.start(config(c.pid))
                try:
                    out["helper_fds"] = sorted(fds(ns.pid).items())
                    out["helper_netns"] = ino(f"/proc/{ns.pid}/ns/net")
                    out["helper_userns"] = ino(f"/proc/{ns.pid}/ns/user")
                    s = ns.new_socket(socket.AF_INET)
                    out["v4"] = {
                        "family": int(s.family), "type": int(s.type),
                        "timeout": s.gettimeout(),
                        "blocking": os.get_blocking(s.fileno()),
                        "inheritable": os.get_inheritable(s.fileno()),
                        "netns": netns_of(s),
                    }
                    out["v4"]["reply"] = ask(s, ("127.0.0.1", PORT))
                    s6 = ns.new_socket(socket.AF_INET6)
                    out["v6"] = {"family": int(s6.family), "netns": netns_of(s6)}
                    if hello["v6"]:
                        out["v6"]["reply"] = ask(s6, ("::1", PORT))
                    s6.close()
                    out["plain"] = ask(socket.socket(), ("127.0.0.1", PORT))
                    out["plain_netns"] = netns_of(socket.socket())
                    pid = ns.pid
                finally:
                    ns.close()
                out["returncode"] = ns.returncode
                out["helper_gone"] = not os.path.exists(f"/proc/{pid}")
                out["children"] = children()
                out["expected_children"] = sorted([c.pid, srv.pid])
                out["container_netns"] = ino(f"/proc/{c.pid}/ns/net")
                out["container_userns"] = ino(f"/proc/{c.pid}/ns/user")
                out["host_netns"] = ino("/proc/self/ns/net")
            finally:
                stop_server(srv)
        emit(out)
        """
    )
    r = res.result
    token = r["hello"]["token"]
    assert r["v4"]["reply"] == f"token {token}"
    assert r["plain"] == "ECONNREFUSED"  # nothing listens in the host's namespace
    assert r["v4"]["netns"] == r["container_netns"] != r["host_netns"]
    assert r["plain_netns"] == r["host_netns"]
    assert r["helper_netns"] == r["container_netns"]
    assert r["helper_userns"] == r["container_userns"]
    assert r["v4"]["family"] == 2
    assert r["v4"]["type"] == 1
    assert r["v4"]["timeout"] == 0.0
    assert r["v4"]["blocking"] is False
    assert r["v4"]["inheritable"] is False
    assert r["v6"]["family"] == 10
    assert r["v6"]["netns"] == r["container_netns"]
    if r["hello"]["v6"]:
        assert r["v6"]["reply"] == f"token {token}"
    # The helper kept its socketpair end and /dev/null as 0-2, nothing else.
    fd_map = dict(r["helper_fds"])
    assert [fd_map.pop(fd) for fd in (0, 1, 2)] == ["/dev/null"] * 3
    (other,) = fd_map.values()
    assert other.startswith("socket:")
    # close(): the helper left on EOF (exit status 0) and was reaped.
    assert r["returncode"] == 0
    assert r["helper_gone"]
    assert r["children"] == r["expected_children"]


def test_path_mode_and_failures():
    res = run_script(
        """
        out = {}
        def attempt(cfg):
            before, kids = fds(), children()
            try:
                with NamespaceSockets.start(cfg) as ns:
                    s = ns.new_socket(socket.AF_INET)
                    r = {"reply": ask(s, ("127.0.0.1", PORT))}
            except (OSError, ValueError) as exc:
                kind = "OSError" if isinstance(exc, OSError) else type(exc).__name__
                r = {"error": kind, "errno": getattr(exc, "errno", None),
                     "message": str(exc)}
            r["leaked"] = sorted(set(fds()) - set(before))
            r["zombies"] = sorted(set(children()) - set(kids))
            return r
        with Container() as c:
            srv, hello = start_server(c)
            try:
                out["token"] = hello["token"]
                net, user = f"/proc/{c.pid}/ns/net", f"/proc/{c.pid}/ns/user"
                out["path_userns"] = attempt(config(net, NetnsType.PATH,
                                                    userns_path=user))
                out["path_only"] = attempt(config(net, NetnsType.PATH))
                out["pid_userns_path"] = attempt(config(c.pid, userns_path=user))
                out["tapfd"] = attempt(config(3, NetnsType.TAPFD))
                out["bad_pid"] = attempt(config(999999))
                out["bad_path"] = attempt(config("/nonexistent/netns",
                                                 NetnsType.PATH))
                out["bad_userns"] = attempt(config(net, NetnsType.PATH,
                                                   userns_path="/nonexistent/u"))
                out["not_a_netns"] = attempt(config(f"/proc/{c.pid}/ns/uts",
                                                    NetnsType.PATH))
            finally:
                stop_server(srv)
        emit(out)
        """
    )
    r = res.result
    reply = f"token {r['token']}"
    for key in ("path_userns", "path_only", "pid_userns_path"):
        assert r[key] == {"reply": reply, "leaked": [], "zombies": []}, key
    assert r["tapfd"]["error"] == "ValueError"
    assert "tapfd" in r["tapfd"]["message"]
    expected = {
        "bad_pid": (errno.ENOENT, "/proc/999999/ns/net"),
        "bad_path": (errno.ENOENT, "/nonexistent/netns"),
        "bad_userns": (errno.ENOENT, "/nonexistent/u"),
        "not_a_netns": (errno.EINVAL, "setns(CLONE_NEWNET)"),
    }
    for key, (code, what) in expected.items():
        assert r[key]["error"] == "OSError", key
        assert r[key]["errno"] == code, key
        assert what in r[key]["message"], key
        assert r[key]["leaked"] == [], key
        assert r[key]["zombies"] == [], key


def test_low_fds_and_requests():
    """Socketpair on fds 0/1; bad requests; many sockets; SIGINT ignored."""
    res = run_script(
        """
        out = {}
        with Container() as c:
            srv, hello = start_server(c)
            try:
                out["token"] = hello["token"]
                saved = os.dup(1)
                os.close(0)
                os.close(1)
                ns = NamespaceSockets.start(config(c.pid))
                sys.stdout = os.fdopen(saved, "w")
                out["helper_fds"] = kinds(ns.pid)
                out["reply"] = ask(ns.new_socket(socket.AF_INET), ("127.0.0.1", PORT))
                for family in (socket.AF_UNIX, socket.AF_PACKET, -1):
                    try:
                        ns.new_socket(family)
                    except OSError as exc:
                        out.setdefault("bad_family", []).append(exc.errno)
                before = fds()
                started = time.perf_counter()
                for _ in range(500):
                    ns.new_socket(socket.AF_INET).close()
                out["mean_us"] = (time.perf_counter() - started) / 500 * 1e6
                out["leaked"] = sorted(set(fds()) - set(before))
                # The helper closes its copy just after replying: allow it that.
                deadline = time.monotonic() + 5
                while (kinds(ns.pid) != out["helper_fds"]
                       and time.monotonic() < deadline):
                    time.sleep(0.01)
                out["helper_fds_after"] = kinds(ns.pid)
                os.kill(ns.pid, signal.SIGINT)
                time.sleep(0.1)
                out["after_sigint"] = ask(ns.new_socket(socket.AF_INET),
                                          ("127.0.0.1", PORT))
                ns.close()
                ns.close()
                out["returncode"] = ns.returncode
                try:
                    ns.new_socket(socket.AF_INET)
                except OSError as exc:
                    out["after_close"] = exc.errno
            finally:
                stop_server(srv)
        emit(out)
        """
    )
    r = res.result
    reply = f"token {r['token']}"
    assert r["reply"] == reply
    assert r["after_sigint"] == reply
    assert r["helper_fds"] == ["/dev/null"] * 3 + ["socket"]
    assert r["helper_fds_after"] == r["helper_fds"]
    assert r["bad_family"] == [errno.EAFNOSUPPORT] * 3
    assert r["leaked"] == []
    assert r["mean_us"] < 5000, r["mean_us"]
    assert r["returncode"] == 0
    assert r["after_close"] == errno.EBADF
    print(f"\nnew_socket round trip: {r['mean_us']:.0f} us")


def test_helper_death_is_reported():
    """A killed helper: new_socket() fails at once (no hang) and stays failed."""
    res = run_script(
        """
        out = {}
        with Container() as c:
            ns = NamespaceSockets.start(config(c.pid))
            os.kill(ns.pid, signal.SIGKILL)
            started = time.monotonic()
            for key in ("first", "second"):
                try:
                    ns.new_socket(socket.AF_INET)
                    out[key] = "socket"
                except OSError as exc:
                    out[key] = errno.errorcode.get(exc.errno, str(exc))
            out["seconds"] = time.monotonic() - started
            out["returncode"] = ns.returncode
            out["closed"] = ns.closed
            ns.close()
            out["children"] = children()
            out["container"] = c.pid
        emit(out)
        """
    )
    r = res.result
    assert r["first"] in ("EPIPE", "ECONNRESET", "ESRCH")
    assert r["second"] == "EBADF"
    assert r["seconds"] < 2
    assert r["returncode"] == -9
    assert r["closed"] is True
    assert r["children"] == [r["container"]]


def test_helper_dies_with_the_daemon():
    """SIGKILL the process that started the helper: PR_SET_PDEATHSIG kills it.

    The script makes itself a child subreaper, so the orphaned helper becomes
    its child and its wait status shows how it ended.
    """
    res = run_script(
        """
        PR_SET_CHILD_SUBREAPER = 36
        libc = ctypes.CDLL(None, use_errno=True)
        assert libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
        out = {}
        with Container() as c:
            daemon = subprocess.Popen([PYTHON, "-c", KILLED_DAEMON, str(c.pid)],
                                      stdout=subprocess.PIPE, text=True)
            helper, holder = map(int, daemon.stdout.readline().split())
            out["helper_netns"] = ino(f"/proc/{helper}/ns/net")
            out["container_netns"] = ino(f"/proc/{c.pid}/ns/net")
            os.kill(daemon.pid, signal.SIGKILL)
            daemon.wait(timeout=10)
            status = []
            def reaped():
                pid, wstatus = os.waitpid(helper, os.WNOHANG)
                if pid:
                    status.append(wstatus)
                return bool(pid)
            wait_until(reaped, timeout=10, what="the helper's end")
            out["signaled"] = os.WIFSIGNALED(status[0])
            out["signal"] = os.WTERMSIG(status[0]) if out["signaled"] else None
            out["holder_alive"] = os.waitpid(holder, os.WNOHANG) == (0, 0)
            os.kill(holder, signal.SIGKILL)
            os.waitpid(holder, 0)
        emit(out)
        """
    )
    r = res.result
    assert r["helper_netns"] == r["container_netns"]
    assert r["holder_alive"] is True
    assert r["signaled"] is True
    assert r["signal"] == 9


def test_helper_leaves_when_the_daemon_exits():
    """The daemon exits without close(): the helper ends, on EOF or the signal."""
    res = run_script(
        """
        PR_SET_CHILD_SUBREAPER = 36
        libc = ctypes.CDLL(None, use_errno=True)
        assert libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
        with Container() as c:
            daemon = subprocess.Popen([PYTHON, "-c", EXITING_DAEMON, str(c.pid)],
                                      stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, text=True)
            helper = int(daemon.stdout.readline())
            alive = os.path.exists(f"/proc/{helper}")
            daemon.stdin.close()
            daemon.wait(timeout=10)
            status = []
            def reaped():
                pid, wstatus = os.waitpid(helper, os.WNOHANG)
                if pid:
                    status.append(wstatus)
                return bool(pid)
            wait_until(reaped, timeout=10, what="the helper's end")
        emit({"alive": alive, "status": status[0]})
        """
    )
    r = res.result
    assert r["alive"] is True
    status = r["status"]
    # EOF (exit 0) or the parent-death signal, whichever came first.
    assert (os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0) or (
        os.WIFSIGNALED(status) and os.WTERMSIG(status) == 9
    )
