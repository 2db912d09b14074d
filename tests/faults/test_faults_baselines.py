"""A seed baseline is never lost to kills (issue #35): a worker's death is not the baseline's own error, so it runs
again until it has a verdict of its own; only a baseline whose worker is lost at every one of ``BASELINE_LOSSES``
tries (one that kills its worker, such as the out-of-memory killer's pick) is given up, and the summary says so."""

from __future__ import annotations

import datetime
import io
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState

from archsearch.config.study_config import load_study_config
from archsearch.search.recovery import recover
from archsearch.search.study import open_study, run
from archsearch.search.summary import summary
from archsearch.study.trial_record import TrialRecord
from archsearch.study.trial_states import BASELINE_LOSSES
from benchmarks.faults import invariants
from tests.faults import ENV, fault_study, search_argv

N_TRIALS = 8
pytestmark = pytest.mark.slow  # real processes killed, searches, SQLite studies


def _study(folder: Path, **data: int) -> Path:
    return fault_study(folder, n_trials=N_TRIALS, **data)


def _study_named(folder: Path, name: str, n_trials: int, **data: int) -> Path:
    """The same study under another name, in the same storage."""
    (folder / name).mkdir()
    return fault_study(folder / name, n_trials=n_trials, name=name, storage=f"sqlite:///{folder / 'tiny.db'}",
                       **data)


def _start(path: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(search_argv(path, 2), cwd=path.parent, env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)


def _kill_when_running(proc: subprocess.Popen[str], url: str, family: str, retry_of: int | None) -> int:
    """SIGKILL the whole command (parent and workers) while a try of baseline ``family`` (repeating ``retry_of``)
    runs; returns that trial's number."""
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline:
        for t in invariants.trials_of(url, "tiny"):
            record = TrialRecord.of(t["attrs"])
            if t["state"] == "RUNNING" and record.baseline == family and record.retry_of == retry_of:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=900)
                return t["number"]
        assert proc.poll() is None, proc.communicate()[0][-2000:]
        time.sleep(0.05)
    pytest.fail(f"no try of {family} ran")


def test_a_baseline_killed_twice_still_gets_its_verdict(tmp_path: Path) -> None:
    path = _study(tmp_path)
    url = f"sqlite:///{tmp_path / 'tiny.db'}"
    first = _kill_when_running(_start(path), url, "shufflenet", None)
    second = _kill_when_running(_start(path), url, "shufflenet", first)  # the retry, killed too
    before = invariants.finished(invariants.trials_of(url, "tiny"))
    last = _start(path)
    out, _ = last.communicate(timeout=900)
    assert last.returncode == 0, out[-3000:]
    trials = invariants.trials_of(url, "tiny")
    broken = invariants.broken(trials, n_trials=N_TRIALS, before=before, sqlite_db=tmp_path / "tiny.db")
    assert not broken, broken
    [verdict] = invariants.verdicts(trials, "shufflenet")
    assert TrialRecord.of(next(t for t in trials if t["number"] == verdict)["attrs"]).retry_of == second
    assert "without a result" not in out


def _chain(tmp_path: Path, losses: int) -> tuple[optuna.Study, Any]:
    """A study whose mobilenet baseline was tried ``losses`` times, each try's worker lost (swept), each try the
    retry of the one before: what kills at every try leave behind."""
    config = load_study_config(_study(tmp_path))
    study = open_study(config)
    retry_of = None
    for _ in range(losses):
        record = TrialRecord(baseline="mobilenet", arch={"stem": {}}, retry_of=retry_of, swept=True)
        lost = optuna.trial.create_trial(state=TrialState.FAIL, user_attrs=record.attrs())
        lost.datetime_start = lost.datetime_complete = datetime.datetime.now() - datetime.timedelta(minutes=5)
        study.add_trial(lost)  # swept minutes ago: its sweeper died before it queued the retry
        retry_of = study.trials[-1].number
    return study, config


def test_a_baseline_lost_again_is_queued_again(tmp_path: Path) -> None:
    study, _ = _chain(tmp_path, BASELINE_LOSSES - 1)
    _, queued = recover(study)
    assert [t.number for t, _ in queued] == [BASELINE_LOSSES - 2]
    [waiting] = [t for t in study.trials if t.state == TrialState.WAITING]
    assert TrialRecord.of(waiting).baseline == "mobilenet" and TrialRecord.of(waiting).retry_of == BASELINE_LOSSES - 2


def test_a_baseline_that_kills_its_worker_every_time_is_given_up_and_named(tmp_path: Path) -> None:
    study, config = _chain(tmp_path, BASELINE_LOSSES)
    _, queued = recover(study)
    assert queued == [] and not [t for t in study.trials if t.state == TrialState.WAITING]
    text = summary(study, config)
    assert (f"mobilenet (trial {BASELINE_LOSSES - 1} its worker died at each of {BASELINE_LOSSES} tries: given up"
            in text), text


def test_a_finished_study_whose_baseline_an_older_archsearch_gave_up_runs_it_again(tmp_path: Path) -> None:
    """The issue's state: n_trials done, the ShuffleNet baseline lost at its try and at its retry (the old rule
    stopped there), the study "finished". The next start runs it, beyond n_trials, and says so."""
    from archsearch.config.assemble import load_config_data
    from archsearch.space import baselines
    from archsearch.study.study_record import StudyRecord

    # no process is killed here, so nothing needs trials long enough for a kill to land in one: 400 images, one epoch
    small = {"n_train": 400, "epochs": 1}
    path = _study(tmp_path, **small)
    config = load_study_config(path)
    run(config, stream=None, progress=False)
    study = open_study(config, create=False)
    _, data = load_config_data(config)
    arch = baselines.fit_to_budget("shufflenet", in_chs=data.in_chs, resolution=data.resolution,
                                   num_classes=data.num_classes, limits=config.budget.limits(),
                                   bytes_per_param=config.budget.bytes_per_param)
    assert arch is not None
    # the old state, in a study of its own: every trained trial but ShuffleNet's, whose two tries were both lost
    kept = [t for t in study.trials if t.state == TrialState.COMPLETE and TrialRecord.of(t).baseline != "shufflenet"]
    config = load_study_config(_study_named(tmp_path, "legacy", len(kept), **small))
    study = open_study(config)
    for t in kept:
        study.add_trial(t)
    retry_of = None
    for _ in range(2):
        lost = optuna.trial.create_trial(state=TrialState.FAIL, user_attrs=TrialRecord(
            baseline="shufflenet", arch=arch.to_dict(), retry_of=retry_of, swept=True).attrs())
        lost.datetime_start = lost.datetime_complete = datetime.datetime.now() - datetime.timedelta(minutes=5)
        study.add_trial(lost)
        retry_of = study.trials[-1].number
    StudyRecord(baselines=True).write(study)

    text = io.StringIO()
    study = run(config, stream=text, progress=False)
    first = text.getvalue().splitlines()[0]
    assert first.endswith("trials finished; the shufflenet baseline, still without a result, run"), first
    trials = invariants.trials_of(config.storage, config.name)
    [verdict] = invariants.verdicts(trials, "shufflenet")
    assert TrialRecord.of(next(t for t in trials if t["number"] == verdict)["attrs"]).retry_of == retry_of
    assert "without a result" not in summary(study, config)
