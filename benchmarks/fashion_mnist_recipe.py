"""What a longer final recipe gives on Fashion-MNIST: one level's searched network and baselines, one seed.

``benchmarks/fashion_mnist.py`` trains every row with a short final recipe (4 epochs on 18,000 images) so
that the whole benchmark fits two hours on two cores. This script measures what the same networks reach
with a longer one, to size that trade: ``--epochs`` epochs on all 60,000 training images (training and
validation splits, ``archsearch.export.retrain(epochs=...)``, the study's optimizer, schedule and
augmentation), then the 10,000 test images. The searched network is the one the benchmark's search
found (``<out>/<level>/search.json``: run that level of ``fashion_mnist.py`` first); the baselines are the
seed's families fitted to the budget. One thread; prints a JSON line per network and appends it to
``<out>/<level>/longer_recipe.jsonl``. Nothing here feeds the benchmark's table.

    python benchmarks/fashion_mnist_recipe.py --level 3m --epochs 15 --models searched,effnet
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing
from archsearch import baselines  # noqa: E402
from archsearch.arch import Arch  # noqa: E402
from archsearch.config import load_study_config  # noqa: E402
from archsearch.export import retrain  # noqa: E402
from archsearch.study import load_config_data  # noqa: E402
from fashion_mnist import DEFAULT_OUT, LEVELS, STUDIES  # noqa: E402  (this folder: the benchmark's levels)

MODELS = ("searched", *baselines.FAMILIES)


def architecture(model: str, level: str, out: Path) -> Arch:
    if model == "searched":
        record = out / level / "search.json"
        if not record.is_file():
            sys.exit(f"{record}: no finished search; run `python benchmarks/fashion_mnist.py --levels {level}` first")
        return Arch.from_dict(json.loads(record.read_text())["best"]["arch"])
    arch = baselines.fit_to_budget(model, in_chs=1, resolution=28, num_classes=10, max_macs=LEVELS[level])
    if arch is None:
        sys.exit(f"no {model} variant fits {LEVELS[level]:,} MACs")
    return arch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--level", choices=LEVELS, default="3m")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--models", default="searched,effnet", help=f"comma-separated, of {', '.join(MODELS)}")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT / "fashion_mnist")
    args = parser.parse_args()
    models = args.models.split(",")
    if unknown := [m for m in models if m not in MODELS]:
        parser.error(f"--models: unknown {', '.join(unknown)}; expected some of {', '.join(MODELS)}")
    torch.set_num_threads(1)

    config = load_study_config(STUDIES / f"fmnist_{args.level}.yaml")
    _, data = load_config_data(config)
    for model in models:
        arch = architecture(model, args.level, args.out)
        torch.manual_seed(args.seed)  # the initial weights, as the benchmark's rows draw them
        start = time.perf_counter()
        _, measured = retrain(arch, config, data, epochs=args.epochs, device=torch.device("cpu"))
        line = {
            "level": args.level,
            "model": model,
            "arch_id": arch.id,
            "seed": args.seed,
            "epochs": measured["epochs"],
            "trained_on": measured["trained_on"],
            "test_accuracy": measured["test_accuracy"],
            "seconds": round(time.perf_counter() - start, 1),
            "training": measured["training"],
        }
        print(json.dumps(line), flush=True)
        with open(args.out / args.level / "longer_recipe.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(line) + "\n")


if __name__ == "__main__":
    main()
