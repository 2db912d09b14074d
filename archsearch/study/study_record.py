"""What archsearch keeps on a study itself (Optuna's study user attributes), declared once as the trial record
declares a trial's: who made it and when, the fingerprint that makes its trials comparable, its config as made,
whether the seed baselines were enqueued (and why a family was not), and the identity of its data. The re-rank's
results are kept under ``RERANK_PREFIX`` + trial number (:mod:`archsearch.study.rerank_results`)."""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from typing import Any

import optuna

from archsearch.study.trial_record import kinds_of, typed

__all__ = ["StudyRecord", "KEYS", "RERANK_PREFIX"]

#: field -> the study user attribute that holds it
KEYS = {
    "created": "archsearch.created",  # time.time() at creation
    "created_by": "archsearch.created_by",  # the creating worker
    "fingerprint": "archsearch.fingerprint",  # StudyConfig.fingerprint(): what makes trials comparable
    "config": "archsearch.config",  # the study's config as it was created, storage redacted
    "baselines": "archsearch.baselines",  # True: the seed baselines are enqueued
    # family -> {"width": its thinnest variant's, "over": {metric: value over the limit}}: the families not enqueued
    "baselines_over": "archsearch.baselines_over",
    "data_identity": "archsearch.data_identity",  # DataBundle.identity of the data it was made with
}
RERANK_PREFIX = "archsearch.rerank."  # + trial number: that trial's re-rank claim or result


@dataclass(frozen=True)
class StudyRecord:
    """A study's own attributes; None: not written (or, read, not of the field's type)."""

    created: float | None = None
    created_by: str | None = None
    fingerprint: dict[str, Any] | None = None
    config: dict[str, Any] | None = None
    baselines: bool | None = None
    baselines_over: dict[str, Any] | None = None
    data_identity: str | None = None

    @classmethod
    def of(cls, study: optuna.Study) -> StudyRecord:
        """What ``study`` holds (read once)."""
        attrs = study.user_attrs
        return cls(**{name: typed(attrs.get(key), _KINDS[name]) for name, key in KEYS.items()})

    def write(self, study: optuna.Study) -> None:
        """Write the fields that are set (not None) to ``study``."""
        for f in dataclasses.fields(self):
            if (value := getattr(self, f.name)) is not None:
                study.set_user_attr(KEYS[f.name], value)


_KINDS = {name: kinds_of(hint) for name, hint in typing.get_type_hints(StudyRecord).items()}
