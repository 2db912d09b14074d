"""How far an export's retrain moves with the thread count: the quickstart's recipe, budget-fitted networks.

For ``--archs`` budget-fitted architectures of the quickstart (its space, budget and recipe; shapes drawn with
``--seed``), runs ``archsearch.export.folder.retrain`` (what ``archsearch export`` trains) three times: with one torch
thread, with one thread again, and with ``--threads`` threads. Prints, per architecture, the validation
accuracy of each and the largest weight difference against the first, then the spread over all of them. Asserts
nothing. Another device (CUDA against CPU) is a third case that this machine cannot measure.

    python -m benchmarks.reproducibility.export_threads [--archs 8] [--threads 2] [--seed 0]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch

from archsearch.config.assemble import load_config_data
from archsearch.config.study_config import load_study_config
from archsearch.export.selection import retrain
from benchmarks.common import ROOT, fitted_archs


def _run(arch, config, data, threads: int) -> tuple[float, dict[str, torch.Tensor]]:
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        model, measured = retrain(arch, config, data, device=torch.device("cpu"))
    finally:
        torch.set_num_threads(before)
    return measured["val_accuracy"], {k: v.clone() for k, v in model.state_dict().items()}


def _max_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    return max((a[k].double() - b[k].double()).abs().max().item() for k in a if a[k].is_floating_point())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", type=int, default=8, help="budget-fitted architectures (8)")
    parser.add_argument("--threads", type=int, default=2, help="the other thread count (2)")
    parser.add_argument("--seed", type=int, default=0, help="shape sampling seed (0)")
    parser.add_argument("--config", type=Path, default=ROOT / "studies" / "quickstart.yaml")
    args = parser.parse_args(argv)

    config = load_study_config(args.config)
    space, data = load_config_data(config)
    archs = fitted_archs(space, config.budget.limits(), args.archs, in_chs=data.in_chs, resolution=data.resolution,
                         num_classes=data.num_classes, seed=args.seed)
    n_val = len(data.y_val)
    print(f"{len(archs)} budget-fitted networks of {args.config.name}; validation accuracy on {n_val} images "
          f"(one image is {100 / n_val:.2f} points)")
    print(f"{'architecture':<72} {'1 thread':>9} {'again':>9} {f'{args.threads} threads':>10} {'weights':>9}")
    same, other, moved = [], [], []
    for arch in archs:
        acc1, w1 = _run(arch, config, data, 1)
        acc1b, w1b = _run(arch, config, data, 1)
        acc2, w2 = _run(arch, config, data, args.threads)
        same.append(_max_diff(w1, w1b))
        other.append(100 * (acc2 - acc1))
        moved.append(_max_diff(w1, w2))
        print(f"{arch.id[:72]:<72} {100 * acc1:>8.2f}% {100 * acc1b:>8.2f}% {100 * acc2:>9.2f}% {moved[-1]:>9.2g}")
    print(f"one thread twice: largest weight difference {max(same):.3g} (identical: {all(d == 0 for d in same)})")
    print(f"{args.threads} threads against 1: validation accuracy moved {min(other):+.2f} to {max(other):+.2f} points "
          f"(median |change| {statistics.median(abs(d) for d in other):.2f}); weights differ by up to "
          f"{max(moved):.3g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
