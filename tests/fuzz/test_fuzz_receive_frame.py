# SPDX-License-Identifier: GPL-2.0-or-later
"""The coverage-guided fuzz target, briefly: seeds replay, atheris runs ~20 s.

The long run is a documented command (``docs/hardening.md``); here the seed
corpus is replayed through the target's invariants in-process, the
invariant checker is shown to catch a bad frame, and, where atheris is
installed, libFuzzer runs the target for a few thousand inputs.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

TARGET = Path(__file__).resolve().parent / "fuzz_receive_frame.py"
RUNS = 50_000
MAX_SECONDS = 20


def _target():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("fuzz_receive_frame", TARGET)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_seed_corpus_replays_through_the_invariants() -> None:
    target = _target()
    run = target.make_runner()
    seeds = target.seed_inputs()
    assert len(seeds) > 100
    for seed in seeds:
        run(seed)
    flags, frames = target.split(target.join(3, [b"abc", None, b""]))
    assert flags == 3
    assert frames == [b"abc", None, None]


def test_the_invariants_can_fail() -> None:
    target = _target()
    good = bytes(12) + b"\x08\x00" + bytes([0x45, 0, 0, 20]) + bytes(16)
    target.check_frame(good, vnet=False)
    with pytest.raises(AssertionError, match="IPv4 length"):
        target.check_frame(good + b"extra", vnet=False)
    with pytest.raises(AssertionError, match="short frame"):
        target.check_frame(bytes(10), vnet=False)


@pytest.mark.timeout(120)
def test_atheris_runs_the_target(tmp_path: Path) -> None:
    if importlib.util.find_spec("atheris") is None:
        pytest.skip("atheris is not installed (pip install atheris)")
    corpus = tmp_path / "corpus"
    subprocess.run(
        [sys.executable, str(TARGET), "--make-corpus", str(corpus)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    env = dict(os.environ, PYTHONHASHSEED="0")
    result = subprocess.run(
        [
            sys.executable,
            str(TARGET),
            f"-runs={RUNS}",
            f"-max_total_time={MAX_SECONDS}",
            "-seed=1",
            "-print_final_stats=1",
            f"-artifact_prefix={tmp_path}/",
            str(corpus),
        ],
        capture_output=True,
        text=True,
        timeout=MAX_SECONDS + 60,
        cwd=tmp_path,
        env=env,
        check=False,
    )
    log = result.stderr[-5000:]
    assert result.returncode == 0, log
    assert "Done" in result.stderr, log
    assert not list(tmp_path.glob("crash-*")), log
