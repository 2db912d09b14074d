"""What a study found: the top trials and the Pareto front as text, a PNG plot and an interactive HTML page.

Everything is read from the study's trials and their archsearch user attributes; nothing is trained or
built. The PNG (matplotlib, Agg) plots validation accuracy against MACs on a log axis, with the Pareto
front as a step line, the seed baselines marked and labelled, and pruned or over-budget trials faded; a
second panel plots accuracy against latency where trials measured it. The HTML page holds Optuna's own
plots (optimization history, and the Pareto front of a two-objective study) and a hoverable scatter, with
plotly.js inlined so that it opens offline.

    archsearch report studies/quickstart.yaml     # -> studies/quickstart_report.png, .html
"""

from __future__ import annotations

import argparse
import inspect
import math
import os
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from . import baselines
from .config import StudyConfig, redact, load_study_config
from .errors import ConfigError
from .objective import ARCH_ATTR, BASELINE_ATTR
from .study import fmt_count

__all__ = ["Report", "report", "pareto_front", "add_parser", "cmd_report"]

_COST_ATTR = {"macs": "macs", "params": "params", "latency": "latency_ms"}
_BASELINE_STYLE = {  # family -> (marker, colour): distinct shapes, readable in grey too
    "mobilenet": ("s", "tab:green"),
    "shufflenet": ("^", "tab:purple"),
    "effnet": ("D", "tab:brown"),
}
_OTHER_BASELINE = ("P", "tab:olive")


@dataclass(frozen=True)
class Report:
    """The report's text and the files it wrote (None where not asked for)."""

    text: str
    png: Path | None
    html: Path | None


# ---------------------------------------------------------------------------------------------------------
# the numbers


def pareto_front(trials: Sequence[FrozenTrial], metric: str = "macs") -> list[FrozenTrial]:
    """The trials no other trial beats on both validation accuracy (up) and ``metric`` (down).

    ``metric`` is "macs", "params" or "latency"; trials without an accuracy or that cost are left out.
    Where trials tie on both, the earliest stands for them. Sorted by cost, cheapest first.
    """
    if metric not in _COST_ATTR:
        raise ValueError(f"metric must be one of {sorted(_COST_ATTR)}, got {metric!r}")
    key = _COST_ATTR[metric]
    points = [t for t in trials if t.user_attrs.get("val_accuracy") is not None and t.user_attrs.get(key) is not None]
    points.sort(key=lambda t: (t.user_attrs[key], -t.user_attrs["val_accuracy"], t.number))
    front, best = [], -math.inf
    for t in points:
        if t.user_attrs["val_accuracy"] > best:
            front.append(t)
            best = t.user_attrs["val_accuracy"]
    return front


@dataclass
class _Groups:
    """The study's trials, by what the report does with them."""

    all: list[FrozenTrial]
    feasible: list[FrozenTrial]  # complete, within budget, with an accuracy
    infeasible: list[FrozenTrial]  # complete, over budget: never trained
    pruned: list[FrozenTrial]
    failed: list[FrozenTrial]
    baselines: list[FrozenTrial]

    @classmethod
    def of(cls, trials: list[FrozenTrial]) -> _Groups:
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


def _short(n: float) -> str:
    """``300K``, ``1.5M``, ``2``: a tick or legend label."""
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.3g}{unit}"
    return f"{n:.3g}"


def _state(t: FrozenTrial) -> str:
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
        _state(t),
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
    fmt = "  ".join(f"{{:<{w}}}" if h in left else f"{{:>{w}}}" for h, w in zip(header, widths))
    lines = [fmt.format(*header), fmt.format(*("-" * w for w in widths)), *(fmt.format(*r) for r in rows)]
    return "\n".join(line.rstrip() for line in lines)


def _budget_text(config: StudyConfig) -> str:
    b = config.budget
    keys = ("max_macs", "max_params", "max_latency_ms")
    parts = [f"{k}={getattr(b, k):,g}" for k in keys if getattr(b, k) is not None]
    if b.max_latency_ms is not None:
        parts.append(f"latency on {b.latency.device}, {b.latency.threads} thread(s), batch {b.latency.batch}")
    return ", ".join(parts) or "none"


def _baseline_line(t: FrozenTrial, front: list[FrozenTrial], metric: str) -> str:
    a = t.user_attrs
    key = _COST_ATTR[metric]
    unit = {"macs": "MACs", "params": "params", "latency": "ms"}[metric]
    head = f"trial {t.number:>4}  {a[BASELINE_ATTR]:<10}  {_state(t):<10}"
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


