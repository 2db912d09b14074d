"""The parts of a network as the latency table sees them: one entry each (:mod:`archsearch.latency.table`).

The stem, its max-pool, every block with its channels, stride, kernel, groups and input size, and the head,
each with a key that tells apart whatever changes its latency and a way to build it alone.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from archsearch.network.arch import Arch
from archsearch.network.blocks import BlockSpec, get_block
from archsearch.network.tally import Tally

__all__ = ["Part", "parts_of"]


@dataclass(frozen=True)
class Part:
    """One table entry's worth of a network: its key, how to build it alone, and its input (C, H, W)."""

    key: str
    input_shape: tuple[int, int, int]
    make: Callable[[], nn.Module]


def _block_key(spec: BlockSpec, h: int, w: int) -> str:
    return (
        f"block:{spec.block}:i{spec.in_chs}:o{spec.out_chs}:s{spec.stride}:k{spec.kernel}:g{spec.groups}"
        f":m{spec.mid_chs}:{h}x{w}"
    )


def _make_block(spec: BlockSpec) -> Callable[[], nn.Module]:
    return lambda: get_block(spec.block).from_spec(spec)


def _make_stem_pool(k: int) -> Callable[[], nn.Module]:
    return lambda: nn.MaxPool2d(k, 2, (k - 1) // 2)  # as build.Net makes it


def _make_head(head: str, c: int, h: int, w: int, classes: int, hidden: int) -> Callable[[], nn.Module]:
    # as build.Net's pool -> flatten -> classifier (with its hidden layer, if any)
    def make() -> nn.Module:
        pool = nn.AdaptiveAvgPool2d(1) if head == "gap" else nn.Identity()
        features = c if head == "gap" else c * h * w
        if not hidden:
            return nn.Sequential(pool, nn.Flatten(1), nn.Linear(features, classes))
        return nn.Sequential(pool, nn.Flatten(1), nn.Linear(features, hidden), nn.ReLU(inplace=True),
                             nn.Linear(hidden, classes))

    return make


def parts_of(arch: Arch) -> list[Part]:
    """The parts of ``arch`` in forward order: stem, stem max-pool (if any), every block, head.

    Follows ``build.Net``: the same modules with the same input sizes (walked on a :class:`Tally`,
    so nothing is built here). A repeated identical block appears once per repeat.
    """
    stem_spec, stages = arch.plan()
    t = Tally(arch.in_chs, arch.resolution, arch.resolution)
    parts = [Part(_block_key(stem_spec, t.h, t.w), (t.c, t.h, t.w), _make_block(stem_spec))]
    get_block(stem_spec.block).cost(stem_spec, t)
    k = arch.stem.pool
    if k:
        parts.append(Part(f"maxpool:c{t.c}:k{k}:s2:{t.h}x{t.w}", (t.c, t.h, t.w), _make_stem_pool(k)))
        t.pool(k, stride=2, padding=(k - 1) // 2)
    for spec in (spec for stage in stages for spec in stage):
        parts.append(Part(_block_key(spec, t.h, t.w), (t.c, t.h, t.w), _make_block(spec)))
        get_block(spec.block).cost(spec, t)
    parts.append(
        Part(
            f"head:{arch.head}:c{t.c}:{t.h}x{t.w}:n{arch.num_classes}" + (f":h{arch.hidden}" if arch.hidden else ""),
            (t.c, t.h, t.w),
            _make_head(arch.head, t.c, t.h, t.w, arch.num_classes, arch.hidden),
        )
    )
    return parts
