"""Finished trials per hour with 1 and 2 worker processes on one study, on SQLite (WAL) and on a journal file.

Runs the real quickstart study (studies/quickstart.yaml: 8x8 digits, 6 epochs, median pruner) four times on a
fresh temporary storage each: {SQLite (WAL), journal file} x {1, 2 workers}, through ``archsearch.search.study.
run_workers`` -- what ``archsearch search --workers N`` runs: N spawned processes, torch's threads split between
them (cpu_count // N each). Prints figures side by side and the ratio 2 workers / 1 worker; asserts nothing.

Two clocks per run:
- wall: the whole call (process start-up, imports and data loading included);
- active: last trial finished - first trial started, the steady state of a longer search.
Finished trials include the infeasible ones, which cost next to nothing (no training), so their share moves the
finished-trials rate; trained trials per hour (complete or pruned, trained, not a copy of an earlier result)
are printed beside it.

The seed baselines are left out of both runs (``enqueue_baselines=False``) so that both do the same kind of
work; the sampler is seeded, but the workers' seeds differ, so the two runs train different candidates (with
few trials that is most of the run-to-run noise: see the mean trained-trial seconds printed beside each).
The workers' trial lines go to a log file in the temporary folder, not to the terminal.

On a shared machine, read the load average printed beside each run: a process with 2 torch threads next to
someone else's busy process can run 10-50x slower (its OpenMP threads wait on each other), while 2 workers with
one thread each slow down only in proportion; a run whose load average exceeds the core count measured that.

    python -m benchmarks.speed.workers [--n-trials 32] [--config studies/quickstart.yaml] [--storages sqlite journal]
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import optuna
from optuna.trial import TrialState

from archsearch.config.study_config import StudyConfig, load_study_config
from archsearch.search.study import run_workers
from archsearch.study.trial_states import COUNTED_STATES
from benchmarks.common import ROOT

WORKERS = (1, 2)


@contextlib.contextmanager
def stdout_to(path: Path) -> Iterator[None]:
    """File descriptor 1 (this process's and the spawned workers') redirected to ``path``."""
    sys.stdout.flush()
    saved = os.dup(1)
    with path.open("w") as log:
        os.dup2(log.fileno(), 1)
        try:
            yield
        finally:
            sys.stdout.flush()
            os.dup2(saved, 1)
            os.close(saved)


def measure(cfg: StudyConfig, workers: int, log: Path) -> dict[str, float]:
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    with stdout_to(log):
        study = run_workers(cfg, workers, stream=None)
    wall = time.perf_counter() - start
    trials = study.get_trials(deepcopy=False)
    done = [t for t in trials if t.state in COUNTED_STATES]
    first = min(t.datetime_start for t in trials if t.datetime_start is not None)
    last = max(t.datetime_complete for t in done)
    active = (last - first).total_seconds()
    trained = [t for t in done if t.user_attrs.get("feasible") and "duplicate_of" not in t.user_attrs]
    return {
        "finished": len(done),
        "trained": sum(t.state == TrialState.COMPLETE for t in trained),
        "pruned": sum(t.state == TrialState.PRUNED for t in trained),
        "infeasible": sum(t.user_attrs.get("feasible") is False for t in done),
        "copies": sum("duplicate_of" in t.user_attrs for t in done),
        "failed": sum(t.state == TrialState.FAIL for t in trials),
        "mean_trial_s": statistics.fmean(t.user_attrs.get("seconds", 0.0) for t in trained) if trained else 0.0,
        "wall_s": wall,
        "active_s": active,
        "per_hour_wall": len(done) / wall * 3600,
        "per_hour_active": len(done) / active * 3600 if active > 0 else float("nan"),
        "trained_per_hour_active": len(trained) / active * 3600 if active > 0 else float("nan"),
        "load": (load_before, os.getloadavg()[0]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=ROOT / "studies" / "quickstart.yaml")
    parser.add_argument("--n-trials", type=int, default=32, help="finished trials per run (the study total)")
    parser.add_argument("--storages", nargs="+", choices=("sqlite", "journal"), default=["sqlite", "journal"])
    args = parser.parse_args()

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    cores = os.cpu_count() or 1
    base = load_study_config(args.config)
    print(f"{args.config.name}: {args.n_trials} finished trials per run, on a machine with {cores} cores "
          f"(torch threads per worker: {', '.join(f'{w} worker(s) -> {max(1, cores // w)}' for w in WORKERS)}); "
          f"the machine may be shared, so compare runs of one invocation only")
    results: dict[tuple[str, int], dict[str, float]] = {}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="archsearch-workers-") as tmp:
        for kind in args.storages:
            for workers in WORKERS:
                file = Path(tmp) / f"{kind}-{workers}"
                storage = f"sqlite:///{file}.db" if kind == "sqlite" else f"journal:{file}.log"
                cfg = dataclasses.replace(base, storage=storage, n_trials=args.n_trials, enqueue_baselines=False)
                r = results[kind, workers] = measure(cfg, workers, Path(tmp) / f"{kind}-{workers}.out")
                print(f"  {kind:<7} {workers} worker(s): {r['finished']:>3} finished ({r['trained']} trained, "
                      f"{r['pruned']} pruned, {r['infeasible']} infeasible, {r['copies']} copies, {r['failed']} failed)"
                      f" in {r['wall_s']:6.1f} s wall, {r['active_s']:6.1f} s active; mean trained trial "
                      f"{r['mean_trial_s']:.2f} s; load average {r['load'][0]:.1f} -> {r['load'][1]:.1f}", flush=True)

    print()
    print(f"{'storage':<8} {'workers':>7} {'finished/h wall':>16} {'finished/h active':>18} {'trained/h active':>17}")
    for (kind, workers), r in results.items():
        print(f"{kind:<8} {workers:>7} {r['per_hour_wall']:>16.0f} {r['per_hour_active']:>18.0f}"
              f" {r['trained_per_hour_active']:>17.0f}")
    print()
    for kind in args.storages:
        one, two = results[kind, 1], results[kind, 2]
        print(f"{kind}: 2 workers / 1 worker = {two['per_hour_wall'] / one['per_hour_wall']:.2f}x finished/h wall, "
              f"{two['per_hour_active'] / one['per_hour_active']:.2f}x finished/h active, "
              f"{two['trained_per_hour_active'] / one['trained_per_hour_active']:.2f}x trained/h active "
              f"({cores} cores)")
    if len(args.storages) == 2:
        for workers in WORKERS:
            s, j = results["sqlite", workers], results["journal", workers]
            print(f"{workers} worker(s): journal / sqlite = {j['per_hour_wall'] / s['per_hour_wall']:.2f}x wall, "
                  f"{j['per_hour_active'] / s['per_hour_active']:.2f}x active")
    print(f"\n(total {time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
