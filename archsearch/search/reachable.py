"""Whether a budget can be met at all: the cheapest candidate of a space, and the check a study makes before its
first trial (a budget below it would fail every trial)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna

from archsearch.config.budgets import hard_limits
from archsearch.config.study_config import StudyConfig
from archsearch.core.errors import ConfigError
from archsearch.data.bundle import DataBundle
from archsearch.latency.table import DEFAULT_DIRECTORY, LatencyTable, table_for
from archsearch.network.arch import Arch
from archsearch.network.cost import Cost, arch_cost
from archsearch.network.metrics import METRICS, Costs
from archsearch.space.search_space import Space, suggest_architecture

__all__ = ["cheapest", "smallest_cost", "check_budget_reachable", "latency_table_of"]


def cheapest(space: Space, cost: Callable[[Arch], float], *, in_chs: int, resolution: int,
             num_classes: int) -> Arch:
    """The candidate of least ``cost``: smallest numbers everywhere, the cheapest choice per stage.

    Coordinate descent over the categorical choices (stem, family, groups, kernel) from the
    smallest-numbers corner, two passes.
    """
    def arch_of(params: dict[str, Any]) -> Arch:
        return suggest_architecture(optuna.trial.FixedTrial(params), space, in_chs=in_chs,
                                    resolution=resolution, num_classes=num_classes)

    base: dict[str, Any] = {}
    categorical: dict[str, tuple] = {}
    for name, options in (("width_mult", space.width_mult), ("resolution_mult", space.resolution_mult),
                          ("stem_channels", space.stem_channels)):
        base[name] = min(options)
    base["head_hidden"] = min(space.head_hidden)  # fewer hidden units cost less in every metric
    categorical["stem"] = space.stem_types
    for i, st in enumerate(space.stages):
        base[f"s{i}_depth"] = min(st.depth)
        base[f"s{i}_channels"] = min(st.channels)
        categorical[f"s{i}_block"] = st.blocks
        categorical[f"s{i}_groups"] = st.groups
        categorical[f"s{i}_kernel"] = st.kernel
    params = {**base, **{k: v[0] for k, v in categorical.items()}}
    for _ in range(2):
        for name, options in categorical.items():
            params[name] = min(options, key=lambda v: cost(arch_of({**params, name: v})))
    return arch_of(params)


def smallest_cost(space: Space, *, in_chs: int, resolution: int, num_classes: int) -> Cost:
    """The cost of the cheapest candidate: MACs, params and peak activations minimised separately
    (:func:`cheapest`) and reported together."""
    def least(metric: str) -> int:
        arch = cheapest(space, lambda a: getattr(arch_cost(a), metric), in_chs=in_chs, resolution=resolution,
                        num_classes=num_classes)
        return getattr(arch_cost(arch), metric)

    best = {metric: least(metric) for metric in ("macs", "params", "peak_activation_bytes")}
    return Cost(best["macs"], best["params"], best["peak_activation_bytes"])


def latency_table_of(config: StudyConfig) -> LatencyTable:
    """The lookup table of the budget's latency target, in ``latency/`` beside the study YAML."""
    source = config.source
    directory = Path(source).parent / "latency" if source is not None else DEFAULT_DIRECTORY
    return table_for(config.budget.latency, directory=directory)


def check_budget_reachable(config: StudyConfig, space: Space, data: DataBundle) -> None:
    b = config.budget
    limits = hard_limits(config)
    low = smallest_cost(space, in_chs=data.in_chs, resolution=data.resolution, num_classes=data.num_classes)
    least = Costs.of(low, bytes_per_param=b.bytes_per_param, bytes_per_activation=b.bytes_per_activation)
    for m in METRICS:
        limit, value = limits.get(m.name), None if m.measured else m.value(least)
        if limit is not None and value is not None and value > limit:
            raise ConfigError(
                f"{limit:g} is below the smallest candidate of the space {space.source or space.name}, which "
                f"has {value:,.0f} {b.words(m.name)} at "
                f"{data.in_chs}x{data.resolution}x{data.resolution}; raise the budget or make the space smaller "
                f"(width_mult, channels, depth)",
                path=config.source, key=f"budget.{m.key}",
            )
    if "latency" in limits:
        # a candidate predicted over the limit is rejected unbuilt (archsearch/search/objective.py): if the fastest
        # predicted one is, every trial would be
        table = latency_table_of(config)
        fastest = cheapest(space, table.predict, in_chs=data.in_chs, resolution=data.resolution,
                           num_classes=data.num_classes)
        ms = table.predict(fastest)
        if ms > limits["latency"]:
            raise ConfigError(
                f"{limits['latency']:g} ms is below the smallest predicted latency of the space "
                f"{space.source or space.name}, {ms:.3g} ms ({fastest.id} on {b.latency.describe()}); raise the "
                f"budget to at least that, or make the space smaller (width_mult, channels, depth)",
                path=config.source, key="budget.max_latency_ms",
            )
