# SPDX-License-Identifier: GPL-2.0-or-later
"""``slirpy [OPTION]... -- [COMMAND [ARG]...]``: how the command line picks the
form, ``-p/--publish`` values, ``--pcap``, and the run module's helpers.

The namespaces themselves are exercised end to end in
``tests/e2e/test_e2e_run.py``.
"""

from __future__ import annotations

import ipaddress
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from slirpy.cli import RUN_MTU, parse_args, usage_text
from slirpy.config import DaemonConfig, NetnsType, Publish
from slirpy.run import describe_publish, exit_status, kill_namespace, parse_publish
from slirpy.stack.config import DEFAULT_MTU

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _gnu_permutation(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("POSIXLY_CORRECT", raising=False)


def parse(argv: list[str]) -> DaemonConfig | int:
    return parse_args(argv, prog="slirpy")


def parse_ok(argv: list[str]) -> DaemonConfig:
    result = parse(argv)
    assert isinstance(result, DaemonConfig), result
    return result


# --- which form --------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "command"),
    [
        pytest.param(["--", "sh"], ("sh",), id="command"),
        pytest.param(["--", "sh", "-c", "exit 3"], ("sh", "-c", "exit 3"), id="args"),
        pytest.param(["--"], (), id="shell"),
        pytest.param(["-6", "--", "ip", "a"], ("ip", "a"), id="option-before"),
        pytest.param(
            ["--", "ls", "--", "-l"], ("ls", "--", "-l"), id="second-dashdash"
        ),
        pytest.param(["--", "-c"], ("-c",), id="option-like-command"),
        pytest.param(["--", "./1234"], ("./1234",), id="path-not-number"),
    ],
)
def test_run_form(argv: list[str], command: tuple[str, ...]):
    config = parse_ok(argv)
    assert config.command == command
    assert config.configure
    assert config.netns_type is NetnsType.PID
    assert config.tap_name == "tap0"
    assert config.stack.mtu == RUN_MTU == 65520


@pytest.mark.parametrize(
    ("argv", "target", "tap"),
    [
        pytest.param(["--", "1234", "tap0"], "1234", "tap0", id="dashdash-pid"),
        pytest.param(["-c", "--", "1234", "tap0"], "1234", "tap0", id="c-dashdash-pid"),
        pytest.param(["1234", "--", "sh"], "1234", "sh", id="pid-first"),
        pytest.param(["1234", "tap0", "--"], "1234", "tap0", id="dashdash-last"),
        pytest.param(
            ["--netns-type=tapfd", "--", "5"], "5", None, id="netns-type-tapfd"
        ),
    ],
)
def test_slirp4netns_form_keeps_its_meaning(
    argv: list[str], target: str, tap: str | None
):
    config = parse_ok(argv)
    assert config.command is None
    assert (config.target, config.tap_name) == (target, tap)
    assert config.stack.mtu == DEFAULT_MTU


def test_netns_type_path_with_dashdash_is_the_slirp4netns_form(tmp_path: Path):
    netns = tmp_path / "netns"
    netns.touch()
    config = parse_ok(["--netns-type=path", "--", str(netns), "tap0"])
    assert config.command is None
    assert config.netns_type is NetnsType.PATH
    assert config.target == str(netns)
    config = parse_ok(["--netns-path", str(netns), "--", "tap1"])
    assert (config.command, config.tap_name) == (None, "tap1")


def test_run_form_mtu_option_wins():
    assert parse_ok(["--mtu=1500", "--", "sh"]).stack.mtu == 1500
    assert parse_ok(["-m", "9000", "--", "sh"]).stack.mtu == 9000


def test_run_form_options_apply():
    config = parse_ok(
        [
            "--disable-host-loopback",
            "--cidr=10.0.3.0/24",
            "-6",
            "--api-socket=/tmp/api.sock",
            "--port-splice",
            "--outbound-addr=127.0.0.1",
            "--macaddress=02:00:00:00:00:01",
            "--",
            "true",
        ]
    )
    assert config.stack.disable_host_loopback
    assert config.stack.network == ipaddress.IPv4Network("10.0.3.0/24")
    assert config.stack.enable_ipv6
    assert config.api_socket == "/tmp/api.sock"
    assert config.port_splice
    assert config.outbound_addr == ipaddress.IPv4Address("127.0.0.1")
    assert config.macaddress == bytes.fromhex("020000000001")  # -c is implied


def test_run_form_is_quiet(capsys: pytest.CaptureFixture[str]):
    """The option warnings would land in the command's standard output."""
    parse_ok(["-6", "--enable-seccomp", "--no-host-loopback", "--", "true"])
    assert capsys.readouterr() == ("", "")
    parse_ok(["-6", "1234", "tap0"])
    assert capsys.readouterr().out == "WARNING: Support for IPv6 is experimental\n"


