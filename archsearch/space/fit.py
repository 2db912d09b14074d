"""Budget fitting: the sampler picks a candidate's shape, arithmetic picks its size.

Under a hard budget the most accurate networks sit at the budget's edge, so a sampled width
multiplier mostly teaches the sampler where the budget is. With fitting, the sampler picks the shape
(:class:`~archsearch.space.search_space.Shape`: stem, each stage's family, relative width, depth, groups, kernel,
and the resolution) and :func:`fit_shape` scales every width by the one multiplier that spends the
binding budget: the largest in the space's ``width_mult`` range whose cost is within every limit.

MACs and parameters are analytic (:func:`~archsearch.network.cost.arch_cost`); latency is the lookup table's
prediction, passed in as a function. The record only changes at the multipliers where a rounded width
steps up (:meth:`Shape.breakpoints`), and every cost grows with the multiplier, so a binary search over
those points finds the largest fitting one in a few cost evaluations. Rounding to ``channel_multiple``
makes the cost a coarse staircase (one step can be 10-25% of a small budget), so the fitted record's
widths then gain up to ``TOP_UP`` channel units each, greedily, while the budget allows: with the one
multiplier alone, a quarter to a half of the shapes stayed below 95% of the budget.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from archsearch.network.arch import Arch
from archsearch.network.cost import arch_cost
from archsearch.network.metrics import Costs, metric_values
from archsearch.space.search_space import Shape

__all__ = ["Fit", "fit_shape", "budget_use", "cost_values", "summarize", "FITTED", "CAPPED", "INFEASIBLE"]

FITTED = "fitted"  # the largest multiplier within the budget; the next breakpoint is over it
CAPPED = "capped"  # within the budget even at the space's largest multiplier: trained as it is
INFEASIBLE = "infeasible"  # over the budget even at the space's smallest multiplier: never built
TOP_UP = 2  # channel units a width may gain after the multiplier


@dataclass(frozen=True)
class Fit:
    """The fitted record, its multiplier, how much of the budget it uses, and which case it is."""

    arch: Arch
    width_mult: float
    budget_use: float
    status: str
    extra: tuple[int, ...] = ()  # channel units added to the stem and each stage after rounding

    @property
    def feasible(self) -> bool:
        return self.status != INFEASIBLE


def cost_values(arch: Arch, latency_ms: float | None = None, *, bytes_per_param: int = 4,
                bytes_per_activation: int = 4) -> dict[str, float | None]:
    """The budget metrics of ``arch``'s analytic cost (:func:`archsearch.network.metrics.metric_values`), weights
    and activations counted at ``bytes_per_param`` and ``bytes_per_activation`` (the budget's precisions)."""
    return metric_values(Costs.of(arch_cost(arch), latency_ms, bytes_per_param=bytes_per_param,
                                  bytes_per_activation=bytes_per_activation))


def budget_use(values: Mapping[str, float | None], limits: Mapping[str, float]) -> float | None:
    """The largest ``cost / limit`` over the budgeted metrics whose cost is known (None: none is)."""
    uses = [value / limit for m, limit in limits.items() if (value := values.get(m)) is not None]
    return max(uses) if uses else None


def fit_shape(
    shape: Shape,
    limits: Mapping[str, float],
    *,
    low: float,
    high: float,
    latency: Callable[[Arch], float] | None = None,
    bytes_per_param: int = 4,
    bytes_per_activation: int = 4,
) -> Fit:
    """``shape`` at the largest multiplier in ``[low, high]`` whose costs are all within ``limits``.

    ``limits`` maps budget metrics (:mod:`archsearch.network.metrics`) to their limits; ``latency`` predicts an
    architecture's latency and is needed only when "latency" is limited. Never above a limit: where
    even ``low`` is over, the result is ``low``'s record with status ``INFEASIBLE``.
    """
    if not limits:
        raise ValueError("fit_shape needs at least one limit")
    if "latency" in limits and latency is None:
        raise ValueError("a latency limit needs a latency predictor")
    if not 0 < low <= high:
        raise ValueError(f"expected 0 < low <= high, got low={low}, high={high}")

    def use(arch: Arch) -> float:
        # a latency limit comes with a predictor (checked above)
        ms = latency(arch) if latency is not None and "latency" in limits else None
        u = budget_use(cost_values(arch, ms, bytes_per_param=bytes_per_param,
                                   bytes_per_activation=bytes_per_activation), limits)
        if u is None:
            raise ValueError(f"fit_shape's limits name no budget metric, got {sorted(limits)}")
        return u

    points = shape.breakpoints(low, high)
    first = shape.at(points[0])
    first_use = use(first)
    if first_use > 1.0:
        return Fit(first, points[0], first_use, INFEASIBLE)
    # invariant: points[lo] fits; points[hi] does not (hi == len(points): past the range)
    lo, hi, best = 0, len(points), (first, first_use)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        arch = shape.at(points[mid])
        u = use(arch)
        if u <= 1.0:
            lo, best = mid, (arch, u)
        else:
            hi = mid
    if hi == len(points):
        return Fit(best[0], points[lo], best[1], CAPPED)
    arch, u, extra = _top_up(shape, points[lo], best, use)
    return Fit(arch, points[lo], u, FITTED, extra)


def _top_up(
    shape: Shape, alpha: float, best: tuple[Arch, float], use: Callable[[Arch], float]
) -> tuple[Arch, float, tuple[int, ...]]:
    """Add channel units to the widths at ``alpha`` while the budget allows, greedily.

    The next breakpoint widens one width by a unit and is over the budget; widening another may not
    be. Each round adds the unit that spends the most of what is left; each width gains at most
    ``TOP_UP`` units, so the stages keep the sampled proportions to within that many units.
    """
    arch, u = best
    extra = [0] * (1 + len(shape.stages))
    while True:
        tried = []
        for i in (i for i, e in enumerate(extra) if e < TOP_UP):
            more = [*extra[:i], extra[i] + 1, *extra[i + 1:]]
            candidate = shape.at(alpha, tuple(more))
            cu = use(candidate)
            if cu <= 1.0:
                tried.append((cu, i, candidate))
        if not tried:
            return arch, u, tuple(extra)
        u, i, arch = max(tried, key=lambda x: x[0])
        extra[i] += 1


def summarize(fits: list[Fit], threshold: float = 0.95) -> dict[str, float]:
    """Counts by status and the spread of ``budget_use`` over the feasible fits (for the CLI and benchmarks)."""
    uses = sorted(f.budget_use for f in fits if f.feasible)
    out: dict[str, float] = {
        "n": len(fits),
        **{status: sum(f.status == status for f in fits) for status in (FITTED, CAPPED, INFEASIBLE)},
        "at_threshold": sum(u >= threshold for u in uses),
    }
    if uses:
        out |= {"use_min": uses[0], "use_p5": uses[int(0.05 * (len(uses) - 1))],
                "use_median": statistics.median(uses), "use_max": uses[-1]}
    return out
