"""A persistent, resumable search: create or resume the study, run it to ``n_trials``, summarise it."""

from __future__ import annotations

import gc
import os
import sys
from collections.abc import Callable
from dataclasses import replace
from typing import IO

import numpy as np
import optuna
import torch
from optuna.trial import FrozenTrial

from archsearch.config.assemble import load_config_data, print_notes
from archsearch.config.study_config import StudyConfig, load_study_config
from archsearch.core import interrupt
from archsearch.core.errors import ConfigError, StorageFailed
from archsearch.core.threads import default_threads, set_threads
from archsearch.data.bundle import DataBundle
from archsearch.search import rerank
from archsearch.search._progress import StudyBar
from archsearch.search._run_loop import RunLoop
from archsearch.search.objective import Objective
from archsearch.search.parallel import Workers, WorkersFailed
from archsearch.search.reachable import check_budget_reachable
from archsearch.search.recovery import ensure_baselines, owed_baselines, recover, stale_trial_callback
from archsearch.search.samplers import make_pruner, make_sampler
from archsearch.search.summary import left_to_run, start_line, summary
from archsearch.space.search_space import Space
from archsearch.study import open as study_open
from archsearch.study._data_identity import check_data_identity
from archsearch.study.trial_record import TrialRecord
from archsearch.study.trial_states import finished_count
from archsearch.training.optimizer import make_optimizer
from archsearch.training.train import TrainResult, resolve_device, train

__all__ = ["run", "run_workers", "open_study"]

_INTERRUPT_GRACE_S = 30.0  # after a Ctrl-C, how long run_workers waits for its workers to stop on their own


def open_study(config: StudyConfig, *, create: bool = True) -> optuna.Study:
    """Create the study, or load it and check that it was made with a comparable config: with the search's
    sampler and pruner, and a lost worker's trial queued again as :mod:`archsearch.search.recovery` says."""
    return _open_study(config, create=create)[0]


def _open_study(config: StudyConfig, *, create: bool) -> tuple[optuna.Study, bool]:
    """The study and whether this call created it."""
    return study_open.create_or_load(
        config, create=create, sampler=make_sampler(config.sampler, multi_objective=config.objective.multi_objective),
        pruner=make_pruner(config.pruner), stale_callback=stale_trial_callback)


def _reseed(study: optuna.Study, config: StudyConfig, worker_index: int) -> None:
    """Seed the sampler from (seed, trials so far, worker): a resumed study or a second worker would
    otherwise replay the first proposals of the same seed. Reproducible for the same sequence of calls."""
    if config.sampler.seed is None:
        return
    entropy = [config.sampler.seed, len(study.get_trials(deepcopy=False)), worker_index]
    seed = int(np.random.SeedSequence(entropy).generate_state(1)[0])
    study.sampler = make_sampler(replace(config.sampler, seed=seed), multi_objective=config.objective.multi_objective)


def run(
    config: StudyConfig | str | os.PathLike,
    *,
    n_trials: int | None = None,
    timeout: float | None = None,
    stream: IO[str] | None = sys.stdout,
    progress: bool = True,
    trainer: Callable[..., TrainResult] = train,
    summarize: bool = True,
    worker_index: int = 0,
    max_infeasible: int | None = None,
    threads: int | None = None,
    accept_data_change: bool = False,
) -> optuna.Study:
    """Run the study until it holds ``n_trials`` networks trained (complete or pruned) in total.

    Counted across restarts and workers, not per call; a trial that fails (an exception, a killed worker) is
    recorded as failed and does not count, nor does a candidate over the budget (never trained; a run stops
    after ``max_infeasible`` of them, default :func:`archsearch.search._run_loop.infeasible_cap`). Returns the
    study. A Ctrl-C stops the run at the next safe point, never inside a storage write
    (archsearch/core/interrupt.py); the interrupted trial runs again on the next start. ``threads``: torch's
    threads meanwhile (default: one, :mod:`archsearch.core.threads`). ``accept_data_change``: go on where the
    study's data changed since it was made (:mod:`archsearch.study._data_identity`), else that is refused.
    """
    before = set_threads(default_threads() if threads is None else threads)
    try:
        with interrupt.deferred():
            return _run(config, n_trials=n_trials, timeout=timeout, stream=stream, progress=progress,
                        trainer=trainer, summarize=summarize, worker_index=worker_index,
                        max_infeasible=max_infeasible, accept_data_change=accept_data_change)
    finally:
        set_threads(before)


