"""A study in words: one line per trial, the best trials (or the Pareto front), and the summary a search ends with."""

from __future__ import annotations

from collections.abc import Callable

import optuna
from optuna.trial import FrozenTrial, TrialState

from archsearch.config.storage_url import redact
from archsearch.config.study_config import StudyConfig
from archsearch.core.text import fmt_count
from archsearch.network.metrics import METRICS, amount
from archsearch.network.metrics import metric as metric_row
from archsearch.search import rerank
from archsearch.search.recovery import baseline_status, owed_baselines
from archsearch.space import baselines
from archsearch.study import rerank_results
from archsearch.study.best import best_trials, rerank_lines
from archsearch.study.class_verdict import chance_line, per_class_lines
from archsearch.study.study_record import StudyRecord
from archsearch.study.trial_record import TrialRecord
from archsearch.study.trial_states import ON_RESUME, counts, failed_note, fates, has_verdict, infeasible_count

__all__ = ["baseline_words", "left_to_run", "no_feasible_reason", "over_budget_words", "progress_note", "reranked",
           "start_line", "summary", "trial_line"]

_METRIC_NAMES = frozenset(m.name for m in METRICS)


def trial_line(t: FrozenTrial) -> str:
    r = TrialRecord.of(t)
    acc = r.val_accuracy
    values = "-" if not t.values else "/".join(f"{v:.4g}" for v in t.values)
    state = "INFEASIBLE" if r.infeasible else t.state.name
    tag = f" [{r.baseline}]" if r.baseline is not None else ""
    err = f" ({r.error})" if t.state == TrialState.FAIL and r.error is not None else ""
    latency = ""  # where the budget or the objective asks for it
    if r.latency_ms is not None:
        latency = f"  latency {r.latency_ms:.2f}ms"
    elif r.latency_pred_ms is not None:  # rejected on the table's prediction, never built
        latency = f"  latency ~{r.latency_pred_ms:.2f}ms"
    seconds = 0.0 if r.seconds is None else r.seconds
    return (
        f"trial {t.number:>4}  {state:<10} macs {fmt_count(r.macs):>7}  params {fmt_count(r.params):>7}"
        f"{latency}  acc {'-' if acc is None else f'{acc:.4f}':>6}  score {values:>8}  {seconds:6.1f}s"
        f"  {r.arch_id or '?'}{tag}{err}"
    )


def progress_note(study: optuna.Study) -> str:
    """Beside the progress bar's trained/total: the best feasible score so far and the over-budget count."""
    best = best_trials(study)
    if not best:
        score = "no feasible trial yet"
    elif len(study.directions) == 1:
        score = f"best {best[0].values[0]:.4f}"
    else:
        score = f"front {len(best)}"
    return f"{score}, {infeasible_count(study)} infeasible"


def summary(study: optuna.Study, config: StudyConfig | None = None) -> str:
    trials = study.get_trials(deepcopy=False)
    by_state = {s.name: sum(t.state == s for t in trials) for s in TrialState}
    records = {t.number: TrialRecord.of(t) for t in trials}
    infeasible = sum(1 for t in trials if t.state == TrialState.COMPLETE and records[t.number].infeasible)
    # "trained": built and trained, to the end or until pruned (what n_trials counts and `archsearch report` ranks)
    lines = [
        f"study {study.study_name}: {by_state['COMPLETE'] - infeasible + by_state['PRUNED']} trained "
        f"({by_state['COMPLETE'] - infeasible} to the end, {by_state['PRUNED']} pruned), {infeasible} infeasible "
        f"(over the budget: not trained, not counted in n_trials), {failed_note(trials)}, "
        f"{by_state['RUNNING']} running",
    ]
    best = best_trials(study, config)
    reranked = rerank_results.results(study, config) if config is not None else {}
    base = [t for t in trials if records[t.number].baseline is not None and t.state == TrialState.COMPLETE
            and not records[t.number].infeasible]
    if len(study.directions) == 1:
        lines.append(("best feasible trial (by re-rank):" if reranked else "best feasible trial:") if best
                     else "no feasible trial yet")
        lines += [f"  {trial_line(t)}" for t in best]
    else:
        lines.append(f"Pareto front ({len(best)} trials: accuracy up, {('cost')} down):")
        lines += [f"  {trial_line(t)}" for t in best]
    if base:
        lines.append("seed baselines at the same budget:")
        lines += [f"  {trial_line(t)}" for t in sorted(base, key=lambda t: t.number)]
        searched = [t for t in trials if t.state == TrialState.COMPLETE and records[t.number].baseline is None
                    and not records[t.number].infeasible and t.values is not None]
        if searched and len(study.directions) == 1:
            lines.append(_versus(searched, base, lambda t: t.values[0], "search score"))
            if reranked:
                def value(t: FrozenTrial) -> float:
                    return reranked[t.number]["value"] if t.number in reranked else float("-inf")

                if any(t.number in reranked for t in searched) and any(t.number in reranked for t in base):
                    epochs = next(iter(reranked.values()))["epochs"]
                    assert config is not None and config.rerank is not None  # else nothing is reranked
                    folds = f", {config.rerank.folds}-fold" if config.rerank.folds else ""
                    lines.append(_versus(searched, base, value, f"re-rank score ({epochs} epochs{folds})"))
            # a short recipe favours shallow networks that converge fast (docs/results.md: Proxy fidelity), so the
            # honest comparison is each network trained at the final recipe and scored on the test split
            if best:
                lines.append(f"to compare at a final recipe on the test split: archsearch export STUDY --trial N "
                             f"--epochs E --out DIR for the pick (trial {best[0].number}) and each baseline (trials "
                             + ", ".join(str(t.number) for t in sorted(base, key=lambda t: t.number)) + ")")
    pending, left_out = baseline_words(study, config, trials)
    if pending:
        lines.append("seed baselines without a result yet: " + ", ".join(f"{f} ({w})" for f, w in pending.items()))
    if left_out:
        lines.append("seed baselines left out of the comparison:")
        lines += [f"  {f} ({w})" for f, w in left_out.items()]
    if reranked:
        assert config is not None  # else nothing is reranked
        lines += rerank_lines(study, config)
    lines += per_class_lines(best[0] if best else None)
    flat = chance_line(trials, config)
    if flat:
        lines.append(flat)
    return "\n".join(lines)


