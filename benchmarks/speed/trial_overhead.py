"""Where a search's wall time goes: forward/backward/evaluation versus everything else.

Runs the real quickstart study (studies/quickstart.yaml: 8x8 digits, median pruner, seed baselines) on a
temporary SQLite storage and prints figures; asserts nothing. "Compute" is the time inside training steps and
validation passes as ``archsearch.training.train.train`` measures it (``TrainResult.compute_seconds``, the trial's
``compute_seconds`` attr); everything else is overhead: sampling, storage, costing, building the model, trainer
setup, pruning checks, callbacks.

How it measures, without changing what runs: the trainer is passed through ``run(trainer=...)`` wrapped to
timestamp its calls and epoch callbacks (a pruned trial never returns a TrainResult, so its compute is
estimated as the time from the call, or the previous epoch callback, to the next callback: an upper bound).
Storage, sampler, pruner and archsearch functions are wrapped in timers that add up *exclusive* time (a
function's time less that of timed functions it calls), on the main thread only.

The headline figure: of the trained trials' wall time (completed or pruned; Optuna's start to complete),
the share outside compute, summed over them. Printed beside it: every trained trial's own share and their
median (a fixed cost of ~50 ms a trial, mostly Optuna's storage writes, weighs most on the shortest pruned
trials), and the share of the whole search, which counts infeasible trials (nothing trained: all overhead)
and the time between trials. ``--repeats`` runs the search several times and prints each figure per run.

    python -m benchmarks.speed.trial_overhead [--n-trials N] [--storage sqlite|journal] [--threads 1]
                                        [--repeats 1] [--config studies/quickstart.yaml]
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import statistics
import tempfile
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
import torch
from optuna.trial import FrozenTrial, TrialState

import archsearch.search.objective
import archsearch.search.study
from archsearch.config.study_config import load_study_config
from archsearch.training.train import TrainResult, train
from benchmarks.common import ROOT

# -- timers ---------------------------------------------------------------------------------------------------


class Timers:
    """Exclusive wall time per label, for calls made on the main thread."""

    def __init__(self) -> None:
        self.seconds: dict[str, list[float]] = defaultdict(list)  # label -> exclusive time of each call
        self._stack: list[float] = []  # per open call: time spent in timed callees
        self._main = threading.main_thread().ident

    def wrap(self, owner: Any, name: str, label: str) -> None:
        fn = getattr(owner, name)

        @functools.wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> Any:
            if threading.get_ident() != self._main:  # the heartbeat thread
                return fn(*args, **kwargs)
            t = time.perf_counter()
            self._stack.append(0.0)
            try:
                return fn(*args, **kwargs)
            finally:
                elapsed = time.perf_counter() - t
                self.seconds[label].append(elapsed - self._stack.pop())
                if self._stack:
                    self._stack[-1] += elapsed

        setattr(owner, name, timed)

    def total(self, label: str) -> float:
        return sum(self.seconds.get(label, ()))


# the RDBStorage methods that Optuna's _CachedStorage (in front of every RDB storage) calls
STORAGE_WRITES = ("_create_new_trial", "_set_trial_param", "set_trial_user_attr", "set_trial_system_attr",
                  "set_trial_intermediate_value", "set_trial_state_values", "set_study_user_attr",
                  "set_study_system_attr", "record_heartbeat")
STORAGE_READS = ("_get_trials", "get_trial", "_get_best_trial_id", "_get_stale_trial_ids", "get_study_user_attrs",
                 "get_study_system_attrs", "get_study_directions", "get_study_id_from_name",
                 "get_trial_id_from_study_id_trial_number")


JOURNAL_WRITES = ("create_new_trial", "set_trial_param", "set_trial_user_attr", "set_trial_system_attr",
                  "set_trial_intermediate_value", "set_trial_state_values", "set_study_user_attr",
                  "set_study_system_attr")
JOURNAL_READS = ("get_all_trials", "get_trial", "get_study_user_attrs", "get_study_system_attrs",
                 "get_study_directions", "get_study_id_from_name", "get_trial_id_from_study_id_trial_number")


def instrument(timers: Timers) -> None:
    for cls, writes, reads in ((optuna.storages.RDBStorage, STORAGE_WRITES, STORAGE_READS),
                               (optuna.storages.JournalStorage, JOURNAL_WRITES, JOURNAL_READS)):
        for name in writes:
            timers.wrap(cls, name, "storage writes")
        for name in reads:
            timers.wrap(cls, name, "storage reads")
    for name in ("sample_relative", "sample_independent", "infer_relative_search_space", "before_trial",
                 "after_trial"):
        timers.wrap(optuna.samplers.TPESampler, name, "sampler (TPE)")
    timers.wrap(optuna.pruners.MedianPruner, "prune", "pruner")
    timers.wrap(archsearch.search.objective, "arch_cost", "arch_cost")
    timers.wrap(archsearch.search.objective, "build", "build")
    timers.wrap(archsearch.search.objective, "suggest_architecture", "suggest_architecture")
    timers.wrap(archsearch.search.objective, "suggest_shape", "suggest_shape")
    timers.wrap(archsearch.search.objective, "fit_shape", "budget fitting")
    timers.wrap(archsearch.search.study, "load_config_data", "startup: data loading")
    timers.wrap(archsearch.search.study, "check_budget_reachable", "startup: budget check")
    timers.wrap(archsearch.search.study, "summary", "summary")


# -- the trainer, timestamped ---------------------------------------------------------------------------------


@dataclass
class Call:
    """One trainer call, timestamped with time.time() (the clock of Optuna's datetime_start/complete)."""

    start: float
    end: float = 0.0
    compute: float = 0.0
    exact: bool = True  # False: pruned or failed, compute estimated from the epoch callbacks
    hook_seconds: float = 0.0  # inside on_epoch: trial.report + should_prune
    hooks: list[tuple[float, float]] = field(default_factory=list)


class TimedTrainer:
    """``archsearch.training.train.train`` with its calls and epoch callbacks timestamped."""

    def __init__(self, timers: Timers) -> None:
        self.calls: list[Call] = []
        self.timed_train = train
        timers.wrap(self, "timed_train", "train()")

    def __call__(self, *args: Any, on_epoch=None, **kwargs: Any) -> TrainResult:
        call = Call(start=time.time())
        self.calls.append(call)

        def hook(epoch: int, accuracy: float) -> None:
            t = time.time()
            try:
                if on_epoch is not None:
                    on_epoch(epoch, accuracy)
            finally:
                call.hooks.append((t, time.time()))

        try:
            result = self.timed_train(*args, on_epoch=hook, **kwargs)
        except BaseException:
            call.exact = False
            previous = call.start
            for entered, left in call.hooks:
                call.compute += entered - previous
                previous = left
            raise
        else:
            call.compute = result.compute_seconds
            return result
        finally:
            call.end = time.time()
            call.hook_seconds = sum(left - entered for entered, left in call.hooks)


# -- report ---------------------------------------------------------------------------------------------------


def ts(t: FrozenTrial, which: str) -> float:
    return getattr(t, which).timestamp()


def pct(part: float, whole: float) -> str:
    return f"{100 * part / whole:5.1f}%" if whole > 0 else "    -"


def ms(values: list[float]) -> str:
    return f"{1000 * statistics.median(values):7.1f} ms" if values else "      - ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=ROOT / "studies" / "quickstart.yaml")
    parser.add_argument("--n-trials", type=int, default=None, help="default: the study's own n_trials")
    parser.add_argument("--storage", choices=("sqlite", "journal"), default="sqlite",
                        help="the study's storage, in a temporary directory (sqlite: what quickstart uses)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (1: on a shared machine more threads wait on each other)")
    parser.add_argument("--repeats", type=int, default=1,
                        help="searches to run one after another; the figures of each and their medians")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    timers = Timers()
    instrument(timers)
    runs = []
    for i in range(args.repeats):
        if args.repeats > 1:
            print(f"== run {i + 1} of {args.repeats} " + "=" * 90)
        runs.append(one_run(args, timers))
        print()
    if args.repeats > 1:
        print(f"over {args.repeats} runs ({args.storage} storage, torch threads {args.threads}), per run:")
        for key, label in FIGURES.items():
            values = [r[key] for r in runs if key in r]
            if values:
                print(f"  {label:<62}" + " ".join(f"{100 * v:4.1f}%" for v in values)
                      + f"   median {100 * statistics.median(values):.1f}%")


#: the figures one run returns: key -> what it is
FIGURES = {
    "weighted": "trained trials, outside compute / their wall time (target <= 5%)",
    "median_trial": "the median trained trial's share",
    "search": "first trial start to last trial end, all trials",
}


def one_run(args: argparse.Namespace, timers: Timers) -> dict[str, float]:
    """One quickstart search on a temporary storage; prints where its time went and returns FIGURES."""
    timers.seconds.clear()
    trainer = TimedTrainer(timers)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = load_study_config(args.config)
        storage = f"sqlite:///{Path(tmp) / 'q.db'}" if args.storage == "sqlite" else f"journal:{Path(tmp) / 'q.log'}"
        cfg = dataclasses.replace(cfg, storage=storage, n_trials=args.n_trials or cfg.n_trials)
        t_start = time.time()
        study = archsearch.search.study.run(cfg, stream=None, progress=False, trainer=trainer)
        t_end = time.time()
        trials = sorted((t for t in study.get_trials() if t.datetime_complete is not None),
                        key=lambda t: t.datetime_start)

    wall = t_end - t_start
    first, last = ts(trials[0], "datetime_start"), ts(trials[-1], "datetime_complete")
    span = last - first
    in_trials = sum(ts(t, "datetime_complete") - ts(t, "datetime_start") for t in trials)
    gaps = span - in_trials
    compute = sum(c.compute for c in trainer.calls)
    estimated = [c for c in trainer.calls if not c.exact]

    kinds: dict[str, list[FrozenTrial]] = {"trained": [], "infeasible": [], "duplicate": [], "failed": []}
    for t in trials:
        if t.state == TrialState.FAIL:
            kinds["failed"].append(t)
        elif t.user_attrs.get("feasible") is False:
            kinds["infeasible"].append(t)
        elif "duplicate_of" in t.user_attrs:
            kinds["duplicate"].append(t)
        else:
            kinds["trained"].append(t)
    states = {s.name: n for s in TrialState if (n := sum(t.state == s for t in trials))}

    print(f"study {args.config.name}: {cfg.dataset.name}, {cfg.training.epochs} epochs, pruner {cfg.pruner.type}, "
          f"sampler {cfg.sampler.type}; {len(trials)} trials {states}; {args.storage} storage; "
          f"torch threads {args.threads}")
    print("trials: " + ", ".join(f"{len(v)} {k}" for k, v in kinds.items()))
    print()
    print(f"total wall time of run()                   {wall:8.2f} s")
    print(f"  before the first trial (data, study)     {first - t_start:8.2f} s  {pct(first - t_start, wall)}")
    print(f"  first trial start -> last trial end      {span:8.2f} s  {pct(span, wall)}")
    print(f"  after the last trial (summary)           {t_end - last:8.2f} s  {pct(t_end - last, wall)}")
    print(f"sum of trial wall times (attr seconds)     {sum(t.user_attrs.get('seconds', 0.0) for t in trials):8.2f} s")
    print(f"sum of trial durations (Optuna start..end) {in_trials:8.2f} s")
    exact = sum(t.user_attrs.get("compute_seconds", 0.0) for t in trials)
    n_exact = sum("compute_seconds" in t.user_attrs for t in trials)
    print(f"sum of compute (attr compute_seconds)      {exact:8.2f} s  ({n_exact} completed trained trials)")
    print(f"  + pruned/failed trials, estimated        {sum(c.compute for c in estimated):8.2f} s  "
          f"({len(estimated)} trials)")
    print(f"  = compute in all trainer calls           {compute:8.2f} s")
    print()

    # per trial: each trainer call belongs to the trial whose [start, complete] holds it
    rows = []
    for t in kinds["trained"]:
        start, end = ts(t, "datetime_start"), ts(t, "datetime_complete")
        c = next((c for c in trainer.calls if start <= c.start <= end), None)
        if c is not None:
            rows.append({
                "duration": end - start,
                "compute": c.compute,
                "trial start -> training start": c.start - start,
                "trainer setup, outside compute": (c.end - c.start) - c.compute - c.hook_seconds,
                "epoch callbacks (report, prune)": c.hook_seconds,
                "training end -> trial end": end - c.end,
            })
    print(f"per trained trial (completed or pruned; {len(rows)}), median and sum:")
    for key in rows[0] if rows else ():
        values = [r[key] for r in rows]
        print(f"  {key:<34}{ms(values)}   sum {sum(values):7.2f} s")
    shares: list[float] = []
    if rows:
        inside = sum(r["duration"] for r in rows)
        outside = inside - sum(r["compute"] for r in rows)
        shares = [(r["duration"] - r["compute"]) / r["duration"] for r in rows]
        print("  per trial (share outside compute, duration): " + ", ".join(
            f"{100 * s:.1f}% {r['duration']:.2f}s"
            for s, r in sorted(zip(shares, rows, strict=True), key=lambda x: x[0])))
        print(f"  outside compute: median {100 * statistics.median(shares):.1f}% per trial, "
              f"{pct(outside, inside).strip()} of their {inside:.2f} s")
    for kind in ("infeasible", "duplicate", "failed"):
        if kinds[kind]:
            durations = [ts(t, "datetime_complete") - ts(t, "datetime_start") for t in kinds[kind]]
            print(f"per {kind} trial (nothing trained; {len(durations)}): {ms(durations)}   "
                  f"sum {sum(durations):7.2f} s")
    print(f"between trials (callbacks, next trial)     {1000 * gaps / max(len(trials) - 1, 1):7.1f} ms   "
          f"sum {gaps:7.2f} s")
    print()

    print("where the time outside compute goes (exclusive time, all of run()):")
    first_setup = trainer.calls[0] if trainer.calls else None
    train_outside = timers.total("train()") - compute
    labels = ["storage writes", "storage reads", "sampler (TPE)", "pruner", "suggest_architecture", "suggest_shape",
              "budget fitting", "arch_cost", "build", "startup: data loading", "startup: budget check", "summary"]
    accounted = compute
    for label in labels:
        calls = timers.seconds.get(label, [])
        accounted += sum(calls)
        print(f"  {label:<32}{sum(calls):7.2f} s  {pct(sum(calls), wall)}   {len(calls):5d} calls, {ms(calls)} each")
    accounted += train_outside
    note = ""
    if first_setup is not None:
        setup0 = (first_setup.end - first_setup.start) - first_setup.compute - first_setup.hook_seconds
        note = f"; the first call {setup0:.2f} s (one-time torch imports on the first optimizer)"
    print(f"  {'train() outside compute':<32}{train_outside:7.2f} s  {pct(train_outside, wall)}{note}")
    rest = wall - accounted
    print(f"  {'the rest (objective, Optuna, ...)':<32}{rest:7.2f} s  {pct(rest, wall)}")
    print()
    overall = span - compute
    print(f"outside compute, first trial start to last trial end (incl. infeasible trials and the time between "
          f"trials): {overall:.2f} s of {span:.2f} s = {pct(overall, span).strip()}; with startup and summary: "
          f"{pct(wall - compute, wall).strip()} of {wall:.2f} s")
    figures = {"search": overall / span}
    if shares:
        figures["weighted"] = (inside - sum(r["compute"] for r in rows)) / inside
        figures["median_trial"] = statistics.median(shares)
        print(f"trained trials' wall time outside forward/backward/eval: {100 * figures['weighted']:.1f}% "
              f"(outside time summed over them / their wall time summed; target <= 5%); the median trial's share "
              f"{100 * figures['median_trial']:.1f}%; whole search including untrained trials: "
              f"{100 * figures['search']:.1f}%")
    return figures


if __name__ == "__main__":
    main()
