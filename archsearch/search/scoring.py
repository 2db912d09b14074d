"""A candidate's value, what the sampler maximizes: built from its final validation accuracy (or, with
``objective.score: val_loss``, minus its final validation loss) and, for the soft reward and the Pareto front, its
cost. :func:`measured` is also what the pruner compares after each epoch, so that it compares like with like."""

from __future__ import annotations

from archsearch.config.study_config import StudyConfig
from archsearch.config.study_schema import ObjectiveConfig
from archsearch.network.cost import Cost

__all__ = ["measured", "score"]


def measured(objective: ObjectiveConfig, accuracy: float, val_loss: float | None) -> float:
    """The value of objective constrained, higher is better: the validation accuracy, or minus the validation loss
    (``objective.score: val_loss``, a ValueError where the loss is None)."""
    if objective.score == "val_accuracy":
        return accuracy
    if val_loss is None:
        raise ValueError("objective.score val_loss needs the validation loss, but the trainer recorded none in its "
                         "learning curve (TrainResult.curve)")
    return -val_loss


def score(config: StudyConfig, accuracy: float, cost: Cost, latency_ms: float | None,
          *, val_loss: float | None = None) -> float | tuple[float, float]:
    """A candidate's value: :func:`measured` (constrained), MnasNet's reward ``acc * (cost / target) ** w`` (soft),
    or (accuracy, cost) (pareto). ``latency_ms``: where latency is scored; ``val_loss``: where it is the score."""
    o, b = config.objective, config.budget
    metric_value = {"macs": cost.macs, "params": cost.params, "latency": latency_ms}
    if o.type == "pareto":
        value = metric_value[o.pareto_metric]
        assert value is not None  # a latency that is scored is measured for every trial (scores_latency)
        return accuracy, float(value)
    if o.type == "soft":
        target, value = b.limit(o.soft_metric), metric_value[o.soft_metric]
        # the config requires a limit on the soft metric; a latency that is scored is always measured
        assert target is not None and value is not None
        return accuracy * (value / target) ** o.soft_weight
    return measured(o, accuracy, val_loss)
