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
from collections.abc import Sequence
from dataclasses import dataclass

import optuna
from optuna.trial import FrozenTrial, TrialState

from archsearch.config.study_config import StudyConfig
from archsearch.core.text import fmt_count
from archsearch.study.rerank_results import results, standard_error
from archsearch.study.trial_record import COSTS, TrialRecord

__all__ = ["Scored", "Pick", "scored", "pick", "best_trials", "pareto_front", "rerank_lines"]


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


def best_trials(study: optuna.Study, config: StudyConfig | None = None) -> list[FrozenTrial]:
    """Best feasible trial (single objective) or the feasible Pareto front (two objectives).

    With ``config`` and its ``rerank`` results, the best single-objective trial is the best re-ranked one.
    """
    if config is not None and len(study.directions) == 1 and (chosen := pick(scored(study, config))):
        return [chosen.chosen.trial]
    done = [
        t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if not TrialRecord.of(t).infeasible and t.values is not None
    ]
    if not done:
        return []
    if len(study.directions) == 1:
        return [max(done, key=lambda t: t.values[0])]
    names = study.metric_names  # ["val_accuracy", "macs" | "latency_ms"], as archsearch.study.open names them
    return pareto_front(done, "latency" if names is not None and names[1] == "latency_ms" else "macs")


def pareto_front(trials: Sequence[FrozenTrial], metric: str = "macs") -> list[FrozenTrial]:
    """The trials no other trial beats on both validation accuracy (up) and ``metric`` (down).

    ``metric`` is "macs", "params" or "latency"; trials without an accuracy or that cost are left out.
    Where trials tie on both, the earliest stands for them. Sorted by cost, cheapest first.
    """
    if metric not in COSTS:
        raise ValueError(f"metric must be one of {sorted(COSTS)}, got {metric!r}")
    points = [(p, t) for t in trials if (p := TrialRecord.of(t).point(metric)) is not None]
    points.sort(key=lambda pt: (pt[0][0], -pt[0][1], pt[1].number))
    front, best = [], -math.inf
    for (_, accuracy), t in points:
        if accuracy > best:
            front.append(t)
            best = accuracy
    return front



def rerank_lines(study: optuna.Study, config: StudyConfig) -> list[str]:
    """The re-rank's results under the study's recipe, best first (with their standard errors under folds), and
    why the pick is not the best mean where the noise ties them; none where nothing is re-ranked."""
    ranked = scored(study, config)
    if not ranked:
        return []
    lines = [f"re-ranked: {len(ranked)} trial(s), best first"
             + (" (mean ± standard error over folds)" if any(c.se is not None for c in ranked) else "")
             + ": " + ", ".join(f"{c.trial.number} {c.shown()}" for c in ranked)]
    chosen = pick(ranked)
    if chosen is not None and chosen.by is not None:
        lines.append(_tie_line(chosen))
    return lines



def _tie_line(chosen: Pick) -> str:
    """Why the pick is not the best mean: the noise cannot tell the tied candidates apart."""
    tied = ", ".join(f"trial {c.trial.number} {c.shown()}" for c in chosen.tied)
    c = chosen.chosen
    concern = f"{c.latency_ms:.2f} ms" if chosen.by == "latency" else f"{fmt_count(c.macs)} MACs"
    return (f"re-rank: the best is not clear of the next by the noise ({tied}: within one standard error of their "
            f"difference); picked trial {c.trial.number}, the one with the lowest {chosen.by} ({concern})")
