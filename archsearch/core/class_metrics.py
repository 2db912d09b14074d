"""Per-class results of a classifier on one split, computed by scikit-learn's metrics from a confusion matrix.

A network is judged by its confusion matrix (rows the true class, columns the predicted, in ``classes`` order, as
``sklearn.metrics.confusion_matrix`` gives it): every figure here (accuracy, balanced accuracy, macro-F1, each
class's precision, recall, F1 and support, the majority-class rate) is a function of it, so a trial stores the
matrix alone and the summary, the report and the export's card read the same figures from it. The matrix is
expanded back into (true, predicted) label pairs and handed to scikit-learn, never recomputed by hand.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["ClassMetrics", "confusion", "balanced_and_macro_f1", "CHANCE_MARGIN"]

#: a network whose balanced accuracy is within this of 1 / classes, or whose accuracy is within it of the
#: majority-class rate while its balanced accuracy is too, learned nothing the data's class counts do not give
CHANCE_MARGIN = 0.02


def confusion(y_true: Any, y_pred: Any, num_classes: int) -> list[list[int]]:
    """The confusion matrix of labels ``y_true`` and predictions ``y_pred`` (0..num_classes-1) as nested lists."""
    from sklearn.metrics import confusion_matrix

    return confusion_matrix(np.asarray(y_true), np.asarray(y_pred), labels=list(range(num_classes))).tolist()


def balanced_and_macro_f1(y_true: Any, y_pred: Any, num_classes: int) -> tuple[float, float]:
    """Balanced accuracy (mean recall over the classes present) and macro-F1 (mean F1 over all classes)."""
    from sklearn.metrics import balanced_accuracy_score, f1_score

    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    with warnings.catch_warnings():  # "y_pred contains classes not in y_true": a split without some class
        warnings.simplefilter("ignore", UserWarning)
        balanced = float(balanced_accuracy_score(y_true, y_pred))
    return balanced, float(f1_score(y_true, y_pred, labels=list(range(num_classes)), average="macro",
                                    zero_division=0))


@dataclass(frozen=True)
class ClassMetrics:
    """What a classifier scored on one split, per class and overall (see the module's docstring)."""

    classes: tuple[str, ...]
    matrix: tuple[tuple[int, ...], ...]  # rows: true class, columns: predicted class
    accuracy: float
    balanced_accuracy: float
    macro_f1: float
    precision: tuple[float, ...]
    recall: tuple[float, ...]
    f1: tuple[float, ...]
    support: tuple[int, ...]
    majority_class: str  # the most common true class of the split
    majority_rate: float  # the accuracy of always predicting it

    @classmethod
    def from_matrix(cls, matrix: Sequence[Sequence[int]], classes: Sequence[str] | None = None) -> ClassMetrics:
        """The figures of a confusion matrix (``classes``: a name per row; None: "0".."K-1")."""
        from sklearn.metrics import accuracy_score, precision_recall_fscore_support

        m = np.asarray(matrix, dtype=np.int64)
        k = m.shape[0]
        if m.ndim != 2 or m.shape != (k, k) or k < 2 or (m < 0).any() or m.sum() == 0:
            raise ValueError(f"a confusion matrix is K x K (K >= 2) of counts >= 0, not all 0, got {matrix!r}")
        names = tuple(str(c) for c in classes) if classes is not None else tuple(str(i) for i in range(k))
        if len(names) != k:
            raise ValueError(f"{len(names)} class names for a {k} x {k} confusion matrix")
        # the (true, predicted) pairs the matrix counts, for scikit-learn
        rows, cols = np.nonzero(m)
        counts = m[rows, cols]
        y_true, y_pred = np.repeat(rows, counts), np.repeat(cols, counts)
        labels = list(range(k))
        precision, recall, f1, support = precision_recall_fscore_support(
            y_true, y_pred, labels=labels, zero_division=0)
        balanced, macro = balanced_and_macro_f1(y_true, y_pred, k)
        totals = m.sum(axis=1)
        majority = int(np.argmax(totals))
        return cls(
            classes=names,
            matrix=tuple(tuple(int(v) for v in row) for row in m),
            accuracy=float(accuracy_score(y_true, y_pred)),
            balanced_accuracy=balanced,
            macro_f1=macro,
            precision=tuple(float(v) for v in precision),
            recall=tuple(float(v) for v in recall),
            f1=tuple(float(v) for v in f1),
            support=tuple(int(v) for v in support),
            majority_class=names[majority],
            majority_rate=float(totals[majority] / totals.sum()),
        )

    def to_dict(self) -> dict[str, Any]:
        """The figures as metrics.json holds them: overall ones, ``per_class`` by name, ``confusion_matrix``."""
        return {
            "accuracy": self.accuracy,
            "balanced_accuracy": self.balanced_accuracy,
            "macro_f1": self.macro_f1,
            "majority_class": self.majority_class,
            "majority_rate": self.majority_rate,
            "per_class": {name: {"precision": p, "recall": r, "f1": f, "support": s} for name, p, r, f, s in
                          zip(self.classes, self.precision, self.recall, self.f1, self.support, strict=True)},
            "confusion_matrix": [list(row) for row in self.matrix],
            "classes": list(self.classes),
        }

    @property
    def at_chance(self) -> bool:
        """Whether the network learned nothing beyond the class counts: its balanced accuracy is within
        :data:`CHANCE_MARGIN` of chance (1 / classes)."""
        return self.balanced_accuracy <= 1 / len(self.classes) + CHANCE_MARGIN

    def chance_note(self, what: str) -> str | None:
        """One sentence where ``what`` (e.g. "trial 3") is at chance, saying what to change; None otherwise."""
        if not self.at_chance:
            return None
        return (f"{what} is at chance: balanced accuracy {100 * self.balanced_accuracy:.1f}% against "
                f"{100 / len(self.classes):.1f}% for guessing, accuracy {100 * self.accuracy:.1f}% against "
                f"{100 * self.majority_rate:.1f}% for always predicting {self.majority_class!r}; it needs more "
                f"optimizer steps (training.steps, or more epochs and a smaller batch_size) or a higher lr")

    def lines(self) -> list[str]:
        """The figures as text: one overall line, the majority-class line, a per-class table and the matrix."""
        width = max(8, *(len(c) for c in self.classes))
        out = [f"accuracy {100 * self.accuracy:.2f}%, balanced accuracy {100 * self.balanced_accuracy:.2f}%, "
               f"macro-F1 {self.macro_f1:.4f}",
               f"always predicting {self.majority_class!r} scores {100 * self.majority_rate:.2f}%",
               f"{'class':<{width}}  precision  recall     f1  support"]
        for name, p, r, f, s in zip(self.classes, self.precision, self.recall, self.f1, self.support, strict=True):
            out.append(f"{name:<{width}}  {p:9.3f}  {r:6.3f}  {f:5.3f}  {s:7d}")
        cells = max(5, *(len(str(v)) for row in self.matrix for v in row))
        out.append(f"confusion matrix (rows: true class, columns: predicted, in this order: {', '.join(self.classes)})")
        out += ["  " + " ".join(f"{v:>{cells}d}" for v in row) for row in self.matrix]
        return out

    def markdown(self) -> str:
        """The per-class table and the confusion matrix as markdown (the export's card)."""
        rows = ["| class | precision | recall | F1 | support |", "|---|---|---|---|---|"]
        rows += [f"| {n} | {p:.3f} | {r:.3f} | {f:.3f} | {s} |" for n, p, r, f, s in
                 zip(self.classes, self.precision, self.recall, self.f1, self.support, strict=True)]
        matrix = ["| true \\ predicted | " + " | ".join(self.classes) + " |",
                  "|---|" + "---|" * len(self.classes)]
        matrix += [f"| {n} | " + " | ".join(str(v) for v in row) + " |"
                   for n, row in zip(self.classes, self.matrix, strict=True)]
        return "\n".join(rows) + "\n\nConfusion matrix (rows: the true class, columns: the predicted):\n\n" + \
            "\n".join(matrix)
