"""A candidate's value, what the sampler maximizes: built from its final validation accuracy (or, with
``objective.score``, minus its final validation loss, its balanced accuracy or its macro-F1) and, for the soft
reward and the Pareto front, its cost. :func:`measured` is also what the pruner compares after each epoch, so that
it compares like with like."""

from __future__ import annotations

from archsearch.config.study_config import StudyConfig
from archsearch.config.study_schema import ObjectiveConfig
from archsearch.network.cost import Cost

__all__ = ["measured", "score"]


def measured(objective: ObjectiveConfig, accuracy: float, val_loss: float | None = None, *,
             balanced_accuracy: float | None = None, macro_f1: float | None = None) -> float:
    """The value of objective constrained, higher is better: the validation accuracy, minus the validation loss
    (``objective.score: val_loss``), the balanced accuracy or the macro-F1 on the validation split; a ValueError
    where the figure the score names is None (not recorded)."""
    if objective.score == "val_accuracy":
        return accuracy
    figure = {"val_loss": val_loss, "balanced_accuracy": balanced_accuracy, "macro_f1": macro_f1}[objective.score]
    if figure is None:
        raise ValueError(f"objective.score {objective.score} needs the validation {objective.score}, but the trainer "
                         "recorded none in its learning curve (TrainResult.curve)")
    return -figure if objective.score == "val_loss" else figure


def score(config: StudyConfig, accuracy: float, cost: Cost, latency_ms: float | None,
          *, val_loss: float | None = None, balanced_accuracy: float | None = None,
          macro_f1: float | None = None) -> float | tuple[float, float]:
    """A candidate's value: :func:`measured` (constrained), MnasNet's reward ``acc * (cost / target) ** w`` (soft),
    or (accuracy, cost) (pareto), where acc is the score's figure (``objective.score``: the accuracy, the
    balanced accuracy or the macro-F1). ``latency_ms``: where latency is scored; the keyword figures: those the
    score may be built from (a :class:`~archsearch.training.checkpoint.LearningCurve`'s ``last()``)."""
    o, b = config.objective, config.budget
    figure = measured(o, accuracy, val_loss, balanced_accuracy=balanced_accuracy, macro_f1=macro_f1)
    metric_value = {"macs": cost.macs, "params": cost.params, "latency": latency_ms}
    if o.type == "pareto":
        value = metric_value[o.pareto_metric]
        assert value is not None  # a latency that is scored is measured for every trial (scores_latency)
        return figure, float(value)
    if o.type == "soft":
        target, value = b.limit(o.soft_metric), metric_value[o.soft_metric]
        # the config requires a limit on the soft metric; a latency that is scored is always measured
        assert target is not None and value is not None
        return figure * (value / target) ** o.soft_weight
    return figure
