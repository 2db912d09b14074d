"""Would a re-rank at the final recipe pick a better network? One finished benchmark search, re-ranked again.

The Fashion-MNIST benchmark's searches end with the studies' re-rank (2 epochs on 30,000 images), and the
searched network is the best searched candidate by that score. A short recipe favours shallow networks that
converge fast (README: Proxy fidelity), and the seed baselines it underrates are deep. This script takes one
committed search (``benchmarks/fashion_mnist/studies/<level>/<sampler>.journal``), copies it, and re-ranks the
same candidates (the study's top 5 and the 3 baselines) with another recipe, by default the final one: 8 epochs
on the whole training split, scored on the search's validation split (the test split stays unseen). It prints
both re-ranks side by side and which candidate each picks; with ``--rows`` it also trains the new pick with the
benchmark's final recipe (8 epochs on all 60,000 images, seeds 0-2, test split), unless the benchmark's results
file has that network's rows already.

Results go to ``benchmarks/rerank_fidelity/<level>-<sampler>-e<epochs>-n<images>.json`` (committed), written
after every training, so a rerun resumes; the committed journal is never written.

    python -m benchmarks.rerank_fidelity.run --level 1m [--sampler tpe] [--epochs 8] [--images all] [--rows]
        [--results FILE --studies DIR]   # another copy of the benchmark (tests: the --quick one)
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import tempfile
from pathlib import Path

import optuna
import torch

from archsearch.config.assemble import load_config_data
from archsearch.config.study_schema import RerankConfig
from archsearch.network.arch import Arch
from archsearch.search import rerank
from archsearch.search.objective import Objective
from archsearch.study import rerank_results
from archsearch.study.storage import make_storage
from archsearch.study.trial_record import ARCH_ATTR, BASELINE_ATTR
from benchmarks.common import read_json, write_json
from benchmarks.fashion_mnist.level import Level, final_train, machine
from benchmarks.fashion_mnist.search import now
from benchmarks.fashion_mnist.store import FULL, LEVELS, RESULTS, STUDIES_DIR, Results

OUT = Path(__file__).resolve().parent  # <level>-<sampler>-e<epochs>-n<images>.json, beside the code


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--level", choices=list(LEVELS), required=True)
    p.add_argument("--sampler", choices=("tpe", "random"), default="tpe")
    p.add_argument("--epochs", type=int, default=FULL.epochs, help="epochs of the new re-rank (default: 8)")
    p.add_argument("--images", default="all", help="training images of the new re-rank (default: all)")
    p.add_argument("--rows", action="store_true", help="train the new pick's final rows, seeds 0-2")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=OUT)
    p.add_argument("--results", type=Path, default=RESULTS, help="the benchmark's results file (default: committed)")
    p.add_argument("--studies", type=Path, default=STUDIES_DIR, help="its journal files (default: committed)")
    args = p.parse_args(argv)
    args.images = None if args.images == "all" else int(args.images)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    results = Results(args.results)
    stored = results.get("settings")
    settings = dataclasses.replace(FULL, **{k: v for k, v in (stored or {}).items() if k != "key"})
    level = Level(args.level, OUT / "work", args.studies, results, settings)  # work/: locks, git-ignored
    shipped = level.config(args.sampler)
    search = results.get(f"search/{args.level}/{args.sampler}")
    if search is None:
        raise SystemExit(f"error: {args.results} has no search/{args.level}/{args.sampler}: run that search first")
    out = args.out / f"{args.level}-{args.sampler}-e{args.epochs}-n{args.images or 'all'}.json"
    record = read_json(out) or {"level": args.level, "sampler": args.sampler, "epochs": args.epochs,
                                "images": args.images, "reranked": {}, "rows": {}}
    journal = Path(shipped.storage.removeprefix("journal:"))
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / journal.name
        shutil.copy(journal, copy)  # the committed journal is never written
        new = dataclasses.replace(shipped, storage=f"journal:{copy}",
                                  rerank=RerankConfig(top=shipped.rerank.top, epochs=args.epochs,
                                                      train_subset=args.images))
        study = optuna.load_study(study_name=new.name, storage=make_storage(new.storage, create=False))
        want = rerank_results.recipe_key(new)
        for number, done in record["reranked"].items():  # resume: the results of an earlier run of this script
            study.set_user_attr(f"{rerank_results.PREFIX}{number}", {**done, "recipe": want})
        space, data = load_config_data(new)
        objective = Objective(new, space, data, device=torch.device("cpu"))

        def keep(text: str) -> None:
            print(text, flush=True)
            record["reranked"] = {str(n): {k: v for k, v in r.items() if k != "recipe"}
                                  for n, r in rerank_results.results(study, new).items()}
            write_json(out, record)

        rerank.rerank(study, new, objective, say=keep)
        keep(f"{args.level}/{args.sampler}: re-ranked with {args.epochs} epochs on {args.images or 'all'} images")
        old = {int(n): v for n, v in search["reranked"].items()}  # the shipped re-rank's scores
        trials = {t.number: t for t in study.trials}
    newer = {int(n): v["value"] for n, v in record["reranked"].items()}

    def pick(scores: dict[int, float]) -> int:
        searched = [n for n in scores if BASELINE_ATTR not in trials[n].user_attrs]
        return max(searched, key=lambda n: (scores[n], -n))

    print(f"\n| trial | network | shipped re-rank ({shipped.rerank.epochs} x {shipped.rerank.train_subset}) | "
          f"this re-rank ({args.epochs} x {args.images or 'all'}) |\n|---|---|---|---|")
    for n in sorted(newer, key=lambda n: -newer[n]):
        what = trials[n].user_attrs.get(BASELINE_ATTR) or "searched"
        print(f"| {n} | {what} | {100 * old.get(n, float('nan')):.2f} | {100 * newer[n]:.2f} |")
    record["pick"], record["shipped_pick"] = pick(newer), pick(old)
    print(f"\nshipped re-rank picks trial {record['shipped_pick']}, this one trial {record['pick']}")
    write_json(out, record)
    if args.rows:
        arch = Arch.from_dict(trials[record["pick"]].user_attrs[ARCH_ATTR])
        done, data = results.read(), None
        for seed in range(settings.seeds):
            key = str(seed)
            bench = next((r for r in done.values() if r.get("arch_id") == arch.id and r.get("seed") == seed
                          and r.get("epochs") == settings.epochs and "test_accuracy" in r), None)
            if key in record["rows"]:
                continue
            if bench is not None:  # the benchmark trained this network with this seed already
                record["rows"][key] = {"test_accuracy": bench["test_accuracy"], "reused_from": bench["key"]}
            else:
                if data is None:
                    _, data = load_config_data(level.base)
                recipe = dataclasses.replace(level.final, epochs=settings.epochs)
                row = final_train(arch, recipe, data, seed=seed, subset=settings.train_subset)
                row.pop("model")
                record["rows"][key] = {**row, "arch_id": arch.id, "machine": machine(), "created": now()}
            write_json(out, record)
            print(f"trial {record['pick']} seed {seed}: test {100 * record['rows'][key]['test_accuracy']:.2f}%",
                  flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
