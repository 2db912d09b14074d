"""The Optuna internals archsearch uses (archsearch/study/_optuna_internals.py) still exist and still behave as
relied on.

Each test names the private attribute it checks, so an Optuna upgrade that moves one fails here, loudly, instead
of somewhere in a search."""

from __future__ import annotations

import inspect

import optuna
import pytest
from optuna.trial import TrialState

from archsearch.study._optuna_internals import cached_trials, fail_trial_of_another_process, set_constant_liar


def test_study_get_trials_with_use_cache() -> None:
    assert "use_cache" in inspect.signature(optuna.Study._get_trials).parameters, \
        ("optuna.Study._get_trials(use_cache=...) is gone: archsearch.study._optuna_internals.cached_trials needs "
         "another way")
    study = optuna.create_study()
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=3)
    trials = cached_trials(study, (TrialState.COMPLETE,))
    assert [t.number for t in trials] == [0, 1, 2]
    assert trials[0] is cached_trials(study, (TrialState.COMPLETE,))[0]  # the snapshot itself, no copies


def test_tpe_constant_liar_attribute() -> None:
    sampler = optuna.samplers.TPESampler(constant_liar=True, seed=0)
    assert getattr(sampler, "_constant_liar", None) is True, \
        "TPESampler._constant_liar is gone: archsearch.study._optuna_internals.set_constant_liar needs another way"
    set_constant_liar(sampler, False)
    assert sampler._constant_liar is False


def test_fail_a_trial_through_the_storage(tmp_path) -> None:
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 's.db'}")
    study.ask()  # RUNNING, as a dead worker leaves it
    [running] = study.get_trials(states=(TrialState.RUNNING,))
    assert hasattr(running, "_trial_id") and hasattr(study, "_storage"), \
        "FrozenTrial._trial_id or Study._storage is gone: fail_trial_of_another_process needs another way"
    fail_trial_of_another_process(study, running, {"swept": True})
    [failed] = study.get_trials()
    assert failed.state == TrialState.FAIL and failed.user_attrs == {"swept": True}
    with pytest.raises(RuntimeError):  # finished already: what recovery catches
        fail_trial_of_another_process(study, failed, {"swept": True})


@pytest.mark.slow  # waits 3 s for a heartbeat to go stale
def test_the_heartbeat_sweep_asks_the_storage_for_stale_trials_before_it_fails_them(tmp_path) -> None:
    """``fail_stale_trials`` calls ``BaseHeartbeat._get_stale_trial_ids`` and only then fails the trials: where
    archsearch's StudyStorage marks them as a lost worker's (``swept``), and calls the stale-trial callback after."""
    import time

    from archsearch.study._optuna_internals import fail_stale_trials
    from archsearch.study.storage import make_storage

    called = []
    storage = make_storage(f"sqlite:///{tmp_path / 'hb.db'}", heartbeat_s=1, grace_s=2, stale_attrs={"swept": True},
                           stale_callback=lambda study, trial: called.append(trial.number))
    study = optuna.create_study(storage=storage)
    with pytest.warns(UserWarning, match="Heartbeat"):  # ask() outside optimize(): Optuna says so
        trial = study.ask()
    storage.record_heartbeat(trial._trial_id)
    time.sleep(3)  # older than the grace period: stale
    fail_stale_trials(study)
    [stale] = study.get_trials()
    assert stale.state == TrialState.FAIL, "optuna.storages.fail_stale_trials no longer fails a stale trial"
    assert stale.user_attrs == {"swept": True}, \
        "fail_stale_trials no longer asks BaseHeartbeat._get_stale_trial_ids first: StudyStorage cannot mark the trial"
    assert called == [stale.number]
