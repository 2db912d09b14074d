"""Opening a study's record: create it (once, however many workers start at the same instant) or load it, and
check that it was made with a comparable config. The search passes its sampler, pruner and what becomes of a
lost worker's trial (:func:`archsearch.search.study.open_study`); a reader (report, export) passes none."""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from typing import Any, Literal

import optuna

from archsearch.config.storage_url import redact
from archsearch.config.study_config import StudyConfig, fingerprint_matches
from archsearch.core.errors import ConfigError
from archsearch.study.storage import make_storage
from archsearch.study.study_record import StudyRecord
from archsearch.study.trial_record import TrialRecord
from archsearch.study.worker_identity import worker_id

__all__ = ["open_study", "create_or_load"]


def _directions(config: StudyConfig) -> list[Literal["maximize", "minimize"]]:
    return ["maximize", "minimize"] if config.objective.multi_objective else ["maximize"]


def _metric_names(config: StudyConfig) -> list[str]:
    o = config.objective
    if o.type == "pareto":
        return ["val_accuracy", {"macs": "macs", "latency": "latency_ms"}[o.pareto_metric]]
    return ["val_accuracy" if o.type == "constrained" else f"reward_{o.soft_metric}"]


def open_study(config: StudyConfig, *, create: bool = False, sampler: optuna.samplers.BaseSampler | None = None,
               pruner: optuna.pruners.BasePruner | None = None,
               stale_callback: Callable[[optuna.Study, Any], None] | None = None) -> optuna.Study:
    """Load the study (``create``: or create it) and check that it was made with a comparable config.
    ``stale_callback``: what becomes of a trial whose worker stopped beating (:func:`make_storage`)."""
    return create_or_load(config, create=create, sampler=sampler, pruner=pruner, stale_callback=stale_callback)[0]


def create_or_load(config: StudyConfig, *, create: bool, sampler: optuna.samplers.BaseSampler | None = None,
                   pruner: optuna.pruners.BasePruner | None = None,
                   stale_callback: Callable[[optuna.Study, Any], None] | None = None) -> tuple[optuna.Study, bool]:
    """The study (as :func:`open_study`) and whether this call created it."""
    r = config.recovery
    storage = make_storage(config.storage, create=create, heartbeat_s=r.heartbeat_s, grace_s=r.grace_s,
                           reconnect_s=r.reconnect_s, stale_attrs=TrialRecord(swept=True).attrs(),
                           stale_callback=stale_callback)
    fingerprint = config.fingerprint()
    if not create:
        try:
            return optuna.load_study(study_name=config.name, storage=storage, sampler=sampler, pruner=pruner), False
        except KeyError:
            raise ConfigError(
                f"no study {config.name!r} in {config.storage}; run `archsearch search` first",
                path=config.source, key="name",
            ) from None
    try:
        # the storage's unique study name makes creation atomic: of workers starting at the same
        # instant exactly one creates the study (and enqueues the baselines, in run()).
        study = optuna.create_study(
            study_name=config.name,
            storage=storage,
            sampler=sampler,
            pruner=pruner,
            directions=_directions(config),
        )
        # who created it and when: another start enqueues the baselines where the creator died before it did
        StudyRecord(created_by=worker_id(), created=time.time(), fingerprint=fingerprint,
                    config={**config.to_dict(), "storage": redact(config.storage)}).write(study)
        with warnings.catch_warnings():  # experimental since Optuna 3.2, still so in 5.0
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(_metric_names(config))  # what optuna-dashboard labels its axes with
        created = True
    except optuna.exceptions.DuplicatedStudyError:
        study = optuna.load_study(study_name=config.name, storage=storage, sampler=sampler, pruner=pruner)
        created = False
    stored = StudyRecord.of(study).fingerprint
    if stored is None:  # created by a worker that has not written it yet
        StudyRecord(fingerprint=fingerprint).write(study)
    elif stored != fingerprint and fingerprint_matches(stored, config):
        StudyRecord(fingerprint=fingerprint).write(study)  # an older archsearch's for the same study: today's
    elif stored != fingerprint:
        changed = sorted(k for k in set(stored) | set(fingerprint) if stored.get(k) != fingerprint.get(k))
        raise ConfigError(
            f"study {config.name!r} in {config.storage} was made with a different {', '.join(changed)}; its "
            f"trials would not be comparable with new ones. To start a new study, give it another `name` "
            f"(or another `storage`); to continue the old one, restore the old settings.",
            path=config.source, key=changed[0] if changed else "name",
        )
    if study.directions != [optuna.study.StudyDirection[d.upper()] for d in _directions(config)]:
        raise ConfigError(
            f"study {config.name!r} exists with other directions {study.directions}",
            path=config.source, key="objective",
        )
    return study, created
