"""Channel shuffle on channels_last: a training step with the layout-keeping shuffle against the old one.

The old shuffle (view, transpose, ``contiguous()``) turned a channels_last tensor into the default layout, so
the rest of each ShuffleNet unit ran on it; :func:`archsearch.network.blocks.channel_shuffle` now permutes the innermost
axis and stays channels_last. Both give the same values; this prints milliseconds per SGD step (batch 128, one
thread) for the 3M ShuffleNet v1 baseline and a fitted ``mixed.yaml`` network with ShuffleNet stages, in
interleaved rounds of alternating order, and the old/new ratio per round. Asserts nothing.

    python -m benchmarks.speed.shuffle_layout [--rounds 4] [--steps 8]
"""

from __future__ import annotations

import argparse
import copy
import time

import torch
import torch.nn.functional as F

from archsearch.network import blocks
from archsearch.network.build import build
from archsearch.space import baselines
from benchmarks.proxy_fidelity.run import architectures


def old_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    n, c, h, w = x.shape
    return x.view(n, groups, c // groups, h, w).transpose(1, 2).contiguous().view(n, c, h, w)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--steps", type=int, default=8)
    args = parser.parse_args()
    torch.set_num_threads(1)
    new_shuffle = blocks.channel_shuffle
    archs = {"ShuffleNet v1, 3M": baselines.fit_to_budget("shufflenet", in_chs=1, resolution=28, num_classes=10,
                                                          max_macs=3_000_000),
             "proxy_fidelity a01 (3 ShuffleNet stages)": architectures(2)[1]}
    for name, arch in archs.items():
        torch.manual_seed(0)
        model = build(arch).to(memory_format=torch.channels_last)
        x = torch.randn(128, 1, arch.resolution, arch.resolution).contiguous(memory_format=torch.channels_last)
        y = torch.randint(0, 10, (128,))
        runs = {k: copy.deepcopy(model) for k in ("old", "new")}
        opts = {k: torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9) for k, m in runs.items()}
        ms: dict[str, list[float]] = {"old": [], "new": []}
        for r in range(args.rounds):
            for k in ("old", "new") if r % 2 == 0 else ("new", "old"):
                blocks.channel_shuffle = old_shuffle if k == "old" else new_shuffle
                t0 = time.perf_counter()
                for _ in range(args.steps):
                    opts[k].zero_grad(set_to_none=True)
                    F.cross_entropy(runs[k](x), y).backward()
                    opts[k].step()
                ms[k].append(1000 * (time.perf_counter() - t0) / args.steps)
        blocks.channel_shuffle = new_shuffle
        ratios = ", ".join(f"{o / n:.2f}" for o, n in zip(ms["old"], ms["new"], strict=True))
        print(f"{name}: ms/step old {', '.join(f'{v:.0f}' for v in ms['old'])}; new "
              f"{', '.join(f'{v:.0f}' for v in ms['new'])}; old/new per round {ratios}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