def _text(study: optuna.Study, config: StudyConfig, g: _Groups, top: int) -> str:
    n_running = sum(t.state in (TrialState.RUNNING, TrialState.WAITING) for t in g.all)
    lines = [
        f"study {study.study_name} ({redact(config.storage)}): {len(g.all)} trials: "
        f"{len(g.feasible) + len(g.infeasible)} complete ({len(g.feasible)} feasible, {len(g.infeasible)} over "
        f"budget), {len(g.pruned)} pruned, {len(g.failed)} failed, {n_running} running or waiting",
        f"objective {config.objective.type}; budget {_budget_text(config)}",
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


# ---------------------------------------------------------------------------------------------------------
# the PNG


def _plot_panel(ax: Any, g: _Groups, metric: str, config: StudyConfig) -> None:
    from matplotlib import ticker

    key = _COST_ATTR[metric]
    base_ids = {t.number for t in g.baselines}

    def xy(trials: list[FrozenTrial]) -> tuple[list[float], list[float]]:
        pts = [(t.user_attrs[key], 100 * t.user_attrs["val_accuracy"]) for t in trials
               if t.user_attrs.get(key) is not None and t.user_attrs.get("val_accuracy") is not None]
        return [p[0] for p in pts], [p[1] for p in pts]

    others = [t for t in g.feasible if t.number not in base_ids]
    pruned = [t for t in g.pruned if t.number not in base_ids]
    x, y = xy(pruned)
    if x:
        ax.scatter(x, y, s=14, color="0.55", alpha=0.35, linewidths=0,
                   label=f"pruned ({len(pruned)}; accuracy when stopped)")
    x, y = xy(others)
    ax.scatter(x, y, s=22, color="tab:blue", alpha=0.8, linewidths=0, label=f"feasible trial ({len(others)})", zorder=3)
    front = pareto_front(g.feasible, metric)
    fx, fy = xy(front)
    if fx:
        ax.step(fx, fy, where="post", color="tab:orange", lw=1.8, zorder=4, label=f"Pareto front ({len(front)})")
        ax.scatter(fx, fy, s=46, facecolors="none", edgecolors="tab:orange", lw=1.4, zorder=5)
    limit = config.budget.limit(metric)
    xs = [t.user_attrs[key] for t in g.feasible + g.pruned + g.infeasible if t.user_attrs.get(key) is not None]
    lo, hi = min(xs, default=1.0), max(xs + ([limit] if limit is not None else []), default=10.0)
    ax.set_xlim(lo / 1.25, hi * 1.25)  # room for the budget line and the labels
    ys = xy(g.feasible + g.pruned + g.baselines)[1]
    if ys:
        ax.set_ylim(min(ys) - 4, max(ys) + 4)
    labels = []
    for t in sorted(g.baselines, key=lambda t: t.number):
        bx, by = xy([t])
        if not bx:
            continue
        family = t.user_attrs[BASELINE_ATTR]
        marker, colour = _BASELINE_STYLE.get(family, _OTHER_BASELINE)
        ax.scatter(bx, by, s=110, marker=marker, color=colour, edgecolors="black", lw=0.9, zorder=6,
                   label=f"baseline: {family}")
        labels.append((bx[0], by[0], f"{family} (#{t.number})", colour))
    _place_labels(ax, labels)
    for family, why in _unplotted_baselines(g, config):  # named in the legend, so that no baseline just vanishes
        marker, colour = _BASELINE_STYLE.get(family, _OTHER_BASELINE)
        ax.scatter([], [], s=110, marker=marker, facecolors="none", edgecolors=colour, lw=1.2,
                   label=f"baseline: {family}, {why}: not plotted")
    # over budget trials were never trained: a faded rug along the bottom at their cost
    over = [t.user_attrs[key] for t in g.infeasible if t.user_attrs.get(key) is not None]
    if over:
        ax.scatter(over, [0.015] * len(over), transform=ax.get_xaxis_transform(), marker="|", s=120,
                   color="tab:red", alpha=0.3, label=f"over budget ({len(g.infeasible)}; any limit; not trained)")
    if limit is not None:
        unit = {"macs": "MACs", "latency": "ms"}[metric]
        ax.axvline(limit, color="tab:red", ls="--", lw=1.2, alpha=0.8, label=f"budget {_short(limit)} {unit}")
    ax.set_xscale("log")
    # ticks at 1, 2 and 5 times powers of ten, labelled 20K, 50K, 100K (or 2, 5, 10 ms)
    ax.xaxis.set_major_locator(ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: _short(v)))
    ax.xaxis.set_minor_formatter(ticker.NullFormatter())
    if metric == "macs":
        ax.set_xlabel("MACs per image (multiply-accumulates, batch 1; log scale)")
    else:
        lt = config.budget.latency
        ax.set_xlabel(f"latency (ms per batch of {lt.batch}, {lt.device}, {lt.threads} thread(s); log scale)")
    ax.set_ylabel("validation accuracy (%)")
    ax.grid(True, which="major", alpha=0.3)
    ax.grid(True, which="minor", axis="x", alpha=0.1)
    # beside the axes, never on the data
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, fontsize=7.5, frameon=False)


