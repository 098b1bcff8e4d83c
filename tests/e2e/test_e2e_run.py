# SPDX-License-Identifier: GPL-2.0-or-later
"""``slirpy [OPTION]... -- COMMAND``: a command in a namespace slirpy makes.

slirpy runs in the lab's host namespace and makes the command's user and
network namespace itself, so these tests need no container.  The command's
standard output is slirpy's (nothing else may appear there), and slirpy's
exit status is the command's.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shlex
import time
from collections.abc import Iterator

import pytest
from lab import (
    GATEWAY,
    GUEST,
    PYTHON,
    UNPRIVILEGED_UID,
    Impl,
    Lab,
    Result,
    Session,
    api_call,
    fwd_tcp,
    fwd_udp,
    make_impl,
    open_lab,
    proc_uids,
    rand_sha256,
    tcp_server,
)

pytestmark = [pytest.mark.timeout(120), pytest.mark.usefixtures("slirpy_only")]

SIZE = 2 * 1024 * 1024

SIGNALS_AS_ON_A_TERMINAL = """\
import signal
# As in a terminal session, whoever started the test run: a run started in
# the background (or under nohup) hands its children ignored SIGINT/SIGHUP,
# which slirpy, like any launcher, passes on to the command.
for sig in (signal.SIGINT, signal.SIGQUIT, signal.SIGHUP, signal.SIGTERM):
    signal.signal(sig, signal.SIG_DFL)
"""

CTRL_C = (
    SIGNALS_AS_ON_A_TERMINAL
    + """\
import json, os, signal, subprocess, sys
how, argv = sys.argv[1], sys.argv[2:]
proc = subprocess.Popen(argv, start_new_session=True, stdout=subprocess.PIPE, text=True)
first = proc.stdout.readline()
if how == "terminal":
    os.killpg(proc.pid, signal.SIGINT)   # what Ctrl-C does: the whole group
else:
    os.kill(proc.pid, getattr(signal, how))   # slirpy only
rest = proc.stdout.read()
print(json.dumps({"first": first, "rest": rest, "rc": proc.wait(30)}))
"""
)
"""Runs slirpy in a process group of its own and signals it as a terminal would."""


def slirpy(lab: Lab, *args: str, timeout: float = 60.0) -> Result:
    """Run ``slirpy ARGS`` in the lab's host namespace to completion."""
    return lab.host.run(
        [*lab.impl.argv, *args], env=lab.impl.env, timeout=timeout, check=False
    )


def sh(script: str) -> list[str]:
    """``-- sh -c SCRIPT``."""
    return ["--", "sh", "-c", script]


def tool(lab: Lab, name: str, *args: str) -> str:
    """A shell word list that runs ``tools/NAME.py ARGS`` with the venv's Python."""
    return shlex.join([PYTHON, lab.session.tool(name), *args])


