"""The trial record: every user attribute archsearch writes on an Optuna trial, declared once, read and written typed.

A trial's attributes are JSON in the study's storage; the key of each is its field's name here, and the values are
written as they always were, so studies made by any earlier archsearch read back. Reading is tolerant: a key the
trial lacks (an older study, a trial that stopped early) reads as None, and so does a value of another type than
declared (written by another tool); an int stored for a float field reads as that number, and a whole float for an
int field as that int. Writing sets only the fields given (not None), one ``set_user_attr`` each, in the order
declared.

The study's own attribute names (study user attributes, not a trial's) are declared at the end.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from archsearch.core.class_metrics import ClassMetrics
from archsearch.network.arch import Arch
from archsearch.network.metrics import METRICS
from archsearch.space.fit import Fit

__all__ = ["TrialRecord", "COSTS", "fit_attr", "ARCH_ATTR", "BASELINE_ATTR", "kinds_of", "typed"]


class _Readable(Protocol):
    @property
    def user_attrs(self) -> dict[str, Any]: ...


class _Writable(Protocol):
    def set_user_attr(self, key: str, value: Any) -> None: ...


@dataclass(frozen=True)
class TrialRecord:
    """A trial's archsearch attributes (None: not recorded). ``TrialRecord.of(trial)`` reads them;
    ``TrialRecord(field=value, ...).write(trial)`` writes the fields given."""

    # -- who runs it, what it repeats
    worker: str | None = None  # "host:pid:n" of the worker running it (archsearch.study.worker_identity)
    baseline: str | None = None  # the seed baseline family of a queued baseline trial ("mobilenet", ...)
    retry_of: int | None = None  # the number of the trial this one repeats (archsearch.search.recovery)
    # -- the candidate
    arch: dict[str, Any] | None = None  # Arch.to_dict(): what build() reads (Arch.from_dict)
    fit: dict[str, Any] | None = None  # {"width_mult", "status", "extra"} of a budget-fitted candidate (fit_attr)
    arch_id: str | None = None  # Arch.id, the compact id for logs and duplicates
    macs: int | None = None  # analytic multiply-accumulates per image
    params: int | None = None  # parameters
    peak_activation_bytes: int | None = None  # analytic peak activation memory, batch 1
    # -- the budget
    latency_pred_ms: float | None = None  # the latency table's prediction
    latency_runtime: str | None = None  # the runtime the latency is of ("torch", "onnxruntime"); absent: torch
    latency_ms: float | None = None  # measured median latency (predicted within budget: built and timed)
    latency_p90_ms: float | None = None  # measured 90th percentile
    latency_timed_ms: float | None = None  # the wall-time median, timed beside the table's speed
    budget_use: float | None = None  # how much of the budget it uses, the largest of value / limit
    feasible: bool | None = None  # within the budget; False: never trained (absent: an older trial, feasible)
    # -- the training
    duplicate_of: int | None = None  # the earlier trial of the same architecture whose result it reuses
    epochs_done: int | None = None  # epochs trained (pruned: when stopped)
    val_accuracy: float | None = None  # validation accuracy after the last epoch trained
    curve: dict[str, Any] | None = None  # LearningCurve.to_dict(): per epoch train loss (all, tail), val loss, acc
    # the validation split's confusion matrix after the last epoch: {"classes": [name, ...], "matrix": rows (true
    # class) of columns (predicted)}; its per-class figures: ``class_metrics()``
    val_confusion: dict[str, Any] | None = None
    train_seconds: float | None = None  # the trainer's wall time
    compute_seconds: float | None = None  # of it, the time in the forward and backward passes
    seconds: float | None = None  # the whole trial's wall time, however it ended
    error: str | None = None  # why it failed: "Type: message"
    # -- ended without a verdict (archsearch.search.recovery)
    surplus: bool | None = None  # gave way: the study's last trials were taken, or an earlier trial runs the same
    interrupted: bool | None = None  # Ctrl-C reached it
    swept: bool | None = None  # its worker died; failed by a sweep

    @classmethod
    def of(cls, trial: _Readable | Mapping[str, Any]) -> TrialRecord:
        """The record of a trial (``FrozenTrial``, ``Trial``, ``FixedTrial``) or of its ``user_attrs``."""
        attrs = trial if isinstance(trial, Mapping) else trial.user_attrs
        # the exact type first: a report reads every trial several times
        return cls(**{name: v if type(v := attrs[name]) in kinds else typed(v, kinds)
                      for name, kinds in _KINDS.items() if name in attrs})

    def attrs(self) -> dict[str, Any]:
        """The fields given, by attribute key: ``user_attrs`` for ``enqueue_trial`` or ``create_trial``."""
        return {f.name: v for f in dataclasses.fields(self) if (v := getattr(self, f.name)) is not None}

    def write(self, trial: _Writable) -> None:
        """Set each field given on ``trial`` (an ``optuna.Trial``), in the order declared."""
        for key, value in self.attrs().items():
            trial.set_user_attr(key, value)

    # -- derived readings

    @property
    def infeasible(self) -> bool:
        """Recorded over the budget (an older trial without ``feasible`` is within it)."""
        return self.feasible is False

    @property
    def ended_without_verdict(self) -> bool:
        """Interrupted, swept, or gave way: not its own outcome (for a FAIL: not a verdict)."""
        return bool(self.interrupted or self.swept or self.surplus)

    def cost(self, metric: str) -> float | None:
        """The trial's value of a cost ``metric`` (one of :data:`COSTS`; None: not recorded or another)."""
        return getattr(self, COSTS[metric]) if metric in COSTS else None

    def point(self, metric: str) -> tuple[float, float] | None:
        """(cost ``metric``, validation accuracy) where both are recorded, else None: the trial's place on a plot."""
        cost = self.cost(metric)
        return None if cost is None or self.val_accuracy is None else (cost, self.val_accuracy)

    def class_metrics(self) -> ClassMetrics | None:
        """The per-class figures of the validation split (None: not recorded, e.g. by an older archsearch)."""
        c = self.val_confusion
        if c is None or not isinstance(c.get("matrix"), list):
            return None
        try:
            return ClassMetrics.from_matrix(c["matrix"], c.get("classes"))
        except (ValueError, TypeError):  # written by another tool
            return None

    def architecture(self) -> Arch:
        """The trial's architecture; ValueError for a trial that has none (not an archsearch trial)."""
        if self.arch is None:
            raise ValueError(f"the trial has no {ARCH_ATTR!r} user attribute: not an archsearch trial")
        return Arch.from_dict(self.arch)


