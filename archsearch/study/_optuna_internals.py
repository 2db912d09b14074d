"""The private parts of Optuna that archsearch leans on, each behind one function here.

Optuna 5.x has no public way to do these three things; tests/study/test_optuna_internals.py checks each against the
installed Optuna and fails with the name of what changed, so an upgrade that moves them is caught at once.

- the study's per-trial snapshot of its trials (``Study._get_trials(use_cache=True)``), which its samplers share:
  reading it again costs nothing, where ``get_trials`` is a round of SQL queries (:mod:`archsearch.search.samplers`);
- TPE's constant liar switched per trial (``TPESampler._constant_liar``): on only while other trials run;
- a trial of another (dead) process finished from outside it (``study._storage`` by ``FrozenTrial._trial_id``):
  the worker that owns it is gone, so no ``Trial`` object can do it (:mod:`archsearch.search.recovery`);
- the heartbeat's sweep (``optuna.storages.fail_stale_trials``, experimental), which asks the storage for the stale
  trials (``BaseHeartbeat._get_stale_trial_ids``) before it fails them: where
  :class:`~archsearch.study._reconnect.StudyStorage` marks them as a lost worker's.
"""

from __future__ import annotations

import warnings
from collections.abc import Container
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

__all__ = ["cached_trials", "set_constant_liar", "fail_trial_of_another_process", "fail_stale_trials"]


def cached_trials(study: optuna.Study, states: Container[TrialState]) -> list[FrozenTrial]:
    """The study's trials in ``states`` from Optuna's per-trial snapshot (read at the first call after ``ask``,
    dropped by ``ask`` and ``tell``); not copies: do not modify."""
    return study._get_trials(deepcopy=False, states=states, use_cache=True)


def set_constant_liar(sampler: optuna.samplers.TPESampler, on: bool) -> None:
    """Turn TPE's constant liar on or off for the trial about to be sampled."""
    sampler._constant_liar = on


def fail_trial_of_another_process(study: optuna.Study, trial: FrozenTrial, attrs: dict[str, Any]) -> None:
    """Write ``attrs`` to ``trial`` and then mark it FAIL, in that order (a kill between the two leaves a RUNNING
    trial with the attributes, which the next sweep fails). Raises RuntimeError if the trial finished meanwhile."""
    for key, value in attrs.items():
        study._storage.set_trial_user_attr(trial._trial_id, key, value)
    study._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)


def fail_stale_trials(study: optuna.Study) -> None:
    """Fail the study's trials whose heartbeat is older than the storage's grace period, and call the storage's
    stale-trial callback on each (what ``study.optimize`` does before each trial; nothing without heartbeats)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)
