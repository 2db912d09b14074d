"""What the per-class figures say of a study's trials: the pick's figures on the validation split, and the trials
that learned nothing beyond the class counts (at chance), with what to change. The search's summary and
``archsearch report`` print them (the figures: :mod:`archsearch.core.class_metrics`)."""

from __future__ import annotations

from collections.abc import Sequence

from optuna.trial import FrozenTrial, TrialState

from archsearch.config.study_config import StudyConfig
from archsearch.study.trial_record import TrialRecord

__all__ = ["per_class_lines", "chance_line"]


def per_class_lines(pick: FrozenTrial | None) -> list[str]:
    """The pick's per-class figures on the validation split (none where they were not recorded), and a warning
    where it is at chance."""
    metrics = None if pick is None else TrialRecord.of(pick).class_metrics()
    if pick is None or metrics is None:
        return []
    note = metrics.chance_note(f"trial {pick.number}")
    return [f"trial {pick.number} (the pick) on the validation split, per class (its search training):",
            *(f"  {line}" for line in metrics.lines()), *([f"  warning: {note}"] if note else [])]


def chance_line(trials: Sequence[FrozenTrial], config: StudyConfig | None = None) -> str | None:
    """One line naming the trained trials whose balanced accuracy is at chance (within 2 points of 1 / classes)
    and what to change; None where no trial is."""
    trained = [(t, m) for t in trials if t.state == TrialState.COMPLETE
               and (m := TrialRecord.of(t).class_metrics()) is not None]
    flat = [(t, m) for t, m in trained if m.at_chance]
    if not flat:
        return None
    t, m = flat[0]
    shown = ", ".join(str(t.number) for t, _ in flat[:10]) + (", ..." if len(flat) > 10 else "")
    steps = _steps_hint(config)
    return (f"{len(flat)} of {len(trained)} trained trial(s) at chance (trials {shown}): balanced accuracy within 2 "
            f"points of {100 / len(m.classes):.1f}% for guessing, e.g. trial {t.number}: accuracy "
            f"{100 * m.accuracy:.1f}% against {100 * m.majority_rate:.1f}% for always predicting "
            f"{m.majority_class!r}; they learned nothing the class counts do not give: {steps}")


def _steps_hint(config: StudyConfig | None) -> str:
    """What to change: more optimizer steps (the recipe's, where known), or a higher lr."""
    if config is None:
        return "give them more optimizer steps (training.steps) or a higher lr"
    t = config.training
    now = f"training.steps is {t.steps}" if t.steps is not None else f"{t.epochs} epoch(s) at batch_size {t.batch_size}"
    return (f"give them more optimizer steps ({now}: set training.steps, e.g. 600 for a folder of a few hundred "
            f"images, docs/data.md: How long to train) or a higher lr (training.lr {t.lr:g})")
