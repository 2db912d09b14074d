"""Proxy fidelity: how well short search-time recipes rank budget-fitted networks, against a long reference.

Takes ``--archs`` (24) budget-fitted architectures of ``mixed.yaml`` at 3M MACs on Fashion-MNIST (shapes drawn
uniformly with seed 0, fitted as a search fits them, the first distinct feasible ones), and trains each with:

- the search-time recipes below (the study's training section with other epochs and training subset; trained
  on the search's training split, scored on its 6,000-image validation split, as a trial is), and one
  multi-fidelity schedule (Optuna's successive-halving pruner over the same architectures, in a fixed order,
  up to 9 epochs on 10,000 images: what a search with ``pruner: hyperband``-style early stopping would see);
- the **reference**: 8 epochs on all 60,000 training images (training + validation splits), scored on the
  10,000 test images, the final recipe of ``benchmarks.fashion_mnist``; and the reference again from
  another initial seed for the first 12 architectures at 28x28 (``reference-seed1``): the reference's own noise,
  which bounds what any proxy's tau can reach; and the search's own recipe (the first) again from another
  initial seed on every 28x28 architecture (``e2-n10k-seed1``): the proxy's own noise.

The seed baselines (MobileNet v1, ShuffleNet v1, EffNet, scaled to the budget as the benchmark trains them) get
the search-time recipes too (``b-<family>-<recipe>.json``); their reference is the benchmark's seed-0 row of the
same network where the committed results file has one (the same function, recipe and seed), else trained. The
table adds each recipe's tau over the 28x28 architectures and the baselines together, and the order it gives the
baselines: a search's re-rank chooses between searched and hand-designed networks.

It prints, per recipe, the Kendall tau of its validation accuracy against the reference's test accuracy (over
the architectures both have), and the cost per candidate (training seconds on one core, and as a share of the
reference's). Asserts nothing.

Rows are cached, one JSON file each, in ``benchmarks/proxy_fidelity/`` (committed), written atomically; a rerun
skips them, so it resumes, and a killed process loses only the row it was training. Rows are claimed with
``flock``, so two processes (``--jobs 2``, or the same command started twice) share the work. The successive-
halving schedule is one job, run after the rest: its trials' results are cached as they finish and replayed
into the pruner's study on resume, so a resumed schedule decides as an uninterrupted one would.

    python -m benchmarks.proxy_fidelity.run [--jobs 1] [--threads 1] [--only cheap|reference] [--quick] [--table]
    python -m benchmarks.proxy_fidelity.run --only cheap --recipes e2-n10k-curve   # one recipe over every network

Sizing (one core, one thread, beside another busy process): the first fitted network took 25 s per epoch on
10,000 images, so the reference (8 x 60,000) takes about 20 minutes an architecture, some 8 hours for 24, and the
search-time recipes together about 5 minutes an architecture. The rows run architecture by architecture (its
search-time recipes, then its reference), those at 28x28 first (the resolution the shipped studies search), then
the baselines, the proxy's and the reference's noise rows and the schedule, then the 21x21 ones, so a partial run
already gives a table; ``--only cheap`` or ``--only reference`` runs one kind. ``--quick`` checks the pipeline on 4
architectures, tiny recipes and 1,000 images, in a temporary folder (about 3 minutes).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import multiprocessing as mp
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import optuna
import torch

from archsearch.config.assemble import load_config_data
from archsearch.config.study_config import load_study_config
from archsearch.network.arch import Arch
from archsearch.network.build import build
from archsearch.network.cost import arch_cost
from archsearch.space import baselines
from archsearch.space.search_space import load_space
from archsearch.training.train import train
from benchmarks.common import ROOT, claim, fitted_archs, read_json, write_json
from benchmarks.fashion_mnist.level import final_train, machine
from benchmarks.fashion_mnist.store import RESULTS as BENCHMARK_RESULTS  # its baselines' seed-0 rows: reference runs
from benchmarks.fashion_mnist.store import Results
from benchmarks.proxy_fidelity.table import (
    FULL,
    NOISE,
    QUICK,
    SCHEDULE,
    Plan,
    baseline_file,
    check_rows,
    proxy_noise,
    row_file,
    table,
)

OUT = Path(__file__).resolve().parent  # the row files live beside the code: a*.json, b-*.json (and their .lock)
STUDY = ROOT / "studies" / "fmnist_3m.yaml"


def architectures(n: int) -> list:
    """The first ``n`` distinct feasible fitted records of ``mixed.yaml`` at the study's budget and input."""
    config = load_study_config(STUDY)
    # the space file as it is, both resolutions, not the study's space_overrides (28x28 only): the table measures
    # what a proxy can tell apart over the whole space, and by resolution (``by_resolution``)
    space = load_space(config.space_path)
    return fitted_archs(space, config.budget.limits(), n, in_chs=1, resolution=28, num_classes=10, seed=0, draws=4)


