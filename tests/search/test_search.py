"""Whole searches: real SQLite studies, real training on real (or synthetic) data, real subprocesses.

Every study here is small (a 384-candidate space, 8x8 inputs, one or a few epochs), so a trial trains in a
fraction of a second. Torch runs on one thread, in this process and in the subprocesses: on a shared
2-core machine two OpenMP threads per process wait on each other and a 0.5 s epoch can take a minute.
"""

from __future__ import annotations

import dataclasses
import gc
import io
import itertools
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import pytest
import torch
import yaml
from conftest import DIGITS, TINY_SPACE, ReadCounter
from optuna.trial import TrialState

import archsearch
from archsearch.config.assemble import load_config_data
from archsearch.config.study_config import load_study_config
from archsearch.core.errors import ConfigError
from archsearch.network.arch import Arch, Stage, Stem
from archsearch.search.objective import Objective
from archsearch.search.recovery import sweep_dead_workers
from archsearch.search.study import open_study, run
from archsearch.space.baselines import FAMILIES, fit_to_budget
from archsearch.study.trial_states import COUNTED_STATES, finished_count
from archsearch.training.train import TrainResult, train

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
ONE_THREAD_ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
POLL_S = 0.1
DEADLINE_S = 900  # per wait, a hang guard only: a busy machine must not fail a test

pytestmark = pytest.mark.slow  # every test here runs a real search


class CountingTrainer:
    """The real ``archsearch.training.train.train``, counting its calls; ``fail_on`` makes that call (1-based) raise."""

    def __init__(self, fail_on: int | None = None):
        self.calls = 0
        self.fail_on = fail_on

    def __call__(self, *args: Any, **kwargs: Any) -> TrainResult:
        self.calls += 1
        if self.calls == self.fail_on:
            raise RuntimeError(f"trainer call {self.calls} failed on purpose")
        return train(*args, **kwargs)


def load(path: Path) -> optuna.Study:
    """The study of the YAML at ``path``, loaded read-only from its storage with plain Optuna."""
    cfg = load_study_config(path)
    return optuna.load_study(study_name=cfg.name, storage=cfg.storage)


def search_cli(path: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "archsearch.cli", "search", str(path), "--no-progress", "--workers", "1", *args]


