"""Budget fitting over every shipped space at every shipped study's budget: how much of the budget it spends.

For each space in ``search_spaces/`` and each budget of the shipped studies (the quickstart's 300,000 MACs and
20,000 parameters at 8x8, Fashion-MNIST's 1M, 3M and 10M MACs at 28x28), draws ``--shapes`` shapes uniformly
(seeded) and fits each (``archsearch.space.fit.fit_shape``, the space's ``width_mult`` range). Prints per pair: the
counts of fitted, capped (within budget at the largest multiplier) and infeasible (over it at the smallest)
shapes, how many reach ``budget_use >= 0.95``, the spread of ``budget_use``, and the median time of one fit
beside the median time of one analytic cost of a record (``arch_cost`` uncached), both measured in this run.
Asserts nothing.

    python -m benchmarks.cost.budget_fit [--shapes 200] [--seed 0]
"""

from __future__ import annotations

import argparse
import statistics
import time

from archsearch.config.study_config import load_study_config
from archsearch.network.cost import arch_cost
from archsearch.space.fit import fit_shape, summarize
from archsearch.space.search_space import load_space, sample_shapes
from benchmarks.common import ROOT

SPACES = ("mixed", "mobilenet", "shufflenet", "effnet")
STUDIES = {"quickstart": (1, 8), "fmnist_1m": (1, 28), "fmnist_3m": (1, 28), "fmnist_10m": (1, 28)}  # input


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(f"{args.shapes} shapes per row (seed {args.seed}); times: median of one fit / one analytic cost")
    print("| space | study | budget | fitted | capped | infeasible | budget_use >= 0.95 | min | 5% | median "
          "| fit ms | cost ms |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    total = held = 0
    fit_ms_all, cost_ms_all = [], []
    for space_name in SPACES:
        space = load_space(ROOT / "search_spaces" / f"{space_name}.yaml")
        low, high = min(space.width_mult), max(space.width_mult)
        for study, (in_chs, res) in STUDIES.items():
            limits = load_study_config(ROOT / "studies" / f"{study}.yaml").budget.limits()
            shapes = sample_shapes(space, args.shapes, in_chs=in_chs, resolution=res, num_classes=10,
                                   seed=args.seed)
            fits, fit_s, cost_s = [], [], []
            for shape in shapes:
                arch_cost.cache_clear()  # a fit pays for every cost it computes
                t0 = time.perf_counter()
                fit = fit_shape(shape, limits, low=low, high=high)
                fit_s.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                arch_cost.__wrapped__(fit.arch)
                cost_s.append(time.perf_counter() - t0)
                fits.append(fit)
            s = summarize(fits)
            total += len(fits)
            held += s["at_threshold"]
            fit_ms_all += fit_s
            cost_ms_all += cost_s
            budget = ", ".join(f"{m} {v:,.0f}" for m, v in limits.items())
            print(f"| {space_name} | {study} | {budget} | {s['fitted']} | {s['capped']} | {s['infeasible']} | "
                  f"{s['at_threshold']} of {len(fits)} | {s['use_min']:.3f} | {s['use_p5']:.3f} | "
                  f"{s['use_median']:.3f} | {1000 * statistics.median(fit_s):.2f} | "
                  f"{1000 * statistics.median(cost_s):.3f} |", flush=True)
    print(f"\nall rows: {held} of {total} shapes at budget_use >= 0.95; one fit "
          f"{1000 * statistics.median(fit_ms_all):.2f} ms median (max {1000 * max(fit_ms_all):.1f}), one analytic cost "
          f"{1000 * statistics.median(cost_ms_all):.3f} ms median")


if __name__ == "__main__":
    main()