def _unplotted_baselines(g: _Groups, config: StudyConfig) -> list[tuple[str, str]]:
    """(family, why) for each seed baseline without a point: failed, over budget, still running, or missing
    (the study enqueued none: it does not fit the budget even at its thinnest)."""
    by_family: dict[str, list[FrozenTrial]] = {}
    for t in g.baselines:
        by_family.setdefault(t.user_attrs[BASELINE_ATTR], []).append(t)
    out = []
    for family, trials in by_family.items():
        if any(t.user_attrs.get("val_accuracy") is not None and t.user_attrs.get(_COST_ATTR["macs"]) is not None
               for t in trials):
            continue
        last = max(trials, key=lambda t: t.number)
        if last.state == TrialState.FAIL:
            why = "failed"
        elif last.state == TrialState.COMPLETE and last.user_attrs.get("feasible") is False:
            why = "over budget"
        elif last.state in (TrialState.RUNNING, TrialState.WAITING):
            why = "not finished"
        else:
            why = "no accuracy"
        out.append((family, f"{why} (trial {last.number})"))
    if config.enqueue_baselines and config.objective.type != "pareto":
        out += [(family, "missing (does not fit the budget)") for family in baselines.FAMILIES
                if family not in by_family]
    return out


def _place_labels(ax: Any, labels: list[tuple[float, float, str, str]]) -> None:
    """Write each (x, y, text, colour) next to its point where it neither leaves the axes nor covers another
    label or baseline marker (log x axis; limits already set). Sizes are estimated, nothing is drawn twice."""
    (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
    w_in, h_in = ax.figure.get_size_inches()
    ncols = ax.get_subplotspec().get_gridspec().ncols
    w_pt, h_pt = 72 * 0.62 * w_in / ncols, 72 * 0.8 * h_in  # the axes' size, about (the legend is beside them)

    def frac(x: float, y: float) -> tuple[float, float]:
        return math.log(x / x0) / math.log(x1 / x0), (y - y0) / (y1 - y0)

    markers = [(*frac(x, y), 7 / w_pt, 7 / h_pt) for x, y, _, _ in labels]  # centre, half width, half height
    placed: list[tuple[float, float, float, float]] = []  # x0, x1, y0, y1 in axes fractions
    offsets = [(10, -14), (-10, -14), (10, 10), (-10, 10), (10, -27), (-10, -27), (10, 23), (-10, 23)]
    for x, y, text, colour in labels:
        fx, fy = frac(x, y)
        width, height = 5.2 * len(text) / w_pt, 11 / h_pt
        choice = offsets[0]
        for dx, dy in offsets:
            bx = fx + dx / w_pt
            box = (bx, bx + width) if dx > 0 else (bx - width, bx)
            box = (*box, fy + dy / h_pt - height / 2, fy + dy / h_pt + height / 2)
            inside = box[0] >= 0 and box[1] <= 1 and box[2] >= 0 and box[3] <= 1
            clear = not any(box[0] < o[1] and o[0] < box[1] and box[2] < o[3] and o[2] < box[3] for o in placed)
            clear = clear and not any(box[0] < mx + hw and mx - hw < box[1] and box[2] < my + hh and my - hh < box[3]
                                      for mx, my, hw, hh in markers)
            if inside and clear:
                choice = (dx, dy)
                placed.append(box)
                break
        dx, dy = choice
        ax.annotate(text, (x, y), xytext=(dx, dy), textcoords="offset points", ha="left" if dx > 0 else "right",
                    va="center", fontsize=8, color=colour, fontweight="bold", zorder=7,
                    bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.75})


