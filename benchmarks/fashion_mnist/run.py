"""Search quality on Fashion-MNIST: archsearch against the scaled seed baselines and random search, at equal budgets.

For each budget level (1, 3 and 10 million MACs at 28x28x1; one study file each, ``studies/fmnist_<level>.yaml``:
``mixed.yaml``, budget-fitted, the study's proxy recipe and re-rank):

1. **Searches**: the level's study with its TPE sampler (**archsearch**) and, beside it, the same study with
   Optuna's RandomSampler (**random search**: the same space, fitting, proxy and re-rank), each for the same
   number of finished trials, ``search_trials`` (30, the three seed baselines included). Every candidate is
   budget-fitted, so each trial costs about the same; a budget of trials, not of wall time, keeps the comparison
   fair on a shared machine, where the same trial ran 2-3 times slower while other jobs ran, and each search's
   trial time is reported beside it. Then each study's re-rank (``rerank:`` in the
   YAML) trains its top candidates again, and the search's network is its best searched (non-baseline) candidate
   by the re-rank score. Each study is a journal file in ``--studies`` (committed), so an interrupted search
   resumes, in a later session too.
2. **Rows**, every one trained with one final recipe: the study's optimizer, schedule and augmentation for
   ``epochs`` (8) epochs on all 60,000 training images (training and validation splits), scored on the 10,000
   test images, ``seeds`` (3) seeds each: the seed's MobileNet v1, ShuffleNet v1 and EffNet, each scaled to the
   widest variant that fits the budget (``archsearch.space.baselines.fit_to_budget``); the archsearch network; the
   random-search network.
3. **Long rows** at ``long_level`` (3M): the archsearch network and the best baseline there (by the mean of its
   rows) at ``long_epochs`` (30) epochs, ``seeds`` seeds each: the 92.5% target.
4. **Anytime curve** at ``anytime_level`` (3M): each search's best-so-far validation accuracy against its trial
   time, and the final test accuracy (seed 0) of its best searched candidate by the search score after 1/4 and
   1/2 of its trials (after all of them: its network's row).

Every finished row and search goes into one committed results file, ``benchmarks/fashion_mnist/results.jsonl``
(one JSON object a line, appended under ``flock``), so a later run continues where the last one stopped and
nothing is trained twice; a process ended halfway loses at most the epoch of the row in training (its state after
each epoch is a file beside the journals, ``<level>/rows-in-training/``, resumed by the next run) or the search
trial it was running.
Rows are claimed with ``flock`` in ``--work``, so several processes (``--jobs``, or the same command started twice)
share the work. The file's first line holds the settings; a run with other settings is refused. ``--readme``
trains nothing: it regenerates the results section of docs/results.md (table, targets, plots:
``benchmarks/fashion_mnist/accuracy_vs_macs.png`` and ``benchmarks/fashion_mnist/anytime.png``) from the results file.

    python -m benchmarks.fashion_mnist.run --jobs 2 --threads 1 --levels 3m --parts search,rows   # one part
    python -m benchmarks.fashion_mnist.run --readme                                              # tables from the file
    python -m benchmarks.fashion_mnist.run --quick --threads 1                                   # smoke check

Parts (``--parts``, default all): ``search`` (both searches of each level), ``rows`` (baselines; the searched
networks once their search is done), ``long`` (the 30-epoch rows), ``anytime`` (the checkpoint rows). Sizing
(this project's 2-core machine, one thread per process beside another busy one): a fitted 3M network trains at
about 25 s per epoch on 10,000 images, so one 8-epoch row on 60,000 images takes about 20 minutes at 3M (less at
1M, more at 10M) and a 30-epoch row about 75 minutes. See docs/results.md for the time each part took.
QUICK keeps the pipeline and shrinks every number; its accuracies stay near chance: it checks the pipeline, not
the search.
``--head-hidden 0,64,128`` adds the space key ``head_hidden`` (a hidden FC layer in the head, 0: none) to both
searches: an experiment beside the main file, with its own ``--results`` and ``--studies`` (the setting is stored
with the others). ``--space FILE`` does the same with a whole space file in place of the study's ``mixed.yaml``.
``--rerank-folds 3`` scores the study's re-rank by 3-fold cross-validation (``folds: 3``), so the pick knows each
candidate's standard error (archsearch/study/best.py: within the noise of the best, the lower latency or fewer
MACs); on copies of finished journals it re-ranks those searches again without searching.

This module runs the parts; ``level.py`` is one level (its searches, its rows and the final recipe),
``store.py`` holds the settings and the results file, ``search.py``
what a finished search's record keeps (its network, curve, checkpoints), ``report.py`` makes the table and
the plots from that file.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import torch

from archsearch.cli.export import positive_int  # the CLI's own option type
from archsearch.config.assemble import load_config_data
from archsearch.data.bundle import DataBundle
from archsearch.network.arch import Arch
from archsearch.training.train import resolve_device
from benchmarks.common import ROOT, claim
from benchmarks.fashion_mnist.level import Level
from benchmarks.fashion_mnist.report import report
from benchmarks.fashion_mnist.search import now
from benchmarks.fashion_mnist.store import FULL, LEVELS, QUICK, RESULTS, SAMPLERS, STUDIES_DIR, Results, Settings, say

HERE = Path(__file__).resolve().parent
PARTS = ("search", "rows", "long", "anytime")
DEFAULT_WORK = HERE / "work"  # git-ignored: locks, the table and plots of each run
README = ROOT / "docs" / "results.md"  # where the results block lives (its start/end markers)
_POLL_S = 2.0  # a worker with nothing to claim waits this long for the others

# -------------------------------------------------------------------------------------------------
# the worker: every process (the main one and --jobs - 1 others) runs this loop over the same tasks


def work(work_dir: Path, studies_dir: Path, results_path: Path, levels: list[str], parts: tuple[str, ...],
         settings: Settings, jobs: int, threads: int, device: str = "cpu") -> None:
    torch.set_num_threads(threads)
    results = Results(results_path)
    level_objs = [Level(name, work_dir, studies_dir, results, settings) for name in levels]
    for level in level_objs:
        level.device = resolve_device(device)
    data: DataBundle | None = None
    while True:
        ran, waiting = False, False
        for level in level_objs:
            if "search" in parts:
                for sampler in SAMPLERS:
                    if level.search(sampler, jobs) != "done":
                        waiting = True
            done = results.read()
            for row in level.rows(parts):
                if row["key"] in done:
                    _check_same_network(row, done[row["key"]], results.path)
                    continue
                lock = level.dir / "locks" / (row["key"].replace("/", "_") + ".lock")
                with claim(lock) as mine:
                    if not mine:
                        waiting = True
                        continue
                    if results.get(row["key"]) is not None:  # finished by another worker after our check
                        continue
                    twin = _same_training(row, results.read())
                    if twin is not None:  # e.g. an anytime checkpoint that is the search's own network
                        results.add({**twin, **{k: row[k] for k in ("key", "kind", "family", "trial", "tag")},
                                     "reused_from": twin["key"]})
                        ran = True
                        continue
                    if data is None:
                        _, data = load_config_data(level.base)  # the same Fashion-MNIST split at every level
                    say(f"{level.name}: training {row['key']} ({Arch.from_dict(row['arch']).id})")
                    record = level.train_row(row, data)
                    results.add(record)
                    for done_with in (level.checkpoint(row), level.checkpoint(row).with_suffix(".json")):
                        done_with.unlink(missing_ok=True)  # the row is in the results file
                    say(f"{level.name}: {row['key']} test {100 * record['test_accuracy']:.2f}% in "
                        f"{record['train_seconds']:.0f} s")
                    ran = True
            if "long" in parts and level.name == settings.long_level and level.best_baseline() is None \
                    and "rows" in parts:
                waiting = True  # the long rows wait for the baselines' rows
        if not ran and not waiting:
            return
        if not ran:
            time.sleep(_POLL_S)


def _check_same_network(row: dict[str, Any], done: dict[str, Any], path: Path) -> None:
    """A finished row must be of the network its key names now: a change to the baselines' scaling (or a
    search recorded again) would otherwise keep an old network's figures under the row."""
    planned = Arch.from_dict(row["arch"]).id
    if done.get("arch_id") != planned:
        raise SystemExit(f"error: {path}: {row['key']} trained {done.get('arch_id')}, but that row is now "
                         f"{planned}; use another --results, or take the row out of this one to train it again")


