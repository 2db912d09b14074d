"""A study's plots: the PNG (matplotlib, Agg) and the HTML page (Optuna's plots and a hoverable plotly scatter).

The PNG plots validation accuracy against MACs on a log axis, with the Pareto front as a step line, the seed
baselines marked and labelled, and pruned or over-budget trials faded; a second panel plots accuracy against
latency where trials measured it. The HTML page holds Optuna's own plots (optimization history, and the Pareto
front of a two-objective study) and a hoverable scatter, with plotly.js inlined so that it opens offline.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from archsearch.config.study_config import StudyConfig
from archsearch.core.class_metrics import ClassMetrics
from archsearch.core.errors import ConfigError
from archsearch.core.text import fmt_count
from archsearch.report.text import Groups, short, state
from archsearch.space import baselines
from archsearch.study.best import pareto_front
from archsearch.study.trial_record import TrialRecord
from archsearch.study.trial_states import failed_note

_BASELINE_STYLE = {  # family -> (marker, colour): distinct shapes, readable in grey too
    "mobilenet": ("s", "tab:green"),
    "shufflenet": ("^", "tab:purple"),
    "effnet": ("D", "tab:brown"),
}


_OTHER_BASELINE = ("P", "tab:olive")


def _family(t: FrozenTrial) -> str:
    """The family of a seed baseline's trial (one of ``Groups.baselines``)."""
    family = TrialRecord.of(t).baseline
    assert family is not None  # Groups.baselines holds the trials with a baseline family
    return family


def _plot_panel(ax: Any, g: Groups, metric: str, config: StudyConfig) -> None:
    from matplotlib import ticker

    base_ids = {t.number for t in g.baselines}

    def xy(trials: list[FrozenTrial]) -> tuple[list[float], list[float]]:
        pts = [p for t in trials if (p := TrialRecord.of(t).point(metric)) is not None]
        return [p[0] for p in pts], [100 * p[1] for p in pts]

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
    xs = [c for t in g.feasible + g.pruned + g.infeasible if (c := TrialRecord.of(t).cost(metric)) is not None]
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
        family = _family(t)
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
    over = [c for t in g.infeasible if (c := TrialRecord.of(t).cost(metric)) is not None]
    if over:
        ax.scatter(over, [0.015] * len(over), transform=ax.get_xaxis_transform(), marker="|", s=120,
                   color="tab:red", alpha=0.3, label=f"over budget ({len(g.infeasible)}; any limit; not trained)")
    if limit is not None:
        unit = {"macs": "MACs", "latency": "ms"}[metric]
        ax.axvline(limit, color="tab:red", ls="--", lw=1.2, alpha=0.8, label=f"budget {short(limit)} {unit}")
    ax.set_xscale("log")
    # ticks at 1, 2 and 5 times powers of ten, labelled 20K, 50K, 100K (or 2, 5, 10 ms)
    ax.xaxis.set_major_locator(ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: short(v)))
    ax.xaxis.set_minor_formatter(ticker.NullFormatter())
    if metric == "macs":
        ax.set_xlabel("MACs per image (multiply-accumulates, batch 1; log scale)")
    else:
        lt = config.budget.latency
        ax.set_xlabel(f"latency (ms per batch; {lt.describe()}; log scale)")
    ax.set_ylabel("validation accuracy (%)")
    ax.grid(True, which="major", alpha=0.3)
    ax.grid(True, which="minor", axis="x", alpha=0.1)
    # beside the axes, never on the data
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, fontsize=7.5, frameon=False)


def _unplotted_baselines(g: Groups, config: StudyConfig) -> list[tuple[str, str]]:
    """(family, why) for each seed baseline without a point: failed, over budget, still running, or missing
    (the study enqueued none: it does not fit the budget even at its thinnest)."""
    by_family: dict[str, list[FrozenTrial]] = {}
    for t in g.baselines:
        by_family.setdefault(_family(t), []).append(t)
    out = []
    for family, trials in by_family.items():
        if any(TrialRecord.of(t).point("macs") is not None for t in trials):
            continue
        last = max(trials, key=lambda t: t.number)
        if last.state == TrialState.FAIL:
            why = "failed"
        elif last.state == TrialState.COMPLETE and TrialRecord.of(last).infeasible:
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
            left, right = (bx, bx + width) if dx > 0 else (bx - width, bx)
            box = (left, right, fy + dy / h_pt - height / 2, fy + dy / h_pt + height / 2)
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


