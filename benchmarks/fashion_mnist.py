"""Search quality on Fashion-MNIST: archsearch against MobileNet v1, ShuffleNet v1 and EffNet at equal MAC budgets.

For each budget level (1, 3 and 10 million MACs at 28x28x1; one study file each, ``studies/fmnist_<level>.yaml``):

1. **Search**: the level's study (``mixed.yaml`` space, the seed baselines as its first trials) runs for a fixed
   budget of *trial time*: the summed wall time of its finished trials, i.e. one-core seconds. With ``--jobs J``
   one-thread workers that is ``search_seconds / J`` of wall clock. The study is an SQLite file in ``--out``, so an
   interrupted search resumes; the time already spent is read back from the trials themselves.
2. **Baselines**: the seed's three families, each scaled to the widest variant that fits the budget
   (``archsearch.baselines.fit_to_budget``), trained with the final recipe, ``seeds`` seeds each.
3. **Searched**: the best searched candidate (best feasible trial that is not a seed baseline) is retrained with
   the same final recipe, ``seeds`` seeds, and exported (``archsearch.export.save``) to ``<out>/<level>/export``.
4. **Proxy fidelity** (at ``tau_level``): ``tau_archs`` complete trials (the baselines, the best one, the rest
   evenly spread over the ranking) trained with the final recipe (seed 0); the Kendall tau between their
   search-time validation accuracy and their final test (and validation) accuracy is printed.

The final recipe is the study's own training section (optimizer, lr, schedule, augmentation, batch) with
``epochs`` epochs on a fixed ``train_subset`` of the training split (``archsearch.export.retrain`` on a copy of the
config): the same for every row. The validation split (6000 images carved from train) scores the search; the
10000 test images are only measured, after training. Weights are initialised from ``torch.manual_seed(seed)``.

Every row is cached as one JSON file in ``<out>/<level>/rows/`` (written to a temporary file, then
``os.replace``); a rerun skips finished rows, and a process ended halfway loses only the row (or the trial) it was
running. Rows are claimed with ``flock``, so several processes (``--jobs``, or the same command started twice)
share the work. The settings are stored in ``<out>/settings.json``; a rerun with other settings is refused, since its
rows would not be comparable. Each run ends with the table of every level found in ``--out``
(``results.md``), a plot of test accuracy against MACs (``accuracy_vs_macs.png``) and the Kendall tau; ``--readme``
also writes both into README.md (the plot as ``benchmarks/fashion_mnist.png``) with the command.

    python benchmarks/fashion_mnist.py --jobs 2 --threads 1                 # everything, about 2 hours on 2 cores
    python benchmarks/fashion_mnist.py --levels 3m --threads 1              # one level (run in parts, any order)
    python benchmarks/fashion_mnist.py --quick --threads 1                  # smoke check, under 10 minutes

Sizing (measured on this project's 2-core machine, torch 2.13.0, pinned to one core, one thread): one epoch of
the final recipe's loop (batch 128, shift augmentation) over 6000 images took, for the baselines fitted to

    level   MobileNet  ShuffleNet  EffNet   mean per 1000 image-epochs
    1 M       4.5 s       7.8 s     3.3 s     0.87 s
    3 M       6.1 s      16.2 s     6.3 s     1.59 s
    10 M     13.0 s      28.8 s    14.7 s     3.14 s

(each time includes scoring 2000 validation images; searched candidates at a level cost about the same or less,
ShuffleNet v1 with its 16 grouped units is the slowest). Per level the final recipe trains 3 families x 3 seeds
+ 3 seeds of the searched network = 12 runs, and the fidelity check adds up to 16 runs at 3 M (20 architectures,
4 of them already among the rows). For ``K`` thousand image-epochs per run that is
``12 x (0.87 + 1.59 + 3.14) + 16 x 1.59 = 92.6 s x K``. Scoring 6000 validation images per epoch and 10000 test
images once costs about a third of a training image each: with E=4 epochs, ``(4 x 6000 + 10000) / 3 = 11.3``
thousand image-equivalents per run. Two one-thread processes on 2 cores give about 1.8 cores' worth of work
(README: 2 workers did 1.3-1.9x the trials of one), so 2 hours are about 7200 x 1.8 = 12960 one-core seconds:

    search        3 levels x 1200 s of trial time                          3600 s
    final runs    92.6 s x (18000 images x 4 epochs + 11.3k) / 1000        7715 s
    overhead      data loading, latency, export, SQLite (~5%)               600 s
    total                                                                 11915 s  < 12960 s (92% of 2 h at 1.8x)

So FULL below is 1200 s of search per level (10 minutes of wall clock with 2 jobs), and a final recipe of 4 epochs
on 18000 images. The whole benchmark then needs about 110 minutes with ``--jobs 2``; ``--levels`` runs parts
(1 M about 25 min, 3 M with the fidelity check about 55 min, 10 M about 60 min of one core each).
QUICK keeps the pipeline and shrinks every number (30 s of search, a 1-epoch proxy on 2000 images, 1 epoch on
3000 images, 8 architectures for the tau, and only the first 2000 validation and test images for the rows): it
took 5 min 58 s on one core with one thread. Its accuracies stay near chance (10-25%): 24 SGD steps train
nothing, so QUICK checks the pipeline, not the search.

Measured on the full settings (one core): a 3 M search trial takes 20-55 s (the proxy gives the baselines 68-76%
validation accuracy). At 10 M the budget does not bind: the largest candidate of ``mixed.yaml`` has 9.8 M MACs.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import fcntl
import json
import math
import os
import shlex
import shutil
import statistics
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # run from a checkout, installed or not

import optuna  # noqa: E402
import torch  # noqa: E402
from optuna.trial import FrozenTrial, TrialState  # noqa: E402

from archsearch import baselines  # noqa: E402
from archsearch.arch import Arch  # noqa: E402
from archsearch.config import load_study_config  # noqa: E402
from archsearch.cost import arch_cost  # noqa: E402
from archsearch.data import DataBundle  # noqa: E402
from archsearch.errors import ConfigError  # noqa: E402
from archsearch.export import _positive_int, retrain, save  # noqa: E402  (the CLI's own option type)
from archsearch.latency import measure_latency  # noqa: E402
from archsearch.objective import ARCH_ATTR, BASELINE_ATTR  # noqa: E402
from archsearch.study import finished_count, load_config_data, open_study, run, sweep_dead_workers  # noqa: E402

LEVELS = {"1m": 1_000_000, "3m": 3_000_000, "10m": 10_000_000}  # name -> MAC budget (its study YAML says the same)
STUDIES = ROOT / "studies"
DEFAULT_OUT = ROOT / "benchmarks" / "results"
README = ROOT / "README.md"
README_PLOT = ROOT / "benchmarks" / "fashion_mnist.png"
MARK_START = "<!-- fashion-mnist-benchmark:start -->"
MARK_END = "<!-- fashion-mnist-benchmark:end -->"
IMPROVE_TARGET = 0.010  # the target: searched beats the best baseline by 1.0 point at every level
ACC_TARGET_3M = 0.925  # ... and reaches 92.5% at 3 M MACs
_POLL_S = 2.0  # a worker with nothing to claim waits this long for the others


@dataclass(frozen=True)
class Settings:
    """Everything that makes rows comparable; stored in ``<out>/settings.json`` and checked on every rerun."""

    search_seconds: float  # per level: summed wall time of the study's finished trials (one-core seconds)
    search_epochs: int | None  # proxy recipe override (None: the study YAML's)
    search_subset: int | None  # proxy training subset override (None: the study YAML's)
    epochs: int  # final recipe
    train_subset: int | None  # final recipe: fixed subset of the 54000 training images (None: all)
    seeds: int  # seeds per baseline and per searched network
    tau_archs: int  # architectures in the proxy-fidelity check
    tau_level: str
    eval_limit: int | None  # rows score only the first N validation and test images (None: all; QUICK only)


FULL = Settings(search_seconds=1200.0, search_epochs=None, search_subset=None, epochs=4, train_subset=18000,
                seeds=3, tau_archs=20, tau_level="3m", eval_limit=None)
QUICK = Settings(search_seconds=30.0, search_epochs=1, search_subset=2000, epochs=1, train_subset=3000,
                 seeds=3, tau_archs=8, tau_level="3m", eval_limit=2000)


# -------------------------------------------------------------------------------------------------
# small helpers


def say(text: str) -> None:
    print(f"[{os.getpid()}] {text}", flush=True)


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write atomically: a temporary file beside ``path``, then ``os.replace``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None


@contextmanager
def claim(lock: Path) -> Iterator[bool]:
    """An exclusive, non-blocking ``flock`` on ``lock``: True if this process holds it (released on exit or death)."""
    lock.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)  # closing releases the lock


# -------------------------------------------------------------------------------------------------
# one level: its study, its search, its rows


class Level:
    """A budget level: the study config (storage in ``<out>/<name>``), the final recipe and the row files."""

    def __init__(self, name: str, out: Path, settings: Settings):
        self.name = name
        self.dir = out / name
        self.settings = settings
        path = STUDIES / f"fmnist_{name}.yaml"
        config = load_study_config(path)
        if config.budget.max_macs != LEVELS[name]:
            raise ConfigError(f"expected budget.max_macs {LEVELS[name]:.1e} for level {name!r}, got "
                              f"{config.budget.max_macs}", path=path, key="budget.max_macs")
        proxy = config.training
        if settings.search_epochs is not None:
            proxy = dataclasses.replace(proxy, epochs=settings.search_epochs)
        if settings.search_subset is not None:
            proxy = dataclasses.replace(proxy, train_subset=settings.search_subset)
        self.config = dataclasses.replace(config, storage=f"sqlite:///{self.dir.resolve() / 'study.db'}",
                                          training=proxy)
        # the final recipe: the study's own, longer; the same for every row
        self.final = dataclasses.replace(config.training, epochs=settings.epochs,
                                         train_subset=settings.train_subset, seconds=None)
        self.search_file = self.dir / "search.json"

    # -- the search --------------------------------------------------------------------------------

    def spent(self, study: optuna.Study) -> float:
        """Trial time spent so far: wall time of complete/pruned trials, and the recorded time of failed ones."""
        total = 0.0
        for t in study.get_trials(deepcopy=False):
            if t.state in (TrialState.COMPLETE, TrialState.PRUNED) and t.datetime_complete and t.datetime_start:
                total += (t.datetime_complete - t.datetime_start).total_seconds()
            elif t.state == TrialState.FAIL:
                total += float(t.user_attrs.get("seconds", 0.0))  # a killed trial's end time is the sweep's: skip it
        return total

    @staticmethod
    def searched(study: optuna.Study) -> list[FrozenTrial]:
        """Complete, feasible, scored trials that are not seed baselines."""
        return [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                if BASELINE_ATTR not in t.user_attrs and t.user_attrs.get("feasible", True) and t.values]

    def search(self, jobs: int) -> str:
        """Join the search until its time is spent; 'done', or 'busy' while other workers finish their trials."""
        if self.search_file.exists():
            return "done"
        budget = self.settings.search_seconds
        optuna.logging.set_verbosity(optuna.logging.ERROR)
        while True:
            try:
                study = open_study(self.config, create=False)
            except ConfigError:  # not created yet: run() creates it and queues the seed baselines first
                study = None
            if study is not None:
                spent = self.spent(study)
                capped = finished_count(study) >= self.config.n_trials
                if (spent >= budget and self.searched(study)) or capped:
                    break
            else:
                spent = 0.0
            left = max(budget - spent, 0.0)
            say(f"{self.name}: searching, {spent:.0f}/{budget:.0f} s of trial time spent, "
                f"{0 if study is None else finished_count(study)} trials finished")
            # each worker takes its share; a last trial may run over (timeout stops only new trials)
            run(self.config, timeout=max(left / jobs, 1.0), progress=False, summarize=False)
        sweep_dead_workers(study)  # a trial left RUNNING by a killed process of this host is failed now
        if study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            return "busy"
        with claim(self.dir / "locks" / "search.lock") as mine:
            if mine and not self.search_file.exists():
                write_json(self.search_file, self.search_record(study))
                say(f"{self.name}: search finished, {self.spent(study):.0f} s of trial time")
        return "done" if self.search_file.exists() else "busy"

    def search_record(self, study: optuna.Study) -> dict[str, Any]:
        """The finished search: its best searched trial and the architectures of the fidelity check."""
        candidates = self.searched(study)
        if not candidates:
            raise RuntimeError(f"{self.name}: the search has no complete feasible candidate beyond the baselines")
        best = max(candidates, key=lambda t: (t.values[0], -t.number))
        done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                if t.user_attrs.get("feasible", True) and t.values and "duplicate_of" not in t.user_attrs]
        tau = []
        if self.name == self.settings.tau_level:
            unique = {}
            for t in sorted(done, key=lambda t: (-t.values[0], t.number)):
                unique.setdefault(t.user_attrs["arch_id"], t)
            ranked = list(unique.values())
            first = [t for t in ranked if BASELINE_ATTR in t.user_attrs or t.number == best.number]
            rest = [t for t in ranked if t not in first]
            n_more = max(0, min(self.settings.tau_archs - len(first), len(rest)))
            # evenly spread over the ranking, best and worst included
            picks = sorted({round(i * (len(rest) - 1) / max(n_more - 1, 1)) for i in range(n_more)})
            tau = sorted(first + [rest[i] for i in picks], key=lambda t: t.number)
        trials = study.get_trials(deepcopy=False)
        return {
            "level": self.name,
            "storage": self.config.storage,
            "spent_seconds": self.spent(study),
            "trials": len(trials),
            "trained": sum(1 for t in trials if t.state == TrialState.COMPLETE and t.user_attrs.get("feasible", True)
                           and "duplicate_of" not in t.user_attrs),
            "best": trial_record(best),
            "tau": [trial_record(t) for t in tau],
        }

    # -- the rows ----------------------------------------------------------------------------------

    def rows(self) -> list[dict[str, Any]]:
        """The rows of this level that are known now (searched and fidelity rows once the search is done)."""
        out = []
        for family in baselines.FAMILIES:
            arch = baselines.fit_to_budget(family, in_chs=1, resolution=28, num_classes=10,
                                           max_macs=LEVELS[self.name])
            if arch is None:
                continue
            for seed in range(self.settings.seeds):
                out.append({"row": f"baseline-{family}-s{seed}", "kind": "baseline", "family": family,
                            "seed": seed, "arch": arch.to_dict(), "trial": None, "search_score": None})
        search = read_json(self.search_file)
        if search is None:
            return out
        best = search["best"]
        for seed in range(self.settings.seeds):
            out.append({"row": f"searched-s{seed}", "kind": "searched", "family": "archsearch", "seed": seed,
                        "arch": best["arch"], "trial": best["number"], "search_score": best["score"]})
        for t in search["tau"]:
            out.append({"row": f"tau-t{t['number']}", "kind": "tau", "family": t["baseline"] or "archsearch",
                        "seed": 0, "arch": t["arch"], "trial": t["number"], "search_score": t["score"]})
        return out

    def row_file(self, row: dict[str, Any]) -> Path:
        return self.dir / "rows" / f"{row['row']}.json"

    def same_training(self, row: dict[str, Any], rows: list[dict[str, Any]]) -> dict[str, Any] | None:
        """A non-fidelity row that trains the same architecture with the same seed (a fidelity row reuses it)."""
        if row["kind"] != "tau":
            return None
        arch_id = Arch.from_dict(row["arch"]).id
        for other in rows:
            if other["kind"] != "tau" and other["seed"] == row["seed"] and Arch.from_dict(other["arch"]).id == arch_id:
                return other
        return None

    def train_row(self, row: dict[str, Any], data: DataBundle, best_id: str | None) -> dict[str, Any]:
        """Train one row with the final recipe; its measured record."""
        arch = Arch.from_dict(row["arch"])
        cost = arch_cost(arch)
        config = dataclasses.replace(self.config, training=dataclasses.replace(self.final, seed=row["seed"]))
        torch.manual_seed(row["seed"])  # the initial weights: build() draws them before train() seeds itself
        model, measured = retrain(arch, config, data, device=torch.device("cpu"))
        lat = measure_latency(model, (arch.in_chs, arch.resolution, arch.resolution), device="cpu", threads=1, batch=1)
        record = {
            **{k: row[k] for k in ("row", "kind", "family", "seed", "trial", "search_score")},
            "level": self.name,
            "max_macs": LEVELS[self.name],
            "arch_id": arch.id,
            "arch": row["arch"],
            "test_accuracy": measured["test_accuracy"],
            "val_accuracy": measured["val_accuracy"],
            "macs": cost.macs,
            "params": cost.params,
            "latency_ms": lat.median_ms,
            "latency": {"device": "cpu", "threads": 1, "batch": 1, "p90_ms": lat.p90_ms},
            "epochs": measured["epochs"],
            "trained_on": measured["trained_on"],
            "n_test": len(data.y_test),
            "train_seconds": measured["train_seconds"],
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        }
        if arch.id == best_id and row["seed"] == 0:
            folder = save(model, self.dir / "export", force=True, onnx=False, stream=None,
                          metrics={"test_accuracy": record["test_accuracy"], "val_accuracy": record["val_accuracy"],
                                   "latency_ms": lat.median_ms, "epochs": record["epochs"], "retrained": "train",
                                   "study": self.config.name, "trial": row["trial"],
                                   "search_val_accuracy": row["search_score"]})
            record["export"] = str(folder)
        return record


def trial_record(t: FrozenTrial) -> dict[str, Any]:
    return {"number": t.number, "score": t.values[0], "arch_id": t.user_attrs["arch_id"],
            "arch": t.user_attrs[ARCH_ATTR], "baseline": t.user_attrs.get(BASELINE_ATTR)}


def row_data(level: Level, limit: int | None) -> DataBundle:
    """The level's data (the study's split); with ``limit`` only the first ``limit`` validation and test images."""
    _, data = load_config_data(level.config)
    if limit is None:
        return data
    return dataclasses.replace(data, x_val=data.x_val[:limit], y_val=data.y_val[:limit],
                               x_test=data.x_test[:limit], y_test=data.y_test[:limit])


# -------------------------------------------------------------------------------------------------
# the worker: every process (the main one and --jobs - 1 others) runs this loop over the same tasks


def work(out: Path, levels: list[str], settings: Settings, jobs: int, threads: int) -> None:
    torch.set_num_threads(threads)
    level_objs = [Level(name, out, settings) for name in levels]
    while True:
        ran, waiting = False, False
        for level in level_objs:
            status = level.search(jobs)
            rows = level.rows()
            search = read_json(level.search_file)
            best_id = None if search is None else search["best"]["arch_id"]
            for row in rows:
                path = level.row_file(row)
                if path.exists():
                    continue
                source = level.same_training(row, rows)
                if source is not None:
                    done = read_json(level.row_file(source))
                    if done is None:
                        waiting = True  # trained as a table row: wait for it rather than train it twice
                        continue
                    write_json(path, {**done, **{k: row[k] for k in ("row", "kind", "trial", "search_score")},
                                      "reused_from": source["row"]})
                    ran = True
                    continue
                with claim(level.dir / "locks" / f"{row['row']}.lock") as mine:
                    if not mine:
                        waiting = True
                        continue
                    if path.exists():  # finished by another worker after our check
                        continue
                    say(f"{level.name}: training {row['row']} ({Arch.from_dict(row['arch']).id})")
                    record = level.train_row(row, row_data(level, settings.eval_limit), best_id)
                    write_json(path, record)
                    say(f"{level.name}: {row['row']} test {100 * record['test_accuracy']:.2f}% in "
                        f"{record['train_seconds']:.0f} s")
                    ran = True
            if status != "done":
                waiting = True
        if not ran and not waiting:
            return
        if not ran:
            time.sleep(_POLL_S)


def _worker(out: Path, levels: list[str], settings: Settings, jobs: int, threads: int) -> None:
    work(out, levels, settings, jobs, threads)


# -------------------------------------------------------------------------------------------------
# results: the table, the plot, the tau


def load_rows(out: Path) -> list[dict[str, Any]]:
    rows = []
    for name in LEVELS:
        for path in sorted((out / name / "rows").glob("*.json")):
            rows.append(json.loads(path.read_text(encoding="utf-8")))
    return rows


def mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def summarise(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry per (level, model): baselines and the searched network, seeds pooled."""
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for r in rows:
        if r["kind"] in ("baseline", "searched"):
            groups.setdefault((r["level"], r["kind"], r["family"]), []).append(r)
    out = []
    for (level, kind, family), rs in groups.items():
        acc, std = mean_std([r["test_accuracy"] for r in rs])
        out.append({"level": level, "kind": kind, "family": family, "arch_id": rs[0]["arch_id"], "n": len(rs),
                    "acc": acc, "std": std, "macs": rs[0]["macs"], "params": rs[0]["params"],
                    "latency_ms": statistics.median(r["latency_ms"] for r in rs), "n_test": rs[0]["n_test"]})
    order = list(LEVELS)
    return sorted(out, key=lambda e: (order.index(e["level"]), e["kind"] != "baseline", e["family"]))


