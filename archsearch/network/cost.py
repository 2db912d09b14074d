"""Analytic cost of an architecture record: MACs, parameters and peak activation memory.

Convention (also in docs/budgets.md): MACs count the multiply-accumulates of convolutions and linear layers,
batch 1; FLOPs = 2 x MACs. Bias additions, batch norm, activations, pooling, padding, channel
shuffle, additions and concatenations are not counted (BN folds into the convolution at inference).
Parameters are every trainable tensor element (BN's weight and bias included, its running
statistics not). Peak activation memory is the largest number of float32 activation elements
alive at once, at batch 1: at each layer its input, its output and any tensor a later layer still needs
(archsearch/network/memory.py measures it on a built network; the two agree exactly).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from archsearch.network.arch import Arch
from archsearch.network.tally import Tally

__all__ = ["Cost", "arch_cost", "FLOAT32_BYTES"]

#: the bytes of one activation in ``Cost.peak_activation_bytes`` (float32); a budget counts them at its
#: ``activation_precision`` (archsearch/network/metrics.py)
FLOAT32_BYTES = 4


@dataclass(frozen=True)
class Cost:
    macs: int
    params: int
    peak_activation_bytes: int

    @property
    def flops(self) -> int:
        return 2 * self.macs


@functools.lru_cache(maxsize=65536)
def arch_cost(arch: Arch) -> Cost:
    """Cost of ``arch`` from the record alone: nothing is built."""
    t = arch.walk(Tally(arch.in_chs, arch.resolution, arch.resolution))
    return Cost(macs=t.macs, params=t.params, peak_activation_bytes=FLOAT32_BYTES * t.peak)