def baseline_words(study: optuna.Study, config: StudyConfig | None = None, trials: list[FrozenTrial] | None = None,
                   ) -> tuple[dict[str, str], dict[str, str]]:
    """(pending, left out): per seed baseline family without a score to compare, what became of it, as
    ``trial N ...``. Pending: queued, running, or to run again on the next start (``trial 3 interrupted``). Left
    out, never to have one: over the budget, failed by its own error, pruned, given up, or not queued at all.
    ``trials``: the study's, where already read."""
    trials = study.get_trials(deepcopy=False) if trials is None else trials
    records = {t.number: TrialRecord.of(t) for t in trials}
    tries: dict[str, list[FrozenTrial]] = {}
    for t in sorted(trials, key=lambda t: t.number):
        if (family := records[t.number].baseline) is not None:
            tries.setdefault(family, []).append(t)
    status, owed = baseline_status(trials), owed_baselines(trials)
    pending: dict[str, str] = {}
    left_out: dict[str, str] = {}
    for family, ts in tries.items():
        if (why := status.get(family)) is not None:  # no verdict: still to come, or given up
            live = family in owed or any(t.state in (TrialState.WAITING, TrialState.RUNNING) for t in ts)
            (pending if live else left_out)[family] = why
            continue
        verdict = next((t for t in ts if has_verdict(t)), None)  # the one baseline_status took (later gave way)
        if verdict is None:
            continue
        record = records[verdict.number]
        if verdict.state == TrialState.COMPLETE and record.infeasible:
            left_out[family] = f"trial {verdict.number} over the budget, never trained: " + over_budget_words(
                verdict, config)
        elif verdict.state == TrialState.PRUNED:
            at = "" if record.val_accuracy is None else f" at accuracy {record.val_accuracy:.4f}"
            left_out[family] = f"trial {verdict.number} pruned after epoch {record.epochs_done or '?'}{at}"
        elif verdict.state == TrialState.FAIL:
            error = f": {record.error.splitlines()[0]}" if record.error else ""
            left_out[family] = f"trial {verdict.number} failed{error}"
    kept = StudyRecord.of(study)
    if kept.baselines:  # enqueued: a family without a trial did not fit at all
        unfitted = kept.baselines_over or {}
        limits = config.budget.limits() if config is not None else None
        for family in baselines.FAMILIES:
            if family not in tries:
                left_out[family] = "not queued: " + _unfitted_words(unfitted.get(family), limits)
    return pending, left_out


def _unfitted_words(unfitted: object, limits: dict[str, float] | None) -> str:
    """Why a family was not queued, from what :func:`archsearch.search.recovery.ensure_baselines` recorded (a study
    made before it did: the words alone)."""
    if isinstance(unfitted, dict) and isinstance(width := unfitted.get("width"), (int, float)) \
            and isinstance(over := unfitted.get("over"), dict):
        known = {m: v for m, v in over.items() if m in _METRIC_NAMES and isinstance(v, (int, float))}
        return baselines.over_words(width, known, limits)
    return "even its thinnest variant is over the budget"


