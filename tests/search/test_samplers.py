"""The study's sampler and pruner: Optuna's decisions, with fewer reads of the storage per trial."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from conftest import ReadCounter
from optuna.trial import TrialState

from archsearch.search.samplers import ArchTPESampler, PerTrialPruner
from archsearch.space.search_space import load_space, suggest_architecture
from archsearch.study.storage import make_storage

SPACES_DIR = Path(__file__).resolve().parents[2] / "search_spaces"
# ask/tell on a storage with heartbeats, outside optimize(): Optuna warns, and it is what these tests do
pytestmark = [pytest.mark.slow,  # SQLite studies and real searches: a second or more each
              pytest.mark.filterwarnings("ignore:Heartbeat of storage")]


@pytest.fixture
def sqlite_study(tmp_path):
    def make(**kwargs) -> optuna.Study:
        return optuna.create_study(storage=make_storage(f"sqlite:///{tmp_path / 'db.sqlite'}"), **kwargs)

    return make


def _sample(trial: optuna.Trial):
    space = load_space(SPACES_DIR / "mixed.yaml")
    return suggest_architecture(trial, space, in_chs=1, resolution=28, num_classes=10)


def test_tpe_samples_a_lone_trial_from_one_snapshot_and_lies_while_others_run(sqlite_study, monkeypatch):
    study = sqlite_study(direction="maximize", sampler=ArchTPESampler(seed=0))
    for value in range(12):  # past TPE's random start-up trials
        trial = study.ask()
        _sample(trial)
        study.tell(trial, float(value))
    counter = ReadCounter(monkeypatch)

    alone = study.ask()
    counter.reads = 0
    arch = _sample(alone)
    # mixed.yaml's conditional parameters are sampled one by one, all from the trial's snapshot
    assert len(alone.params) > 10 and arch.stages and counter.reads == 0

    beside = study.ask()  # `alone` still runs: this one must see it, so its sampler reads afresh
    counter.reads = 0
    _sample(beside)
    assert counter.reads > 0
    study.tell(alone, 1.0)
    study.tell(beside, 1.0)

    again = study.ask()
    counter.reads = 0
    _sample(again)
    assert counter.reads == 0


def test_tpe_is_reproducible_for_a_seed(sqlite_study):
    def run(name: str) -> list[dict]:
        study = sqlite_study(study_name=name, direction="maximize", sampler=ArchTPESampler(seed=3))
        study.optimize(lambda t: _sample(t).stages[0].out_chs / 100.0, n_trials=14)
        return [t.params for t in study.trials]

    assert run("a") == run("b")


def _with_history(study: optuna.Study) -> None:
    """Eight finished trials with a learning curve each (two pruned), as a search leaves them."""
    for i in range(8):
        trial = study.ask()
        for step in range(4):
            trial.report(0.1 * i + 0.05 * step, step)
        if i in (2, 5):
            study.tell(trial, state=TrialState.PRUNED)
        else:
            study.tell(trial, 0.1 * i + 0.15)


@pytest.mark.parametrize("curve,pruned", [
    ([0.9, 0.95, 0.97, 0.98], False),  # above the median of the completed curves (0.4 at step 1) throughout
    ([0.05, 0.06, 0.5, 0.7], True),
    ([0.3, 0.31, 0.2, 0.1], True),
])
def test_per_trial_pruner_decides_as_the_median_pruner_with_one_read_per_trial(sqlite_study, monkeypatch, curve,
                                                                               pruned):
    study = sqlite_study(direction="maximize")
    _with_history(study)
    median = optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=1)
    wrapped = PerTrialPruner(optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=1))
    counter = ReadCounter(monkeypatch)
    trial = study.ask()
    decisions, expected = [], []
    for step, value in enumerate(curve):
        trial.report(value, step)
        frozen = study._storage.get_trial(trial._trial_id)
        before = counter.reads
        decisions.append(wrapped.prune(study, frozen))
        if step > 0:
            assert counter.reads == before  # the snapshot of the first call serves every later step
        expected.append(median.prune(study, frozen))
    assert decisions == expected
    assert any(expected) == pruned and not expected[0]  # step 0 is the pruner's warm-up


def test_per_trial_pruner_reads_again_for_the_next_trial(sqlite_study):
    study = sqlite_study(direction="maximize")
    _with_history(study)
    pruner = PerTrialPruner(optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=0))
    first = study.ask()
    first.report(0.99, 0)
    assert not pruner.prune(study, study._storage.get_trial(first._trial_id))
    study.tell(first, 0.99)
    second = study.ask()
    second.report(0.0, 0)
    assert pruner.prune(study, study._storage.get_trial(second._trial_id))
    # the second trial's snapshot holds the first trial, completed after the first snapshot was read
    assert first.number in {t.number for t in pruner._view.get_trials(deepcopy=False)}
