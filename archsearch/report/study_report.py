"""What a study found: the top trials and the Pareto front as text, a PNG plot and an interactive HTML page.

Everything is read from the study's trials and their archsearch user attributes; nothing is trained or
built (the numbers and text: :mod:`archsearch.report.text`; the plots: :mod:`archsearch.report.plots`). The PNG
(matplotlib, Agg) plots validation accuracy against MACs on a log axis, with the Pareto front as a step line, the
seed baselines marked and labelled, and pruned or over-budget trials faded; a second panel plots accuracy against
latency where trials measured it. The HTML page holds Optuna's own plots (optimization history, and the Pareto
front of a two-objective study) and a hoverable scatter, with plotly.js inlined so that it opens offline.

The pick's per-class figures on the validation split are printed and its confusion matrix drawn
(``<name>_confusion.png``) where its trial recorded one.

    archsearch report studies/quickstart.yaml     # -> studies/quickstart_report.png, _confusion.png, .html
"""

from __future__ import annotations

import argparse
import inspect
import math
import os
import random
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from archsearch.config.study_config import StudyConfig, load_study_config
from archsearch.core.errors import ConfigError
from archsearch.network.arch import Arch
from archsearch.report.plots import write_confusion_png, write_html, write_png
from archsearch.report.text import Groups, judged_trial, pareto_front, study_text
from archsearch.search.trial_record import TrialRecord

__all__ = ["Report", "report", "pareto_front", "add_parser", "cmd_report"]

@dataclass(frozen=True)
class Report:
    """The report's text and the files it wrote (None where not asked for)."""

    text: str
    png: Path | None
    html: Path | None
    confusion_png: Path | None = None  # the pick's confusion matrix on the validation split, where recorded


# ---------------------------------------------------------------------------------------------------------
# the numbers


# ---------------------------------------------------------------------------------------------------------
# the PNG


# ---------------------------------------------------------------------------------------------------------
# the HTML


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
    from archsearch.search.study import open_study

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = open_study(config, create=False)
    g = Groups.of(study.get_trials(deepcopy=False))
    text = study_text(study, config, g, top)
    png_path = html_path = confusion_path = None
    if png or html:
        assert folder is not None  # refused above
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ConfigError(f"cannot create the output folder: {e.strerror}", path=folder) from None
        if png:
            png_path = folder / f"{config.name}_report.png"
            write_png(png_path, study, config, g)
            judged = judged_trial(study, config)
            if judged is not None:
                confusion_path = folder / f"{config.name}_confusion.png"
                write_confusion_png(confusion_path, f"study {config.name}, trial {judged[0].number} (the pick), "
                                                    "validation split", judged[1])
        if html:
            html_path = folder / f"{config.name}_report.html"
            write_html(html_path, study, config, g, text, plotly_js)
    return Report(text, png_path, html_path, confusion_path)


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
    from archsearch.latency.measure import measure_latency
    from archsearch.network.build import build
    from archsearch.network.cost import arch_cost
    from archsearch.space import baselines
    from archsearch.space.search_space import sample_architectures

    rng = random.Random(seed)
    quick: dict[str, Any] = {"warmup": 2, "repeats": 5}  # a few passes are enough for made-up trials
    if "min_seconds" in inspect.signature(measure_latency).parameters:
        quick["min_seconds"] = 0.0
    space = config.load_space()
    b = config.budget
    archs: list[tuple[str | None, Arch]] = []
    for name in baselines.FAMILIES:
        fitted = baselines.fit_to_budget(name, in_chs=in_chs, resolution=resolution, num_classes=num_classes,
                                         limits=b.limits(), bytes_per_param=b.bytes_per_param)
        if fitted is not None:
            archs.append((name, fitted))
    archs += [(None, a) for a in sample_architectures(space, max(0, n - len(archs)), in_chs=in_chs,
                                                      resolution=resolution, num_classes=num_classes, seed=seed)]
    costs = [arch_cost(a) for _, a in archs]
    lo = math.log10(min(c.macs for c in costs))
    span = max(1e-9, math.log10(max(c.macs for c in costs)) - lo)
    multi = len(study.directions) > 1
    first = len(study.get_trials(deepcopy=False))
    seen: dict[str, tuple[int, float]] = {}  # arch id -> (trial number, accuracy): a resampled one is a duplicate
    trials = []
    for number, ((family, arch), cost) in enumerate(zip(archs[:n], costs, strict=False), start=first):
        record = TrialRecord(
            arch=arch.to_dict(), arch_id=arch.id, macs=cost.macs, params=cost.params,
            peak_activation_bytes=cost.peak_activation_bytes, worker="synthetic:0:0",
            seconds=rng.uniform(0.2, 3.0), baseline=family,
        )
        constraints = {m: v / limit - 1.0 for m, v in (("macs", cost.macs), ("params", cost.params))
                       if (limit := b.limit(m)) is not None}
        feasible = not any(c > 0 for c in constraints.values())
        record = replace(record, feasible=feasible)
        acc = min(0.99, max(0.05, 0.6 + 0.3 * (math.log10(cost.macs) - lo) / span + rng.gauss(0, 0.04)))
        roll = rng.random()
        if feasible and arch.id in seen:  # the objective reuses the earlier result and trains nothing
            earlier, acc = seen[arch.id]
            record = replace(record, duplicate_of=earlier)
            roll = 1.0
        elif feasible:
            seen[arch.id] = (number, acc)
        if feasible and latency:
            shape = (arch.in_chs, arch.resolution, arch.resolution)
            record = replace(record, latency_ms=measure_latency(build(arch), shape, **quick).median_ms)
        if not feasible:
            state, values = TrialState.COMPLETE, ([0.0, float(cost.macs)] if multi else [0.0])
        elif family is None and roll < 0.03:
            state, values = TrialState.FAIL, None
            record = replace(record, error="TrainingDiverged: training loss is not finite (nan) in epoch 1/6")
        elif family is None and roll < 0.2 and not multi:
            state, values = TrialState.PRUNED, None
            record = replace(record, val_accuracy=acc - 0.15, epochs_done=1)
        else:
            state, values = TrialState.COMPLETE, ([acc, float(cost.macs)] if multi else [acc])
            record = replace(record, val_accuracy=acc, epochs_done=config.training.epochs)
        intermediate = {0: record.val_accuracy} if record.val_accuracy is not None else {}
        trials.append(optuna.trial.create_trial(state=state, values=values, user_attrs=record.attrs(),
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
    written = [str(p) for p in (result.png, result.confusion_png, result.html) if p is not None]
    if written:
        print(f"\nwrote {', '.join(written)}")
    return 0
