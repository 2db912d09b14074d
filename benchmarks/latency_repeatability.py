"""How repeatable one latency measurement is: the same architecture measured 5 times in one run.

For a few architectures (sampled from search_spaces/mixed.yaml, and the three baseline families at
width 0.5), each is built once and measured ``--times`` times in a row with ``measure_latency``'s
defaults, as a study measures a candidate (CPU, one thread, batch 1, 1x28x28). Prints the five medians
and their spread, max/min - 1, per architecture; the target is a spread below 5%.

    python benchmarks/latency_repeatability.py              # 5 sampled + 3 baselines, about 30 s
    python benchmarks/latency_repeatability.py --archs 10 --threads 2

Only meaningful on a quiet machine: the load average is printed before and after.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # run from a checkout, installed or not

import torch  # noqa: E402

from archsearch.baselines import effnet, mobilenet_v1, shufflenet_v1  # noqa: E402
from archsearch.build import build  # noqa: E402
from archsearch.latency import measure_latency  # noqa: E402
from archsearch.space import load_space, sample_architectures  # noqa: E402


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
    args = p.parse_args()

    torch.set_num_threads(args.threads)
    options = {} if args.min_seconds is None else {"min_seconds": args.min_seconds}
    shape = {"in_chs": 1, "resolution": 28, "num_classes": 10}
    archs = sample_architectures(load_space(args.space), args.archs, seed=args.seed, **shape)
    archs += [mobilenet_v1(0.5, **shape), shufflenet_v1(2, 0.5, **shape), effnet(0.5, **shape)]
    print(f"{len(archs)} architectures, each measured {args.times} times (cpu, {args.threads} thread(s), batch "
          f"{args.batch}, 1x28x28; measure_latency defaults{''.join(f', {k}={v}' for k, v in options.items())}); "
          f"{_load()}", flush=True)
    spreads = []
    for a in archs:
        model = build(a)
        medians = [
            measure_latency(model, (1, 28, 28), threads=args.threads, batch=args.batch, **options).median_ms
            for _ in range(args.times)
        ]
        spread = max(medians) / min(medians) - 1
        spreads.append(spread)
        print(f"{100 * spread:5.1f}%  medians {' '.join(f'{m:.3f}' for m in medians)} ms  {a.id}", flush=True)
    spreads.sort()
    print(f"spread (max/min - 1 of {args.times} medians): median {100 * spreads[len(spreads) // 2]:.1f}%, "
          f"max {100 * spreads[-1]:.1f}%; {sum(s < 0.05 for s in spreads)} of {len(spreads)} below 5%; {_load()}")


if __name__ == "__main__":
    main()