def write_png(path: Path, study: optuna.Study, config: StudyConfig, g: Groups) -> None:
    _figure(study, config, g).savefig(path)


def _figure(study: optuna.Study, config: StudyConfig, g: Groups) -> Any:
    """The PNG's matplotlib Figure: one panel per cost (MACs, and latency where measured)."""
    _need("matplotlib", "the PNG plot", "--no-plot")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    metrics = ["macs"] + (["latency"] if pareto_front(g.feasible, "latency") else [])
    fig = Figure(figsize=(11.5 * len(metrics), 6.0), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)  # the Agg canvas, without pyplot's global state
    axes = fig.subplots(1, len(metrics), squeeze=False)[0]
    for ax, metric in zip(axes, metrics, strict=False):
        _plot_panel(ax, g, metric, config)
        ax.set_title(f"validation accuracy vs {'MACs' if metric == 'macs' else 'latency'}", fontsize=10)
    fig.suptitle(
        f"study {study.study_name}: {len(g.all)} trials ({len(g.feasible)} feasible, {len(g.infeasible)} over "
        # one line is cut
        f"budget, {len(g.pruned)} pruned, {failed_note(g.all)})\nbudget {config.budget.describe()}",
        fontsize=10,
    )
    return fig


def _scatter_figure(g: Groups, metric: str, config: StudyConfig) -> Any:
    import plotly.graph_objects as go

    def trace(trials: list[FrozenTrial], name: str, **style: Any) -> Any:
        pts = [(t, r, p) for t in trials if (p := (r := TrialRecord.of(t)).point(metric)) is not None]
        text = [
            f"trial {t.number} ({state(t)})<br>{r.arch_id or '?'}<br>acc "
            f"{acc:.4f}, {fmt_count(r.macs)} MACs, {fmt_count(r.params)} params"
            + (f"<br>baseline: {r.baseline}" if r.baseline is not None else "")
            for t, r, (_, acc) in pts
        ]
        return go.Scatter(x=[x for _, _, (x, _) in pts], y=[100 * acc for _, _, (_, acc) in pts],
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
        family = _family(t)
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


def write_confusion_png(path: Path, title: str, metrics: ClassMetrics) -> None:
    """The confusion matrix as a picture: counts in each cell, shaded by the share of the true class (its row),
    so a rare class's misses show as plainly as a common one's; each row labelled with its recall."""
    _need("matplotlib", "the confusion-matrix plot", "--no-plot")
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    m = np.asarray(metrics.matrix)
    share = m / np.maximum(m.sum(axis=1, keepdims=True), 1)
    k = len(metrics.classes)
    side = min(14.0, 2.5 + 0.6 * k)
    fig = Figure(figsize=(side + 1.5, side), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    image = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(image, ax=ax, label="share of the true class")
    for i in range(k):
        for j in range(k):
            ax.text(j, i, str(m[i, j]), ha="center", va="center", fontsize=8 if k > 12 else 10,
                    color="white" if share[i, j] > 0.6 else "black")
    ax.set_xticks(range(k), metrics.classes, rotation=45, ha="right")
    ax.set_yticks(range(k), [f"{c} (recall {r:.2f})" for c, r in zip(metrics.classes, metrics.recall, strict=True)])
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(f"{title}\naccuracy {100 * metrics.accuracy:.1f}%, balanced accuracy "
                 f"{100 * metrics.balanced_accuracy:.1f}%, macro-F1 {metrics.macro_f1:.3f}", fontsize=10)
    fig.savefig(path)


def write_html(path: Path, study: optuna.Study, config: StudyConfig, g: Groups, text: str,
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
