"""A study's budgets applied to a network's costs: by how much each limit is exceeded."""

from __future__ import annotations

from archsearch.config.study_config import StudyConfig

__all__ = ["budget_excess"]


def budget_excess(config: StudyConfig, values: dict[str, float | None]) -> dict[str, float]:
    """Relative excess ``value / limit - 1`` per budgeted cost (``<= 0``: within budget), Optuna's convention.

    ``values`` maps metrics of ``fit.metric_values`` to a trial's costs (None: not known).
    """
    budget, objective = config.budget, config.objective
    out = {}
    for metric, value in values.items():
        limit = budget.limit(metric)
        if limit is None or value is None:
            continue
        if objective.type == "soft" and metric == objective.soft_metric:
            continue  # the soft reward's target, not a hard limit
        out[metric] = value / limit - 1.0
    return out
