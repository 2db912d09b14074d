"""Every trial ends with a verdict: a trial left without one runs once more, and every seed baseline runs.

A verdict is COMPLETE, PRUNED, or FAIL by the trial's own error (an exception, a NaN loss, out of memory).
A trial that ended without one is queued again, once:

- ``interrupted``: Ctrl-C (SIGINT) reached it; Optuna records it as FAIL;
- ``swept``: its worker on this host is gone (killed, or it never claimed the trial it asked for).

- ``swept`` too: its worker on another host stopped beating for ``recovery.grace_s`` (Optuna's heartbeat fails it;
  :func:`stale_trial_callback` queues it).

A searched trial's retry (``retry_of``: the trial it repeats) that again ends without a verdict stays FAIL: a worker
killed twice, and the search samples another. A seed baseline runs again until it has a verdict of its own (the
comparison the study exists for), unless its worker was lost at ``BASELINE_LOSSES`` tries: a candidate that kills
its worker every time (the kernel's out-of-memory killer) rather than a worker killed from outside, which the
summary names.

Each step is idempotent, so that a kill at any moment of a sweep loses nothing: a dead worker's trial is
marked ``swept`` while still RUNNING, then failed (the state change is the claim: one sweeper makes it), and
the sweeper queues the retry in one storage write (``enqueue_trial``). Every start queues a retry for each
trial interrupted, or swept more than 30 s ago (its sweeper died before queuing), that has none yet. The
study's creator enqueues the seed baselines; a start that finds them missing where the creator died (or, on
another host, a minute after the creation) enqueues them. Where racing starts queued one thing twice,
the later trial gives way when it starts (``surplus``, not counted; ``archsearch.search.recovery.gives_way``): an
earlier trial of the same baseline family, or an earlier retry of the same trial, has or will have the
verdict.
"""

from __future__ import annotations

import dataclasses
import datetime
import time

import optuna
from optuna.trial import FrozenTrial, TrialState

from archsearch.config.study_config import StudyConfig
from archsearch.data.bundle import DataBundle
from archsearch.search.reachable import latency_table_of
from archsearch.space import baselines
from archsearch.study._optuna_internals import fail_trial_of_another_process
from archsearch.study.study_record import StudyRecord
from archsearch.study.trial_record import TrialRecord
from archsearch.study.trial_states import has_verdict, may_retry, retried_numbers, worker_losses
from archsearch.study.worker_identity import worker_alive

__all__ = ["baseline_status", "ensure_baselines", "owed_baselines", "queue_retry", "recover", "stale_trial_callback",
           "sweep_dead_workers", "gives_way"]

_UNCLAIMED_S = 30.0  # a RUNNING trial that names no worker after this long lost it inside study.ask()
_CREATOR_RECORD_S = 2.0  # a creator records itself milliseconds after creating the study
_CREATOR_GRACE_S = 60.0  # a creator on another host enqueues the baselines within seconds of creating it


def _why(t: FrozenTrial) -> str | None:
    if t.state != TrialState.FAIL:
        return None
    record = TrialRecord.of(t)
    if record.interrupted:
        return "interrupted"
    if record.swept:
        return "its worker died"
    return None


