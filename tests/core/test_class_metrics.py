"""Per-class figures from a confusion matrix (archsearch.core.class_metrics) against scikit-learn's own metrics
computed from the labels, and the score that the search builds from them."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    classification_report,
    confusion_matrix,
    f1_score,
)

from archsearch.config.study_schema import ObjectiveConfig
from archsearch.core.class_metrics import ClassMetrics, balanced_and_macro_f1, confusion
from archsearch.search import scoring

CLASSES = ("ok", "scratch", "dent", "crack")


def _imbalanced(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.choice(4, size=400, p=[0.6, 0.25, 0.1, 0.05])
    noisy = rng.random(400) < 0.3
    return y, np.where(noisy, rng.integers(0, 4, size=400), y)


@pytest.mark.parametrize("seed", range(4))
def test_the_matrix_gives_what_scikit_learn_gives_from_the_labels(seed: int) -> None:
    y, p = _imbalanced(seed)
    m = ClassMetrics.from_matrix(confusion(y, p, 4), CLASSES)
    assert [list(r) for r in m.matrix] == confusion_matrix(y, p, labels=range(4)).tolist()
    assert m.accuracy == pytest.approx(accuracy_score(y, p))
    assert m.balanced_accuracy == pytest.approx(balanced_accuracy_score(y, p))
    assert m.macro_f1 == pytest.approx(f1_score(y, p, average="macro"))
    report = classification_report(y, p, labels=range(4), target_names=CLASSES, output_dict=True, zero_division=0)
    for i, name in enumerate(CLASSES):
        assert m.precision[i] == pytest.approx(report[name]["precision"])
        assert m.recall[i] == pytest.approx(report[name]["recall"])
        assert m.f1[i] == pytest.approx(report[name]["f1-score"])
        assert m.support[i] == report[name]["support"]
    assert m.majority_class == "ok" and m.majority_rate == pytest.approx(np.mean(y == 0))
    assert balanced_and_macro_f1(y, p, 4) == pytest.approx((m.balanced_accuracy, m.macro_f1))
    d = m.to_dict()
    assert d["per_class"]["crack"]["recall"] == m.recall[3] and d["confusion_matrix"] == [list(r) for r in m.matrix]


def test_always_predicting_the_common_class_is_named_at_chance() -> None:
    y, _ = _imbalanced(0)
    lazy = ClassMetrics.from_matrix(confusion(y, np.zeros_like(y), 4), CLASSES)
    assert lazy.accuracy == lazy.majority_rate > 0.55  # looks fine on accuracy
    assert lazy.balanced_accuracy == 0.25 and lazy.at_chance
    note = lazy.chance_note("trial 7")
    assert note is not None and "trial 7 is at chance" in note and "always predicting 'ok'" in note
    assert "training.steps" in note
    y, p = _imbalanced(1)
    assert ClassMetrics.from_matrix(confusion(y, p, 4), CLASSES).chance_note("x") is None
    text = "\n".join(lazy.lines())
    assert "always predicting 'ok' scores" in text and "confusion matrix (rows: true class" in text


@pytest.mark.parametrize("matrix, match", [([[1]], "K x K"), ([[1, 0], [0, -1]], "K x K"), ([[0, 0], [0, 0]], "K x K"),
                                           ([[1, 0, 0], [0, 1, 0]], "K x K")])
def test_a_bad_matrix_is_refused(matrix: list, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        ClassMetrics.from_matrix(matrix)


def test_the_score_is_the_figure_it_names() -> None:
    figures = {"val_loss": 0.7, "balanced_accuracy": 0.61, "macro_f1": 0.55}
    for score, value in (("val_accuracy", 0.9), ("val_loss", -0.7), ("balanced_accuracy", 0.61),
                         ("macro_f1", 0.55)):
        assert scoring.measured(ObjectiveConfig(score=score), 0.9, **figures) == value
    with pytest.raises(ValueError, match="needs the validation balanced_accuracy"):
        scoring.measured(ObjectiveConfig(score="balanced_accuracy"), 0.9, val_loss=0.2)


def test_the_summary_names_trials_at_chance_and_shows_the_picks_classes() -> None:
    import optuna

    from archsearch.search.summary import summary
    from archsearch.study.trial_record import TrialRecord

    y, p = _imbalanced(2)
    good = {"classes": list(CLASSES), "matrix": confusion(y, p, 4)}
    lazy = {"classes": list(CLASSES), "matrix": confusion(y, np.zeros_like(y), 4)}
    study = optuna.create_study(direction="maximize")
    for matrix in (lazy, good):
        m = ClassMetrics.from_matrix(matrix["matrix"], CLASSES)
        record = TrialRecord(val_accuracy=m.accuracy, val_confusion=matrix, feasible=True, arch_id="x", macs=1)
        study.add_trial(optuna.trial.create_trial(values=[m.balanced_accuracy], user_attrs=record.attrs()))
    text = summary(study)
    assert "1 of 2 trained trial(s) at chance (trials 0)" in text
    assert "trial 1 (the pick) on the validation split, per class" in text
    assert f"always predicting 'ok' scores {100 * np.mean(y == 0):.2f}%" in text
