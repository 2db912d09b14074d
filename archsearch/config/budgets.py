"""A study's budget applied to a network's costs: which limits bind, and by how much each is exceeded."""

from __future__ import annotations

from archsearch.config.study_config import StudyConfig

__all__ = ["hard_limits", "budget_excess"]


def hard_limits(config: StudyConfig) -> dict[str, float]:
    """The budget's limits a candidate must meet, by metric: all of them but a soft objective's target (which its
    reward trades against accuracy, and a candidate may exceed)."""
    objective = config.objective
    return {m: limit for m, limit in config.budget.limits().items()
            if not (objective.type == "soft" and m == objective.soft_metric)}


def budget_excess(config: StudyConfig, values: dict[str, float | None]) -> dict[str, float]:
    """Relative excess ``value / limit - 1`` per budgeted cost (``<= 0``: within budget), Optuna's convention.

    ``values`` maps metrics (:func:`archsearch.network.metrics.metric_values`) to a trial's costs (None: not known).
    """
    limits = hard_limits(config)
    return {m: value / limits[m] - 1.0 for m, value in values.items() if m in limits and value is not None}