def _same_training(row: dict[str, Any], done: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    """A finished row that trained the same architecture with the same seed and epochs."""
    arch_id = Arch.from_dict(row["arch"]).id
    for other in done.values():
        if (other.get("arch_id") == arch_id and other.get("seed") == row["seed"]
                and other.get("epochs") == row["epochs"] and "test_accuracy" in other):
            return other
    return None


def _worker(*args: Any) -> None:
    work(*args)


# -------------------------------------------------------------------------------------------------
# command line


def _names(allowed: tuple[str, ...] | dict) -> Any:
    def parse(text: str) -> list[str]:
        names = [t.strip().lower() for t in text.split(",") if t.strip()]
        bad = [n for n in names if n not in allowed]
        if not names or bad:
            raise argparse.ArgumentTypeError(f"expected a comma-separated list of {', '.join(allowed)}, got {text!r}")
        return sorted(set(names), key=list(allowed).index)

    return parse


def _widths(text: str) -> tuple[int, ...]:
    try:
        widths = tuple(int(w) for w in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers such as 0,64,128, got {text!r}") from None
    if any(w < 0 for w in widths) or len(set(widths)) != len(widths):
        raise argparse.ArgumentTypeError(f"expected distinct integers >= 0, got {text!r}")
    return widths


def _folds(text: str) -> int:
    """A re-rank's folds, as ``rerank.folds`` takes them (2 to 20)."""
    try:
        folds = int(text)
    except ValueError:
        folds = 0
    if not 2 <= folds <= 20:
        raise argparse.ArgumentTypeError(f"expected an integer from 2 to 20, got {text!r}")
    return folds


def _space_file(text: str) -> str:
    """A space file as stored in the settings: relative to the repository root where it lies inside it."""
    path = Path(text).resolve()
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"no such file: {text}")
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--levels", type=_names(LEVELS), default=list(LEVELS), help="budget levels (default: 1m,3m,10m)")
    p.add_argument("--parts", type=_names(PARTS), default=list(PARTS),
                   help="search, rows, long, anytime (default: all)")
    p.add_argument("--quick", action="store_true", help="the whole pipeline with tiny numbers (smoke check)")
    p.add_argument("--results", type=Path, default=None,
                   help="the results file (default: benchmarks/fashion_mnist/results.jsonl; with --quick a file in "
                        "the work folder)")
    p.add_argument("--work", type=Path, default=None,
                   help="locks and plots (default: benchmarks/fashion_mnist/work/full, --quick: .../work/quick)")
    p.add_argument("--studies", type=Path, default=None,
                   help="the searches' journal files (default: benchmarks/fashion_mnist/studies, committed; "
                        "--quick: WORK/studies)")
    p.add_argument("--jobs", type=positive_int, default=1, help="worker processes sharing the rows (default: 1)")
    p.add_argument("--device", default="cpu",
                   help="where the rows train: cpu (default), cuda or cuda:N (mixed precision; each row records its "
                        "device and GPU); the searches run on their study's device")
    p.add_argument("--threads", type=positive_int, default=None,
                   help="torch threads per worker (default: cpu_count // jobs)")
    p.add_argument("--readme", action="store_true",
                   help="train nothing: write the table and plots from the results file into docs/results.md")
    p.add_argument("--readme-file", type=Path, default=README, help=argparse.SUPPRESS)  # tests: a copy
    g = p.add_argument_group("settings (override FULL or QUICK; stored in the results file)")
    g.add_argument("--search-trials", type=positive_int, default=None,
                   help="finished trials per search, the seed baselines included")
    g.add_argument("--search-epochs", type=positive_int, default=None, help="epochs of the search-time recipe")
    g.add_argument("--search-subset", type=positive_int, default=None, help="training images of a search trial")
    g.add_argument("--epochs", type=positive_int, default=None, help="epochs of the final recipe")
    g.add_argument("--train-subset", type=positive_int, default=None, help="training images of the final recipe")
    g.add_argument("--seeds", type=positive_int, default=None, help="seeds per row")
    g.add_argument("--long-epochs", type=positive_int, default=None, help="epochs of the long rows")
    g.add_argument("--long-level", choices=list(LEVELS), default=None, help="level of the long rows (3m)")
    g.add_argument("--anytime-level", choices=list(LEVELS), default=None, help="level of the anytime curve (3m)")
    g.add_argument("--eval-limit", type=positive_int, default=None, help="score rows on the first N test images")
    g.add_argument("--head-hidden", type=_widths, default=None,
                   help="widths of a hidden FC layer in the head to search over, e.g. 0,64,128 (0: none; default: "
                        "the space's own, none in mixed.yaml)")
    g.add_argument("--space", type=_space_file, default=None,
                   help="a search-space file both searches use instead of the study's (mixed.yaml); the study's "
                        "space_overrides still apply")
    g.add_argument("--rerank-folds", type=_folds, default=None,
                   help="score the study's re-rank by k-fold cross-validation (rerank.folds: k, 2-20; default: the "
                        "study's, one training on the validation split)")
    args = p.parse_args(argv)
    if args.readme and args.quick:
        p.error("--readme writes the benchmark's figures into docs/results.md; --quick figures are only a smoke check")
    return args


def settings_of(args: argparse.Namespace) -> Settings:
    base = QUICK if args.quick else FULL
    overrides = {f.name: getattr(args, f.name) for f in dataclasses.fields(Settings)
                 if getattr(args, f.name, None) is not None}
    return dataclasses.replace(base, **overrides)


def check_settings(results: Results, settings: Settings, *, store: bool = True) -> Settings:
    """Store the settings on first use of the results file; refuse a run whose settings differ from them."""
    stored = results.get("settings")
    current = json.loads(json.dumps(dataclasses.asdict(settings)))  # as stored: tuples become lists
    if stored is None:
        if store:
            results.add({"key": "settings", **current})
        return settings
    changed = {k: (stored.get(k), v) for k, v in current.items() if stored.get(k) != v}
    if changed:
        diff = ", ".join(f"{k}: {old!r} there, {new!r} now" for k, (old, new) in changed.items())
        raise SystemExit(f"error: {results.path} holds rows made with other settings ({diff}); use another "
                         f"--results, or the same options (--quick and the overrides) as the run that made them")
    return settings


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        resolve_device(args.device)  # before anything runs: a CUDA device that is not here is named now
    except ValueError as e:
        raise SystemExit(f"error: --device: {e}") from None
    settings = settings_of(args)
    work_dir = (args.work or DEFAULT_WORK / ("quick" if args.quick else "full")).resolve()
    results = Results((args.results or (work_dir / "results.jsonl" if args.quick else RESULTS)).resolve())
    studies_dir = (args.studies or (work_dir / "studies" if args.quick else STUDIES_DIR)).resolve()
    if args.readme:
        stored = results.get("settings")
        if stored is None:
            raise SystemExit(f"error: --readme: {results.path} holds no results")
        settings = Settings(**{k: v for k, v in stored.items() if k != "key"})
        print(report(results, settings, work_dir, readme=args.readme_file), flush=True)
        return 0
    check_settings(results, settings)
    threads = args.threads or max(1, (os.cpu_count() or 1) // args.jobs)
    parts = tuple(args.parts)
    say(f"levels {','.join(args.levels)}, parts {','.join(parts)}, {args.jobs} job(s) x {threads} thread(s), "
        f"results {results.path}; {settings}")
    t0 = time.perf_counter()
    procs = []
    worker_args = (work_dir, studies_dir, results.path, args.levels, parts, settings, args.jobs, threads, args.device)
    if args.jobs > 1:
        import multiprocessing as mp

        ctx = mp.get_context("spawn")  # no forked torch or SQLite state
        procs = [ctx.Process(target=_worker, args=worker_args) for _ in range(args.jobs - 1)]
        for proc in procs:
            proc.start()
    try:
        work(*worker_args)
        for proc in procs:
            proc.join()
    except KeyboardInterrupt:
        for proc in procs:
            proc.terminate()
        raise
    if any(proc.exitcode for proc in procs):
        raise SystemExit(f"error: a worker failed (exit codes {[proc.exitcode for proc in procs]})")
    elapsed = time.perf_counter() - t0
    say(f"done in {elapsed:.0f} s ({elapsed / 3600:.2f} h wall: levels {','.join(args.levels)}, parts "
        f"{','.join(parts)}, {args.jobs} job(s))")
    # what each part took, kept beside the rows (README reports it)
    results.add({"key": f"run/{now()}/{os.getpid()}", "kind": "run", "levels": args.levels, "parts": list(parts),
                 "jobs": args.jobs, "threads": threads, "seconds": round(elapsed, 1),
                 "command": "python -m benchmarks.fashion_mnist.run "
                            + shlex.join(sys.argv[1:] if argv is None else argv)})
    print(report(results, settings, work_dir), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
