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
import os
from dataclasses import dataclass
from pathlib import Path

import optuna

from archsearch.config.study_config import StudyConfig, load_study_config
from archsearch.core.errors import ConfigError
from archsearch.report.plots import write_confusion_png, write_html, write_png
from archsearch.report.text import Groups, judged_trial, study_text

__all__ = ["Report", "report", "add_parser", "cmd_report"]

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
    from archsearch.study.open import open_study

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