def recover(study: optuna.Study, *, requeue: bool = True) -> tuple[list[int], list[tuple[FrozenTrial, str]]]:
    """Fail the RUNNING trials of dead workers on this host, then (``requeue``) queue again every trial without
    a verdict that has no retry yet. Returns the numbers failed now and the (trial, why) pairs queued again.
    A finished study is swept without ``requeue``: it has its verdicts, and a retry would wait forever."""
    trials = study.get_trials(deepcopy=False)  # one read: the sweep and the retries both work from it
    failed = []
    now = datetime.datetime.now()
    for t in trials:
        if t.state != TrialState.RUNNING:
            continue
        worker = TrialRecord.of(t).worker
        # a trial names its worker milliseconds after Optuna creates it; one that never did lost its
        # worker inside study.ask(), and neither the heartbeat nor a PID can tell: fail it after a bound
        unclaimed = worker is None and t.datetime_start is not None and (
            (now - t.datetime_start).total_seconds() > _UNCLAIMED_S
        )
        if unclaimed or worker_alive(worker or "") is False:
            try:
                # marked first: a kill between the two writes leaves a RUNNING trial that the next sweep fails
                fail_trial_of_another_process(study, t, TrialRecord(swept=True).attrs())
            except RuntimeError:  # finished meanwhile
                continue
            failed.append(t.number)
    if not requeue:
        return failed, []
    records = {t.number: TrialRecord.of(t) for t in trials}
    retried = {r.retry_of for r in records.values() if r.retry_of is not None}
    queued = []
    for t in trials:
        why = "its worker died" if t.number in failed else _why(t)
        if why is None or t.number in retried or not may_retry(t.number, records):
            continue
        if t.number not in failed and why != "interrupted" and not _stale(t, now):
            continue  # swept by another worker this instant, which queues it itself: not queued twice
        queue_retry(study, t, records[t.number])
        queued.append((t, why))
    return failed, queued


def queue_retry(study: optuna.Study, t: FrozenTrial, record: TrialRecord) -> None:
    """Queue trial ``t`` again: a baseline keeps its family and record; a searched trial's record follows from its
    parameters again."""
    baseline = record.baseline
    retry = TrialRecord(baseline=baseline, arch=None if baseline is None else record.arch, retry_of=t.number)
    study.enqueue_trial(t.params, user_attrs=retry.attrs(), skip_if_exists=False)


def stale_trial_callback(study: optuna.Study, t: FrozenTrial) -> None:
    """Optuna's heartbeat failed ``t`` (its worker stopped beating: another host that died, or lost the network;
    marked ``swept`` just before, see :class:`~archsearch.study._reconnect.StudyStorage`): queue it again by
    the rule of :func:`recover`, in place of Optuna's own retry callback."""
    records = {u.number: TrialRecord.of(u) for u in study.get_trials(deepcopy=False)}
    records[t.number] = dataclasses.replace(records.get(t.number, TrialRecord.of(t)), swept=True)
    if any(r.retry_of == t.number for r in records.values()) or not may_retry(t.number, records):
        return
    queue_retry(study, t, records[t.number])


def _stale(t: FrozenTrial, now: datetime.datetime) -> bool:
    """Failed longer ago than a sweep takes: the worker that swept it died before it queued the retry."""
    return t.datetime_complete is None or (now - t.datetime_complete).total_seconds() > _UNCLAIMED_S


def sweep_dead_workers(study: optuna.Study) -> list[int]:
    """:func:`recover`, returning the numbers of the trials it failed."""
    return recover(study)[0]


def ensure_baselines(study: optuna.Study, config: StudyConfig, data: DataBundle, *,
                     created: bool) -> list[str] | None:
    """Enqueue each of the seed's families, scaled to the widest variant that fits every limit (a latency limit by
    the study's latency table, :func:`archsearch.space.baselines.fit_baseline`), that has no trial yet; record
    why a family did not fit (study attr ``archsearch.baselines_over``).

    The study's creator does it (``created``), then says so (study attr ``archsearch.baselines``). Another
    start does it only where the creator did not and cannot any more: its process on this host is gone, it
    never recorded itself (``archsearch.created_by``, written right after the creation) two seconds on, or,
    for a creator on another host, a minute has passed since the creation. Starts that race there may both
    enqueue a family; the later trial then gives way (:func:`archsearch.search.recovery.gives_way`). Returns the
    families enqueued; None where the creator may still do it (ask again later).
    """
    if not created:
        record = StudyRecord.of(study)
        if record.baselines:
            return []
        if record.created_by is None:  # the creator writes it milliseconds after creating the study
            time.sleep(_CREATOR_RECORD_S)
            record = StudyRecord.of(study)
            if record.baselines:
                return []
        creator = record.created_by
        if creator is not None:
            alive = worker_alive(creator)
            if alive or (alive is None and time.time() - (record.created or 0.0) < _CREATOR_GRACE_S):
                return None
    present = {TrialRecord.of(t).baseline for t in study.get_trials(deepcopy=False)}
    b = config.budget
    limits = b.limits()
    missing = [family for family in baselines.FAMILIES if family not in present]
    # a latency limit: fitted to the study's own table, as the search's candidates are (missing parts measured)
    predict = latency_table_of(config).predict if "latency" in limits and missing else None
    added, over = [], {}
    for family in missing:
        fit = baselines.fit_baseline(family, in_chs=data.in_chs, resolution=data.resolution,
                                     num_classes=data.num_classes, limits=limits, latency=predict,
                                     bytes_per_param=b.bytes_per_param, bytes_per_activation=b.bytes_per_activation)
        if fit.arch is not None:
            study.enqueue_trial({}, user_attrs=TrialRecord(baseline=family, arch=fit.arch.to_dict()).attrs())
            added.append(family)
        else:  # the summary says why (archsearch.search.summary.baseline_words)
            over[family] = {"width": fit.width, "over": fit.over}
    StudyRecord(baselines=True, baselines_over=over).write(study)
    return added


