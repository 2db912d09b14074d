"""A 4-class folder at 60/25/10/5%: does a score that sees the rare class (``objective.score``), or a training that
weighs it up (``training.class_weight`` / ``training.sampler: balanced``), pick and train a network that finds it?

One cell per score and imbalance option: a search of ``--n-trials`` networks (the three seed baselines first, the
study's ``enqueue_baselines``) at ``--search-steps`` optimizer steps each, then the export's pick
(:func:`archsearch.export.selection.select_trials`) and the seed baseline with the best search score, each trained
again as the export does (:func:`archsearch.export.selection.retrain` with ``epochs``: from scratch on training +
validation, the cell's imbalance option kept) with ``--final-epochs`` and each of ``--seeds`` as the recipe's seed,
and measured on the test split (the same proportions as training). A final training is keyed by the imbalance
option, the network and the seed, so a network that two scores pick is trained once.

    python -m benchmarks.imbalance.run            # resumes: a search resumes its study, finished rows are skipped
    python -m benchmarks.imbalance.run --table    # the tables from the results file, nothing trained

One torch thread, one worker. Rows go to ``results.jsonl`` beside this file; the studies (SQLite), the image folder
and its cache to ``work/`` (git-ignored).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
CLASSES = ("T-shirt/top", "Trouser", "Sneaker", "Shirt")  # the rare class last: Shirt, mistaken for a T-shirt/top
TRAIN = (1200, 500, 200, 100)  # 60 / 25 / 10 / 5 %
TEST = (600, 250, 100, 50)  # the same proportions, 50 images of the rare class
OPTIONS = {"none": {}, "class_weight": {"class_weight": "balanced"}, "sampler": {"sampler": "balanced"}}


def study(args: argparse.Namespace, root: Path, option: str, score: str, *, seed: int = 0):
    from archsearch import study_config_from_dict
    from benchmarks.common import ROOT

    return study_config_from_dict({
        "name": f"imbalance-{option}-{score}", "storage": f"sqlite:///{args.work.resolve()}/studies/{option}-{score}.db",
        "space": str(ROOT / "search_spaces" / "mixed.yaml"),
        "dataset": {"name": "folder", "root": str(root)}, "resolution": args.resolution,
        "budget": {"max_macs": 1.0e+6}, "objective": {"score": score},
        "training": {"steps": args.search_steps, "batch_size": args.batch_size, "seed": seed, **OPTIONS[option]},
        "n_trials": args.n_trials, "enqueue_baselines": True, "sampler": {"type": "tpe", "seed": 0},
    })


def _trial(t, rare: str) -> dict[str, Any]:
    from archsearch.study.trial_record import TrialRecord

    r = TrialRecord.of(t)
    m = r.class_metrics()
    recall = None if m is None else dict(zip(m.classes, m.recall, strict=True)).get(rare)
    return {"number": t.number, "state": "INFEASIBLE" if r.infeasible else t.state.name, "baseline": r.baseline,
            "arch_id": r.arch_id, "macs": r.macs, "value": t.values[0] if t.values else None,
            "val_accuracy": r.val_accuracy, "val_balanced_accuracy": None if m is None else m.balanced_accuracy,
            "val_rare_recall": recall, "seconds": r.seconds}


def search_row(args: argparse.Namespace, root: Path, option: str, score: str, rare: str, data) -> dict[str, Any]:
    """Run (or resume) the cell's search; its trials, its pick and its best baseline."""
    from optuna.trial import TrialState

    from archsearch import run
    from archsearch.export.selection import select_trials
    from archsearch.study.trial_record import TrialRecord

    cfg = study(args, root, option, score)
    (args.work / "studies").mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with open(args.work / "studies" / f"{option}-{score}.log", "a", encoding="utf-8") as log:
        s = run(cfg, stream=log, progress=False, summarize=True, threads=1)
    wall = time.perf_counter() - t0
    trials = s.get_trials(deepcopy=False)
    pick = select_trials(s, cfg)[0]
    baselines = [t for t in trials if t.state == TrialState.COMPLETE and t.values
                 and (r := TrialRecord.of(t)).baseline is not None and not r.infeasible]
    best_baseline = max(baselines, key=lambda t: (t.values[0], -t.number))
    return {"row": f"search/{option}/{score}", "option": option, "score": score,
            "trials": [_trial(t, rare) for t in trials],
            "pick": _trial(pick, rare), "best_baseline": _trial(best_baseline, rare),
            "pick_arch": TrialRecord.of(pick).arch, "baseline_arch": TrialRecord.of(best_baseline).arch,
            "search_seconds": round(sum(t.user_attrs.get("seconds") or 0.0 for t in trials), 1),
            "wall_seconds_this_run": round(wall, 1), "n_train": len(data.y_train), "n_val": len(data.y_val)}


