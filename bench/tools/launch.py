# SPDX-License-Identifier: GPL-2.0-or-later
"""Start a network daemon and time its start-up to readiness.

Runs inside the lab's host namespace, so the clock is not skewed by
``nsenter``.  Two ways to tell readiness:

``--ready-fd N``
    the daemon is given the write end of a pipe as fd N (its argv says
    ``-r N``); ready = the first byte on the pipe (slirp4netns, slirpy);
``--daemonize PIDFILE``
    the daemon forks into the background when ready and its first process
    exits; the background PID is read from PIDFILE (pasta).

``--repeat K`` starts, times and stops the daemon K times and prints one JSON
line ``{"ready_ms": [...]}``.  Without it the daemon is started once and kept:
the tool prints ``{"pid": PID, "ready_ms": T}`` (PID as seen in the lab's
PID namespace) and stays until the daemon exits, then prints
``{"exit": CODE}``.  Every wait is bounded by ``--timeout``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path


def emit(obj: object) -> None:
    """Print one JSON line."""
    print(json.dumps(obj), flush=True)


def start_ready_fd(
    argv: list[str], fd: int, timeout: float
) -> tuple[subprocess.Popen[bytes], float, bytes]:
    """Start ``argv`` with a ready pipe on ``fd``; wait for the first byte."""
    r, w = os.pipe()
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=sys.stderr.fileno(),
        pass_fds=(fd,),
        preexec_fn=lambda: os.dup2(w, fd),
        start_new_session=True,
    )
    os.close(w)
    try:
        poller = select.poll()
        poller.register(r, select.POLLIN)
        if not poller.poll(timeout * 1000):
            raise TimeoutError(f"no ready byte in {timeout}s")
        byte = os.read(r, 16)
        elapsed = time.perf_counter() - t0
    except BaseException:
        stop(proc)
        raise
    finally:
        os.close(r)
    if not byte:
        stop(proc)
        raise RuntimeError(f"ready fd closed without a byte (exit {proc.poll()})")
    return proc, elapsed, byte


def start_daemonize(
    argv: list[str], pidfile: Path, timeout: float
) -> tuple[int, float]:
    """Run ``argv`` until its first process exits; return the background PID."""
    with contextlib.suppress(FileNotFoundError):
        pidfile.unlink()
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=sys.stderr.fileno())
    try:
        rc = proc.wait(timeout)
    except subprocess.TimeoutExpired:
        stop(proc)
        raise TimeoutError(f"still in the foreground after {timeout}s") from None
    elapsed = time.perf_counter() - t0
    if rc != 0:
        raise RuntimeError(f"exit {rc} before it was ready")
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(FileNotFoundError, ValueError):
            return int(pidfile.read_text().strip()), elapsed
        if time.monotonic() > deadline:
            raise TimeoutError("no PID file")
        time.sleep(0.001)


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL after a second; reap."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(1)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def stop_pid(pid: int) -> None:
    """Stop a background daemon that is not our child; wait until it is dead."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 1
    while True:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            return
        if state in ("Z", "X"):
            return
        if time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + 5
        time.sleep(0.002)


def main() -> int:
    """Entry point."""
    parser = argparse.ArgumentParser(description=__doc__)
    way = parser.add_mutually_exclusive_group(required=True)
    way.add_argument("--ready-fd", type=int)
    way.add_argument("--daemonize", type=Path, metavar="PIDFILE")
    parser.add_argument("--repeat", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=20.0)
    parser.add_argument("argv", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    argv = [a for a in args.argv if a != "--"] if args.argv[:1] == ["--"] else args.argv
    try:
        if args.repeat:
            times: list[float] = []
            for _ in range(args.repeat):
                if args.ready_fd is not None:
                    proc, elapsed, _byte = start_ready_fd(
                        argv, args.ready_fd, args.timeout
                    )
                    stop(proc)
                else:
                    pid, elapsed = start_daemonize(argv, args.daemonize, args.timeout)
                    stop_pid(pid)
                times.append(elapsed * 1000)
            emit({"ready_ms": times})
            return 0
        if args.ready_fd is not None:
            proc, elapsed, byte = start_ready_fd(argv, args.ready_fd, args.timeout)
            emit({"pid": proc.pid, "ready_ms": elapsed * 1000, "byte": byte.decode()})
            emit({"exit": proc.wait()})
            return 0
        pid, elapsed = start_daemonize(argv, args.daemonize, args.timeout)
        emit({"pid": pid, "ready_ms": elapsed * 1000})
        return 0
    except Exception as exc:
        emit({"error": f"{type(exc).__name__}: {exc}"})
        return 1


if __name__ == "__main__":
    sys.exit(main())
