"""What the Fashion-MNIST benchmark keeps of a finished search (``run.py`` runs the searches): its
network, its re-rank, its trial time, its anytime curve and checkpoints, and the digest of the study it ran.
Reads Optuna trials; trains nothing.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import math
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from archsearch.config.study_config import StudyConfig
from archsearch.study import best as pick
from archsearch.study import rerank_results
from archsearch.study.trial_record import ARCH_ATTR, BASELINE_ATTR
from archsearch.study.trial_states import COUNTED_STATES

ANYTIME_FRACTIONS = (0.25, 0.5)  # and 1.0: the search's own row


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def trial_seconds(t: FrozenTrial) -> float:
    """Wall time of a complete or pruned trial; the recorded time of a failed one."""
    if t.state in (TrialState.COMPLETE, TrialState.PRUNED) and t.datetime_complete and t.datetime_start:
        return (t.datetime_complete - t.datetime_start).total_seconds()
    if t.state == TrialState.FAIL:
        return float(t.user_attrs.get("seconds", 0.0))  # a killed trial's end time is the sweep's: skip it
    return 0.0


def spent(study: optuna.Study) -> float:
    """Trial time spent so far: wall time of complete/pruned trials, and the recorded time of failed ones."""
    return sum(trial_seconds(t) for t in study.get_trials(deepcopy=False))


def searched(study: optuna.Study) -> list[FrozenTrial]:
    """Complete, feasible, scored trials that are not seed baselines."""
    return [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if BASELINE_ATTR not in t.user_attrs and t.user_attrs.get("feasible", True) and t.values]


def trial_record(t: FrozenTrial) -> dict[str, Any]:
    return {"number": t.number, "score": t.values[0], "arch_id": t.user_attrs["arch_id"],
            "arch": t.user_attrs[ARCH_ATTR], "baseline": t.user_attrs.get(BASELINE_ATTR)}


def anytime(trials: list[FrozenTrial], budget: int) -> tuple[list[list[float]], list[dict[str, Any]]]:
    """The best-so-far search score against cumulative trial time (in trial order), and the best searched
    candidate by the search score once ``ANYTIME_FRACTIONS`` of the searched (not baseline) trials among the
    ``budget`` had finished (with the trial time spent by then)."""
    curve, checkpoints = [], []
    elapsed, best, best_searched, finished = 0.0, None, None, 0
    budget -= sum(1 for t in trials if BASELINE_ATTR in t.user_attrs and t.state in COUNTED_STATES)
    fractions = list(ANYTIME_FRACTIONS)
    for t in sorted(trials, key=lambda t: t.number):
        elapsed += trial_seconds(t)
        ok = t.state == TrialState.COMPLETE and t.user_attrs.get("feasible", True) and t.values
        if ok and (best is None or t.values[0] > best):
            best = t.values[0]
        better = best_searched is None or (ok and t.values[0] > best_searched.values[0])
        if ok and BASELINE_ATTR not in t.user_attrs and better:
            best_searched = t
        if best is not None:
            curve.append([round(elapsed, 2), best])
        finished += t.state in COUNTED_STATES and BASELINE_ATTR not in t.user_attrs
        while fractions and finished >= math.ceil(fractions[0] * budget):
            if best_searched is not None:
                checkpoints.append({"fraction": fractions[0], "seconds": round(elapsed, 2),
                                    **trial_record(best_searched)})
            fractions.pop(0)
    return curve, checkpoints


def study_digest(config: StudyConfig) -> str:
    """What a search's result depends on: the study's fingerprint (space, its overrides, data, proxy recipe,
    budget, fitting) and its re-rank, which picks the network; hashed."""
    what = {"fingerprint": config.fingerprint(), "rerank": dataclasses.asdict(config.rerank) if config.rerank else None}
    return hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()[:16]


def search_record(study: optuna.Study, config: StudyConfig, *, level: str, sampler: str,
                  budget: int) -> dict[str, Any]:
    """The finished search of ``budget`` trials: its network (the searched candidate the re-rank picks where it has
    one, else the best by the search score), its re-rank, its anytime curve and checkpoints.

    The re-rank's pick is :func:`archsearch.study.best.pick` among the searched (not baseline) candidates: the best
    mean, or, where a cross-validated re-rank (``folds``) leaves others within the noise of it, the lower latency or
    fewer MACs among those; without folds, the best mean. ``pick`` records the tied and what chose among them,
    ``export_pick`` the trial ``archsearch export`` would take (the seed baselines among the candidates)."""
    candidates = searched(study)
    if not candidates:
        raise RuntimeError(f"{level}/{sampler}: the search has no complete feasible candidate beyond the baselines")
    reranked = rerank_results.results(study, config)
    scores = pick.scored(study, config)
    numbers = {t.number for t in candidates}
    chosen = pick.pick([s for s in scores if s.trial.number in numbers])
    if chosen is not None:
        best = next(t for t in candidates if t.number == chosen.chosen.trial.number)
    else:
        best = max(candidates, key=lambda t: (t.values[0], -t.number))
    exported = pick.pick(scores)
    trials = study.get_trials(deepcopy=False)
    curve, checkpoints = anytime(trials, budget)
    return {
        "key": f"search/{level}/{sampler}",
        "kind": "search",
        "study": study_digest(config),
        "level": level,
        "sampler": sampler,
        "spent_seconds": spent(study),
        "rerank_seconds": sum(v["seconds"] for v in reranked.values()),
        "trials": len(trials),
        "trained": sum(1 for t in trials if t.state == TrialState.COMPLETE and t.user_attrs.get("feasible", True)
                       and "duplicate_of" not in t.user_attrs),
        "infeasible": sum(1 for t in trials if t.user_attrs.get("feasible") is False),
        "best": {**trial_record(best), "rerank": reranked.get(best.number)},
        "pick": None if chosen is None else {"tied": [s.trial.number for s in chosen.tied], "by": chosen.by},
        "export_pick": None if exported is None else exported.chosen.trial.number,
        "reranked": {str(n): v["val_accuracy"] for n, v in reranked.items()},
        # each re-ranked candidate's standard error under folds (None: one training)
        "reranked_se": {str(s.trial.number): s.se for s in scores},
        "curve": curve,
        "checkpoints": checkpoints,
        "created": now(),
    }