#: budget metric -> the field that holds it, for the metrics a record holds (archsearch/network/metrics.py)
COSTS = {m.name: m.field for m in METRICS if m.field is not None}
ARCH_ATTR = "arch"  # the keys that messages and older callers name
BASELINE_ATTR = "baseline"


def fit_attr(fit: Fit) -> dict[str, Any]:
    """The ``fit`` field of a budget-fitted candidate."""
    return {"width_mult": fit.width_mult, "status": fit.status, "extra": list(fit.extra)}


def kinds_of(hint: Any) -> tuple[type, ...]:
    """The runtime types a field's value may have, from its annotation (``float | None`` -> (float, int))."""
    kinds = tuple(typing.get_origin(a) or a for a in typing.get_args(hint) if a is not type(None))
    return (*kinds, int) if float in kinds else kinds


_KINDS = {name: kinds_of(hint) for name, hint in typing.get_type_hints(TrialRecord).items()}


def typed(value: Any, kinds: tuple[type, ...]) -> Any:
    """``value`` where it has one of ``kinds`` (a bool is no number; a whole float is an int), else None."""
    if isinstance(value, bool) and bool not in kinds:
        return None
    if isinstance(value, float) and int in kinds and float not in kinds:
        return int(value) if value.is_integer() else None
    return value if isinstance(value, kinds) else None
