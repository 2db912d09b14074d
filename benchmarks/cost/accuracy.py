"""How exact and how fast the analytic cost model is, on architectures sampled from the shipped spaces.

For each space and input shape, 500 architectures drawn by ``sample_architectures`` (Optuna's seeded
RandomSampler) are built and counted twice: by thop (told our convention: only convolutions and linear
layers count) and by torch's FlopCounterMode (FLOPs / 2). An architecture agrees when the analytic MACs
equal both counts and the analytic parameter count equals the module's. Then the median time of the
analytic cost of one record (``arch_cost`` with its cache cleared) is set beside the median time of
building the same record and counting it with thop.

    python -m benchmarks.cost.accuracy            # 500 per space and shape, a few minutes
    python -m benchmarks.cost.accuracy --archs 50  # a quick look

Prints figures only; tests/network/test_cost.py asserts the agreement.
"""

from __future__ import annotations

import argparse
import statistics
import time

import optuna
import thop
import torch
from thop.vision.basic_hooks import zero_ops
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from archsearch.network.build import build
from archsearch.network.cost import arch_cost
from archsearch.space.search_space import load_space, sample_architectures
from benchmarks.common import ROOT

SPACES = ("mixed", "mobilenet", "shufflenet", "effnet")
SHAPES = ((1, 28), (3, 32))
N = 500
THOP_ZERO = {
    t: zero_ops
    for t in (nn.BatchNorm2d, nn.ReLU, nn.LeakyReLU, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d,
              nn.ZeroPad2d, nn.Identity, nn.Flatten)
}
COUNTED_OPS = {torch.ops.aten.convolution, torch.ops.aten.addmm, torch.ops.aten.mm}


def main(n: int = N) -> None:
    torch.set_num_threads(1)  # batch-1 forwards of tiny maps
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    analytic_s: list[float] = []
    counted_s: list[float] = []
    start, cpu_start = time.perf_counter(), time.process_time()
    print(f"analytic MACs == thop == FlopCounterMode / 2, and analytic params == module params ({n} per line)")
    for name in SPACES:
        space = load_space(ROOT / "search_spaces" / f"{name}.yaml")
        for in_chs, resolution in SHAPES:
            archs = sample_architectures(space, n, in_chs=in_chs, resolution=resolution, num_classes=10, seed=0)
            agree, other_ops = 0, set()
            for arch in archs:
                arch_cost.cache_clear()
                t0 = time.perf_counter()
                cost = arch_cost(arch)
                t1 = time.perf_counter()
                model = build(arch).eval()
                x = torch.randn(1, in_chs, arch.resolution, arch.resolution)
                thop_macs, _ = thop.profile(model, (x,), custom_ops=THOP_ZERO, verbose=False)
                t2 = time.perf_counter()
                analytic_s.append(t1 - t0)
                counted_s.append(t2 - t1)
                params = sum(p.numel() for p in model.parameters())
                # thop removes its hooks and attributes afterwards, so the same module serves the second counter
                with torch.no_grad(), FlopCounterMode(display=False) as counter:
                    model(x)
                flops = counter.get_flop_counts().get("Global", {})
                other_ops |= set(flops) - COUNTED_OPS
                total = sum(flops.values())
                agree += cost.macs == thop_macs == total / 2 and cost.params == params
            extra = f" (FlopCounterMode also counted {sorted(map(str, other_ops))})" if other_ops else ""
            print(f"{name} {in_chs}x{resolution}x{resolution}: {agree}/{n} agree{extra}", flush=True)

    a, c = statistics.median(analytic_s), statistics.median(counted_s)
    print(f"\nmedian over {len(analytic_s)} records (one thread):")
    print(f"  analytic cost (arch_cost, cache cleared): {a * 1e6:8.1f} us")
    print(f"  build + thop:                             {c * 1e6:8.1f} us")
    print(f"  ratio:                                    {c / a:8.0f} x")
    print(f"total {time.perf_counter() - start:.0f} s wall, {time.process_time() - cpu_start:.0f} s CPU")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", type=int, default=N, help=f"architectures per space and input shape ({N})")
    main(parser.parse_args().archs)