def final_row(args: argparse.Namespace, root: Path, option: str, arch_dict: dict, seed: int, rare: str, key: str,
              data) -> dict[str, Any]:
    """Train ``arch`` again as the export does (training + validation, ``--final-epochs``), with ``seed``."""
    import torch

    from archsearch import Arch
    from archsearch.export.selection import retrain

    cfg = study(args, root, option, "val_accuracy")
    # `epochs` epochs, not the search's steps: retrain(epochs=E) keeps training.steps, which then wins (on
    # 2026-12-07 `archsearch export --epochs E` of a steps study trained `steps` steps), so it is cleared here
    cfg = dataclasses.replace(cfg, training=dataclasses.replace(cfg.training, steps=None, seed=seed))
    arch = Arch.from_dict(arch_dict)
    _, m = retrain(arch, cfg, data, epochs=args.final_epochs, device=torch.device("cpu"))
    test = m["test"]
    return {"row": key, "option": option, "arch_id": arch.id, "seed": seed, "epochs": m["epochs"],
            "test_accuracy": test["accuracy"], "test_balanced_accuracy": test["balanced_accuracy"],
            "test_macro_f1": test["macro_f1"], "test_rare_recall": test["per_class"][rare]["recall"],
            "test_recall": {c: v["recall"] for c, v in test["per_class"].items()},
            "confusion_matrix": test["confusion_matrix"], "classes": test["classes"],
            "train_seconds": round(m["train_seconds"], 2), "trained_on": m["trained_on"],
            "threads": torch.get_num_threads()}


def final_key(option: str, arch_id: str, seed: int, epochs: int) -> str:
    return f"final/{option}/e{epochs}/{arch_id}/seed{seed}"


def tables(rows: dict[str, dict[str, Any]], args: argparse.Namespace) -> str:
    from benchmarks.imbalance.rows import mean_sd

    out = [f"Test split, mean ± sd over final-training seeds {args.seeds} ({args.final_epochs} epochs on training + "
           f"validation); val: the search's score of the network (seed 0, {args.search_steps} steps):", "",
           "| option | score | network | trial | val score | test accuracy % | test balanced accuracy % | "
           f"rare class ({rare_name(args)}) recall % | seconds a final training |",
           "|---|---|---|---|---|---|---|---|---|"]
    for option in args.options:
        for score in args.scores:
            s = rows.get(f"search/{option}/{score}")
            if s is None:
                continue
            for which in ("pick", "best_baseline"):
                t = s[which]
                fs = [r for seed in args.seeds
                      if (r := rows.get(final_key(option, t["arch_id"], seed, args.final_epochs)))]
                name = ("pick" if which == "pick" else "best baseline") + (
                    f" = {t['baseline']}" if t["baseline"] else "")
                out.append(f"| {option} | {score} | {name} | {t['number']} | {t['value']:.4f} | "
                           f"{mean_sd(r['test_accuracy'] for r in fs)} | "
                           f"{mean_sd(r['test_balanced_accuracy'] for r in fs)} | "
                           f"{mean_sd(r['test_rare_recall'] for r in fs)} | "
                           f"{mean_sd((r['train_seconds'] for r in fs), 1, 1)} |")
    searches = [rows[k] for o in args.options for sc in args.scores if (k := f"search/{o}/{sc}") in rows]
    if searches:
        out += ["", "The searches (seed-0 recipe, validation split): trials, the pick's architecture, time:", "",
                "| option | score | trials (complete / pruned) | pick | best baseline | search seconds |",
                "|---|---|---|---|---|---|"]
        for s in searches:
            states = [t["state"] for t in s["trials"]]
            out.append(f"| {s['option']} | {s['score']} | {states.count('COMPLETE')} / {states.count('PRUNED')} | "
                       f"{s['pick']['number']}: `{s['pick']['arch_id']}` | {s['best_baseline']['baseline']} | "
                       f"{s['search_seconds']:.0f} |")
        s0 = searches[0]
        out.append(f"({s0['n_train']} training and {s0['n_val']} validation images in the search; {s0['machine']})")
    return "\n".join(out)


