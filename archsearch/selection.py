"""Which trials an export takes: one by number, the best feasible one (by the re-rank where it ran), or the
Pareto front; and the error that says why there is none."""

from __future__ import annotations

import optuna
from optuna.trial import FrozenTrial, TrialState

from .config import StudyConfig, redact
from .errors import ConfigError
from .objective import ARCH_ATTR, budget_excess
from .study import best_trials

__all__ = ["select_trials"]


def _relative_excess(t: FrozenTrial, config: StudyConfig) -> dict[str, float]:
    """Per budgeted metric, value / limit - 1 (the trial's stored constraints, else from its attributes)."""
    if t.constraints:
        return dict(t.constraints)
    a = t.user_attrs
    return budget_excess(config, {"macs": a.get("macs"), "params": a.get("params"), "latency": a.get("latency_ms")})


def _budget_text(config: StudyConfig) -> str:
    b = config.budget
    parts = [f"{key}={getattr(b, key):,g}" for key in ("max_macs", "max_params", "max_latency_ms")
             if getattr(b, key) is not None]
    return ", ".join(parts) or "no limits"


def _no_feasible(study: optuna.Study, config: StudyConfig) -> ConfigError:
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    where = f"study {study.study_name!r} ({redact(config.storage)})"
    if not complete:
        return ConfigError(f"{where} has no complete trial yet; run `archsearch search {config.source or ''}` first",
                           path=config.source)
    scored = []
    for t in complete:
        excess = _relative_excess(t, config)
        if excess:
            metric = max(excess, key=excess.get)
            scored.append((excess[metric], t.number, metric, t))
    text = f"no feasible trial in {where}: none of its {len(complete)} complete trial(s) fits the budget " \
           f"({_budget_text(config)})"
    if scored:
        worst, number, metric, t = min(scored, key=lambda s: (s[0], s[1]))
        limit = config.budget.limit(metric)
        value = t.user_attrs.get({"latency": "latency_ms"}.get(metric, metric))
        unit = {"macs": "MACs", "params": "params", "latency": "ms"}.get(metric, metric)
        shown = f"{value:,g} {unit}" if value is not None else metric
        text += (f"; the nearest is trial {number} ({t.user_attrs.get('arch_id', '?')}) with {shown}, "
                 f"{100 * worst:.3g}% over the limit of {limit:,g}. Raise the budget or run more trials; "
                 f"`--trial {number}` exports it anyway")
    return ConfigError(text, path=config.source, key="budget")


def select_trials(
    study: optuna.Study, config: StudyConfig, *, trial: int | None = None, pareto: bool = False
) -> list[FrozenTrial]:
    """The trials to export: ``trial``, the Pareto front (``pareto``) or the best feasible trial.

    The front is the study's own for a two-objective study, else validation accuracy against MACs over the
    feasible complete trials. A pruned, failed or unfinished ``trial`` is an error (it has no final
    accuracy); an infeasible one is exported when asked for by number.
    """
    if trial is not None and pareto:
        raise ConfigError("give either a trial number or pareto, not both")
    if trial is not None:
        trials = study.get_trials(deepcopy=False)
        found = [t for t in trials if t.number == trial]
        if not found:
            last = max((t.number for t in trials), default=None)
            span = "it has no trials" if last is None else f"its trials are numbered 0 to {last}"
            raise ConfigError(f"study {study.study_name!r} has no trial {trial}; {span}", path=config.source)
        t = found[0]
        if t.state != TrialState.COMPLETE:
            why = {
                TrialState.PRUNED: f"was pruned after {t.user_attrs.get('epochs_done', '?')} epoch(s): the search "
                                   f"stopped it as unpromising, so it has no final accuracy",
                TrialState.FAIL: f"failed ({t.user_attrs.get('error', 'no error recorded')})",
            }.get(t.state, f"is {t.state.name} (not finished)")
            raise ConfigError(f"trial {trial} {why}; only complete trials can be exported", path=config.source)
        if ARCH_ATTR not in t.user_attrs:
            raise ConfigError(f"trial {trial} has no {ARCH_ATTR!r} user attribute: not an archsearch trial",
                              path=config.source)
        return [t]
    front = best_trials(study, config)
    if not front:
        raise _no_feasible(study, config)
    if pareto:
        if len(study.directions) == 1:
            from .report import pareto_front

            done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                    if t.user_attrs.get("feasible", True) and t.user_attrs.get("val_accuracy") is not None]
            front = pareto_front(done, "macs")
        return sorted(front, key=lambda t: t.number)
    return [max(front, key=lambda t: (t.values[0], -t.number))]