def _need(module: str, what: str, flag: str) -> None:
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise ConfigError(f"{what} needs {module}, which is not installed: pip install 'archsearch[report]' "
                          f"(or pass {flag})")


def _write_png(path: Path, study: optuna.Study, config: StudyConfig, g: _Groups) -> None:
    _figure(study, config, g).savefig(path)


def _figure(study: optuna.Study, config: StudyConfig, g: _Groups) -> Any:
    """The PNG's matplotlib Figure: one panel per cost (MACs, and latency where measured)."""
    _need("matplotlib", "the PNG plot", "--no-plot")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    metrics = ["macs"] + (["latency"] if pareto_front(g.feasible, "latency") else [])
    fig = Figure(figsize=(11.5 * len(metrics), 6.0), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)  # the Agg canvas, without pyplot's global state
    axes = fig.subplots(1, len(metrics), squeeze=False)[0]
    for ax, metric in zip(axes, metrics):
        _plot_panel(ax, g, metric, config)
        ax.set_title(f"validation accuracy vs {'MACs' if metric == 'macs' else 'latency'}", fontsize=10)
    fig.suptitle(
        f"study {study.study_name}: {len(g.all)} trials ({len(g.feasible)} feasible, {len(g.infeasible)} over "
        f"budget, {len(g.pruned)} pruned, {len(g.failed)} failed)\nbudget {_budget_text(config)}",  # one line is cut
        fontsize=10,
    )
    return fig


# ---------------------------------------------------------------------------------------------------------
# the HTML


def _scatter_figure(g: _Groups, metric: str, config: StudyConfig) -> Any:
    import plotly.graph_objects as go

    key = _COST_ATTR[metric]

    def trace(trials: list[FrozenTrial], name: str, **style: Any) -> Any:
        pts = [t for t in trials if t.user_attrs.get(key) is not None and t.user_attrs.get("val_accuracy") is not None]
        text = [
            f"trial {t.number} ({_state(t)})<br>{t.user_attrs.get('arch_id', '?')}<br>acc "
            f"{t.user_attrs['val_accuracy']:.4f}, {fmt_count(t.user_attrs.get('macs'))} MACs, "
            f"{fmt_count(t.user_attrs.get('params'))} params"
            + (f"<br>baseline: {t.user_attrs[BASELINE_ATTR]}" if BASELINE_ATTR in t.user_attrs else "")
            for t in pts
        ]
        return go.Scatter(x=[t.user_attrs[key] for t in pts], y=[100 * t.user_attrs["val_accuracy"] for t in pts],
                          name=name, text=text, hoverinfo="text", **style)

    base_ids = {t.number for t in g.baselines}
    fig = go.Figure()
    fig.add_trace(trace([t for t in g.pruned if t.number not in base_ids], "pruned", mode="markers",
                        marker={"color": "grey", "opacity": 0.35, "size": 6}))
    fig.add_trace(trace([t for t in g.feasible if t.number not in base_ids], "feasible", mode="markers",
                        marker={"color": "royalblue", "size": 7}))
    fig.add_trace(trace(pareto_front(g.feasible, metric), "Pareto front", mode="lines+markers",
                        line={"shape": "hv", "color": "darkorange"}, marker={"size": 9, "symbol": "circle-open"}))
    symbols = {"mobilenet": "square", "shufflenet": "triangle-up", "effnet": "diamond"}
    for t in sorted(g.baselines, key=lambda t: t.number):
        family = t.user_attrs[BASELINE_ATTR]
        fig.add_trace(trace([t], f"baseline: {family}", mode="markers+text",
                            textposition="bottom right", texttemplate=f"{family}",
                            marker={"symbol": symbols.get(family, "cross"), "size": 13,
                                    "line": {"color": "black", "width": 1}}))
    limit = config.budget.limit(metric)
    if limit is not None:
        fig.add_vline(x=limit, line_dash="dash", line_color="red", annotation_text=f"budget {fmt_count(limit)}")
    fig.update_xaxes(type="log", title=("MACs per image (log)" if metric == "macs" else "latency, ms (log)"))
    fig.update_yaxes(title="validation accuracy (%)")
    fig.update_layout(title=f"validation accuracy vs {metric} (hover for the architecture)", height=560)
    return fig