def owed_baselines(trials: list[FrozenTrial]) -> list[str]:
    """The seed baseline families still owed a verdict that a start runs even in a study whose ``n_trials`` are
    done: the last try queued, or ended without a verdict and not given up (a study left so by an archsearch that
    retried a baseline only once)."""
    records = {t.number: TrialRecord.of(t) for t in trials}
    last: dict[str, FrozenTrial] = {}
    for t in sorted(trials, key=lambda t: t.number):
        if (family := records[t.number].baseline) is not None:
            last[family] = t
    out = []
    for family, why in baseline_status(trials).items():
        final = last.get(family)
        if why is None or final is None:
            continue
        if final.state == TrialState.WAITING or _why(final) is not None and may_retry(final.number, records):
            out.append(family)
    return out


def baseline_status(trials: list[FrozenTrial]) -> dict[str, str | None]:
    """Per baseline family in the study: None where it has a verdict, else what happened to it."""
    out: dict[str, str | None] = {}
    repeats = retried_numbers(trials)
    records = {t.number: TrialRecord.of(t) for t in trials}
    for t in sorted(trials, key=lambda t: t.number):
        family = TrialRecord.of(t).baseline
        if family is None or out.get(family, "") is None or t.number in repeats and t.state == TrialState.FAIL:
            continue
        if has_verdict(t):
            out[family] = None
        elif t.state in (TrialState.WAITING, TrialState.RUNNING):
            out[family] = f"trial {t.number} {t.state.name.lower()}"
        else:
            record = TrialRecord.of(t)
            why = _why(t) or ("gave way" if record.surplus else "failed")
            if record.swept and not may_retry(t.number, records):
                why = (f"its worker died at each of {worker_losses(t.number, records)} tries: given up, as a "
                       "candidate that kills its worker (out of memory?)")
            out[family] = f"trial {t.number} {why}"
    return out


def gives_way(trial: optuna.Trial) -> int | None:
    """For a queued baseline or retry: an earlier trial that has or will have the verdict this one would
    repeat (a trial of the same baseline family, or a retry of the same trial, queued, running or finished),
    or None."""
    queued = TrialRecord.of(trial)
    family, repeats_of = queued.baseline, queued.retry_of
    trials = trial.study.get_trials(deepcopy=False)
    repeated = retried_numbers(trials)  # a retry (ours or the heartbeat's) repeats a trial that has no verdict
    for t in trials:
        if t.number >= trial.number or not (t.state in (TrialState.WAITING, TrialState.RUNNING) or has_verdict(t)):
            continue
        record = TrialRecord.of(t)
        if repeats_of is not None and record.retry_of == repeats_of:
            return t.number
        if family is not None and record.baseline == family and t.number not in repeated:
            return t.number
    return None
