"""What became of a study's trials: which count towards ``n_trials``, which have a verdict, which another trial
repeats and which may run again, and the failed ones in words."""

from __future__ import annotations

from collections import Counter

import optuna
from optuna.trial import FrozenTrial, TrialState

from archsearch.study.trial_record import TrialRecord

__all__ = ["COUNTED_STATES", "counts", "has_verdict", "retried_numbers", "finished_count", "infeasible_count",
           "BASELINE_LOSSES", "may_retry", "worker_losses", "failed_note", "fates", "ON_RESUME"]


#: the states of a finished trial; of them, :func:`counts` tells what ``n_trials`` counts
COUNTED_STATES = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)


def counts(t: FrozenTrial) -> bool:
    """Whether a trial uses up ``n_trials``: a network trained (complete or pruned), or running.

    An over-budget candidate is recorded COMPLETE with ``feasible`` False and never trained: it does not count
    (the search caps how many it tries, :mod:`archsearch.search._run_loop`).
    """
    return (t.state in (*COUNTED_STATES, TrialState.RUNNING)) and not TrialRecord.of(t).infeasible


def has_verdict(t: FrozenTrial) -> bool:
    """COMPLETE, PRUNED, or FAIL by the trial's own error (not interrupted, swept, or given way)."""
    if t.state in (TrialState.COMPLETE, TrialState.PRUNED):
        return True
    return t.state == TrialState.FAIL and not TrialRecord.of(t).ended_without_verdict


def retried_numbers(trials: list[FrozenTrial]) -> set[int]:
    """Numbers of the trials that another one repeats: ours (``retry_of``) and the heartbeat callback's."""
    out = set()
    for t in trials:
        if (repeats := TrialRecord.of(t).retry_of) is not None:
            out.add(repeats)
        out.update(t.system_attrs.get("retry_history", ()))
    return out


# what became of a trial that ended without a verdict (interrupted, or its worker lost), in the order said
_RUN_AGAIN = "run again since"
_RUNNING_AGAIN = "running again"


_QUEUED_AGAIN = "queued to run again"
ON_RESUME = "to run again on resume"


_NOT_AGAIN = "not run again"
_FATES = (_RUN_AGAIN, _RUNNING_AGAIN, _QUEUED_AGAIN, ON_RESUME, _NOT_AGAIN)


def finished_count(study: optuna.Study) -> int:
    """Networks trained, to the end or until pruned: what ``n_trials`` counts (over-budget candidates do not)."""
    return sum(1 for t in study.get_trials(deepcopy=False, states=COUNTED_STATES) if counts(t))


def infeasible_count(study: optuna.Study) -> int:
    """Candidates over the budget: recorded, never trained, not counted in ``n_trials``."""
    return sum(1 for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if not counts(t))


def failed_note(trials: list[FrozenTrial]) -> str:
    """The failed trials in words, apart by why: ``N failed`` by their own error (said even where none did); then,
    where there are any, those that Ctrl-C reached and those whose worker was lost, with what became of them
    (``2 interrupted (1 run again since, 1 to run again on resume)``), and those that gave way to other workers."""
    records = {t.number: TrialRecord.of(t) for t in trials}
    fated = fates(trials, records)
    failed = sum(t.state == TrialState.FAIL and not records[t.number].ended_without_verdict for t in trials)
    gave_way = sum(t.state == TrialState.FAIL and t.number not in fated and bool(records[t.number].surplus)
                   for t in trials)
    parts = [f"{failed} failed"]
    for cause in ("interrupted", "lost"):
        counted = Counter(fate for why, fate in fated.values() if why == cause)
        if not (n := counted.total()):
            continue
        what = "interrupted" if cause == "interrupted" else f"lost {'its' if n == 1 else 'their'} worker"
        # "run again since" where all fared alike, else "1 run again since, 1 to run again on resume"
        fared = [f if len(counted) == 1 else f"{counted[f]} {f}" for f in _FATES if counted[f]]
        parts.append(f"{n} {what} ({', '.join(fared)})")
    if gave_way:
        parts.append(f"{gave_way} gave way to other workers")
    return ", ".join(parts)


def fates(trials: list[FrozenTrial], records: dict[int, TrialRecord]) -> dict[int, tuple[str, str]]:
    """Per failed trial that Ctrl-C reached ("interrupted") or whose worker was lost ("lost"), as
    :mod:`archsearch.search.recovery` tells them, that and what became of it: its retry's state, or whether the next
    start queues one (:func:`archsearch.search.recovery.recover`)."""
    retry: dict[int, FrozenTrial] = {}
    for t in sorted(trials, key=lambda t: t.number):
        if (of := records[t.number].retry_of) is not None:
            retry.setdefault(of, t)  # the first: a later retry of the same trial gives way to it
    repeated = retried_numbers(trials)
    out = {}
    for t in trials:
        record = records[t.number]
        if t.state != TrialState.FAIL or not (record.interrupted or record.swept):
            continue
        if t.number in retry:
            fate = {TrialState.WAITING: _QUEUED_AGAIN, TrialState.RUNNING: _RUNNING_AGAIN}.get(
                retry[t.number].state, _RUN_AGAIN)
        elif t.number in repeated:  # by Optuna's own retry (an older study's heartbeat)
            fate = _RUN_AGAIN
        else:
            fate = ON_RESUME if may_retry(t.number, records) else _NOT_AGAIN
        out[t.number] = ("interrupted" if record.interrupted else "lost", fate)
    return out


BASELINE_LOSSES = 4  # a seed baseline whose worker was lost at this many tries is given up (it kills its worker)


def may_retry(number: int, records: dict[int, TrialRecord]) -> bool:
    """A searched trial is run again once (a retry's retry is a worker killed twice: the search samples another);
    a seed baseline until it has a verdict of its own, unless its worker was lost at each of its last
    ``BASELINE_LOSSES`` tries (a candidate that kills its worker, not a worker killed from outside)."""
    record = records[number]
    if record.baseline is None:
        return record.retry_of is None
    return worker_losses(number, records) < BASELINE_LOSSES


def worker_losses(number: int, records: dict[int, TrialRecord]) -> int:
    """How many tries of the candidate, up to and including trial ``number``, lost their worker (Ctrl-C not
    counted: an interrupt is the user's, not the candidate's)."""
    losses, seen = 0, set()
    at: int | None = number
    while at is not None and at in records and at not in seen:
        seen.add(at)
        losses += bool(records[at].swept)
        at = records[at].retry_of
    return losses
