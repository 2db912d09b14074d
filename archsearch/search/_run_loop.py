"""A run's trial loop: ``study.optimize`` in rounds until the study holds ``n_trials`` networks trained (counted
across workers), with the callbacks that report each trial and stop at the target, and the rules that end a run
early: its timeout, too many failed trials, too many candidates over the budget. Why a run ends early is said once
for the search, however many workers run it (:func:`archsearch.search.parallel.first_to_say`)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import NamedTuple

import optuna
from optuna.trial import FrozenTrial, TrialState

from archsearch.config.study_config import StudyConfig
from archsearch.core import interrupt
from archsearch.data.bundle import DataBundle
from archsearch.search._progress import StudyBar
from archsearch.search.objective import Objective
from archsearch.search.parallel import first_to_say
from archsearch.search.recovery import ensure_baselines, sweep_dead_workers
from archsearch.search.summary import trial_line
from archsearch.study._optuna_internals import fail_stale_trials
from archsearch.study.trial_record import TrialRecord
from archsearch.study.trial_states import COUNTED_STATES, counts

__all__ = ["RunLoop", "infeasible_cap"]

_WAIT_S = 0.5  # poll interval of a worker waiting for others' last trials
# over-budget candidates cost no training and do not count toward n_trials; so that a space that rarely fits
# cannot sample forever, a run stops after this many of them per network it is to train (at least the minimum)
INFEASIBLE_PER_TRIAL = 10
INFEASIBLE_MIN = 50


def infeasible_cap(target: int) -> int:
    """How many over-budget candidates one run tries before it stops, for ``target`` networks to train."""
    return max(INFEASIBLE_MIN, INFEASIBLE_PER_TRIAL * target)


class _Counts(NamedTuple):
    done: int  # networks trained: what n_trials counts
    taken: int  # done, or running in any worker
    failed: int  # failed by their own error (not interrupted, swept, or given way to another worker)
    infeasible: int  # over the budget: never trained, not counted


def _counts(study: optuna.Study) -> _Counts:
    """The run loop's figures, from one read of the study."""
    done = taken = failed = infeasible = 0
    for t in study.get_trials(deepcopy=False):
        if t.state == TrialState.FAIL:
            failed += not TrialRecord.of(t).ended_without_verdict
        elif counts(t):
            taken += 1
            done += t.state in COUNTED_STATES
        elif t.state == TrialState.COMPLETE:
            infeasible += 1
    return _Counts(done, taken, failed, infeasible)


class _Stop(NamedTuple):
    rule: str  # which rule stopped the run: what the workers of a search say once
    message: str
    by_failures: bool


class RunLoop:
    """One run's trials, from the figures of the study as the loop is made (what "in this run" counts from).

    ``say`` prints a line (above the progress ``bar``, if any); ``prefix`` names the worker on its own lines.
    ``baselines_due``: the baselines are not known to be queued yet (asked again after each trial).
    """

    def __init__(self, study: optuna.Study, config: StudyConfig, data: DataBundle, objective: Objective, *,
                 target: int, timeout: float | None, max_infeasible: int | None, say: Callable[[str], None],
                 bar: StudyBar | None, prefix: str, baselines_due: bool):
        self.study, self.config, self.data, self.objective = study, config, data, objective
        self.target, self.timeout = target, timeout
        self.say, self.bar, self.prefix = say, bar, prefix
        self.baselines_due = baselines_due
        self.start = time.monotonic()
        self.max_failures = max(10, target)  # guard against a space whose every trial fails
        self.infeasible_limit = infeasible_cap(target) if max_infeasible is None else max_infeasible
        self.at_start = _counts(study)
        self.told: int | None = None  # the last trial whose result this worker told the study

    def run(self) -> bool:
        """Run trials until the study holds ``target`` networks trained, or a stopping rule ends the run; returns
        whether too many failed trials stopped it."""
        while (now := _counts(self.study)).done < self.target:
            left = None if self.timeout is None else self.timeout - (time.monotonic() - self.start)
            stop = self._stop(now, left)
            if stop is not None:
                if first_to_say(stop.rule):  # every worker meets the rule: one says why the search stops
                    self.say(stop.message)
                return stop.by_failures
            if now.taken >= self.target:
                self._wait_for_others()
                continue
            self._optimize(n_trials=self.target - now.taken, timeout=left)
        return False

    def _stop(self, now: _Counts, left: float | None) -> _Stop | None:
        """Why the run stops before the study holds ``target`` networks trained, or None."""
        done, target = now.done, self.target
        if left is not None and left <= 0:
            return _Stop("timeout", f"timeout of {self.timeout:g}s reached with {done}/{target} networks trained",
                         False)
        if (fails := now.failed - self.at_start.failed) >= self.max_failures:
            return _Stop("failures", f"stopping: {fails} trials failed in this run (see the trial lines for the "
                                     f"errors)", True)
        if (over := now.infeasible - self.at_start.infeasible) >= self.infeasible_limit:
            return _Stop(
                "infeasible",
                f"stopping: {over} candidates in this run were over the budget (the cap, --max-infeasible), "
                f"{done} of {target} networks trained; the budget leaves little of the space: raise it, or "
                f"narrow the space (`archsearch space {self.config.source or 'STUDY'}` shows how much fits)", False)
        return None

    def _wait_for_others(self) -> None:
        # the last trials run in other workers: wait for them to finish (or fail, then take over); a worker on
        # another host that died is told by its heartbeat, which Optuna checks only as a trial starts
        time.sleep(_WAIT_S)
        interrupt.check()
        sweep_dead_workers(self.study)
        fail_stale_trials(self.study)

    def _optimize(self, *, n_trials: int, timeout: float | None) -> None:
        try:
            self.study.optimize(
                self.objective,
                n_trials=n_trials,
                timeout=timeout,
                catch=(Exception,),
                callbacks=[self._on_trial, self._stop_when_taken, interrupt.check],
                gc_after_trial=False,
            )
        except ValueError as e:
            # the trial was finished elsewhere while this worker ran it: another worker took the same
            # queued trial (a storage whose state changes are not atomic; SQLite's are, see
            # study/storage.py: _use_wal), or a heartbeat sweep failed it as stale. Optuna cannot record this
            # result (it refuses to tell a finished trial); the stored one stands: go on instead of ending this worker.
            if not self._finished_elsewhere():
                raise
            self.say(f"{self.prefix}a trial this worker ran was finished by another worker meanwhile ({e}); going on")

    def _finished_elsewhere(self) -> bool:
        """Whether the trial this worker ran last is finished in the storage though this worker never told its
        result (the trial callbacks run only after a told result)."""
        number = self.objective.last_trial
        if number is None or number == self.told:
            return False
        trial = self.study.get_trials(deepcopy=False)[number]
        return trial.state.is_finished()

    # -- study.optimize's callbacks, after each trial --------------------------------------------------

    def _on_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self.told = trial.number
        if TrialRecord.of(trial).surplus:
            return  # gave way to another worker's trial: nothing to report
        self.say(self.prefix + trial_line(trial))
        if self.bar is not None:
            self.bar.refresh(force=True)

    def _stop_when_taken(self, study: optuna.Study, trial: FrozenTrial) -> None:
        if self.baselines_due:  # too early at the start to tell whether the creator enqueues them: asked again
            self.baselines_due = ensure_baselines(study, self.config, self.data, created=False) is None
        # a read between trials (outside any trial's time): other workers' trials started since count too
        now = _counts(study)
        if now.taken >= self.target or now.infeasible - self.at_start.infeasible >= self.infeasible_limit:
            study.stop()
