"""How many optimizer steps does a search trial need on a 500-image, 4-class folder? The smallest ``training.steps``
whose test accuracy is within 2 points of a long training's, for the best seed baseline fitted to the README's
study (``mixed.yaml``, ``max_macs: 1.0e+6``, resolution 32), beside the README's old recipe (4 epochs, batch 64).

Each training is a search trial's: the study's recipe on the training split (the folder's train/ less the 20%
held out for validation), from the recipe's seed (:func:`archsearch.export.selection.retrain` without ``epochs``);
its accuracy on the folder's test/ is measured after. First each seed baseline trains at ``--choose-steps``, once
per seed; the one with the best mean validation accuracy is "the best seed baseline" and trains at every recipe.

    python -m benchmarks.imbalance.recipe            # resumes: rows already in the results file are skipped
    python -m benchmarks.imbalance.recipe --table    # the tables from the results file, nothing trained

One torch thread (archsearch's default). Rows go to ``recipe.jsonl`` beside this file, one a training.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Sneaker")
OLD = (4, 64)  # the README's recipe before training.steps: `training: {epochs: 4, batch_size: 64}`
WITHIN = 0.02  # "within 2 points of a long training"


@dataclasses.dataclass(frozen=True)
class Recipe:
    """A trial's training length: ``steps`` batches of ``batch_size``, or ``epochs`` epochs (steps None)."""

    name: str
    batch_size: int
    steps: int | None = None
    epochs: int | None = None

    def training(self, seed: int) -> dict[str, Any]:
        length = {"steps": self.steps} if self.steps is not None else {"epochs": self.epochs}
        return {**length, "batch_size": self.batch_size, "seed": seed}

    def key(self) -> str:
        length = f"steps{self.steps}" if self.steps is not None else f"epochs{self.epochs}"
        return f"{length}/bs{self.batch_size}"

    def steps_on(self, n_train: int) -> int:
        """Optimizer steps taken on ``n_train`` images (BatchNorm networks drop a last batch of one)."""
        if self.steps is not None:
            return self.steps
        return self.epochs * (math.ceil(n_train / self.batch_size) - (n_train % self.batch_size == 1))


def recipes(args: argparse.Namespace) -> list[Recipe]:
    out = [Recipe(f"steps {s}", args.batch_size, steps=s) for s in args.steps]
    out.append(Recipe(f"long: steps {args.long}", args.batch_size, steps=args.long))
    out.append(Recipe(f"old README: epochs {OLD[0]}, batch {OLD[1]}", OLD[1], epochs=OLD[0]))
    return out


def study(root: Path, recipe: Recipe, seed: int):
    from archsearch import study_config_from_dict
    from benchmarks.common import ROOT

    return study_config_from_dict({
        "name": "recipe", "space": str(ROOT / "search_spaces" / "mixed.yaml"),
        "dataset": {"name": "folder", "root": str(root)}, "resolution": 32, "budget": {"max_macs": 1.0e+6},
        "training": recipe.training(seed), "storage": "sqlite:///:memory:",
    })


def train_row(key: str, family: str, root: Path, recipe: Recipe, seed: int, data) -> dict[str, Any]:
    """Train the budget-fitted ``family`` with ``recipe`` and ``seed``, as a search trial does; the row."""
    import torch

    from archsearch import arch_cost, fit_to_budget
    from archsearch.export.selection import retrain

    arch = fit_to_budget(family, in_chs=data.in_chs, resolution=data.resolution, num_classes=data.num_classes,
                         max_macs=1.0e+6)
    t0 = time.perf_counter()
    _, m = retrain(arch, study(root, recipe, seed), data, device=torch.device("cpu"))
    wall = time.perf_counter() - t0
    return {"row": key, "network": family, "arch_id": arch.id, "macs": arch_cost(arch).macs, "recipe": recipe.name,
            "batch_size": recipe.batch_size, "steps": recipe.steps_on(len(data.y_train)), "epochs": m["epochs"],
            "seed": seed, "val_accuracy": m["val_accuracy"], "val_balanced_accuracy": m["val"]["balanced_accuracy"],
            "test_accuracy": m["test_accuracy"], "test_balanced_accuracy": m["test"]["balanced_accuracy"],
            "train_seconds": round(m["train_seconds"], 2), "wall_seconds": round(wall, 2),
            "n_train": len(data.y_train), "n_val": len(data.y_val), "n_test": len(data.y_test),
            "threads": torch.get_num_threads()}


def chosen(rows: dict[str, dict[str, Any]], families: list[str], choose: Recipe, seeds: list[int]) -> str | None:
    """The family with the best mean validation accuracy at ``choose`` (None until every seed of each is in)."""
    means = {}
    for family in families:
        vals = [rows.get(f"{family}/{choose.key()}/seed{s}", {}).get("val_accuracy") for s in seeds]
        if None in vals:
            return None
        means[family] = statistics.mean(vals)
    return max(families, key=lambda f: means[f])  # the first of equals, in the order given