def _run(
    config: StudyConfig | str | os.PathLike,
    *,
    n_trials: int | None,
    timeout: float | None,
    stream: IO[str] | None,
    progress: bool,
    trainer: Callable[..., TrainResult],
    summarize: bool,
    worker_index: int,
    max_infeasible: int | None,
    accept_data_change: bool,
) -> optuna.Study:
    if not isinstance(config, StudyConfig):
        config = load_study_config(config)
    target = config.n_trials if n_trials is None else n_trials
    timeout = config.timeout if timeout is None else timeout
    prefix = f"[w{worker_index}] " if worker_index else ""
    space, data, device = _load_checked(config)
    # trial failures are reported on our own trial lines; Optuna would add a traceback for each
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study, created = _open_study(config, create=True)
    check_data_identity(study, config, data, accept_change=accept_data_change)
    done = 0 if created else finished_count(study)
    left = None if created else left_to_run(study, config, done, target)
    if stream is not None and not worker_index:  # workers: run_workers says it once
        print(start_line(config, created, done, target, left=left), file=stream, flush=True)
        print_notes(data, stream, config.training if done < target else None)  # the recipe: where it trains
    if done >= target and left is None:
        recover(study, requeue=False)  # a dead worker's trial beyond the target: failed, not run again
        return study  # nothing to do: the line above says so, `archsearch report` shows the results
    if done >= target:  # a baseline owed its verdict runs beyond n_trials (a study left so by an older archsearch)
        target = done + len(owed_baselines(study.get_trials(deepcopy=False)))
    _reseed(study, config, worker_index)
    swept, queued, baselines_due = _recover(study, config, data, created=created)
    bar = StudyBar(study, target, config.training.epochs, name=config.name) if progress and stream else None
    if bar is not None:
        trainer = bar.watch(trainer)  # redrawn after each epoch: a long trial shows where it is
    objective = Objective(config, space, data, device=device, trainer=trainer, target=target)
    say = _printer(stream, bar)
    _say_recovered(say, prefix, swept, queued)
    loop = RunLoop(study, config, data, objective, target=target, timeout=timeout, max_infeasible=max_infeasible,
                   say=say, bar=bar, prefix=prefix, baselines_due=baselines_due)
    _trials_then_rerank(loop, bar, say=lambda text: say(prefix + text))
    if summarize:
        say(summary(study, config) + _skipped_line(data))
    return study


def _skipped_line(data: DataBundle) -> str:
    """The summary's last line where ``bad_files: skip`` left image files out (they were named at the start)."""
    n = len(data.skipped_files)
    return f"\n{n} unreadable image file(s) left out (dataset.bad_files: skip; named when the search started)" if n \
        else ""


def _load_checked(config: StudyConfig) -> tuple[Space, DataBundle, torch.device]:
    """The space, and the data on the config's device; refused where the budget leaves nothing of the space."""
    space, data = load_config_data(config)
    check_budget_reachable(config, space, data)
    device = resolve_device(config.device)
    data = data.to(device)
    # the first optimizer of a process imports torch's compiler stack (seconds): pay it before the trials
    make_optimizer(torch.nn.Linear(1, 1), config.training, device)
    return space, data, device


def _recover(study: optuna.Study, config: StudyConfig, data: DataBundle, *,
             created: bool) -> tuple[list[int], list[tuple[FrozenTrial, str]], bool]:
    """:func:`recover` (dead workers' trials failed, trials without a verdict queued again), then the baselines
    queued; returns what was failed, what was queued again, and whether the baselines are still due."""
    swept, queued = recover(study)
    # the baselines: enqueued by the creator; by another start where the creator died before it did
    baselines_due = config.enqueue_baselines and ensure_baselines(study, config, data, created=created) is None
    return swept, queued, baselines_due


def _trials_then_rerank(loop: RunLoop, bar: StudyBar | None, *, say: Callable[[str], None]) -> None:
    """The run's trials, then (unless too many of them failed) the re-rank of the best; the bar closed after."""
    frozen = _freeze_long_lived()
    try:
        stopped_by_failures = loop.run()
        if loop.config.rerank is not None and not stopped_by_failures:
            rerank.rerank(loop.study, loop.config, loop.objective, say=say)
    finally:
        if frozen:
            gc.unfreeze()
        if bar is not None:
            bar.close()


def _printer(stream: IO[str] | None, bar: StudyBar | None) -> Callable[[str], None]:
    """Print a run's line: above the progress bar if there is one, to ``stream`` (None: nowhere)."""
    def say(text: str) -> None:
        if stream is not None:
            (bar.write(text, stream) if bar is not None else print(text, file=stream, flush=True))

    return say


