"""How repeatable one latency measurement is: the same architecture measured 5 times in one run.

For a few architectures (sampled from search_spaces/mixed.yaml, and the three baseline families at
width 0.5), each is built once and measured ``--times`` times in a row as a study measures a candidate
(``LatencyTable.measure`` of the target's table in ``--dir``: CPU, one thread, batch 1, 1x28x28). Prints
the medians at the table's speed (what a trial records as ``latency_ms``) and their spread, max/min - 1,
per architecture, and the same spread of the wall times as timed; the target is a spread below 5%.

    python -m benchmarks.latency.repeatability              # 5 sampled + 3 baselines, about 40 s
    python -m benchmarks.latency.repeatability --archs 10 --threads 2

The load average is printed before and after.
"""

from __future__ import annotations

import argparse
import os

import torch

from archsearch.config.study_schema import LatencyTarget
from archsearch.latency.table import DEFAULT_DIRECTORY, table_for
from archsearch.network.build import build
from archsearch.space.baselines import effnet, mobilenet_v1, shufflenet_v1
from archsearch.space.search_space import load_space, sample_architectures
from benchmarks.common import ROOT


def _load() -> str:
    return "load average " + ", ".join(f"{v:.2f}" for v in os.getloadavg())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--archs", type=int, default=5, help="architectures sampled from the space (5)")
    p.add_argument("--times", type=int, default=5, help="measurements of each architecture (5)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--space", default=str(ROOT / "search_spaces" / "mixed.yaml"))
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--min-seconds", type=float, default=None, help="measure_latency's min_seconds (its default)")
    p.add_argument("--dir", default=str(DEFAULT_DIRECTORY), help=f"latency table directory ({DEFAULT_DIRECTORY})")
    args = p.parse_args()

    torch.set_num_threads(args.threads)
    options = {} if args.min_seconds is None else {"min_seconds": args.min_seconds}
    shape = {"in_chs": 1, "resolution": 28, "num_classes": 10}
    archs = sample_architectures(load_space(args.space), args.archs, seed=args.seed, **shape)
    archs += [mobilenet_v1(0.5, **shape), shufflenet_v1(2, 0.5, **shape), effnet(0.5, **shape)]
    table = table_for(LatencyTarget("cpu", args.threads, args.batch), directory=args.dir)
    table.fill([])  # the table's speed (its reference time), measured once if the table has none yet
    print(f"{len(archs)} architectures, each measured {args.times} times (cpu, {args.threads} thread(s), batch "
          f"{args.batch}, 1x28x28; {table.path}, reference {table.reference_ms:.4f} ms"
          f"{''.join(f', {k}={v}' for k, v in options.items())}); {_load()}", flush=True)
    spreads: dict[str, list[float]] = {"scaled": [], "timed": []}
    for a in archs:
        model = build(a)
        measured = [table.measure(model, (1, 28, 28), **options) for _ in range(args.times)]
        medians = {"scaled": [m[0].median_ms for m in measured], "timed": [m[1].median_ms for m in measured]}
        for kind, values in medians.items():
            spreads[kind].append(max(values) / min(values) - 1)
        print(f"{100 * spreads['scaled'][-1]:5.1f}% (as timed {100 * spreads['timed'][-1]:5.1f}%)  medians "
              f"{' '.join(f'{m:.3f}' for m in medians['scaled'])} ms  {a.id}", flush=True)
    for kind, label in (("scaled", "at the table's speed (latency_ms)"), ("timed", "as timed")):
        values = sorted(spreads[kind])
        print(f"spread (max/min - 1 of {args.times} medians) {label}: median {100 * values[len(values) // 2]:.1f}%, "
              f"max {100 * values[-1]:.1f}%; {sum(v < 0.05 for v in values)} of {len(values)} below 5%")
    print(_load())


if __name__ == "__main__":
    main()