def over_budget_words(t: FrozenTrial, config: StudyConfig | None = None) -> str:
    """Which limits a candidate over the budget exceeds, by how much: ``macs 12.35K > budget.max_macs 10.00K`` (from
    its constraints; without ``config``: ``macs 23% over its limit``)."""
    parts = []
    for metric, excess in sorted((t.constraints or {}).items(), key=lambda kv: -kv[1]):
        if excess <= 0:
            continue
        limit = config.budget.limits().get(metric) if config is not None else None
        if limit is None:
            parts.append(f"{metric} {excess:.0%} over its limit")
        else:  # a constraint is value / limit - 1 (archsearch.config.budgets.budget_excess)
            parts.append(f"{metric} {amount(metric, limit * (1 + excess))} > budget.{metric_row(metric).key} "
                         f"{amount(metric, limit)}")
    return ", ".join(parts) or "see its trial line"


def _versus(searched: list[FrozenTrial], base: list[FrozenTrial], value: Callable[[FrozenTrial], float],
            what: str) -> str:
    top, found = max(base, key=value), max(searched, key=value)
    return (f"best searched candidate (trial {found.number}) {value(found):.4f} vs best baseline "
            f"({TrialRecord.of(top).baseline}, trial {top.number}) {value(top):.4f} by {what}: "
            f"{value(found) - value(top):+.4f}")


def no_feasible_reason(study: optuna.Study, config: StudyConfig) -> str | None:
    """Why a search ended without a feasible trial, and what to change, in one line; None if it has one."""
    if best_trials(study, config):
        return None
    trials = study.get_trials(deepcopy=False)
    over = [t for t in trials if t.state == TrialState.COMPLETE and not counts(t)]
    records = {t.number: TrialRecord.of(t) for t in trials}
    failed = sum(t.state == TrialState.FAIL and not records[t.number].ended_without_verdict for t in trials)
    # interrupted, or their worker lost, and not queued again yet: the next start runs them
    again = sum(fate == ON_RESUME for _, fate in fates(trials, records).values())
    why = []
    if failed:
        why.append(f"{failed} trial(s) failed (their errors are on the trial lines; `archsearch report` lists them)")
    if again:
        why.append(f"{again} trial(s) were interrupted or lost their worker before a result (they run again)")
    if over:
        by_metric: dict[str, int] = {}
        for t in over:
            for metric, excess in (t.constraints or {}).items():
                if excess > 0:
                    by_metric[metric] = by_metric.get(metric, 0) + 1
        limits = config.budget.limits()
        which = ", ".join(f"budget.{metric_row(m).key} {limits[m]:g} ({n})"
                          for m, n in sorted(by_metric.items(), key=lambda kv: -kv[1]) if m in limits
                          ) or "see the trial lines"
        why.append(f"{len(over)} candidate(s) were over the budget ({which}): raise that limit, or make the space "
                   f"smaller (width_mult, channels, depth)")
    if not why:
        return "no feasible trial: no trial finished (raise --timeout, or run the same command again to go on)"
    return f"no feasible trial: {'; '.join(why)}; then run the same command again"


def left_to_run(study: optuna.Study, config: StudyConfig, done: int, target: int) -> str | None:
    """What a study whose ``n_trials`` are done still runs (None: nothing): a baseline owed its verdict, the
    re-rank."""
    if done < target:
        return None
    owed = owed_baselines(study.get_trials(deepcopy=False))
    if owed:
        return f"the {', '.join(owed)} baseline{'s' if len(owed) > 1 else ''}, still without a result, run"
    return None if reranked(study, config) else "the re-rank is left to run"


def start_line(config: StudyConfig, created: bool, done: int, target: int, *, left: str | None = None) -> str:
    """``new study X``, ``resuming study X: N of M trials finished`` or, when nothing is left, ``... finished``
    (``left``: what runs though the trials are done, from :func:`left_to_run`)."""
    where = redact(config.storage)
    if created:
        return f"new study {config.name} ({where}): {target} trials to run"
    if done >= target and left is not None:
        return f"resuming study {config.name} ({where}): {done} of {target} trials finished; {left}"
    if done >= target:
        return (f"study {config.name} ({where}) is finished: {done} of {target} trials; nothing to run (raise "
                f"n_trials, or pass --n-trials, to run more; `archsearch report {config.source or ''}` shows the "
                f"results)")
    return f"resuming study {config.name} ({where}): {done} of {target} trials finished"


def reranked(study: optuna.Study, config: StudyConfig) -> bool:
    """Every candidate of the config's re-rank has its result (True without a re-rank)."""
    if config.rerank is None:
        return True
    done = rerank_results.results(study, config)
    return all(t.number in done for t in rerank.candidates(study, config.rerank.top))