def _say_recovered(say: Callable[[str], None], prefix: str, swept: list[int],
                   queued: list[tuple[FrozenTrial, str]]) -> None:
    """What :func:`recover` did: dead workers' trials failed, trials without a verdict queued again."""
    if swept:
        say(f"{prefix}failed {len(swept)} trial(s) left RUNNING by a dead worker: {swept}")
    for t, why in queued:
        record = TrialRecord.of(t)
        what = f"{record.baseline} baseline" if record.baseline is not None else record.arch_id or "not yet sampled"
        say(f"{prefix}queued again: trial {t.number} ({what}), {why}")


def _freeze_long_lived() -> bool:
    """Exempt what exists before the trials (torch and its compiler stack, Optuna, the data) from collection.

    After the optimizer warm-up the process tracks about 290,000 objects, and the first trial's
    allocations set off a full collection that walks them all (140-210 ms here; docs/design.md, "Measured
    figures"). Frozen (``gc.freeze``, no collection first) they are skipped; what the trials create is
    collected as before. Returns whether this call froze (False where objects were frozen already: not ours to
    thaw).
    """
    if gc.get_freeze_count():
        return False
    gc.freeze()
    return True


def _worker(config: StudyConfig, index: int, threads: int, n_trials: int | None, timeout: float | None,
            max_infeasible: int | None) -> None:
    set_threads(threads)
    run(config, n_trials=n_trials, timeout=timeout, progress=False, summarize=False, worker_index=index + 1,
        threads=threads, max_infeasible=max_infeasible)


def run_workers(
    config: StudyConfig | str | os.PathLike,
    workers: int,
    *,
    n_trials: int | None = None,
    timeout: float | None = None,
    stream: IO[str] | None = sys.stdout,
    threads: int | None = None,
    max_infeasible: int | None = None,
    progress: bool = False,
    accept_data_change: bool = False,
) -> optuna.Study:
    """``workers`` processes on one study, ``threads`` torch threads each (default: one); prints one summary.

    The study total holds across them: a worker starts a trial only while fewer than ``n_trials`` are
    trained or running, and one that lost a race for the last places gives way (see
    ``Objective.is_surplus``), so the study ends with exactly ``n_trials`` networks trained. A Ctrl-C stops
    every worker at its next safe point (:class:`archsearch.search.parallel.Workers`). ``progress``: a bar on stderr
    that reads the study (trained of total, best score, over-budget count, running trials' epochs).
    ``accept_data_change``: as :func:`run`'s (checked here, before the workers start: they find the data stored).
    """
    with interrupt.deferred():
        if not isinstance(config, StudyConfig):
            config = load_study_config(config)
        # fail fast, once, on what every worker would refuse (bad data, unreachable budget, changed config)
        space, data = load_config_data(config)
        check_budget_reachable(config, space, data)
        study, created = _open_study(config, create=True)
        check_data_identity(study, config, data, accept_change=accept_data_change)
        target = config.n_trials if n_trials is None else n_trials
        if stream is not None:
            done = 0 if created else finished_count(study)
            left = None if created else left_to_run(study, config, done, target)
            line = start_line(config, created, done, target, left=left)
            print(f"{line} ({workers} workers)", file=stream, flush=True)
            print_notes(data, stream, config.training if done < target else None)
        if config.enqueue_baselines:  # here, before the workers start
            ensure_baselines(study, config, data, created=created)
        interrupt.check()
        threads = default_threads() if threads is None else threads
        procs = Workers(_worker, [(config, i, threads, n_trials, timeout, max_infeasible) for i in range(workers)],
                        grace=_INTERRUPT_GRACE_S)
        bar = StudyBar(study, target, config.training.epochs, name=config.name) if progress else None
        try:
            procs.join(every=None if bar is None else bar.refresh)
        finally:
            if bar is not None:
                bar.close()
    failed = procs.failed()
    try:
        study = open_study(config, create=False)
        if stream is not None:
            print(summary(study, config) + _skipped_line(data), file=stream, flush=True)
    except (ConfigError, StorageFailed):
        if not failed:
            raise
        # the workers died of it (the database went away): theirs is the one line to say
    if failed:
        # the others may have finished the study, but a script must not take a dead worker for a good run
        how = ", ".join(f"worker {i + 1} {'killed by signal ' + str(-code) if code < 0 else 'exit code ' + str(code)}"
                        for i, code in failed)
        raise WorkersFailed(f"{len(failed)} of {workers} worker process(es) died ({how}); what they finished is "
                            f"stored and the same command resumes (a dead worker's trial runs again)")
    return study
