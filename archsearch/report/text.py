"""What a study found, as numbers and text: its trials grouped, the Pareto fronts, the top trials and the baselines.

Read from the study's trials and their archsearch user attributes; :mod:`archsearch.report.study_report` prints it and
:mod:`archsearch.report.plots` draws it.
"""

from __future__ import annotations

from dataclasses import dataclass

import optuna
from optuna.trial import FrozenTrial, TrialState

from archsearch.config.storage_url import redact
from archsearch.config.study_config import StudyConfig
from archsearch.core.class_metrics import ClassMetrics
from archsearch.core.text import fmt_count
from archsearch.study.best import best_trials, pareto_front, rerank_lines
from archsearch.study.class_verdict import chance_line, per_class_lines
from archsearch.study.trial_record import TrialRecord
from archsearch.study.trial_states import failed_note


@dataclass
class Groups:
    """The study's trials, by what the report does with them."""

    all: list[FrozenTrial]
    feasible: list[FrozenTrial]  # complete, within budget, with an accuracy
    infeasible: list[FrozenTrial]  # complete, over budget: never trained
    pruned: list[FrozenTrial]
    failed: list[FrozenTrial]
    baselines: list[FrozenTrial]

    @classmethod
    def of(cls, trials: list[FrozenTrial]) -> Groups:
        complete = [t for t in trials if t.state == TrialState.COMPLETE]
        r = {t.number: TrialRecord.of(t) for t in trials}
        return cls(
            all=trials,
            feasible=[t for t in complete if not r[t.number].infeasible and r[t.number].val_accuracy is not None],
            infeasible=[t for t in complete if r[t.number].infeasible],
            pruned=[t for t in trials if t.state == TrialState.PRUNED],
            failed=[t for t in trials if t.state == TrialState.FAIL],
            baselines=[t for t in trials if r[t.number].baseline is not None],
        )


def short(n: float) -> str:
    """``300K``, ``1.5M``, ``2``: a tick or legend label."""
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.3g}{unit}"
    return f"{n:.3g}"


def state(t: FrozenTrial) -> str:
    r = TrialRecord.of(t)
    if t.state == TrialState.COMPLETE and r.infeasible:
        return "INFEASIBLE"
    if t.state == TrialState.PRUNED and r.epochs_done is not None:
        return f"PRUNED@{r.epochs_done}"
    return t.state.name


def _row(t: FrozenTrial) -> list[str]:
    r = TrialRecord.of(t)
    acc, lat, use = r.val_accuracy, r.latency_ms, r.budget_use
    return [
        str(t.number),
        state(t),
        "-" if acc is None else f"{acc:.4f}",
        fmt_count(r.macs),
        fmt_count(r.params),
        "-" if lat is None else f"{lat:.3f}",
        "-" if use is None else f"{use:.3f}",
        f"* {r.baseline}" if r.baseline is not None else "",
        str(r.arch_id or "?"),
    ]


_HEADER = ["trial", "state", "val acc", "MACs", "params", "latency ms", "budget use", "baseline", "architecture id"]


def _table(rows: list[list[str]], header: list[str] = _HEADER) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    left = {"state", "architecture id", "baseline"}
    fmt = "  ".join(f"{{:<{w}}}" if h in left else f"{{:>{w}}}" for h, w in zip(header, widths, strict=False))
    lines = [fmt.format(*header), fmt.format(*("-" * w for w in widths)), *(fmt.format(*r) for r in rows)]
    return "\n".join(line.rstrip() for line in lines)


