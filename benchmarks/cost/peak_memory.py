"""The analytic peak activation memory against a measurement, on random networks of every shipped space.

The measurement is :func:`archsearch.network.memory.measured_peak_bytes` (a ``torch.fx`` trace walked in execution
order, each tensor alive until its last use; the module docstring states the convention). Prints, per space, how
many of the sampled networks agree exactly, and the worst ratio where they do not.

    python -m benchmarks.cost.peak_memory                 # 200 networks of each space at 1x28x28
    python -m benchmarks.cost.peak_memory --samples 20 --input 3x32x32
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

from archsearch.core.text import input_shape
from archsearch.network.build import build
from archsearch.network.cost import arch_cost
from archsearch.network.memory import measured_peak_bytes
from archsearch.space.search_space import load_space, sample_architectures
from benchmarks.common import ROOT

SPACES = ("mixed", "mobilenet", "shufflenet", "effnet")


def agreement(space_name: str, samples: int, in_chs: int, res: int, seed: int = 0) -> tuple[int, int, list[str]]:
    """(agreeing, sampled, lines for the ones that do not)."""
    space = load_space(ROOT / "search_spaces" / f"{space_name}.yaml")
    archs = sample_architectures(space, samples, in_chs=in_chs, resolution=res, num_classes=10, seed=seed)
    agree, off = 0, []
    for a in archs:
        analytic = arch_cost(a).peak_activation_bytes
        measured = measured_peak_bytes(build(a), (a.in_chs, a.resolution, a.resolution))
        agree += analytic == measured
        if analytic != measured:
            off.append(f"  {space_name}: analytic {analytic:,} B, measured {measured:,} B "
                       f"({measured / analytic:.3f}x): {a.id}")
    return agree, len(archs), off


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--samples", type=int, default=200, help="networks per space (200)")
    p.add_argument("--input", type=input_shape, default=(1, 28), metavar="CxHxW", help="input shape (1x28x28)")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    total = 0
    for name in SPACES:
        t0 = time.perf_counter()
        agree, n, off = agreement(name, args.samples, *args.input)
        total += agree == n
        print(f"{name}: analytic peak == measured on {agree}/{n} networks ({time.perf_counter() - t0:.0f} s)",
              flush=True)
        for line in off[:5]:
            print(line)
    return 0 if total == len(SPACES) else 1


if __name__ == "__main__":
    sys.exit(main())