def _write_html(path: Path, study: optuna.Study, config: StudyConfig, g: _Groups, text: str,
                plotly_js: str = "inline") -> None:
    _need("plotly", "the HTML page", "--no-html")
    import html

    import optuna.visualization as ov

    figs = [_scatter_figure(g, "macs", config)]
    if pareto_front(g.feasible, "latency"):
        figs.append(_scatter_figure(g, "latency", config))
    if len(study.directions) == 1:
        figs.append(ov.plot_optimization_history(study, target_name=f"objective ({config.objective.type})"))
    else:
        names = ["validation accuracy", config.objective.pareto_metric]
        figs.append(ov.plot_optimization_history(study, target=lambda t: t.values[0], target_name=names[0]))
        figs.append(ov.plot_pareto_front(study, target_names=names))
    # inline: the first figure carries plotly.js (about 4.7 MB; the page works offline), the others share it;
    # cdn: a <script> tag loads it from plotly's CDN when the page is opened (tens of KB, needs the network)
    first = True if plotly_js == "inline" else "cdn"
    body = "\n".join(f.to_html(full_html=False, include_plotlyjs=first if i == 0 else False)
                     for i, f in enumerate(figs))
    title = html.escape(f"archsearch report: {study.study_name}")
    page = (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{title}</title></head>\n<body>\n"
            f"<h2>{title}</h2>\n<pre>{html.escape(text)}</pre>\n{body}\n</body></html>\n")
    path.write_text(page, encoding="utf-8")


# ---------------------------------------------------------------------------------------------------------
# the report


def report(
    config: StudyConfig | str | os.PathLike,
    *,
    out: str | os.PathLike | None = None,
    top: int = 10,
    png: bool = True,
    html: bool = True,
    plotly_js: str = "inline",
) -> Report:
    """Read the study and write ``<name>_report.png`` and ``<name>_report.html`` into ``out``.

    ``out`` defaults to the study YAML's folder. ``plotly_js``: ``"inline"`` (the HTML works offline, about
    4.8 MB) or ``"cdn"`` (loads plotly.js from its CDN when opened: a small file that needs the network).
    Returns the text (the top ``top`` trials, the Pareto fronts and the baselines) and the paths written.
    """
    if plotly_js not in ("inline", "cdn"):
        raise ConfigError(f"plotly_js must be 'inline' or 'cdn', got {plotly_js!r}")
    if not isinstance(config, StudyConfig):
        config = load_study_config(config)
    if isinstance(top, bool) or not isinstance(top, int) or top < 1:
        raise ConfigError(f"top must be a positive int, got {top!r}")
    folder = Path(out) if out is not None else (config.source.absolute().parent if config.source else None)
    if folder is None and (png or html):
        raise ConfigError("the config was not read from a file: give an output folder (out=...)")
    from .study import open_study

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = open_study(config, create=False)
    g = _Groups.of(study.get_trials(deepcopy=False))
    text = _text(study, config, g, top)
    png_path = html_path = None
    if png or html:
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ConfigError(f"cannot create the output folder: {e.strerror}", path=folder) from None
    if png:
        png_path = folder / f"{config.name}_report.png"
        _write_png(png_path, study, config, g)
    if html:
        html_path = folder / f"{config.name}_report.html"
        _write_html(html_path, study, config, g, text, plotly_js)
    return Report(text, png_path, html_path)


# ---------------------------------------------------------------------------------------------------------
# a study of made-up trials, for the report's benchmark and tests


