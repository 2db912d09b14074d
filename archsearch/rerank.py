"""The search's last step: its top candidates trained again with a longer recipe, the best chosen by that.

A search scores each candidate with a brief proxy recipe, and a brief recipe favours networks that
converge fast; the search's best can also be a lucky short run. With ``rerank: {top: k, epochs: E}`` in
the study YAML, the ``k`` best feasible candidates (one per architecture) are trained again from scratch
with the study's recipe at ``E`` epochs (``train_subset`` images, None: all), scored on the same
validation split, and the summary and ``archsearch export`` pick the best by that score. The seed
baselines are trained again too, so that searched and hand-designed networks compare at one fidelity.

Optuna freezes a finished trial, so each result is a study user attribute
``archsearch.rerank.<trial number>``: ``{"val_accuracy", "value", "epochs", "seconds", "recipe"}``. A
result counts only while its recipe is the config's, so changing ``rerank`` re-ranks again. Before a
worker trains a candidate it writes a claim (``{"worker", "recipe"}``); other workers skip candidates
claimed by a live worker, and a claim left by a dead worker on this host is taken over. A claim by a
worker on another host is left to that host: ``archsearch search`` there completes it.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

import optuna
from optuna.trial import FrozenTrial, TrialState

from .arch import Arch
from .config import StudyConfig
from .cost import arch_cost
from .objective import ARCH_ATTR, BASELINE_ATTR, Objective, worker_alive, worker_id
from .train import TrainConfig

__all__ = ["PREFIX", "recipe", "results", "candidates", "rerank", "best_reranked", "pending"]

PREFIX = "archsearch.rerank."


def recipe(config: StudyConfig) -> TrainConfig:
    """The re-rank's training recipe: the study's, with the re-rank's epochs and subset, no time cap."""
    r = config.rerank
    return dataclasses.replace(config.training, epochs=r.epochs, train_subset=r.train_subset, seconds=None)


def _recipe_key(config: StudyConfig) -> dict:
    return dataclasses.asdict(recipe(config))


def _finished(value: object, want: dict) -> bool:
    """Whether a study attribute is a finished result of the re-rank recipe ``want``."""
    return isinstance(value, dict) and value.get("recipe") == want and "val_accuracy" in value


def results(study: optuna.Study, config: StudyConfig) -> dict[int, dict]:
    """The finished re-rank results of the config's recipe, by trial number ({} without ``rerank``)."""
    if config.rerank is None:
        return {}
    want = _recipe_key(config)
    out = {}
    for key, value in study.user_attrs.items():
        if key.startswith(PREFIX) and _finished(value, want):
            out[int(key[len(PREFIX):])] = value
    return out


def candidates(study: optuna.Study, top: int) -> list[FrozenTrial]:
    """The ``top`` feasible complete searched trials by search score, one per architecture, best first, then
    the feasible seed baselines (so that the summary compares searched and hand-designed at one fidelity)."""
    done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if t.user_attrs.get("feasible", True) and t.values is not None and ARCH_ATTR in t.user_attrs
            and "duplicate_of" not in t.user_attrs]
    done.sort(key=lambda t: (-t.values[0], t.number))
    searched, seen = [], set()
    for t in done:
        arch_id = t.user_attrs.get("arch_id")
        if BASELINE_ATTR in t.user_attrs or arch_id in seen or len(searched) == top:
            continue
        seen.add(arch_id)
        searched.append(t)
    return searched + sorted((t for t in done if BASELINE_ATTR in t.user_attrs), key=lambda t: t.number)


def pending(study: optuna.Study, config: StudyConfig) -> bool:
    """Whether a worker still trains a candidate for the config's re-rank (a live worker's claim without a result).

    The claim of a worker known to be dead (killed while it trained) is not pending: nobody will finish it, and
    the next re-rank takes the candidate over if it is still among the top.
    """
    if config.rerank is None:
        return False
    want = _recipe_key(config)
    return any(isinstance(v, dict) and v.get("recipe") == want and not _finished(v, want)
               and worker_alive(v.get("worker", "")) is not False
               for k, v in study.user_attrs.items() if k.startswith(PREFIX))


def _claimed_elsewhere(value: object, want: dict) -> bool:
    """Whether ``value`` (a study attribute) is another live worker's claim on the same recipe."""
    if not isinstance(value, dict) or value.get("recipe") != want or _finished(value, want):
        return False
    return worker_alive(value.get("worker", "")) is not False and value.get("worker") != worker_id()


def rerank(study: optuna.Study, config: StudyConfig, objective: Objective,
           *, say: Callable[[str], None] = lambda text: None) -> dict[int, dict]:
    """Train the top candidates that have no result yet with the re-rank recipe; returns every result."""
    if config.rerank is None or config.objective.multi_objective:
        return {}
    want = _recipe_key(config)
    train_cfg = recipe(config)
    top = candidates(study, config.rerank.top)
    for t in top:
        key = f"{PREFIX}{t.number}"
        current = study.user_attrs.get(key)  # read again: another worker may have finished or claimed it
        if _finished(current, want):
            continue
        if _claimed_elsewhere(current, want):
            continue
        study.set_user_attr(key, {"worker": worker_id(), "recipe": want})
        arch = Arch.from_dict(t.user_attrs[ARCH_ATTR])
        data = objective.data_for(arch.resolution)
        t0 = time.perf_counter()
        result = objective.trainer(objective.build(arch), data.x_train, data.y_train, data.x_val, data.y_val,
                                   train_cfg, device=objective.device)
        seconds = time.perf_counter() - t0
        value = objective.score(result.val_accuracy, arch_cost(arch), t.user_attrs.get("latency_ms"))
        study.set_user_attr(key, {"val_accuracy": result.val_accuracy, "value": value,
                                  "epochs": result.epochs_done, "seconds": seconds, "recipe": want})
        tag = f" [{t.user_attrs[BASELINE_ATTR]}]" if BASELINE_ATTR in t.user_attrs else ""
        say(f"re-rank trial {t.number:>4}  search {t.values[0]:.4f} -> {result.val_accuracy:.4f} after "
            f"{result.epochs_done} epochs ({seconds:.1f}s)  {t.user_attrs.get('arch_id')}{tag}")
    return results(study, config)


def best_reranked(study: optuna.Study, config: StudyConfig) -> FrozenTrial | None:
    """The re-ranked trial with the best re-rank score (None before any result)."""
    done = results(study, config)
    if not done:
        return None
    trials = {t.number: t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))}
    scored = [(v["value"], -n) for n, v in done.items() if n in trials]
    if not scored:
        return None
    return trials[-max(scored)[1]]
