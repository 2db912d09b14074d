"""Ctrl-C as a terminal sends it, SIGINT to the whole process group: ``search --workers 2`` and ``export`` end with
one line that says what is kept and that the same command resumes, and no traceback from any process.

Real subprocesses on the digits dataset, one torch thread each.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from conftest import DIGITS
from optuna.trial import TrialState

from archsearch.config.study_config import load_study_config
from archsearch.search.study import run

ONE_THREAD_ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
DEADLINE_S = 900  # per wait, a hang guard only: a busy machine must not fail a test

pytestmark = pytest.mark.slow


def _start(args: list[str], cwd: Path) -> subprocess.Popen:
    """``archsearch ARGS`` in a new process group (a terminal's job), SIGINT at its default."""
    def preexec() -> None:
        os.setpgrp()
        signal.signal(signal.SIGINT, signal.SIG_DFL)  # a pytest-xdist worker may ignore it; a child inherits that

    return subprocess.Popen([sys.executable, "-m", "archsearch.cli", *args], cwd=cwd, env=ONE_THREAD_ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=preexec)


def _ctrl_c_when(proc: subprocess.Popen, ready) -> tuple[str, str]:
    """Wait for ``ready()``, send SIGINT to the process group, and collect the output."""
    deadline = time.monotonic() + DEADLINE_S
    try:
        while not ready():
            assert proc.poll() is None, f"it ended (rc {proc.returncode}) before the Ctrl-C: {proc.stderr.read()}"
            assert time.monotonic() < deadline, "not ready in time"
            time.sleep(0.1)
        os.killpg(proc.pid, signal.SIGINT)
        return proc.communicate(timeout=DEADLINE_S)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _one_clean_line(err: str, start: str) -> str:
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    lines = [line for line in err.splitlines() if line.startswith("interrupted:")]
    assert len(lines) == 1, err
    assert lines[0].startswith(start) and "run the same command to resume" in lines[0]
    return lines[0]


def test_ctrl_c_with_two_workers_ends_every_process_quietly(write_study, tmp_path):
    path = write_study(dataset=DIGITS, training={"epochs": 6, "batch_size": 32}, n_trials=12)
    storage = f"sqlite:///{tmp_path / 'tiny.db'}"

    def both_training() -> bool:
        try:
            trials = optuna.load_study(study_name="tiny", storage=storage).get_trials(deepcopy=False)
        except KeyError:
            return False
        return sum(t.state == TrialState.RUNNING and bool(t.intermediate_values) for t in trials) >= 2

    proc = _start(["search", str(path), "--no-progress", "--workers", "2"], tmp_path)
    out, err = _ctrl_c_when(proc, both_training)
    assert proc.returncode == 130, err
    _one_clean_line(err, "interrupted: finished trials are stored")
    trials = optuna.load_study(study_name="tiny", storage=storage).get_trials(deepcopy=False)
    assert not [t for t in trials if t.state == TrialState.RUNNING]  # each worker recorded its trial
    stopped = [t for t in trials if t.state == TrialState.FAIL]
    assert stopped and all(t.user_attrs.get("interrupted") for t in stopped)


def test_ctrl_c_during_export_keeps_the_retrain_and_says_how_to_resume(write_study, tmp_path):
    path = write_study(dataset=DIGITS, training={"epochs": 1, "batch_size": 32}, n_trials=1)
    run(load_study_config(path), stream=None, progress=False)
    out_dir = tmp_path / "out"
    checkpoints = lambda: list(tmp_path.glob(".out.trial-*.train.pt"))  # noqa: E731 (the retrain's state)

    proc = _start(["export", str(path), "--out", str(out_dir), "--epochs", "2000", "--no-onnx"], tmp_path)
    out, err = _ctrl_c_when(proc, lambda: bool(checkpoints()))
    assert proc.returncode == 130, err
    line = _one_clean_line(err, f"interrupted: nothing is written to {out_dir} yet")
    assert "last finished epoch is kept" in line
    assert checkpoints() and not out_dir.exists()