def trained(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """Trials that reached the trainer: feasible and not a copy of an earlier trial's result."""
    return [
        t for t in study.get_trials(deepcopy=False)
        if t.user_attrs.get("feasible") is True and "duplicate_of" not in t.user_attrs
    ]


# -- 1. kill -9 in the middle of a trial, then resume ------------------------------------------------------


def wait_for(path: Path, proc: subprocess.Popen, ready: Callable[[list[optuna.trial.FrozenTrial]], bool]) -> None:
    """Poll the study of ``path`` (written by ``proc``) until ``ready(trials)``, within DEADLINE_S."""
    deadline = time.monotonic() + DEADLINE_S
    study = None
    while True:
        assert proc.poll() is None, f"the search ended (rc {proc.returncode}) before it was ready to be killed"
        assert time.monotonic() < deadline, f"the study was not ready within {DEADLINE_S} s"
        if study is None:
            try:
                study = load(path)
            except KeyError:  # not created yet
                time.sleep(POLL_S)
                continue
        if ready(study.get_trials(deepcopy=False)):
            return
        time.sleep(POLL_S)


def training(trials: list[optuna.trial.FrozenTrial], n_complete: int) -> bool:
    """At least ``n_complete`` COMPLETE trials and a RUNNING one that has got as far as recording its worker."""
    states = Counter(t.state for t in trials)
    running = [t for t in trials if t.state == TrialState.RUNNING and "worker" in t.user_attrs]
    return states[TrialState.COMPLETE] >= n_complete and bool(running)


def test_killed_search_resumes_where_it_stopped(write_study, tmp_path):
    # digits and 3 epochs: a trial trains for about a second, so the kill lands inside one;
    # baselines on (only the effnet family fits 100K MACs at 8x8), so a retried trial may be a baseline too;
    # 4 trials: 2 finished before the kill, the killed one's retry and one new trial after it
    n_trials = 4
    path = write_study(name="killed", dataset=DIGITS, training={"epochs": 3, "batch_size": 32},
                       n_trials=n_trials, enqueue_baselines=True)
    with (tmp_path / "first.out").open("w") as out, (tmp_path / "first.err").open("w") as err:
        proc = subprocess.Popen(search_cli(path), cwd=tmp_path, env=ONE_THREAD_ENV, stdout=out, stderr=err)
        try:
            wait_for(path, proc, lambda trials: training(trials, n_complete=2))
            os.kill(proc.pid, signal.SIGKILL)
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()  # reaped, as a shell does (see the zombie test below)
    assert proc.returncode == -signal.SIGKILL

    before = load(path).get_trials(deepcopy=False)
    running = [t for t in before if t.state == TrialState.RUNNING]
    assert len(running) == 1, f"expected the kill to land inside a trial, trial states: {[t.state for t in before]}"
    killed = running[0]
    finished_before = {t.number: (t.state, t.values, t.user_attrs.get("arch_id")) for t in before
                       if t.state.is_finished()}
    assert sum(s == TrialState.COMPLETE for s, _, _ in finished_before.values()) >= 2

    again = subprocess.run(search_cli(path), cwd=tmp_path, env=ONE_THREAD_ENV, capture_output=True, text=True,
                           timeout=DEADLINE_S)
    assert again.returncode == 0, again.stderr
    assert f"failed 1 trial(s) left RUNNING by a dead worker: [{killed.number}]" in again.stdout
    assert f"queued again: trial {killed.number} (" in again.stdout and "), its worker died" in again.stdout

    after = {t.number: t for t in load(path).get_trials(deepcopy=False)}
    for number, (state, values, arch_id) in finished_before.items():
        t = after[number]
        assert (t.state, t.values, t.user_attrs.get("arch_id")) == (state, values, arch_id), f"trial {number}"
    assert after[killed.number].state == TrialState.FAIL
    assert [t.number for t in after.values() if t.state == TrialState.RUNNING] == []
    assert sum(t.state in COUNTED_STATES for t in after.values()) == n_trials
    retries = [t for t in after.values() if t.user_attrs.get("retry_of") == killed.number]
    assert len(retries) == 1
    retry = retries[0]
    assert retry.number > killed.number
    assert retry.state == TrialState.COMPLETE
    assert killed.params.items() <= retry.params.items()  # the same candidate, not a new sample
    if "baseline" in killed.user_attrs:
        assert retry.user_attrs["baseline"] == killed.user_attrs["baseline"]
        assert retry.user_attrs["arch"] == killed.user_attrs["arch"]


@pytest.mark.parametrize("where", ["baseline", "searched"])
def test_ctrl_c_mid_trial_runs_the_trial_again(write_study, tmp_path, where):
    """SIGINT (Ctrl-C) inside a trial: it is recorded as interrupted, not as failed by its own error, and the
    next start queues it again; the study ends with n_trials finished and every baseline with a result."""
    n_trials = 3  # the Ctrl-C in the baseline (trial 0) or the first searched trial; its retry and more after it
    path = write_study(name=f"ctrl-c-{where}", dataset=DIGITS, training={"epochs": 4, "batch_size": 32},
                       n_trials=n_trials, enqueue_baselines=True)

    def ready(trials: list[optuna.trial.FrozenTrial]) -> bool:
        # in training: after its first epoch's report, so that the signal lands mid-trial (a Ctrl-C inside a
        # storage write is tests/faults/test_crash_points.py's)
        running = [t for t in trials if t.state == TrialState.RUNNING and t.intermediate_values]
        return bool(running) and (("baseline" in running[0].user_attrs) == (where == "baseline"))

    # as from a terminal: SIGINT at its default (a pytest-xdist worker may ignore it, and a child inherits
    # that, so Python would install no KeyboardInterrupt handler)
    proc = subprocess.Popen(search_cli(path), cwd=tmp_path, env=ONE_THREAD_ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        wait_for(path, proc, ready)
        os.kill(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=DEADLINE_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    assert "interrupted: finished trials are stored" in err
    (stopped,) = [t for t in load(path).get_trials(deepcopy=False) if t.state == TrialState.FAIL]
    assert stopped.user_attrs["interrupted"] is True and "error" not in stopped.user_attrs
    assert ("baseline" in stopped.user_attrs) == (where == "baseline")

    again = subprocess.run(search_cli(path), cwd=tmp_path, env=ONE_THREAD_ENV, capture_output=True, text=True,
                           timeout=DEADLINE_S)
    assert again.returncode == 0, again.stderr
    what = f"{stopped.user_attrs['baseline']} baseline" if where == "baseline" else stopped.user_attrs["arch_id"]
    assert f"queued again: trial {stopped.number} ({what}), interrupted" in again.stdout
    after = load(path).get_trials(deepcopy=False)
    (retry,) = [t for t in after if t.user_attrs.get("retry_of") == stopped.number]
    assert retry.state in COUNTED_STATES and stopped.params.items() <= retry.params.items()
    assert sum(t.state in COUNTED_STATES for t in after) == n_trials
    assert not [t for t in after if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    families = {t.user_attrs["baseline"] for t in after if "baseline" in t.user_attrs}
    assert families, "the study has no baseline"
    for family in families:  # each exactly one verdict
        verdicts = [t for t in after if t.user_attrs.get("baseline") == family and t.state in COUNTED_STATES]
        assert len(verdicts) == 1, (family, [(t.number, t.state) for t in after if "baseline" in t.user_attrs])
    assert "without a result" not in again.stdout


def test_a_killed_worker_not_yet_reaped_is_swept(write_study, tmp_path):
    # e.g. a supervisor that started the worker with Popen and has not waited for it yet
    path = write_study(name="zombie", dataset=DIGITS, training={"epochs": 3, "batch_size": 32}, n_trials=3)
    proc = subprocess.Popen(search_cli(path), cwd=tmp_path, env=ONE_THREAD_ENV, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        wait_for(path, proc, lambda trials: training(trials, n_complete=0))
        os.kill(proc.pid, signal.SIGKILL)
        stat = Path(f"/proc/{proc.pid}/stat")
        deadline = time.monotonic() + DEADLINE_S
        while stat.read_text().rsplit(")", 1)[1].split()[0] != "Z":  # dead, not reaped
            assert time.monotonic() < deadline
            time.sleep(POLL_S)
        killed = [t.number for t in load(path).get_trials(deepcopy=False) if t.state == TrialState.RUNNING]
        assert len(killed) == 1

        swept = sweep_dead_workers(open_study(load_study_config(path)))
        assert swept == killed
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


# -- 2. an over-budget candidate is recorded, never trained ----------------------------------------------


def test_infeasible_candidates_are_not_trained(write_study):
    n_trials = 10
    path = write_study(budget={"max_macs": 20000}, n_trials=n_trials)  # about half the space is over it
    trainer = CountingTrainer()
    study = run(load_study_config(path), trainer=trainer, stream=None, progress=False)

    trials = study.get_trials(deepcopy=False)
    assert finished_count(study) == n_trials  # networks trained: the infeasible ones do not use up n_trials
    assert trainer.calls == len(trained(study)) <= n_trials  # a duplicate of a trained candidate is not trained
    infeasible = [t for t in trials if t.user_attrs["feasible"] is False]
    assert infeasible
    for t in infeasible:
        assert t.state == TrialState.COMPLETE
        assert t.constraints and all(v > 0 for v in t.constraints.values()), t.constraints
        assert t.user_attrs["macs"] > 20000
        # nothing measured by a trainer; `seconds` is recorded (sampling, costing and storage writes: how
        # near zero it is depends on the disk, see benchmarks/speed/trial_overhead.py, so no bound is asserted)
        for key in ("val_accuracy", "epochs_done", "train_seconds", "compute_seconds"):
            assert key not in t.user_attrs
        assert t.user_attrs["seconds"] >= 0
    for t in trained(study):
        assert t.constraints["macs"] <= 0
        assert "compute_seconds" in t.user_attrs


def test_a_study_searches_its_space_as_narrowed_by_space_overrides(write_study, tmp_path):
    # the first stage without ShuffleNet units: the only stage of TINY_SPACE that has them
    stages = [{**TINY_SPACE["stages"][0], "block": ["dwsep"], "groups": [1]}, TINY_SPACE["stages"][1]]
    study = run(load_study_config(write_study(space_overrides={"stages": stages}, n_trials=6)), stream=None,
                progress=False)
    ids = [t.user_attrs["arch_id"] for t in study.trials]
    assert len(ids) == 6 and all("_shuffle-" not in i and "_dwsep-" in i for i in ids), ids
    assert yaml.safe_load((tmp_path / "tiny_space.yaml").read_text()) == TINY_SPACE  # the file is unchanged


# -- 3. a real Fashion-MNIST study -------------------------------------------------------------------------


@pytest.mark.skipif(not FASHION_DIR.is_dir(), reason=f"{FASHION_DIR} is absent")
def test_short_fashion_mnist_study(write_study, tmp_path):
    # 2,000 training images, one epoch: each candidate reaches about 0.65 validation accuracy
    path = write_study(
        name="fashion",
        dataset={"name": "fashion-mnist", "options": {}, "val_fraction": 0.05},
        resolution=28,
        training={"epochs": 1, "train_subset": 2000, "batch_size": 32, "lr": 0.1},
        budget={"max_macs": 2000000},  # the whole space fits at 28x28 (up to 1.1M MACs)
        n_trials=3,
    )
    text = io.StringIO()
    study = run(load_study_config(path), stream=text, progress=False)

    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    assert len(done) == 3
    for t in done:
        assert t.user_attrs["feasible"] is True
        assert t.user_attrs["val_accuracy"] > 0.5, t.user_attrs
        assert t.values == [t.user_attrs["val_accuracy"]]
    best = max(done, key=lambda t: t.values[0])
    lines = text.getvalue().splitlines()
    at = lines.index("best feasible trial:")
    assert f"trial {best.number:>4}" in lines[at + 1]
    assert best.user_attrs["arch_id"] in lines[at + 1]
    assert lines[0].startswith("new study fashion (sqlite:///") and lines[0].endswith("): 3 trials to run")
    assert lines[at - 1].startswith("study fashion: 3 trained (3 to the end, 0 pruned), 0 infeasible (over the "
                                    "budget: not trained, not counted in n_trials), 0 failed")


# -- 4. n_trials is the study's total ----------------------------------------------------------------------


def test_n_trials_counts_the_study_total_across_calls(write_study):
    cfg = load_study_config(write_study(n_trials=3))
    first = CountingTrainer()
    assert finished_count(run(cfg, trainer=first, stream=None, progress=False)) == 3

    second, text = CountingTrainer(), io.StringIO()
    study = run(cfg, n_trials=5, trainer=second, stream=text, progress=False)
    assert finished_count(study) == 5
    assert len(study.trials) == 5  # two more trials, not five
    assert first.calls + second.calls == len(trained(study))
    assert text.getvalue().splitlines()[0].startswith("resuming study tiny (sqlite:///")
    assert text.getvalue().splitlines()[0].endswith("): 3 of 5 trials finished")

    third, text = CountingTrainer(), io.StringIO()
    study = run(cfg, n_trials=5, trainer=third, stream=text, progress=False)
    assert third.calls == 0
    assert len(study.trials) == 5
    said = text.getvalue().splitlines()
    assert len(said) == 1 and "is finished: 5 of 5 trials; nothing to run" in said[0], said  # no summary again


def test_a_resumed_study_proposes_new_candidates(write_study):
    cfg = load_study_config(write_study(n_trials=3))
    run(cfg, stream=None, progress=False)
    study = run(cfg, n_trials=5, stream=None, progress=False)
    added = [t for t in study.trials if t.number >= 3]
    assert [t.user_attrs.get("duplicate_of") for t in added] == [None, None]


# -- 5. a changed config does not resume into an incomparable study ---------------------------------------


def _change_budget(write_study) -> None:
    write_study(budget={"max_macs": 50000})


def _change_space(write_study) -> None:
    write_study(space={**TINY_SPACE, "width_mult": [0.5, 1.0, 1.5]})  # same path, other choices


def _change_fit(write_study) -> None:
    write_study(budget={"fit": False})  # a study of fitted candidates resumed without fitting


def _change_space_overrides(write_study) -> None:
    write_study(space_overrides={"width_mult": [0.5, 1.0, 1.5]})  # the same space file, narrowed by the study


@pytest.mark.parametrize("change, field", [(_change_budget, "budget"), (_change_space, "space"),
                                           (_change_fit, "budget.fit"), (_change_space_overrides, "space")])
def test_resuming_with_a_changed_config_is_refused(write_study, change, field):
    path = write_study(n_trials=2)
    run(load_study_config(path), stream=None, progress=False)
    change(write_study)

    with pytest.raises(ConfigError, match=f"different {field}") as info:
        run(load_study_config(path), stream=None, progress=False)
    message = str(info.value)
    assert "To start a new study, give it another `name`" in message
    assert str(path) in message
    assert len(load(path).trials) == 2  # nothing added


def test_cli_reports_a_changed_config_in_one_line(write_study, tmp_path):
    path = write_study(n_trials=2)
    run(load_study_config(path), stream=None, progress=False)
    _change_budget(write_study)

    proc = subprocess.run(search_cli(path), cwd=tmp_path, env=ONE_THREAD_ENV, capture_output=True, text=True,
                          timeout=DEADLINE_S)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("archsearch: error: ")
    assert "another `name`" in lines[0]
    assert "Traceback" not in proc.stderr
    assert len(load(path).trials) == 2


# -- 6. a budget no candidate can meet fails before any trial ---------------------------------------------


def _smallest_macs_by_enumeration(path: Path) -> int:
    """The cheapest candidate of the study's space, found by costing every parameter combination."""
    cfg = load_study_config(path)
    space, data = archsearch.config.assemble.load_config_data(cfg)
    choices: dict[str, tuple] = {"width_mult": space.width_mult, "resolution_mult": space.resolution_mult,
                                 "stem": space.stem_types, "stem_channels": space.stem_channels}
    for i, st in enumerate(space.stages):
        choices |= {f"s{i}_depth": st.depth, f"s{i}_block": st.blocks, f"s{i}_channels": st.channels,
                    f"s{i}_groups": st.groups, f"s{i}_kernel": st.kernel}
    names = list(choices)
    return min(
        archsearch.arch_cost(archsearch.suggest_architecture(
            optuna.trial.FixedTrial(dict(zip(names, combo, strict=True))), space,
            in_chs=data.in_chs, resolution=data.resolution, num_classes=data.num_classes,
        )).macs
        for combo in itertools.product(*choices.values())
    )


def test_budget_below_the_smallest_candidate_fails_before_any_trial(write_study, tmp_path):
    path = write_study(budget={"max_macs": 5000})
    smallest = _smallest_macs_by_enumeration(path)
    assert smallest > 5000

    with pytest.raises(ConfigError, match="budget.max_macs") as info:
        run(load_study_config(path), stream=None, progress=False)
    assert f"{smallest:,} MACs" in str(info.value)
    db = tmp_path / "tiny.db"
    if db.exists():  # an empty storage is fine; a trial is not
        url = f"sqlite:///{db}"
        for name in optuna.get_all_study_names(url):
            assert optuna.load_study(study_name=name, storage=url).trials == []


# -- 7. a trial that raises is that trial's failure --------------------------------------------------------


def test_a_failing_trial_is_recorded_and_the_search_goes_on(write_study):
    n_trials = 4
    trainer = CountingTrainer(fail_on=2)
    study = run(load_study_config(write_study(n_trials=n_trials)), trainer=trainer, stream=None, progress=False)

    failed = study.get_trials(deepcopy=False, states=(TrialState.FAIL,))
    assert len(failed) == 1
    assert failed[0].user_attrs["error"] == "RuntimeError: trainer call 2 failed on purpose"
    assert failed[0].values is None
    assert finished_count(study) == n_trials
    assert trainer.calls == len(trained(study))  # the failed call included


def test_a_search_whose_every_trial_fails_stops(write_study):
    # a real error from the trainer, not an injected one: one training image cannot train BatchNorm layers
    text = io.StringIO()
    study = run(load_study_config(write_study(training={"train_subset": 1}, n_trials=2)), stream=text,
                progress=False)

    failed = study.get_trials(deepcopy=False, states=(TrialState.FAIL,))
    assert len(failed) == len(study.trials) == 10  # max(10, n_trials) failures, then it gives up
    for t in failed:
        assert t.user_attrs["error"] == "ValueError: a single training sample cannot train a model with BatchNorm"
    assert finished_count(study) == 0
    assert "stopping: 10 trials failed in this run" in text.getvalue()


# -- 8. the seed baselines are enqueued once per study -----------------------------------------------------


def test_baselines_are_enqueued_once(write_study):
    # 300K MACs fit a variant of every family at 8x8; the first call stops with one baseline still waiting
    path = write_study(budget={"max_macs": 300000}, enqueue_baselines=True, n_trials=2)
    cfg = load_study_config(path)
    run(cfg, stream=None, progress=False)
    study = run(cfg, n_trials=5, stream=None, progress=False)

    trials = study.get_trials(deepcopy=False)
    expected = {f for f in FAMILIES if fit_to_budget(f, in_chs=1, resolution=8, num_classes=4, max_macs=300000)}
    assert expected == set(FAMILIES)
    assert [t.state for t in trials if t.state not in COUNTED_STATES] == []
    base = [t for t in trials if "baseline" in t.user_attrs]
    assert Counter(t.user_attrs["baseline"] for t in base) == dict.fromkeys(expected, 1)
    for t in base:  # each the widest variant of its family within the budget
        arch = fit_to_budget(t.user_attrs["baseline"], in_chs=1, resolution=8, num_classes=4, max_macs=300000)
        assert t.user_attrs["arch"] == arch.to_dict()
        assert t.user_attrs["macs"] <= 300000
    assert finished_count(study) == 5


# -- 9. the plugin face: a user's own Optuna objective -----------------------------------------------------


def test_user_objective_with_the_python_api(write_study, tmp_path):
    write_study()  # writes tiny_space.yaml
    space = archsearch.load_space(tmp_path / "tiny_space.yaml")
    data = archsearch.load_data("synthetic", classes=4, resolution=8)

    def objective(trial: optuna.Trial) -> float:
        arch = archsearch.suggest_architecture(trial, space, in_chs=data.in_chs, resolution=data.resolution,
                                               num_classes=data.num_classes)
        cost = archsearch.arch_cost(arch)
        trial.set_constraint("macs", cost.macs / 50000 - 1)
        trial.set_user_attr("arch_id", arch.id)
        model = archsearch.build(arch)
        result = archsearch.train(model, data.x_train, data.y_train, data.x_val, data.y_val,
                                  archsearch.TrainConfig(epochs=1, batch_size=64, lr=0.1), device=torch.device("cpu"),
                                  preprocess=data.preprocess())
        return result.val_accuracy

    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=0))
    study.optimize(objective, n_trials=3)

    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 3
    for t in study.trials:
        assert 0.0 <= t.values[0] <= 1.0
        arch = archsearch.suggest_architecture(optuna.trial.FixedTrial(t.params), space, in_chs=1, resolution=8,
                                               num_classes=4)
        assert arch.id == t.user_attrs["arch_id"]  # the stored params rebuild the same candidate
        assert t.constraints["macs"] == archsearch.arch_cost(arch).macs / 50000 - 1


def test_a_candidate_starts_from_the_same_weights_whatever_ran_before(write_study):
    config = load_study_config(write_study())
    space, data = load_config_data(config)
    arch = Arch(1, 8, 4, Stem("conv", 8), (Stage("dwsep", 16, stride=2), Stage("shuffle", 32, stride=2, groups=2)))

    def weights(seed: int) -> dict[str, torch.Tensor]:
        recipe = dataclasses.replace(config, training=dataclasses.replace(config.training, seed=seed))
        return Objective(recipe, space, data, device=torch.device("cpu")).build(arch).state_dict()

    first = weights(0)
    torch.randn(1000)  # other trials, another worker's history: the global generator has moved on
    again = weights(0)
    assert first.keys() == again.keys() and all(torch.equal(first[k], again[k]) for k in first)
    other = weights(1)
    assert not all(torch.equal(first[k], other[k]) for k in first)


# -- 10. pruning, and what a trial reads -------------------------------------------------------------------


class EarlyLastEpochs:
    """The real trainer; its first ``first`` calls report 1.0 after their last epoch.

    The networks train for real; only the figure reported after the final epoch of the early trials is
    replaced, so that every later trial is below the median there: the median pruner, asked after the
    last epoch, would stop each of them.
    """

    def __init__(self, epochs: int, first: int):
        self.epochs, self.first, self.calls = epochs, first, 0

    def __call__(self, *args: Any, on_epoch: Callable[[int, float], None], **kwargs: Any) -> TrainResult:
        self.calls += 1
        early = self.calls <= self.first

        def report(epoch: int, accuracy: float) -> None:
            on_epoch(epoch, 1.0 if early and epoch == self.epochs - 1 else accuracy)

        return train(*args, on_epoch=report, **kwargs)


def test_a_trial_is_never_pruned_after_its_last_epoch(write_study):
    epochs = 3
    trainer = EarlyLastEpochs(epochs, first=6)  # the median pruner starts after 5 complete trials
    path = write_study(training={"epochs": epochs}, pruner={"type": "median"}, n_trials=12)
    study = run(load_study_config(path), trainer=trainer, stream=None, progress=False)

    later = [t for t in study.trials[6:] if epochs - 1 in t.intermediate_values]
    assert later and all(t.state == TrialState.COMPLETE for t in later)  # stopping then would save nothing
    for t in study.get_trials(states=(TrialState.PRUNED,)):
        assert t.user_attrs["epochs_done"] < epochs and epochs - 1 not in t.intermediate_values


def test_a_trial_reads_the_study_twice(write_study, monkeypatch):
    """Within a trial, Optuna's ``ask`` looks for an enqueued trial and the sampler takes the trial's snapshot;
    the objective's surplus and duplicate checks and the pruner read nothing more. Between trials the run
    loop reads once (other workers' trials count towards n_trials)."""
    path = write_study(training={"epochs": 3}, pruner={"type": "median"}, n_trials=12)
    run(load_study_config(path), stream=None, progress=False)  # past the pruner's 5 start-up trials
    counter = ReadCounter(monkeypatch)
    write_study(training={"epochs": 3}, pruner={"type": "median"}, n_trials=24)
    study = run(load_study_config(path), stream=None, progress=False)

    assert len(study.trials) == 24 and any(t.state == TrialState.PRUNED for t in study.trials[12:])
    # 12 trials, 2 reads each and 1 after each; run() reads the study 13 times more (the start line's count,
    # resume checks, summary)
    assert counter.reads <= 12 * 3 + 13, counter.reads


def test_a_trial_finished_by_another_worker_meanwhile_does_not_end_the_search(write_study):
    """Two SQLite workers can take the same queued trial; the second to finish cannot record its result.

    Reproduced in one process: while the trainer runs, another storage handle (another worker) records the
    running trial as complete. The search reports it and goes on to its target.
    """
    path = write_study(n_trials=4)
    config = load_study_config(path)
    finished_elsewhere = []

    def trainer(*args: Any, **kwargs: Any) -> TrainResult:
        if not finished_elsewhere:
            other = optuna.load_study(study_name=config.name, storage=config.storage)
            (running,) = other.get_trials(states=(TrialState.RUNNING,))
            other._storage.set_trial_state_values(running._trial_id, TrialState.COMPLETE, [0.5])
            finished_elsewhere.append(running.number)
        return train(*args, **kwargs)

    out = io.StringIO()
    study = run(config, trainer=trainer, stream=out, progress=False)
    assert "was finished by another worker meanwhile" in out.getvalue()
    assert finished_count(study) == 4 and study.trials[finished_elsewhere[0]].values == [0.5]


def test_the_trials_run_with_what_existed_before_them_frozen(write_study):
    """A full garbage collection walks every object torch and Optuna hold (about 290,000 after the warm-up,
    ~200 ms); the trials run with those frozen, and run() thaws them after, leaving a caller's own freeze."""
    frozen_in_trials = []

    def trainer(*args: Any, **kwargs: Any) -> TrainResult:
        frozen_in_trials.append(gc.get_freeze_count())
        return train(*args, **kwargs)

    run(load_study_config(write_study(n_trials=2)), trainer=trainer, stream=None, progress=False)
    assert len(frozen_in_trials) == 2 and min(frozen_in_trials) > 10_000  # torch alone is far more
    assert gc.get_freeze_count() == 0

    callers = [object()]
    gc.freeze()  # the caller's own
    try:
        run(load_study_config(write_study(n_trials=3)), stream=None, progress=False)
        assert not any(o is callers for o in gc.get_objects())  # still frozen: gc.get_objects() skips those
    finally:
        gc.unfreeze()
    assert any(o is callers for o in gc.get_objects())


def test_a_finished_study_with_a_new_rerank_says_the_rerank_is_left_and_runs_it(write_study):
    path = write_study(n_trials=3, rerank={"top": 1, "epochs": 1})
    run(load_study_config(path), stream=None, progress=False)
    changed = load_study_config(write_study(n_trials=3, rerank={"top": 1, "epochs": 2}))  # another recipe
    trainer, text = CountingTrainer(), io.StringIO()
    study = run(changed, trainer=trainer, stream=text, progress=False)
    first = text.getvalue().splitlines()[0]
    assert first.endswith("3 of 3 trials finished; the re-rank is left to run"), first
    assert len(study.trials) == 3 and trainer.calls >= 1  # the re-rank's trainings, no search trial