def json_lines(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


# --------------------------------------------------------------------------
# The namespace and the network


def test_command_gets_its_own_network(lab: Lab) -> None:
    """Root inside, tap0 configured as -c does with MTU 65520, the gateway
    answers; the output is the command's alone and so is the exit status."""
    result = slirpy(
        lab,
        *sh(
            "id -u; readlink /proc/self/ns/net; ip -j addr show dev tap0; "
            "ip route show default; ping -c 1 -W 5 10.0.2.2 >/dev/null && "
            "echo PING-OK; exit 7"
        ),
    )
    assert result.returncode == 7, result.describe()
    lines = result.stdout.splitlines()
    assert lines[0] == "0"
    assert lines[1].startswith("net:[")
    assert lines[1] != lab.host.netns_id()
    (link,) = json.loads(lines[2])
    assert link["ifname"] == "tap0"
    assert link["mtu"] == 65520
    assert [
        (a["local"], a["prefixlen"]) for a in link["addr_info"] if a["family"] == "inet"
    ] == [(GUEST, 24)]
    assert lines[3].startswith(f"default via {GATEWAY} dev tap0")
    assert lines[4:] == ["PING-OK"]
    assert "Starting slirp" not in result.stdout + result.stderr
    assert result.stderr == ""


def test_mtu_option_wins(lab: Lab) -> None:
    result = slirpy(lab, "--mtu=1500", "--", "ip", "-j", "link", "show", "tap0")
    assert result.returncode == 0, result.describe()
    assert json.loads(result.stdout)[0]["mtu"] == 1500


def test_cidr_and_macaddress_apply(lab: Lab) -> None:
    result = slirpy(
        lab,
        "--cidr=10.0.3.0/24",
        "--macaddress=02:00:00:00:00:42",
        *sh(
            "ip -j addr show dev tap0; ip route show default; "
            "ping -c 1 -W 5 10.0.3.2 >/dev/null && echo PING-OK"
        ),
    )
    assert result.returncode == 0, result.describe()
    lines = result.stdout.splitlines()
    (link,) = json.loads(lines[0])
    assert link["address"] == "02:00:00:00:00:42"
    assert [
        (a["local"], a["prefixlen"]) for a in link["addr_info"] if a["family"] == "inet"
    ] == [("10.0.3.100", 24)]
    assert lines[1].startswith("default via 10.0.3.2 dev tap0")
    assert lines[2:] == ["PING-OK"]


def test_warnings_stay_out_of_the_output(lab: Lab) -> None:
    result = slirpy(lab, "-6", "--no-host-loopback", "--", "echo", "only this")
    assert result.returncode == 0, result.describe()
    assert result.stdout == "only this\n"


def test_tcp_to_the_host_loopback(lab: Lab) -> None:
    """The command reaches a server on the host's 127.0.0.1 through 10.0.2.2."""
    server = lab.host.start_server(
        "tcp_peer",
        "--listen=127.0.0.1:0",
        f"--actions=send:rand:71:{SIZE},shutwr,recv",
    )
    client = tool(
        lab,
        "tcp_peer",
        f"--connect={GATEWAY}:{server.port}",
        f"--actions=recv,send:rand:72:{SIZE},shutwr",
    )
    result = slirpy(lab, *sh(client))
    assert result.returncode == 0, result.describe()
    (record,) = json_lines(result.stdout)
    steps = {step["op"]: step for step in record["steps"]}  # type: ignore[attr-defined]
    assert steps["recv"]["sha256"] == rand_sha256(71, SIZE)
    (served,) = server.results(1)
    assert served["steps"][1]["sha256"] == rand_sha256(72, SIZE)


def test_disable_host_loopback_applies(lab: Lab) -> None:
    server = lab.host.start_server("tcp_peer", "--listen=127.0.0.1:0", "--actions=recv")
    client = tool(
        lab, "tcp_peer", f"--connect={GATEWAY}:{server.port}", "--actions=shutwr"
    )
    result = slirpy(lab, "--disable-host-loopback", *sh(client))
    (record,) = json_lines(result.stdout)
    assert record.get("error"), result.describe()


def test_ipv6(lab: Lab) -> None:
    """With -6 the router advertisement gives the command an fd00::/64 address."""
    script = (
        "i=0; until ip -6 addr show dev tap0 | grep -q 'inet6 fd00::'; do "
        "i=$((i+1)); [ $i -lt 100 ] || exit 9; sleep 0.1; done; "
        "ping -6 -c 1 -W 5 fd00::2 >/dev/null && echo PING6-OK"
    )
    result = slirpy(lab, "-6", *sh(script))
    assert result.returncode == 0, result.describe()
    assert result.stdout == "PING6-OK\n"


# --------------------------------------------------------------------------
# -p/--publish


def test_publish_tcp_and_udp(lab: Lab) -> None:
    """Published ports reach servers the command runs; a loopback client
    appears as the gateway, as with slirp4netns's forwards."""
    servers = "; ".join(  # one after the other: their lines never interleave
        [
            tool(
                lab,
                "tcp_peer",
                "--listen=0.0.0.0:80",
                f"--actions=recv,send:rand:73:{SIZE},shutwr",
            ),
            tool(lab, "udp_peer", "--listen=0.0.0.0:53", "--count=20"),
        ]
    )
    proc = lab.host.spawn(
        [
            *lab.impl.argv,
            "-p",
            "127.0.0.1:8081:80",
            "--publish=127.0.0.1:5353:53/udp",
            *sh(servers),
        ],
        env=lab.impl.env,
        name="slirpy-run",
    )
    assert proc.readline() == "LISTEN 80", proc.describe()
    (client,) = fwd_tcp(
        lab.host, ["127.0.0.1:8081"], f"send:rand:74:{SIZE},shutwr,recv"
    )
    assert client.get("error") is None, client
    assert client["rx_sha256"] == rand_sha256(73, SIZE), client
    (tcp,) = proc.json_lines(1)
    assert tcp["steps"][0]["sha256"] == rand_sha256(74, SIZE)
    assert str(tcp["peer"]).startswith(f"{GATEWAY}:")
    assert proc.readline() == "LISTEN 53", proc.describe()
    summary = fwd_udp(lab.host, "127.0.0.1:5353", count=20, sizes=[1, 512, 1400])
    assert summary["echoed"] == 20, summary
    assert proc.wait(60) == 0, proc.describe()
    udp = json_lines(proc.stdout())[1:]
    assert len(udp) == 20
    assert all(str(r["peer"]).startswith(f"{GATEWAY}:") for r in udp)


def test_publish_uses_the_api_forwarder(lab: Lab) -> None:
    """-p forwards are the API's forwards: listed, and more can be added."""
    socket_path = lab.api_socket_path()
    daemon = lab.start_daemon(
        None,
        "-p",
        "8082:80",
        configure=False,
        target=["--", "sleep", "60"],
        tap=None,
        api_socket=socket_path,
    )
    reply = api_call(socket_path, {"execute": "list_hostfwd"})
    assert reply["entries"] == [
        {
            "id": 1,
            "proto": "tcp",
            "host_addr": "0.0.0.0",
            "host_port": 8082,
            "guest_addr": GUEST,
            "guest_port": 80,
        }
    ]
    assert daemon.add_hostfwd("udp", 8083, 53) == 2
    daemon.proc.send_signal(15)
    assert daemon.proc.wait(30) == 128 + 15, daemon.describe()
    assert not os.path.exists(socket_path)


def test_publish_failure_stops_before_the_command(lab: Lab) -> None:
    busy = tcp_server(lab.host, "recv", bind="127.0.0.1")
    result = slirpy(lab, "-p", f"127.0.0.1:{busy.port}:80", "--", "echo", "ran")
    assert result.returncode == 1, result.describe()
    assert result.stdout == ""
    assert f"cannot publish 127.0.0.1:{busy.port}:80/tcp" in result.stderr


def test_publish_with_port_splice(lab: Lab) -> None:
    """--port-splice applies to -p: the guest sees the client come from inside."""
    server = tool(lab, "tcp_peer", "--listen=0.0.0.0:80", "--actions=echo")
    proc = lab.host.spawn(
        [*lab.impl.argv, "--port-splice", "-p", "127.0.0.1:8084:80", *sh(server)],
        env=lab.impl.env,
        name="slirpy-run",
    )
    assert proc.readline() == "LISTEN 80", proc.describe()
    (client,) = fwd_tcp(lab.host, ["127.0.0.1:8084"], "send:rand:75:100000,shutwr,recv")
    assert client["rx_sha256"] == rand_sha256(75, 100000), client
    assert proc.wait(30) == 0, proc.describe()
    (record,) = json_lines(proc.stdout())
    assert not str(record["peer"]).startswith(f"{GATEWAY}:"), record


# --------------------------------------------------------------------------
# Exit status, signals, teardown


@pytest.mark.parametrize(
    ("args", "status", "stderr"),
    [
        pytest.param(sh("exit 0"), 0, "", id="zero"),
        pytest.param(sh("exit 42"), 42, "", id="code"),
        pytest.param(sh("kill -KILL $$"), 128 + 9, "", id="signal"),
        pytest.param(
            ["--", "/nonexistent/cmd"],
            127,
            "slirpy: /nonexistent/cmd: No such file or directory\n",
            id="not-found",
        ),
        pytest.param(
            ["--", "/dev/null"],
            126,
            "slirpy: /dev/null: Permission denied\n",
            id="not-executable",
        ),
    ],
)
def test_exit_status(lab: Lab, args: list[str], status: int, stderr: str) -> None:
    result = slirpy(lab, *args)
    assert result.returncode == status, result.describe()
    assert result.stderr == stderr


def test_no_command_runs_a_shell(lab: Lab) -> None:
    slirpy_words = shlex.join(lab.impl.argv)
    result = lab.host.run(
        [
            "sh",
            "-c",
            f"printf 'ip -o link show tap0\\nexit 3\\n' | "
            f"SHELL=/bin/sh {slirpy_words} --",
        ],
        env=lab.impl.env,
        check=False,
    )
    assert result.returncode == 3, result.describe()
    assert " tap0: " in result.stdout
    assert " mtu 65520 " in result.stdout


TERMINAL = (
    SIGNALS_AS_ON_A_TERMINAL
    + """\
import json, os, pty, select, sys, time
pid, fd = pty.fork()
if pid == 0:
    os.environ.update(SHELL="/bin/sh", PS1="$ ", ENV="")
    os.execvp(sys.argv[1], sys.argv[1:])
out = b""
def read(until, seconds=10):
    # Read until UNTIL shows up in what arrives from now on.
    global out
    start = len(out)
    deadline = time.monotonic() + seconds
    while until not in out[start:] and time.monotonic() < deadline:
        if select.select([fd], [], [], 0.1)[0]:
            try:
                out += os.read(fd, 4096)
            except OSError:
                break
def type_line(text, until, seconds=10):
    os.write(fd, text)
    read(until, seconds)
read(b"$ ")
type_line(b"echo go; sleep 60\\n", b"\\ngo\\r")  # the output, not the echo
time.sleep(0.3)
type_line(b"\\x03", b"$ ")  # Ctrl-C: the terminal's SIGINT to the foreground job
type_line(b"ping -c 1 -W 5 10.0.2.2 >/dev/null && echo net-ok-$((6*7))\\n", b"-42")
type_line(b"exit 5\\n", b"never", 5)
rc = None
for _ in range(100):
    done, status = os.waitpid(pid, os.WNOHANG)
    if done:
        rc = os.waitstatus_to_exitcode(status)
        break
    time.sleep(0.1)
else:
    os.kill(pid, 9)
    os.waitpid(pid, 0)
print(json.dumps({"rc": rc, "out": out.decode(errors="replace")}))
"""
)
"""Runs slirpy on a terminal of its own, a shell inside, and types at it."""


def test_interactive_shell_on_a_terminal(lab: Lab) -> None:
    """Ctrl-C on the terminal interrupts the shell's job, not slirpy."""
    helper = lab.dir / "terminal.py"
    helper.write_text(TERMINAL)
    result = lab.host.run(
        [PYTHON, str(helper), *lab.impl.argv, "--"],
        env=lab.impl.env,
        check=False,
        timeout=60,
    )
    (record,) = json_lines(result.stdout)
    assert record["rc"] == 5, result.describe()
    assert "net-ok-42" in str(record["out"]), record


def _signal_run(lab: Lab, how: str, script: str) -> dict[str, object]:
    helper = lab.dir / "signal_run.py"
    helper.write_text(CTRL_C)
    result = lab.host.run(
        [PYTHON, str(helper), how, *lab.impl.argv, *sh(script)],
        env=lab.impl.env,
        check=False,
    )
    (record,) = json_lines(result.stdout)
    assert record["first"] == "started\n", result.describe()
    return record


def test_ctrl_c_ends_the_command_not_slirpy(lab: Lab) -> None:
    """Ctrl-C (SIGINT to the group) kills the command; slirpy reports 130."""
    record = _signal_run(lab, "terminal", "echo started; exec sleep 60")
    assert record["rc"] == 130  # not -2: slirpy itself ignored it


def test_ctrl_c_caught_by_the_command(lab: Lab) -> None:
    """A command that handles Ctrl-C keeps its network while it does."""
    script = (
        "trap 'ping -c 1 -W 5 10.0.2.2 >/dev/null && echo net-ok; exit 5' INT; "
        "echo started; while :; do sleep 0.1; done"
    )
    record = _signal_run(lab, "terminal", script)
    assert record["rc"] == 5
    assert record["rest"] == "net-ok\n"


@pytest.mark.parametrize("how", ["SIGTERM", "SIGHUP"])
def test_term_is_passed_on(lab: Lab, how: str) -> None:
    script = (
        "trap 'echo got-it; exit 6' TERM HUP; echo started; while :; do sleep 0.1; done"
    )
    record = _signal_run(lab, how, script)
    assert record["rc"] == 6
    assert record["rest"] == "got-it\n"


def _state(lab: Lab, pid: int) -> str:
    """A process's state letter in the lab's PID namespace (``gone`` if none)."""
    result = lab.host.run(
        ["sh", "-c", f"cat /proc/{pid}/stat 2>/dev/null || echo gone"], check=False
    )
    text = result.stdout.strip()
    return "gone" if text == "gone" else text.rsplit(")", 1)[1].split()[0]


def _seccomp_missing() -> bool:
    return importlib.util.find_spec("seccomp") is None


@pytest.mark.parametrize(
    "options",
    [
        pytest.param([], id="plain"),
        pytest.param(["--enable-sandbox", "--enable-seccomp"], id="sandbox-seccomp"),
    ],
)
def test_teardown_kills_what_the_command_left(lab: Lab, options: list[str]) -> None:
    """Background jobs left in the namespace die with the command."""
    if "--enable-seccomp" in options and _seccomp_missing():
        pytest.skip("libseccomp's Python binding is not installed")
    result = slirpy(
        lab, *options, *sh("sleep 300 & echo $!; sleep 300 & echo $!; exit 4")
    )
    assert result.returncode == 4, result.describe()
    pids = [int(line) for line in result.stdout.split()]
    assert len(pids) == 2
    deadline = time.monotonic() + 10
    while any(_state(lab, pid) not in ("Z", "gone") for pid in pids):
        assert time.monotonic() < deadline, [_state(lab, pid) for pid in pids]
        time.sleep(0.05)


def test_exit_fd_ends_the_command(lab: Lab) -> None:
    """The daemon's -e still ends everything: the command is killed."""
    daemon = lab.start_daemon(
        None,
        exit_fd=True,
        configure=False,
        target=sh("echo started; exec sleep 60"),
        tap=None,
    )
    assert daemon.proc.readline() == "started"
    daemon.close_exit_fd()
    assert daemon.proc.wait(30) == 128 + 9, daemon.describe()


def test_pcap_in_run_mode(lab: Lab) -> None:
    capture = lab.dir / "run.pcap"
    result = slirpy(lab, f"--pcap={capture}", *sh("ping -c 1 -W 5 10.0.2.2 >/dev/null"))
    assert result.returncode == 0, result.describe()
    import dpkt

    with capture.open("rb") as f:
        kinds = {
            type(dpkt.ethernet.Ethernet(buf).data.data).__name__
            for _, buf in dpkt.pcap.Reader(f)
        }
    assert "ICMP" in kinds


# --------------------------------------------------------------------------
# As an unprivileged user


@pytest.fixture
def unprivileged_lab(e2e_session: Session, impl: Impl) -> Iterator[Lab]:
    """A lab whose namespaces belong to uid 65534 (see test_e2e_unprivileged)."""
    if os.geteuid() != 0:
        pytest.skip("making the unprivileged lab needs real root (tmpfs, mknod)")
    pythonpath = e2e_session.unprivileged_pylib()
    with open_lab(
        e2e_session, make_impl(impl.name, pythonpath, impl.loop), unprivileged=True
    ) as lab:
        yield lab


@pytest.mark.parametrize(
    "options",
    [
        pytest.param([], id="plain"),
        pytest.param(["--enable-sandbox", "--enable-seccomp"], id="sandbox-seccomp"),
    ],
)
def test_unprivileged(unprivileged_lab: Lab, options: list[str]) -> None:
    """uid 65534 runs slirpy -- COMMAND: its own namespaces, a connection out
    to the host's loopback and one in through a published port."""
    if "--enable-seccomp" in options and _seccomp_missing():
        pytest.skip("libseccomp's Python binding is not installed")
    lab = unprivileged_lab
    outside = lab.host.start_server(
        "tcp_peer", "--listen=127.0.0.1:0", f"--actions=send:rand:76:{SIZE},shutwr"
    )
    script = " && ".join(
        [
            "id -u",
            tool(
                lab, "tcp_peer", f"--connect={GATEWAY}:{outside.port}", "--actions=recv"
            ),
            tool(lab, "tcp_peer", "--listen=0.0.0.0:80", "--actions=echo"),
        ]
    )
    proc = lab.host.spawn(
        [*lab.impl.argv, *options, "-p", "127.0.0.1:8085:80", *sh(script)],
        env=lab.impl.env,
        name="slirpy-run",
    )
    assert proc.readline() == "0", proc.describe()
    assert proc.readline().startswith("{"), proc.describe()
    assert proc.readline() == "LISTEN 80", proc.describe()
    assert proc_uids(proc.target_pid()) == [UNPRIVILEGED_UID] * 4
    (client,) = fwd_tcp(
        lab.host, ["127.0.0.1:8085"], f"send:rand:77:{SIZE},shutwr,recv"
    )
    assert client["rx_sha256"] == rand_sha256(77, SIZE), client
    assert proc.wait(60) == 0, proc.describe()
    records = json_lines(proc.stdout())
    assert records[0]["steps"][0]["sha256"] == rand_sha256(76, SIZE)  # type: ignore[index]
    assert str(records[1]["peer"]).startswith(f"{GATEWAY}:")