def _baseline_line(t: FrozenTrial, front: list[FrozenTrial], metric: str) -> str:
    r = TrialRecord.of(t)
    unit = {"macs": "MACs", "params": "params", "latency": "ms"}[metric]
    head = f"trial {t.number:>4}  {r.baseline:<10}  {state(t):<10}"
    point = r.point(metric)
    if point is None or t.state != TrialState.COMPLETE:
        return f"{head}  {'no final accuracy' if r.error is None else r.error}"
    cost, acc = point
    where = f"acc {acc:.4f} at {fmt_count(cost)} {unit}"
    if any(f.number == t.number for f in front):
        return f"{head}  {where}: on the front"
    on_front = [(p, f.number) for f in front if (p := TrialRecord.of(f).point(metric)) is not None]  # all of it
    better = [(p, n) for p, n in on_front if p[1] >= acc and p[0] <= cost]
    if not better:  # tied with an earlier trial of the same cost and accuracy
        return f"{head}  {where}: on the front (tied)"
    (best_cost, best_acc), number = min(better, key=lambda pn: pn[0][0])
    return (f"{head}  {where}: beaten by trial {number} "
            f"(acc {best_acc:.4f} at {fmt_count(best_cost)} {unit})")


def study_text(study: optuna.Study, config: StudyConfig, g: Groups, top: int) -> str:
    n_running = sum(t.state in (TrialState.RUNNING, TrialState.WAITING) for t in g.all)
    lines = [
        f"study {study.study_name} ({redact(config.storage)}): {len(g.all)} trials: "
        f"{len(g.feasible) + len(g.infeasible)} complete ({len(g.feasible)} feasible, {len(g.infeasible)} over "
        f"budget), {len(g.pruned)} pruned, {failed_note(g.all)}, {n_running} running or waiting",
        f"objective {config.objective.type}; budget {config.budget.describe()}",
        "",
    ]
    scored = [(acc, r.macs or 0, t) for t in g.feasible + g.pruned
              if (r := TrialRecord.of(t)).duplicate_of is None and (acc := r.val_accuracy) is not None]
    ranked = [t for _, _, t in sorted(scored, key=lambda s: (-s[0], s[1], s[2].number))]
    if not ranked:
        lines.append("no trained trial yet: nothing to rank (run `archsearch search` first)")
        return "\n".join(lines)
    lines.append(f"top {min(top, len(ranked))} of {len(ranked)} trained trials by validation accuracy "
                 f"(pruned ones at the epoch they stopped):")
    lines.append(_table([_row(t) for t in ranked[:top]]))
    for metric in ("macs", "latency"):
        front = pareto_front(g.feasible, metric)
        if metric == "latency" and not front:
            continue
        lines += ["", f"Pareto front, validation accuracy vs {'MACs' if metric == 'macs' else 'latency'} "
                      f"({len(front)} feasible trials; * seed baseline):"]
        lines.append(_table([_row(t) for t in front]) if front else "(no feasible trained trial)")
    if g.baselines:
        front = pareto_front(g.feasible, "macs")
        lines += ["", "seed baselines (same budget) against the accuracy-vs-MACs front:"]
        lines += [f"  {_baseline_line(t, front, 'macs')}" for t in sorted(g.baselines, key=lambda t: t.number)]
    judged = judged_trial(study, config)
    lines += ["", *per_class_lines(judged[0])] if judged else []
    flat = chance_line(g.all, config)
    lines += ["", flat] if flat else []
    if config.rerank is not None and len(study.directions) == 1:
        recipe = config.rerank.describe()
        found = rerank_lines(study, config)
        if found:
            best = best_trials(study, config)
            lines += ["", f"re-rank ({recipe}):", *(f"  {line}" for line in found)]
            if best:
                lines.append(f"  `archsearch export` takes trial {best[0].number}")
        else:
            lines += ["", f"re-rank ({recipe}): not run yet with this recipe (`archsearch search` runs it once the "
                          f"study holds its trials)"]
    return "\n".join(lines)


def judged_trial(study: optuna.Study, config: StudyConfig) -> tuple[FrozenTrial, ClassMetrics] | None:
    """The trial ``archsearch export`` takes (the first of a Pareto front) and its validation split's per-class
    figures; None where it has none (no feasible trial, or a study made before they were recorded)."""
    best = best_trials(study, config)
    metrics = TrialRecord.of(best[0]).class_metrics() if best else None
    return None if metrics is None else (best[0], metrics)
