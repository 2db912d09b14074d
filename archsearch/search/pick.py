"""The pick among re-ranked candidates, knowing the noise of their scores.

With ``rerank.folds: k`` each candidate's score is the mean of k trainings, and its standard error is the spread of
those k over the square root of k. Where the best mean is not clear of another candidate's by the standard error
of their difference (``sqrt(se_a**2 + se_b**2)``), the two are tied: the data cannot tell them apart, and the pick
among the tied goes to the budget's next concern, the lower measured latency where every tied candidate has one,
else the fewer MACs (then the higher mean). Without folds a candidate is one training and has no standard error;
the best mean is the pick, as before. The summary and ``archsearch export`` both use :func:`pick`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import optuna
from optuna.trial import FrozenTrial, TrialState

from archsearch.config.study_config import StudyConfig
from archsearch.search.rerank import results, standard_error
from archsearch.search.trial_record import TrialRecord

__all__ = ["Scored", "Pick", "scored", "pick"]


@dataclass(frozen=True)
class Scored:
    """A re-ranked candidate: its score (mean over folds) and the score's standard error (None: one training)."""

    trial: FrozenTrial
    value: float
    se: float | None
    latency_ms: float | None
    macs: int | None

    def shown(self) -> str:
        """``0.9123 ± 0.0021`` (``0.9123`` without a standard error)."""
        return f"{self.value:.4f}" if self.se is None else f"{self.value:.4f} ± {self.se:.4f}"


@dataclass(frozen=True)
class Pick:
    """The pick; ``tied``: the candidates the noise cannot tell from the best mean (the pick among them), best
    mean first; ``by``: what chose among the tied ("latency", "MACs"; None where nothing was tied)."""

    chosen: Scored
    tied: list[Scored]
    by: str | None


def scored(study: optuna.Study, config: StudyConfig) -> list[Scored]:
    """The config's re-rank results as :class:`Scored` candidates, best mean first."""
    done = results(study, config)
    trials = {t.number: t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))}
    out = []
    for number, result in done.items():
        if number not in trials:
            continue
        record = TrialRecord.of(trials[number])
        se = standard_error(_fold_values(result))
        out.append(Scored(trials[number], result["value"], se, record.latency_ms, record.macs))
    return sorted(out, key=lambda s: (-s.value, s.trial.number))


def pick(candidates: list[Scored]) -> Pick | None:
    """The candidate to export among ``candidates`` (None where there is none): see the module's docstring."""
    if not candidates:
        return None
    best = max(candidates, key=lambda s: (s.value, -s.trial.number))
    tied = [s for s in candidates if s is best or _within_noise(best, s)]
    tied.sort(key=lambda s: (-s.value, s.trial.number))
    if len(tied) == 1:
        return Pick(best, tied, None)
    if all(s.latency_ms is not None for s in tied):
        chosen = min(tied, key=lambda s: (s.latency_ms, -s.value, s.trial.number))
        return Pick(chosen, tied, "latency")
    chosen = min(tied, key=lambda s: (s.macs if s.macs is not None else math.inf, -s.value, s.trial.number))
    return Pick(chosen, tied, "MACs")


def _within_noise(best: Scored, other: Scored) -> bool:
    if best.se is None or other.se is None:
        return False
    return best.value - other.value <= math.sqrt(best.se ** 2 + other.se ** 2)


def _fold_values(result: dict) -> list[float]:
    """Each fold's value: recorded (``fold_values``), or, in a result recorded before they were, each fold's
    accuracy scaled as the value is (then always the accuracy, or a reward proportional to it)."""
    if "fold_values" in result:
        return [float(v) for v in result["fold_values"]]
    folds, accuracy = result.get("folds") or [], result["val_accuracy"]
    return [a * result["value"] / accuracy for a in folds] if accuracy else list(folds)
