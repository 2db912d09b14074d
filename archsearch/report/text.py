"""What a study found, as numbers and text: its trials grouped, the Pareto fronts, the top trials and the baselines.

Read from the study's trials and their archsearch user attributes; :mod:`archsearch.report.study_report` prints it and
:mod:`archsearch.report.plots` draws it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import optuna
from optuna.trial import FrozenTrial, TrialState

from archsearch.config.storage import redact
from archsearch.config.study_config import StudyConfig
from archsearch.search.objective import BASELINE_ATTR
from archsearch.search.summary import fmt_count

COST_ATTR = {"macs": "macs", "params": "params", "latency": "latency_ms"}


def pareto_front(trials: Sequence[FrozenTrial], metric: str = "macs") -> list[FrozenTrial]:
    """The trials no other trial beats on both validation accuracy (up) and ``metric`` (down).

    ``metric`` is "macs", "params" or "latency"; trials without an accuracy or that cost are left out.
    Where trials tie on both, the earliest stands for them. Sorted by cost, cheapest first.
    """
    if metric not in COST_ATTR:
        raise ValueError(f"metric must be one of {sorted(COST_ATTR)}, got {metric!r}")
    key = COST_ATTR[metric]
    points = [t for t in trials if t.user_attrs.get("val_accuracy") is not None and t.user_attrs.get(key) is not None]
    points.sort(key=lambda t: (t.user_attrs[key], -t.user_attrs["val_accuracy"], t.number))
    front, best = [], -math.inf
    for t in points:
        if t.user_attrs["val_accuracy"] > best:
            front.append(t)
            best = t.user_attrs["val_accuracy"]
    return front


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
        return cls(
            all=trials,
            feasible=[t for t in complete if t.user_attrs.get("feasible", True)
                      and t.user_attrs.get("val_accuracy") is not None],
            infeasible=[t for t in complete if t.user_attrs.get("feasible") is False],
            pruned=[t for t in trials if t.state == TrialState.PRUNED],
            failed=[t for t in trials if t.state == TrialState.FAIL],
            baselines=[t for t in trials if BASELINE_ATTR in t.user_attrs],
        )


def short(n: float) -> str:
    """``300K``, ``1.5M``, ``2``: a tick or legend label."""
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.3g}{unit}"
    return f"{n:.3g}"


def state(t: FrozenTrial) -> str:
    if t.state == TrialState.COMPLETE and t.user_attrs.get("feasible") is False:
        return "INFEASIBLE"
    if t.state == TrialState.PRUNED and t.user_attrs.get("epochs_done") is not None:
        return f"PRUNED@{t.user_attrs['epochs_done']}"
    return t.state.name


def _row(t: FrozenTrial) -> list[str]:
    a = t.user_attrs
    acc, lat, use = a.get("val_accuracy"), a.get("latency_ms"), a.get("budget_use")
    return [
        str(t.number),
        state(t),
        "-" if acc is None else f"{acc:.4f}",
        fmt_count(a.get("macs")),
        fmt_count(a.get("params")),
        "-" if lat is None else f"{lat:.3f}",
        "-" if use is None else f"{use:.3f}",
        f"* {a[BASELINE_ATTR]}" if BASELINE_ATTR in a else "",
        str(a.get("arch_id", "?")),
    ]


_HEADER = ["trial", "state", "val acc", "MACs", "params", "latency ms", "budget use", "baseline", "architecture id"]


def _table(rows: list[list[str]], header: list[str] = _HEADER) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    left = {"state", "architecture id", "baseline"}
    fmt = "  ".join(f"{{:<{w}}}" if h in left else f"{{:>{w}}}" for h, w in zip(header, widths, strict=False))
    lines = [fmt.format(*header), fmt.format(*("-" * w for w in widths)), *(fmt.format(*r) for r in rows)]
    return "\n".join(line.rstrip() for line in lines)


def _baseline_line(t: FrozenTrial, front: list[FrozenTrial], metric: str) -> str:
    a = t.user_attrs
    key = COST_ATTR[metric]
    unit = {"macs": "MACs", "params": "params", "latency": "ms"}[metric]
    head = f"trial {t.number:>4}  {a[BASELINE_ATTR]:<10}  {state(t):<10}"
    if a.get("val_accuracy") is None or t.state != TrialState.COMPLETE or a.get(key) is None:
        return f"{head}  {a.get('error', 'no final accuracy')}"
    where = f"acc {a['val_accuracy']:.4f} at {fmt_count(a[key])} {unit}"
    if any(f.number == t.number for f in front):
        return f"{head}  {where}: on the front"
    better = [f for f in front if f.user_attrs["val_accuracy"] >= a["val_accuracy"] and f.user_attrs[key] <= a[key]]
    if not better:  # tied with an earlier trial of the same cost and accuracy
        return f"{head}  {where}: on the front (tied)"
    best = min(better, key=lambda f: f.user_attrs[key])
    return (f"{head}  {where}: beaten by trial {best.number} "
            f"(acc {best.user_attrs['val_accuracy']:.4f} at {fmt_count(best.user_attrs[key])} {unit})")


def study_text(study: optuna.Study, config: StudyConfig, g: Groups, top: int) -> str:
    n_running = sum(t.state in (TrialState.RUNNING, TrialState.WAITING) for t in g.all)
    lines = [
        f"study {study.study_name} ({redact(config.storage)}): {len(g.all)} trials: "
        f"{len(g.feasible) + len(g.infeasible)} complete ({len(g.feasible)} feasible, {len(g.infeasible)} over "
        f"budget), {len(g.pruned)} pruned, {len(g.failed)} failed, {n_running} running or waiting",
        f"objective {config.objective.type}; budget {config.budget.describe()}",
        "",
    ]
    ranked = [t for t in g.feasible + g.pruned if "duplicate_of" not in t.user_attrs
              and t.user_attrs.get("val_accuracy") is not None]
    ranked.sort(key=lambda t: (-t.user_attrs["val_accuracy"], t.user_attrs.get("macs") or 0, t.number))
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
    return "\n".join(lines)