def kendall(rows: list[dict[str, Any]], level: str) -> dict[str, Any] | None:
    """Kendall tau between search-time score and final accuracy over the fidelity rows of ``level``."""
    from scipy.stats import kendalltau

    tau_rows = [r for r in rows if r["kind"] == "tau" and r["level"] == level]
    if len(tau_rows) < 2:
        return None
    score = [r["search_score"] for r in tau_rows]
    test = kendalltau(score, [r["test_accuracy"] for r in tau_rows])
    val = kendalltau(score, [r["val_accuracy"] for r in tau_rows])
    return {"level": level, "n": len(tau_rows), "tau_test": float(test.statistic), "p_test": float(test.pvalue),
            "tau_val": float(val.statistic), "p_val": float(val.pvalue)}


def markdown(entries: list[dict[str, Any]], tau: dict[str, Any] | None, settings: Settings,
             searches: dict[str, dict[str, Any]]) -> str:
    lines = [
        "| budget | model | test accuracy (mean ± std) | seeds | MACs | params | CPU latency | architecture |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for e in entries:
        model = f"**archsearch** (trial {searches[e['level']]['best']['number']})" if e["kind"] == "searched" \
            else e["family"]
        lines.append(
            f"| {e['level'].upper()} | {model} | {100 * e['acc']:.2f} ± {100 * e['std']:.2f} % | {e['n']} | "
            f"{e['macs'] / 1e6:.2f} M | {e['params'] / 1e3:.1f} K | {e['latency_ms']:.2f} ms | `{e['arch_id']}` |"
        )
    lines.append("")
    for level in LEVELS:
        base = [e for e in entries if e["level"] == level and e["kind"] == "baseline"]
        found = [e for e in entries if e["level"] == level and e["kind"] == "searched"]
        if not base or not found:
            continue
        top = max(base, key=lambda e: e["acc"])
        gap = found[0]["acc"] - top["acc"]
        verdict = "meets" if gap >= IMPROVE_TARGET else "misses"
        extra = ""
        if level == "3m":
            extra = f"; {100 * found[0]['acc']:.2f}% {'>=' if found[0]['acc'] >= ACC_TARGET_3M else '<'} " \
                    f"the {100 * ACC_TARGET_3M:.1f}% target"
        s = searches[level]
        lines.append(f"- {level.upper()}: archsearch {100 * found[0]['acc']:.2f}% vs best baseline {top['family']} "
                     f"{100 * top['acc']:.2f}%: {100 * gap:+.2f} points ({verdict} the +1.0 target){extra}. "
                     f"Search: {s['spent_seconds']:.0f} s of trial time, {s['trials']} trials, {s['trained']} trained.")
    if tau is not None:
        lines.append(f"- Proxy fidelity at {tau['level'].upper()}: Kendall tau {tau['tau_test']:.3f} "
                     f"(p={tau['p_test']:.2g}) between the search-time validation accuracy and the final test accuracy "
                     f"of {tau['n']} architectures ({tau['tau_val']:.3f} against the final validation accuracy).")
    recipe = (f"Final recipe for every row: the study's SGD/cosine/shift recipe, {settings.epochs} epoch(s) on "
              f"{settings.train_subset or 'all'} training images; test accuracy on "
              f"{entries[0]['n_test'] if entries else '?'} test images; latency: median of batch-1 forward passes, "
              f"1 thread, CPU.")
    lines.append(f"- {recipe}")
    return "\n".join(lines) + "\n"


def plot(entries: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    markers = {"mobilenet": "o", "shufflenet": "s", "effnet": "^", "archsearch": "*"}
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for family, marker in markers.items():
        es = [e for e in entries if e["family"] == family]
        if not es:
            continue
        kind = "searched" if family == "archsearch" else "baseline"
        ax.errorbar([e["macs"] / 1e6 for e in es], [100 * e["acc"] for e in es], yerr=[100 * e["std"] for e in es],
                    fmt=marker, markersize=12 if family == "archsearch" else 7, capsize=3,
                    label=f"{family} ({kind})")
    for level, macs in LEVELS.items():
        if any(e["level"] == level for e in entries):
            ax.axvline(macs / 1e6, color="grey", linestyle=":", linewidth=1)
    ax.set_xscale("log")
    # plain numbers on the log axis (matplotlib would write 2 x 10^0)
    from matplotlib.ticker import FuncFormatter, LogLocator

    ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 3.0, 5.0)))
    ax.xaxis.set_minor_formatter(FuncFormatter(lambda v, _: ""))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.set_xlabel("MACs per 28x28 image (millions, log scale)")
    ax.set_ylabel("test accuracy (%), mean ± std over seeds")
    ax.set_title("Fashion-MNIST: archsearch vs scaled baselines (dotted: budgets)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    os.replace(tmp, path)


def write_readme(block: str) -> None:
    text = README.read_text(encoding="utf-8")
    section = f"{MARK_START}\n{block}{MARK_END}"
    if MARK_START in text and MARK_END in text:
        head, rest = text.split(MARK_START, 1)
        text = head + section + rest.split(MARK_END, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n## Search quality on Fashion-MNIST\n\n" + section + "\n"
    tmp = README.with_name(f".{README.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, README)


def report(out: Path, settings: Settings, command: str, readme: bool) -> str:
    rows = load_rows(out)
    entries = summarise(rows)
    searches = {name: s for name in LEVELS if (s := read_json(out / name / "search.json")) is not None}
    tau = kendall(rows, settings.tau_level)
    table = markdown(entries, tau, settings, searches)
    png = out / "accuracy_vs_macs.png"
    if entries:
        plot(entries, png)
    elif readme:
        raise SystemExit(f"error: --readme: no finished rows in {out} to write")
    block = f"Made by `{command}`:\n\n{table}"
    (out / "results.md").write_text(block, encoding="utf-8")
    if readme:
        shutil.copyfile(png, README_PLOT)
        write_readme(f"{block}\n![test accuracy against MACs]({README_PLOT.relative_to(ROOT)})\n\n")
    return table


# -------------------------------------------------------------------------------------------------
# command line


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds > 0, got {text!r}") from None
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"expected a number of seconds > 0, got {text!r}")
    return value


def _levels(text: str) -> list[str]:
    names = [t.strip().lower() for t in text.split(",") if t.strip()]
    bad = [n for n in names if n not in LEVELS]
    if not names or bad:
        raise argparse.ArgumentTypeError(f"expected a comma-separated list of {', '.join(LEVELS)}, got {text!r}")
    return sorted(set(names), key=list(LEVELS).index)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--levels", type=_levels, default=list(LEVELS), help="budget levels to run (default: 1m,3m,10m)")
    p.add_argument("--quick", action="store_true", help="the whole pipeline with tiny numbers (smoke check)")
    p.add_argument("--out", type=Path, default=None,
                   help="results folder: studies, row cache, table, plot (default: benchmarks/results/fashion_mnist"
                        "[_quick])")
    p.add_argument("--jobs", type=_positive_int, default=1, help="worker processes sharing the rows (default: 1)")
    p.add_argument("--threads", type=_positive_int, default=None,
                   help="torch threads per worker (default: cpu_count // jobs)")
    p.add_argument("--readme", action="store_true",
                   help="write the table and the plot into README.md (not with --quick)")
    g = p.add_argument_group("settings (override FULL or QUICK; stored in <out>/settings.json)")
    g.add_argument("--search-seconds", type=_positive_float, default=None, help="trial time per level's search")
    g.add_argument("--search-epochs", type=_positive_int, default=None, help="epochs of the search-time recipe")
    g.add_argument("--search-subset", type=_positive_int, default=None, help="training images of a search trial")
    g.add_argument("--epochs", type=_positive_int, default=None, help="epochs of the final recipe")
    g.add_argument("--train-subset", type=_positive_int, default=None, help="training images of the final recipe")
    g.add_argument("--seeds", type=_positive_int, default=None, help="seeds per baseline and searched network")
    g.add_argument("--tau-archs", type=_positive_int, default=None, help="architectures in the fidelity check")
    g.add_argument("--tau-level", choices=list(LEVELS), default=None,
                   help="budget level of the fidelity check (default: 3m)")
    g.add_argument("--eval-limit", type=_positive_int, default=None,
                   help="score rows on the first N validation and test images only")
    args = p.parse_args(argv)
    if args.readme and args.quick:
        p.error("--readme writes the benchmark's figures into README.md; --quick figures are only a smoke check")
    if args.tau_archs is not None and args.tau_archs < 2:
        p.error(f"--tau-archs: a rank correlation needs at least 2 architectures, got {args.tau_archs}")
    return args


def settings_of(args: argparse.Namespace) -> Settings:
    base = QUICK if args.quick else FULL
    overrides = {f.name: getattr(args, f.name) for f in dataclasses.fields(Settings)
                 if getattr(args, f.name, None) is not None}
    return dataclasses.replace(base, **overrides)


def check_settings(out: Path, settings: Settings) -> None:
    """Store the settings on first use of ``out``; refuse a rerun whose settings differ from them."""
    path = out / "settings.json"
    stored = read_json(path)
    current = dataclasses.asdict(settings)
    if stored is None:
        write_json(path, current)
        return
    changed = {k: (stored.get(k), v) for k, v in current.items() if stored.get(k) != v}
    if changed:
        diff = ", ".join(f"{k}: {old!r} there, {new!r} now" for k, (old, new) in changed.items())
        raise SystemExit(f"error: {path} holds rows made with other settings ({diff}); use another --out, or the "
                         f"same options (--quick and the overrides) as the run that made them")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    settings = settings_of(args)
    out = (args.out or DEFAULT_OUT / ("fashion_mnist_quick" if args.quick else "fashion_mnist")).resolve()
    if out.exists() and not out.is_dir():
        raise SystemExit(f"error: --out {out} exists and is not a folder")
    check_settings(out, settings)
    threads = args.threads or max(1, (os.cpu_count() or 1) // args.jobs)
    command = "python benchmarks/fashion_mnist.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    say(f"levels {','.join(args.levels)}, {args.jobs} job(s) x {threads} thread(s), out {out}; {settings}")
    t0 = time.perf_counter()
    procs = []
    if args.jobs > 1:
        import multiprocessing as mp

        ctx = mp.get_context("spawn")  # no forked torch or SQLite state
        procs = [ctx.Process(target=_worker, args=(out, args.levels, settings, args.jobs, threads))
                 for _ in range(args.jobs - 1)]
        for proc in procs:
            proc.start()
    try:
        work(out, args.levels, settings, args.jobs, threads)
        for proc in procs:
            proc.join()
    except KeyboardInterrupt:
        for proc in procs:
            proc.terminate()
        raise
    if any(proc.exitcode for proc in procs):
        raise SystemExit(f"error: a worker failed (exit codes {[proc.exitcode for proc in procs]})")
    say(f"done in {time.perf_counter() - t0:.0f} s")
    print(report(out, settings, command, args.readme), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