def tables(rows: dict[str, dict[str, Any]], args: argparse.Namespace) -> str:
    from benchmarks.imbalance.rows import mean_sd

    choose = Recipe(f"steps {args.choose_steps}", args.batch_size, steps=args.choose_steps)
    best = chosen(rows, args.families, choose, args.seeds)

    def cell(family: str, recipe: Recipe) -> list[dict[str, Any]]:
        return [r for s in args.seeds if (r := rows.get(f"{family}/{recipe.key()}/seed{s}"))]

    out = [f"Choosing the baseline ({choose.name}, batch {args.batch_size}; seeds {args.seeds}):", "",
           "| network | MACs | val accuracy % | test accuracy % | seconds a training |", "|---|---|---|---|---|"]
    for family in args.families:
        rs = cell(family, choose)
        if rs:
            out.append(f"| {family} | {rs[0]['macs']:,} | {mean_sd(r['val_accuracy'] for r in rs)} | "
                       f"{mean_sd(r['test_accuracy'] for r in rs)} | "
                       f"{mean_sd((r['train_seconds'] for r in rs), 1, 1)} |")
    if best is None:
        return "\n".join(out + ["", "(the choice is not made yet)"])
    long = Recipe(f"long: steps {args.long}", args.batch_size, steps=args.long)
    long_rows = cell(best, long)
    long_mean = statistics.mean(r["test_accuracy"] for r in long_rows) if len(long_rows) == len(args.seeds) else None
    out += ["", f"The best seed baseline: {best} ({rows[f'{best}/{choose.key()}/seed{args.seeds[0]}']['arch_id']}); "
            f"test accuracy over seeds {args.seeds} (mean ± sd):", "",
            "| recipe | steps | epochs | test accuracy % | val accuracy % | seconds a training | "
            "within 2 points of long |",
            "|---|---|---|---|---|---|---|"]
    first = None
    for recipe in recipes(args):
        rs = cell(best, recipe)
        if not rs:
            continue
        mean = statistics.mean(r["test_accuracy"] for r in rs)
        near = "-" if long_mean is None or len(rs) < len(args.seeds) else (
            "yes" if mean >= long_mean - WITHIN else "no")
        if near == "yes" and recipe.steps is not None and recipe.steps != args.long and recipe.batch_size == \
                args.batch_size and (first is None or recipe.steps < first):
            first = recipe.steps
        out.append(f"| {recipe.name} | {rs[0]['steps']} | {rs[0]['epochs']} | "
                   f"{mean_sd(r['test_accuracy'] for r in rs)} | {mean_sd(r['val_accuracy'] for r in rs)} | "
                   f"{mean_sd((r['train_seconds'] for r in rs), 1, 1)} | {near} |")
    if long_mean is not None:
        out += ["", f"smallest steps within {100 * WITHIN:.0f} points of the long training's mean "
                f"({100 * long_mean:.2f}%): {first if first is not None else 'none of those run'}"]
    r0 = next(iter(rows.values()))
    out.append(f"({r0['n_train']} training, {r0['n_val']} validation, {r0['n_test']} test images; {r0['machine']}, "
               f"{r0['threads']} thread)")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=HERE / "recipe.jsonl")
    parser.add_argument("--work", type=Path, default=HERE / "work", help="the image folder and the image cache")
    parser.add_argument("--classes", nargs="+", default=list(CLASSES))
    parser.add_argument("--train-per-class", type=int, default=125)
    parser.add_argument("--test-per-class", type=int, default=100)
    parser.add_argument("--steps", type=int, nargs="+", default=[50, 100, 200, 400, 800])
    parser.add_argument("--long", type=int, default=2000, help="steps of the long training (2000)")
    parser.add_argument("--choose-steps", type=int, default=400, help="steps of the baseline choice (400)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--families", nargs="+", default=["mobilenet", "shufflenet", "effnet"])
    parser.add_argument("--table", action="store_true", help="print the tables of the results file; train nothing")
    args = parser.parse_args(argv)

    from benchmarks.imbalance.rows import append_row, read_rows

    if args.table:
        print(tables(read_rows(args.results), args))
        return
    os.environ.setdefault("ARCHSEARCH_CACHE_DIR", str(args.work / "cache"))
    import torch

    from archsearch.config.assemble import load_config_data
    from benchmarks.common import claim
    from benchmarks.imbalance.folder import write_folder

    torch.set_num_threads(1)
    lock = args.work / f"{args.results.stem}.lock"  # in work/, which git ignores
    with claim(lock) as mine:
        if not mine:
            sys.exit(f"another run holds {lock}")
        n = len(args.classes)
        root = args.work / "recipe_folder"
        write_folder(root, args.classes, [args.train_per_class] * n, [args.test_per_class] * n, seed=0)
        choose = Recipe(f"steps {args.choose_steps}", args.batch_size, steps=args.choose_steps)
        _, data = load_config_data(study(root, choose, 0))  # the validation split is the seed-0 one throughout
        rows = read_rows(args.results)
        new = 0

        def run(family: str, recipe: Recipe) -> None:
            nonlocal new
            for seed in args.seeds:
                key = f"{family}/{recipe.key()}/seed{seed}"
                if key in rows:
                    continue
                row = train_row(key, family, root, recipe, seed, data)
                append_row(args.results, row)
                rows[key] = row
                new += 1
                print(f"{key}: val {100 * row['val_accuracy']:.2f}%, test {100 * row['test_accuracy']:.2f}%, "
                      f"{row['train_seconds']:.1f} s", flush=True)

        for family in args.families:
            run(family, choose)
        best = chosen(rows, args.families, choose, args.seeds)
        for recipe in recipes(args):
            run(best, recipe)
    print(f"{new} new row(s) in {args.results}\n")
    print(tables(read_rows(args.results), args))


if __name__ == "__main__":
    main()
