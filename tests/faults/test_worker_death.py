"""A worker of ``search --workers 2`` killed (SIGKILL, as the out-of-memory killer does) mid-trial: the command
exits non-zero with one line that says so and that the same command resumes; the same command then finishes the
study with exactly ``n_trials`` networks trained and nothing RUNNING (issue #35: a command whose workers died never
exits 0). Real subprocesses on the digits dataset, one torch thread each."""

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

from archsearch.study.trial_states import finished_count

ONE_THREAD_ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
DEADLINE_S = 900  # per wait, a hang guard only: a busy machine must not fail a test

pytestmark = pytest.mark.slow


def test_a_killed_worker_makes_the_command_fail_and_the_next_run_finishes(write_study, tmp_path: Path) -> None:
    path = write_study(dataset=DIGITS, training={"epochs": 4, "batch_size": 32}, n_trials=4)
    storage = f"sqlite:///{tmp_path / 'tiny.db'}"
    argv = [sys.executable, "-m", "archsearch.cli", "search", str(path), "--no-progress", "--workers", "2"]
    proc = subprocess.Popen(argv, cwd=tmp_path, env=ONE_THREAD_ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    victim = None
    try:
        deadline = time.monotonic() + DEADLINE_S
        while victim is None:  # a worker process in the middle of a trial's training
            assert proc.poll() is None, f"it ended (rc {proc.returncode}) before a worker was killed"
            assert time.monotonic() < deadline, "no trial started training in time"
            try:
                trials = optuna.load_study(study_name="tiny", storage=storage).get_trials(deepcopy=False)
            except KeyError:
                trials = []
            running = [t for t in trials if t.state == TrialState.RUNNING and t.intermediate_values]
            if running:
                victim = int(running[0].user_attrs["worker"].split(":")[1])
            time.sleep(0.1)
        os.kill(victim, signal.SIGKILL)
        out, err = proc.communicate(timeout=DEADLINE_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 1, err
    assert "Traceback" not in err, err
    [line] = [line for line in err.splitlines() if line.startswith("archsearch:")]
    assert "1 of 2 worker process(es) died" in line and "killed by signal 9" in line and "resumes" in line
    again = subprocess.run(argv, cwd=tmp_path, env=ONE_THREAD_ENV, capture_output=True, text=True,
                           timeout=DEADLINE_S)
    assert again.returncode == 0, again.stderr
    study = optuna.load_study(study_name="tiny", storage=storage)
    assert not study.get_trials(deepcopy=False, states=(TrialState.RUNNING, TrialState.WAITING))
    assert finished_count(study) == 4  # exactly n_trials networks trained
    # the killed worker's trial was failed as a dead worker's and run again
    swept = [t for t in study.get_trials(deepcopy=False) if t.user_attrs.get("swept")]
    assert len(swept) == 1 and swept[0].state == TrialState.FAIL
