"""A study in words: one line per trial, the best trials (or the Pareto front), and the summary a search ends with."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import optuna
from optuna.trial import FrozenTrial, TrialState

from archsearch.config.storage import redact
from archsearch.config.study_config import _BUDGET_FIELD, StudyConfig
from archsearch.search import rerank
from archsearch.search.class_verdict import chance_line, per_class_lines
from archsearch.search.objective import COUNTED_STATES as COUNTED
from archsearch.search.objective import counts, has_verdict, retried_numbers
from archsearch.search.pick import Pick, pick, scored
from archsearch.search.recovery import baseline_status, may_retry, owed_baselines
from archsearch.search.trial_record import BASELINES_ATTR, TrialRecord
from archsearch.space import baselines

__all__ = ["baseline_words", "best_trials", "failed_note", "finished_count", "fmt_count", "infeasible_count",
           "left_to_run", "no_feasible_reason", "over_budget_words", "progress_note", "rerank_lines", "reranked",
           "start_line", "summary", "trial_line"]

# what became of a trial that ended without a verdict (interrupted, or its worker lost), in the order said
_RUN_AGAIN = "run again since"
_RUNNING_AGAIN = "running again"
_QUEUED_AGAIN = "queued to run again"
_ON_RESUME = "to run again on resume"
_NOT_AGAIN = "not run again"
_FATES = (_RUN_AGAIN, _RUNNING_AGAIN, _QUEUED_AGAIN, _ON_RESUME, _NOT_AGAIN)
_UNIT = {"latency": " ms", "peak_kb": " KiB", "model_kb": " KiB"}  # macs, params: counts (fmt_count)


def finished_count(study: optuna.Study) -> int:
    """Networks trained, to the end or until pruned: what ``n_trials`` counts (over-budget candidates do not)."""
    return sum(1 for t in study.get_trials(deepcopy=False, states=COUNTED) if counts(t))


def infeasible_count(study: optuna.Study) -> int:
    """Candidates over the budget: recorded, never trained, not counted in ``n_trials``."""
    return sum(1 for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if not counts(t))


def fmt_count(n: float | None) -> str:
    """12345 -> '12.35K' (None -> '-')."""
    if n is None:
        return "-"
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.2f}{unit}"
    return f"{n:.0f}"


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


def best_trials(study: optuna.Study, config: StudyConfig | None = None) -> list[FrozenTrial]:
    """Best feasible trial (single objective) or the feasible Pareto front (two objectives).

    With ``config`` and its ``rerank`` results, the best single-objective trial is the best re-ranked one.
    """
    if config is not None and len(study.directions) == 1 and (chosen := pick(scored(study, config))):
        return [chosen.chosen.trial]
    done = [
        t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if not TrialRecord.of(t).infeasible and t.values is not None
    ]
    if not done:
        return []
    if len(study.directions) == 1:
        return [max(done, key=lambda t: t.values[0])]
    front = []
    for t in done:
        dominated = any(
            o.values[0] >= t.values[0] and o.values[1] <= t.values[1] and o.values != t.values for o in done
        )
        if not dominated:
            front.append(t)
    return sorted(front, key=lambda t: t.values[1])


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
    reranked = rerank.results(study, config) if config is not None else {}
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


def failed_note(trials: list[FrozenTrial]) -> str:
    """The failed trials in words, apart by why: ``N failed`` by their own error (said even where none did); then,
    where there are any, those that Ctrl-C reached and those whose worker was lost, with what became of them
    (``2 interrupted (1 run again since, 1 to run again on resume)``), and those that gave way to other workers."""
    records = {t.number: TrialRecord.of(t) for t in trials}
    fates = _fates(trials, records)
    failed = sum(t.state == TrialState.FAIL and not records[t.number].ended_without_verdict for t in trials)
    gave_way = sum(t.state == TrialState.FAIL and t.number not in fates and bool(records[t.number].surplus)
                   for t in trials)
    parts = [f"{failed} failed"]
    for cause in ("interrupted", "lost"):
        counted = Counter(fate for why, fate in fates.values() if why == cause)
        if not (n := counted.total()):
            continue
        what = "interrupted" if cause == "interrupted" else f"lost {'its' if n == 1 else 'their'} worker"
        # "run again since" where all fared alike, else "1 run again since, 1 to run again on resume"
        fared = [f if len(counted) == 1 else f"{counted[f]} {f}" for f in _FATES if counted[f]]
        parts.append(f"{n} {what} ({', '.join(fared)})")
    if gave_way:
        parts.append(f"{gave_way} gave way to other workers")
    return ", ".join(parts)


def _fates(trials: list[FrozenTrial], records: dict[int, TrialRecord]) -> dict[int, tuple[str, str]]:
    """Per failed trial that Ctrl-C reached ("interrupted") or whose worker was lost ("lost"), as
    :mod:`archsearch.search.recovery` tells them, that and what became of it: its retry's state, or whether the next
    start queues one (:func:`archsearch.search.recovery.recover`)."""
    retry: dict[int, FrozenTrial] = {}
    for t in sorted(trials, key=lambda t: t.number):
        if (of := records[t.number].retry_of) is not None:
            retry.setdefault(of, t)  # the first: a later retry of the same trial gives way to it
    repeated = retried_numbers(trials)
    out = {}
    for t in trials:
        record = records[t.number]
        if t.state != TrialState.FAIL or not (record.interrupted or record.swept):
            continue
        if t.number in retry:
            fate = {TrialState.WAITING: _QUEUED_AGAIN, TrialState.RUNNING: _RUNNING_AGAIN}.get(
                retry[t.number].state, _RUN_AGAIN)
        elif t.number in repeated:  # by Optuna's own retry (an older study's heartbeat)
            fate = _RUN_AGAIN
        else:
            fate = _ON_RESUME if may_retry(t.number, records) else _NOT_AGAIN
        out[t.number] = ("interrupted" if record.interrupted else "lost", fate)
    return out


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
    if study.user_attrs.get(BASELINES_ATTR):  # enqueued: a family without a trial did not fit at all
        for family in baselines.FAMILIES:
            if family not in tries:
                left_out[family] = "not queued: even its thinnest variant is over the budget"
    return pending, left_out


def over_budget_words(t: FrozenTrial, config: StudyConfig | None = None) -> str:
    """Which limits a candidate over the budget exceeds, by how much: ``macs 12.35K > budget.max_macs 10.00K`` (from
    its constraints; without ``config``: ``macs 23% over its limit``)."""
    parts = []
    for metric, excess in sorted((t.constraints or {}).items(), key=lambda kv: -kv[1]):
        if excess <= 0:
            continue
        limit = config.budget.limit(metric) if config is not None and metric in _BUDGET_FIELD else None
        if limit is None:
            parts.append(f"{metric} {excess:.0%} over its limit")
        else:  # a constraint is value / limit - 1 (archsearch.search.objective.budget_excess)
            parts.append(f"{metric} {_amount(metric, limit * (1 + excess))} > budget.{_BUDGET_FIELD[metric]} "
                         f"{_amount(metric, limit)}")
    return ", ".join(parts) or "see its trial line"


def _amount(metric: str, value: float) -> str:
    return fmt_count(value) if metric not in _UNIT else f"{value:.3g}{_UNIT[metric]}"


def rerank_lines(study: optuna.Study, config: StudyConfig) -> list[str]:
    """The re-rank's results under the study's recipe, best first (with their standard errors under folds), and
    why the pick is not the best mean where the noise ties them; none where nothing is re-ranked."""
    ranked = scored(study, config)
    if not ranked:
        return []
    lines = [f"re-ranked: {len(ranked)} trial(s), best first"
             + (" (mean ± standard error over folds)" if any(c.se is not None for c in ranked) else "")
             + ": " + ", ".join(f"{c.trial.number} {c.shown()}" for c in ranked)]
    chosen = pick(ranked)
    if chosen is not None and chosen.by is not None:
        lines.append(_tie_line(chosen))
    return lines


def _tie_line(chosen: Pick) -> str:
    """Why the pick is not the best mean: the noise cannot tell the tied candidates apart."""
    tied = ", ".join(f"trial {c.trial.number} {c.shown()}" for c in chosen.tied)
    c = chosen.chosen
    concern = f"{c.latency_ms:.2f} ms" if chosen.by == "latency" else f"{fmt_count(c.macs)} MACs"
    return (f"re-rank: the best is not clear of the next by the noise ({tied}: within one standard error of their "
            f"difference); picked trial {c.trial.number}, the one with the lowest {chosen.by} ({concern})")


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
    again = sum(fate == _ON_RESUME for _, fate in _fates(trials, records).values())
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
        which = ", ".join(f"budget.{_BUDGET_FIELD.get(m, m)} {config.budget.limit(m):g} ({n})"
                          for m, n in sorted(by_metric.items(), key=lambda kv: -kv[1])) or "see the trial lines"
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
    done = rerank.results(study, config)
    return all(t.number in done for t in rerank.candidates(study, config.rerank.top))