def _add_synthetic_trials(
    study: optuna.Study,
    config: StudyConfig,
    n: int,
    *,
    in_chs: int,
    resolution: int,
    num_classes: int,
    seed: int = 0,
    latency: bool = False,
) -> None:
    """Add ``n`` finished trials with the user attributes a real search writes, without training.

    Architectures are sampled from the study's space and costed for real (``arch_cost``); accuracy grows
    with log MACs plus noise; about 12% are pruned and 3% failed, over-budget ones are infeasible; the
    first three are the seed baselines fitted to the budget. ``latency`` measures each trained candidate
    for real (CPU, one thread, a few repeats).
    """
    from . import baselines
    from .build import build
    from .cost import arch_cost
    from .latency import measure_latency
    from .space import load_space, sample_architectures

    rng = random.Random(seed)
    quick = {"warmup": 2, "repeats": 5}  # a few passes are enough for made-up trials
    if "min_seconds" in inspect.signature(measure_latency).parameters:
        quick["min_seconds"] = 0.0
    space = load_space(config.space_path)
    b = config.budget
    archs = []
    for family in baselines.FAMILIES:
        arch = baselines.fit_to_budget(family, in_chs=in_chs, resolution=resolution, num_classes=num_classes,
                                       max_macs=b.max_macs, max_params=b.max_params)
        if arch is not None:
            archs.append((family, arch))
    archs += [(None, a) for a in sample_architectures(space, max(0, n - len(archs)), in_chs=in_chs,
                                                      resolution=resolution, num_classes=num_classes, seed=seed)]
    costs = [arch_cost(a) for _, a in archs]
    lo = math.log10(min(c.macs for c in costs))
    span = max(1e-9, math.log10(max(c.macs for c in costs)) - lo)
    multi = len(study.directions) > 1
    first = len(study.get_trials(deepcopy=False))
    seen: dict[str, tuple[int, float]] = {}  # arch id -> (trial number, accuracy): a resampled one is a duplicate
    trials = []
    for number, ((family, arch), cost) in enumerate(zip(archs[:n], costs), start=first):
        attrs: dict[str, Any] = {
            ARCH_ATTR: arch.to_dict(), "arch_id": arch.id, "macs": cost.macs, "params": cost.params,
            "peak_activation_bytes": cost.peak_activation_bytes, "worker": "synthetic:0:0",
            "seconds": rng.uniform(0.2, 3.0),
        }
        if family is not None:
            attrs[BASELINE_ATTR] = family
        constraints = {m: v / b.limit(m) - 1.0 for m, v in (("macs", cost.macs), ("params", cost.params))
                       if b.limit(m) is not None}
        feasible = not any(c > 0 for c in constraints.values())
        attrs["feasible"] = feasible
        acc = min(0.99, max(0.05, 0.6 + 0.3 * (math.log10(cost.macs) - lo) / span + rng.gauss(0, 0.04)))
        roll = rng.random()
        if feasible and arch.id in seen:  # the objective reuses the earlier result and trains nothing
            attrs["duplicate_of"], acc = seen[arch.id]
            roll = 1.0
        elif feasible:
            seen[arch.id] = (number, acc)
        if feasible and latency:
            shape = (arch.in_chs, arch.resolution, arch.resolution)
            attrs["latency_ms"] = measure_latency(build(arch), shape, **quick).median_ms
        if not feasible:
            state, values = TrialState.COMPLETE, ([0.0, float(cost.macs)] if multi else [0.0])
        elif family is None and roll < 0.03:
            state, values = TrialState.FAIL, None
            attrs["error"] = "TrainingDiverged: training loss is not finite (nan) in epoch 1/6"
        elif family is None and roll < 0.2 and not multi:
            state, values = TrialState.PRUNED, None
            attrs.update(val_accuracy=acc - 0.15, epochs_done=1)
        else:
            state, values = TrialState.COMPLETE, ([acc, float(cost.macs)] if multi else [acc])
            attrs.update(val_accuracy=acc, epochs_done=config.training.epochs)
        intermediate = {0: attrs["val_accuracy"]} if "val_accuracy" in attrs else {}
        trials.append(optuna.trial.create_trial(state=state, values=values, user_attrs=attrs,
                                                intermediate_values=intermediate, constraints=constraints))
    study.add_trials(trials)


# ---------------------------------------------------------------------------------------------------------
# command line


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add ``archsearch report`` to the CLI's subparsers."""
    s = subparsers.add_parser(
        "report",
        help="print the top trials and the Pareto front; write a PNG plot and an interactive HTML page",
        description="Summarise a study: top trials, Pareto front (accuracy vs MACs, and latency where "
                    "measured) with the seed baselines; writes <name>_report.png and <name>_report.html.",
    )
    s.add_argument("config", help="study YAML file")
    s.add_argument("--out", default=None, help="folder for the PNG and HTML (default: the YAML's folder)")
    s.add_argument("--top", type=int, default=10, help="trials in the top table (10)")
    s.add_argument("--no-plot", action="store_true", help="do not write the PNG")
    s.add_argument("--no-html", action="store_true", help="do not write the HTML page")
    s.add_argument("--plotly-js", choices=("inline", "cdn"), default="inline",
                   help="inline: the HTML carries plotly.js and works offline (about 4.8 MB); cdn: it loads "
                        "plotly.js from the network when opened (tens of KB)")
    s.set_defaults(func=cmd_report)


def cmd_report(args: argparse.Namespace) -> int:
    result = report(args.config, out=args.out, top=args.top, png=not args.no_plot, html=not args.no_html,
                    plotly_js=args.plotly_js)
    print(result.text)
    written = [str(p) for p in (result.png, result.html) if p is not None]
    if written:
        print(f"\nwrote {', '.join(written)}")
    return 0