def baseline_archs() -> dict[str, Arch]:
    """The seed's MobileNet v1, ShuffleNet v1 and EffNet, each scaled to the widest variant within the study's
    budget at 28x28, as the benchmark trains them: a search must rank its candidates against these too."""
    budget = load_study_config(STUDY).budget
    out = {}
    for family in baselines.FAMILIES:
        arch = baselines.fit_to_budget(family, in_chs=1, resolution=28, num_classes=10, max_macs=budget.max_macs,
                                       max_params=budget.max_params)
        if arch is not None:
            out[family] = arch
    return out


def _data(plan: Plan):
    config = load_study_config(STUDY)
    _, data = load_config_data(config)
    if plan.limit:
        data = dataclasses.replace(data, **{k: getattr(data, k)[: plan.limit] for k in
                                            ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test")})
    return config, data


def _train(config, data, arch, epochs: int, images: int | None, *, reference: bool, on_epoch=None,
           seed_offset: int = 0) -> dict:
    recipe = dataclasses.replace(config.training, epochs=epochs, train_subset=images, seconds=None,
                                 seed=config.training.seed + seed_offset)
    if reference:  # all training images, scored on the test split: the benchmark's final recipe
        row = final_train(arch, recipe, data, seed=recipe.seed)
        return {"accuracy": row["test_accuracy"], "epochs": row["epochs"], "seconds": row["train_seconds"],
                "images": row["trained_on"]}
    data = data.resized(arch.resolution)
    torch.manual_seed(recipe.seed)  # as the objective seeds before it builds
    model = build(arch)
    result = train(model, data.x_train, data.y_train, data.x_val, data.y_val, recipe, device=torch.device("cpu"),
                   on_epoch=on_epoch, preprocess=data.preprocess())
    return {"accuracy": result.val_accuracy, "epochs": result.epochs_done, "seconds": result.train_seconds,
            "images": min(len(data.y_train), images or len(data.y_train)),
            "curve": result.curve.to_dict()}  # per epoch: train loss (all, last quarter), val loss and accuracy


def run_rows(out: Path, plan: Plan, archs: list, which: str, threads: int) -> None:
    """Train every missing (architecture, recipe) row this process can claim.

    The architectures at the shipped studies' resolution (the largest: they search 28x28 only) come first, then
    the seed baselines, the proxy's own noise on them, the reference's on the first ``plan.noise``, the schedule,
    and last the architectures at the other resolution; each architecture's rows together, so that a partial run
    already gives a table."""
    torch.set_num_threads(threads)
    config, data = _data(plan)
    top = max(a.resolution for a in archs)
    shipped = [i for i, a in enumerate(archs) if a.resolution == top]
    other = [i for i, a in enumerate(archs) if a.resolution != top]

    def rows_of(indices: list[int]) -> list:
        jobs = []
        for i in indices:
            if which in ("all", "cheap"):
                jobs += [(i, name, spec, False) for name, spec in plan.recipes.items()]
            if which in ("all", "reference"):
                jobs.append((i, "reference", plan.reference, True))
        return jobs

    _run_jobs(out, archs, config, data, rows_of(shipped))
    run_baselines(out, plan, config, data, which)
    if which in ("all", "cheap"):  # how far the search's own recipe moves with its initial seed
        first = next(iter(plan.recipes))
        _run_jobs(out, archs, config, data, [(i, proxy_noise(plan), plan.recipes[first], False) for i in shipped])
    if which in ("all", "reference"):  # how far the reference itself moves with its initial seed
        _run_jobs(out, archs, config, data, [(i, NOISE, plan.reference, True) for i in shipped[:plan.noise]])
    if which in ("all", "cheap"):
        run_schedule(out, plan, archs, config, data)
    _run_jobs(out, archs, config, data, rows_of(other))


@contextlib.contextmanager
def _to_train(path: Path) -> Iterator[bool]:
    """Whether this process trains the row at ``path``: True while it is missing and this process holds its lock."""
    if path.exists():
        yield False
        return
    with claim(path.with_suffix(".lock")) as mine:
        yield mine and not path.exists()


def _run_jobs(out: Path, archs: list, config, data, jobs: list) -> None:
    for i, name, (epochs, images), reference in jobs:
        path = row_file(out, i, name)
        with _to_train(path) as mine:
            if not mine:
                continue
            row = _train(config, data, archs[i], epochs, images, reference=reference,
                         seed_offset=1 if name.endswith("-seed1") else 0)  # NOISE, proxy_noise()
            row |= {"arch": i, "arch_id": archs[i].id, "macs": arch_cost(archs[i]).macs, "recipe": name,
                    "plan": [epochs, images], "machine": machine()}
            write_json(path, row)
            print(f"a{i:02d} {name:>10}: {row['accuracy']:.4f} in {row['seconds']:.0f} s  {archs[i].id}", flush=True)


def run_baselines(out: Path, plan: Plan, config, data, which: str) -> None:
    """The seed baselines' rows: the search-time recipes, and the reference, taken from the benchmark's seed-0
    row of the same network where it has one (the same function, recipe and seed; noted as reused), else trained."""
    done = Results(BENCHMARK_RESULTS).read() if plan.limit is None else {}
    for family, arch in baseline_archs().items():
        jobs = [(name, spec, False) for name, spec in plan.recipes.items()] if which in ("all", "cheap") else []
        jobs += [("reference", plan.reference, True)] if which in ("all", "reference") else []
        for name, (epochs, images), reference in jobs:
            path = baseline_file(out, family, name)
            with _to_train(path) as mine:
                if not mine:
                    continue
                key = f"row/3m/baseline/{family}/e{epochs}/s{config.training.seed}"
                bench = done.get(key) if reference else None
                if bench is not None and bench.get("arch_id") == arch.id and bench.get("trained_on") == 60_000:
                    row = {"accuracy": bench["test_accuracy"], "epochs": bench["epochs"],
                           "seconds": bench["train_seconds"], "images": bench["trained_on"], "reused_from": key}
                else:
                    row = _train(config, data, arch, epochs, images, reference=reference)
                row |= {"baseline": family, "arch_id": arch.id, "macs": arch_cost(arch).macs, "recipe": name,
                        "plan": [epochs, images], **({} if "reused_from" in row else {"machine": machine()})}
                write_json(path, row)
                print(f"{family:>10} {name:>10}: {row['accuracy']:.4f} in {row['seconds']:.0f} s"
                      + (f" (reused: {key})" if "reused_from" in row else ""), flush=True)


def run_schedule(out: Path, plan: Plan, archs: list, config, data) -> None:
    """The successive-halving schedule over the architectures in order; finished trials are replayed."""
    max_epochs, images, min_resource, factor = plan.schedule
    with claim(out / f"{SCHEDULE}.lock") as mine:
        if not mine:
            return
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        pruner = optuna.pruners.SuccessiveHalvingPruner(min_resource=min_resource, reduction_factor=factor)
        study = optuna.create_study(direction="maximize", pruner=pruner)
        for i, arch in enumerate(archs):
            path = row_file(out, i, SCHEDULE)
            row = read_json(path)
            if row is None:
                trial = study.ask()
                curve: list[float] = []

                def on_epoch(epoch: int, accuracy: float, curve: list[float] = curve,
                             trial: optuna.Trial = trial) -> None:  # this row's curve and trial, bound now
                    curve.append(accuracy)
                    trial.report(accuracy, epoch + 1)  # steps are epochs done, the pruner's resource
                    if epoch + 1 < max_epochs and trial.should_prune():
                        raise optuna.TrialPruned()

                t0 = time.perf_counter()
                try:
                    _train(config, data, arch, max_epochs, images, reference=False, on_epoch=on_epoch)
                    study.tell(trial, curve[-1])
                except optuna.TrialPruned:
                    study.tell(trial, state=optuna.trial.TrialState.PRUNED)
                row = {"arch": i, "arch_id": arch.id, "macs": arch_cost(arch).macs, "recipe": SCHEDULE,
                       "curve": curve, "accuracy": curve[-1], "epochs": len(curve), "images": images,
                       "seconds": time.perf_counter() - t0, "plan": list(plan.schedule), "machine": machine()}
                write_json(path, row)
                print(f"a{i:02d} {SCHEDULE}: {row['accuracy']:.4f} after {len(curve)} epochs in "
                      f"{row['seconds']:.0f} s", flush=True)
            else:  # replay: the pruner sees the same history as in an uninterrupted run
                state = (optuna.trial.TrialState.COMPLETE if row["epochs"] == max_epochs
                         else optuna.trial.TrialState.PRUNED)
                study.add_trial(optuna.trial.create_trial(
                    state=state, value=row["accuracy"] if state == optuna.trial.TrialState.COMPLETE else None,
                    intermediate_values={e + 1: v for e, v in enumerate(row["curve"])}))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1, help="processes sharing the rows")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process")
    parser.add_argument("--only", choices=("all", "cheap", "reference"), default="all")
    parser.add_argument("--quick", action="store_true", help="pipeline check in a temporary folder")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--table", action="store_true", help="train nothing: the table of the rows so far")
    parser.add_argument("--recipes", default=None, metavar="A,B",
                        help="train only these search-time recipes (the plan's first is kept: its seed-1 rows)")
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    if args.recipes and not args.table:
        wanted = args.recipes.split(",")
        unknown = sorted(set(wanted) - set(plan.recipes))
        if unknown:
            parser.error(f"--recipes: unknown {unknown}; the plan's are {list(plan.recipes)}")
        first = next(iter(plan.recipes))
        plan = dataclasses.replace(plan, recipes={k: v for k, v in plan.recipes.items() if k == first or k in wanted})
    tmp = tempfile.TemporaryDirectory() if args.quick and args.out is None else None
    out = Path(tmp.name) if tmp else (args.out or OUT)
    out.mkdir(parents=True, exist_ok=True)
    archs = architectures(plan.archs)
    check_rows(out, archs)
    if args.table:
        print(table(out, plan, archs))
        return 0
    t0 = time.perf_counter()
    if args.jobs == 1:
        run_rows(out, plan, archs, args.only, args.threads)
    else:
        ctx = mp.get_context("spawn")
        procs = [ctx.Process(target=run_rows, args=(out, plan, archs, args.only, args.threads))
                 for _ in range(args.jobs)]
        for p in procs:
            p.start()
        for p in procs:
            p.join()
    print(f"\nthis run: {time.perf_counter() - t0:.0f} s wall\n")
    print(table(out, plan, archs))
    if tmp:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