def rare_name(args: argparse.Namespace) -> str:
    from benchmarks.imbalance.folder import slug

    return slug(args.classes[min(range(len(args.train)), key=lambda i: args.train[i])])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=HERE / "results.jsonl")
    parser.add_argument("--work", type=Path, default=HERE / "work", help="studies, the image folder, the cache")
    parser.add_argument("--classes", nargs="+", default=list(CLASSES))
    parser.add_argument("--train", type=int, nargs="+", default=list(TRAIN), help="training images per class")
    parser.add_argument("--test", type=int, nargs="+", default=list(TEST), help="test images per class")
    parser.add_argument("--scores", nargs="+", default=["val_accuracy", "balanced_accuracy", "macro_f1"],
                        help="objective.score of each search")
    parser.add_argument("--options", nargs="+", default=list(OPTIONS), choices=list(OPTIONS))
    parser.add_argument("--n-trials", type=int, default=13, help="networks a search trains, the 3 baselines included")
    parser.add_argument("--search-steps", type=int, default=150, help="training.steps of a search trial (150)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--resolution", type=int, default=28)
    parser.add_argument("--final-epochs", type=int, default=10, help="the export's --epochs (10)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds of the final trainings")
    parser.add_argument("--table", action="store_true", help="print the tables of the results file; train nothing")
    args = parser.parse_args(argv)

    from benchmarks.imbalance.rows import append_row, read_rows

    if args.table:
        print(tables(read_rows(args.results), args))
        return
    os.environ.setdefault("ARCHSEARCH_CACHE_DIR", str(args.work / "cache"))
    import torch

    from archsearch import Arch
    from archsearch.config.assemble import load_config_data
    from benchmarks.common import claim
    from benchmarks.imbalance.folder import write_folder

    torch.set_num_threads(1)
    rare = rare_name(args)
    lock = args.work / f"{args.results.stem}.lock"  # in work/, which git ignores
    with claim(lock) as mine:
        if not mine:
            sys.exit(f"another run holds {lock}")
        root = args.work / "imbalance_folder"
        write_folder(root, args.classes, args.train, args.test, seed=0)
        _, data = load_config_data(study(args, root, "none", "val_accuracy"))
        rows = read_rows(args.results)
        new = 0

        def add(row: dict[str, Any]) -> None:
            nonlocal new
            append_row(args.results, row)
            rows[row["row"]] = row
            new += 1

        for option in args.options:
            for score in args.scores:
                key = f"search/{option}/{score}"
                if key not in rows:
                    add(search_row(args, root, option, score, rare, data))
                    s = rows[key]
                    print(f"{key}: pick trial {s['pick']['number']} {s['pick']['value']:.4f} "
                          f"({s['pick']['baseline'] or 'searched'}), best baseline {s['best_baseline']['baseline']} "
                          f"{s['best_baseline']['value']:.4f}; {s['search_seconds']:.0f} s", flush=True)
                s = rows[key]
                for arch in (s["pick_arch"], s["baseline_arch"]):
                    for seed in args.seeds:
                        fkey = final_key(option, Arch.from_dict(arch).id, seed, args.final_epochs)
                        if fkey in rows:
                            continue
                        add(final_row(args, root, option, arch, seed, rare, fkey, data))
                        r = rows[fkey]
                        print(f"{fkey}: test accuracy {100 * r['test_accuracy']:.2f}%, balanced "
                              f"{100 * r['test_balanced_accuracy']:.2f}%, {rare} recall "
                              f"{100 * r['test_rare_recall']:.1f}%; {r['train_seconds']:.1f} s", flush=True)
    print(f"{new} new row(s) in {args.results}\n")
    print(tables(read_rows(args.results), args))


if __name__ == "__main__":
    main()