def test_publish_needs_a_command(capsys: pytest.CaptureFixture[str]):
    assert parse(["-p", "8080:80", "1234", "tap0"]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err == "--publish needs a COMMAND: slirpy [OPTION]... -- COMMAND\n"


def test_userns_path_cannot_be_used_with_a_command(capsys: pytest.CaptureFixture[str]):
    assert parse(["--userns-path=/proc/self/ns/user", "--", "sh"]) == 1
    assert capsys.readouterr().err == "--userns-path cannot be used with a COMMAND\n"


def test_publish_options():
    config = parse_ok(
        ["-p", "8080:80", "--publish=127.0.0.1:5353:53/udp", "-p[::1]:8443:443", "--"]
    )
    assert config.publish == (
        Publish(
            proto="tcp",
            host_addr=ipaddress.IPv4Address("0.0.0.0"),
            host_port=8080,
            guest_port=80,
        ),
        Publish(
            proto="udp",
            host_addr=ipaddress.IPv4Address("127.0.0.1"),
            host_port=5353,
            guest_port=53,
        ),
        Publish(
            proto="tcp",
            host_addr=ipaddress.IPv6Address("::1"),
            host_port=8443,
            guest_port=443,
        ),
    )


def test_bad_publish_is_an_error(capsys: pytest.CaptureFixture[str]):
    assert parse(["-p", "80", "--", "sh"]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("invalid --publish value: 80 (expected [IP:]HOST:GUEST")


def test_pcap_option_in_both_forms():
    assert parse_ok(["--pcap", "/tmp/x.pcap", "1234", "tap0"]).pcap == "/tmp/x.pcap"
    assert parse_ok(["--pcap=/tmp/y.pcap", "--", "sh"]).pcap == "/tmp/y.pcap"
    assert parse_ok(["1234", "tap0"]).pcap is None


def test_help_shows_both_forms():
    lines = usage_text("slirpy").splitlines()
    assert lines[0] == "Usage: slirpy [OPTION]... PID|PATH|FD [TAPNAME]"
    assert lines[1] == "   or: slirpy [OPTION]... -- [COMMAND [ARG]...]"
    text = "\n".join(lines)
    assert "-p, --publish=SPEC" in text
    assert "--pcap=FILE" in text


# --- -p/--publish values -------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "proto", "host", "host_port", "guest_port"),
    [
        ("8080:80", "tcp", "0.0.0.0", 8080, 80),
        ("8080:80/tcp", "tcp", "0.0.0.0", 8080, 80),
        ("5353:53/udp", "udp", "0.0.0.0", 5353, 53),
        ("127.0.0.1:8081:80", "tcp", "127.0.0.1", 8081, 80),
        (":8081:80", "tcp", "0.0.0.0", 8081, 80),
        ("198.18.0.2:1:65535/udp", "udp", "198.18.0.2", 1, 65535),
        ("[::1]:8080:80", "tcp", "::1", 8080, 80),
        ("[::]:8080:80/udp", "udp", "::", 8080, 80),
    ],
)
def test_parse_publish(
    text: str, proto: str, host: str, host_port: int, guest_port: int
):
    spec = parse_publish(text)
    assert spec == Publish(
        proto=proto,  # type: ignore[arg-type]
        host_addr=ipaddress.ip_address(host),
        host_port=host_port,
        guest_port=guest_port,
    )
    assert parse_publish(describe_publish(spec)) == spec


@pytest.mark.parametrize(
    "text",
    [
        "",
        "80",
        "8080:80:90:100",
        "0:80",
        "8080:0",
        "65536:80",
        "8080:-1",
        "8080:80/sctp",
        "8080:80/TCP",
        "8080:80/",
        "localhost:8080:80",
        "::1:8080:80",
        "[127.0.0.1]:8080:80",
        "[::1]8080:80",
        "[::1]:8080",
        "[]:8080:80",
        "[fe80::1%lo]:8080:80",
        "10.0.2.300:8080:80",
        "+80:80",
        " 80:80",
        "٨٠:80",
    ],
)
def test_parse_publish_rejects(text: str):
    with pytest.raises(ValueError, match="invalid --publish value"):
        parse_publish(text)


# --- helpers ---------------------------------------------------------------------


def test_exit_status():
    assert exit_status(0) == 0
    assert exit_status(7 << 8) == 7
    assert exit_status(signal.SIGINT) == 130
    assert exit_status(signal.SIGKILL) == 137
    proc = subprocess.run(["sh", "-c", "kill -TERM $$"], check=False)
    assert proc.returncode == -signal.SIGTERM
    pid = os.fork()
    if pid == 0:
        os.kill(os.getpid(), signal.SIGTERM)
        os._exit(1)
    _, wstatus = os.waitpid(pid, 0)
    assert exit_status(wstatus) == 143


def test_kill_namespace_kills_only_that_namespace():
    """Processes in another network namespace die; everything else lives."""
    if subprocess.run(
        ["unshare", "--user", "--map-root-user", "--net", "true"],
        capture_output=True,
        check=False,
    ).returncode:
        pytest.skip("cannot create namespaces here")
    inside = subprocess.Popen(
        ["unshare", "--user", "--map-root-user", "--net", "sh", "-c", "sleep 60"],
    )
    outside = subprocess.Popen(["sleep", "60"])
    proc_fd = os.open("/proc", os.O_RDONLY | os.O_DIRECTORY)
    try:
        deadline = time.monotonic() + 10
        netns = os.readlink(f"/proc/{inside.pid}/ns/net")
        while netns == os.readlink("/proc/self/ns/net"):
            assert time.monotonic() < deadline
            time.sleep(0.01)
            netns = os.readlink(f"/proc/{inside.pid}/ns/net")
        assert kill_namespace(proc_fd, netns) >= 1
        assert inside.wait(10) == -signal.SIGKILL
        assert outside.poll() is None
        assert kill_namespace(proc_fd, netns) == 0
    finally:
        os.close(proc_fd)
        for proc in (inside, outside):
            proc.kill()
            proc.wait()


def test_run_form_help_is_fast_and_does_not_start_anything():
    """``--help`` with a command after ``--`` still only prints the help."""
    env = {k: v for k, v in os.environ.items() if k != "POSIXLY_CORRECT"}
    env["PYTHONPATH"] = str(REPO_ROOT)
    proc = subprocess.run(
        [sys.executable, "-m", "slirpy", "--help", "--", "false"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0
    assert proc.stdout == usage_text("slirpy")
