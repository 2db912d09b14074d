"""Report: the text tables, the Pareto front, the PNG and the offline HTML page, read from real SQLite studies.

The studies hold trials made with ``optuna.trial.create_trial`` (``synthetic_trials.add_synthetic_trials``): sampled
architectures with their real analytic cost and, where asked, a real CPU latency; nothing is trained.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml
from conftest import TINY_SPACE, study_dict
from optuna.trial import FrozenTrial, TrialState
from synthetic_trials import add_synthetic_trials

from archsearch.config.study_config import load_study_config
from archsearch.report.study_report import add_parser, report
from archsearch.search.study import open_study, run
from archsearch.study.best import pareto_front

matplotlib_image = pytest.importorskip("matplotlib.image")
pytest.importorskip("plotly")


@pytest.fixture
def make_study(tmp_path: Path) -> Callable[..., Path]:
    """``make_study(n, latency=False, **overrides) -> study YAML`` holding ``n`` made-up finished trials."""

    def make(n: int, *, latency: bool = False, **overrides: Any) -> Path:
        (tmp_path / "tiny_space.yaml").write_text(yaml.safe_dump(TINY_SPACE, sort_keys=False))
        # a params budget that the three seed baselines fit (at 8x8 even MobileNet x1/32 has 198K MACs)
        data = study_dict(**{"budget": {"max_macs": None, "max_params": 5500}, **overrides})
        path = tmp_path / f"{data['name']}.yaml"
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        config = load_study_config(path)
        study = open_study(config)
        add_synthetic_trials(study, config, n, in_chs=1, resolution=8, num_classes=4, seed=3, latency=latency)
        return path

    return make


def _front_by_brute_force(trials: list[FrozenTrial], key: str) -> set[int]:
    pts = [t for t in trials if t.user_attrs.get("val_accuracy") is not None and t.user_attrs.get(key) is not None]
    front = set()
    for t in pts:
        a, c = t.user_attrs["val_accuracy"], t.user_attrs[key]
        beaten = any(
            (o.user_attrs["val_accuracy"] >= a and o.user_attrs[key] <= c)
            and ((o.user_attrs["val_accuracy"], o.user_attrs[key]) != (a, c) or o.number < t.number)
            for o in pts if o is not t
        )
        if not beaten:
            front.add(t.number)
    return front


def _ft(number: int, acc: float | None, macs: int | None) -> FrozenTrial:
    attrs = {k: v for k, v in (("val_accuracy", acc), ("macs", macs)) if v is not None}
    t = optuna.trial.create_trial(value=acc or 0.0, user_attrs=attrs)
    t.number = number
    return t


@pytest.mark.parametrize(
    ("points", "front"),
    [
        ([(0.5, 100), (0.6, 200), (0.55, 300)], [0, 1]),  # the third is beaten by the second
        ([(0.6, 200), (0.5, 100)], [1, 0]),  # sorted by cost
        ([(0.5, 100), (0.5, 100)], [0]),  # a tie: the earliest stands for both
        ([(0.5, 100), (0.5, 200)], [0]),  # same accuracy, more MACs: beaten
        ([(0.5, 100), (None, 50), (0.9, None)], [0]),  # no accuracy or no cost: left out
        ([], []),
    ],
)
def test_pareto_front(points: list[tuple[float | None, int | None]], front: list[int]) -> None:
    trials = [_ft(i, acc, macs) for i, (acc, macs) in enumerate(points)]
    assert [t.number for t in pareto_front(trials, "macs")] == front


def test_pareto_front_rejects_an_unknown_metric() -> None:
    with pytest.raises(ValueError, match=r"metric must be one of \['latency', 'macs', 'params'\], got 'flops'"):
        pareto_front([], "flops")


@pytest.mark.slow  # an SQLite study, PNG and HTML: seconds
def test_report_text_png_and_html(make_study: Callable[..., Path]) -> None:
    path = make_study(40, latency=True)
    config = load_study_config(path)
    trials = optuna.load_study(study_name=config.name, storage=config.storage).get_trials()
    result = report(path, top=5)
    text = result.text

    feasible = [t for t in trials if t.state == TrialState.COMPLETE and t.user_attrs["feasible"]]
    over = [t for t in trials if t.state == TrialState.COMPLETE and not t.user_attrs["feasible"]]
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    assert feasible and over and pruned  # the study exercises every kind of point
    assert f"{len(trials)} trials: {len(feasible) + len(over)} complete ({len(feasible)} feasible, " \
           f"{len(over)} over budget), {len(pruned)} pruned" in text
    assert "budget max_params=5,500" in text

    # the top table: the most accurate trained trial first, five rows
    ranked = sorted(feasible + pruned, key=lambda t: -t.user_attrs["val_accuracy"])
    top = text.split("top 5 of")[1].split("\n\n")[0].splitlines()
    rows = [line for line in top[3:] if line.strip()]
    assert len(rows) == 5
    assert rows[0].split()[0] == str(ranked[0].number) and ranked[0].user_attrs["arch_id"] in rows[0]
    assert top[1].split() == ["trial", "state", "val", "acc", "MACs", "params", "latency", "ms", "budget", "use",
                              "baseline", "architecture", "id"]

    # the fronts list exactly the non-dominated feasible trials
    for title, key in (("vs MACs", "macs"), ("vs latency", "latency_ms")):
        section = text.split(f"Pareto front, validation accuracy {title}")[1].split("\n\n")[0]
        listed = {int(line.split()[0]) for line in section.splitlines()[3:] if line.strip()}
        assert listed == _front_by_brute_force(feasible, key)

    # the seed baselines: marked in the tables and placed against the front
    baselines = {t.number: t.user_attrs["baseline"] for t in trials if "baseline" in t.user_attrs}
    assert sorted(baselines.values()) == ["effnet", "mobilenet", "shufflenet"]
    section = text.split("seed baselines")[1]
    for number, family in baselines.items():
        assert re.search(rf"trial +{number} +{family} .*(on the front|beaten by trial \d+)", section)

    # the PNG: beside the YAML, two panels (MACs and latency) side by side
    assert result.png == path.parent / "tiny_report.png"
    assert result.png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    h, w, _ = matplotlib_image.imread(result.png).shape
    assert w > 1.8 * h

    # the HTML: works offline (plotly.js inline, no script fetched), with Optuna's plot and our hover texts
    page = result.html.read_text()
    assert result.html == path.parent / "tiny_report.html"
    assert not re.search(r"<script[^>]+src=", page)
    assert len(page) > 1_000_000 and "Plotly.newPlot" in page
    assert "Optimization History Plot" in page
    assert ranked[0].user_attrs["arch_id"] in page and "baseline: mobilenet" in page


@pytest.mark.slow  # an SQLite study and plots: seconds
def test_two_objective_study_shows_optunas_pareto_front(make_study: Callable[..., Path], tmp_path: Path) -> None:
    path = make_study(12, objective={"type": "pareto"}, pruner={"type": "none"})
    out = tmp_path / "elsewhere"
    result = report(path, out=out)
    assert result.png.parent == out and result.html.parent == out
    assert "Pareto-front Plot" in result.html.read_text()
    assert "objective pareto" in result.text


@pytest.mark.slow  # an SQLite study and plots: seconds
def test_empty_study(make_study: Callable[..., Path]) -> None:
    path = make_study(0)
    result = report(path, html=False)
    assert "no trained trial yet" in result.text
    assert result.png.is_file() and result.html is None


@pytest.mark.slow  # an SQLite study and plots: seconds
def test_report_command(make_study: Callable[..., Path], tmp_path: Path) -> None:
    path = make_study(10)
    parser = argparse.ArgumentParser(prog="archsearch")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["report", str(path), "--top", "3", "--no-html", "--out", str(tmp_path / "r")])
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert args.func(args) == 0
    out = printed.getvalue()
    assert "top 3 of" in out and f"wrote {tmp_path / 'r' / 'tiny_report.png'}" in out
    assert not (tmp_path / "r" / "tiny_report.html").exists()


@pytest.mark.slow  # a search
def test_report_of_a_missing_study_is_a_config_error(tmp_path: Path) -> None:
    from archsearch.core.errors import ConfigError

    (tmp_path / "tiny_space.yaml").write_text(yaml.safe_dump(TINY_SPACE))
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(study_dict()))
    with pytest.raises(ConfigError, match="tiny.db.*does not exist.*run `archsearch search` first"):
        report(path)
    assert not (tmp_path / "tiny.db").exists()  # reading a study creates no empty storage
    # a storage that exists but holds other studies
    path.write_text(yaml.safe_dump(study_dict(name="other", storage="sqlite:///tiny.db")))
    run(path, progress=False, summarize=False)
    path.write_text(yaml.safe_dump(study_dict()))
    with pytest.raises(ConfigError, match="no study 'tiny'.*run `archsearch search` first"):
        report(path)


def _legend_and_data(study: optuna.Study, config: Any) -> tuple[Any, list[tuple[Any, Any]]]:
    from archsearch.report.plots import _figure
    from archsearch.report.text import Groups

    fig = _figure(study, config, Groups.of(study.get_trials(deepcopy=False)))
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    return fig, [(ax.get_legend().get_window_extent(renderer), ax.get_window_extent(renderer)) for ax in fig.axes]


@pytest.mark.slow  # an SQLite study and a plot: seconds
def test_the_legend_sits_beside_the_axes_never_on_the_data(make_study: Callable[..., Path]) -> None:
    config = load_study_config(make_study(40, latency=True))
    fig, boxes = _legend_and_data(open_study(config, create=False), config)
    assert len(boxes) == 2
    for legend, axes in boxes:
        assert legend.x0 >= axes.x1  # to the right of the plotting area: no marker or label under it
        assert legend.x1 <= fig.bbox.x1 + 1  # and inside the figure


@pytest.mark.slow  # an SQLite study and plots: seconds
def test_a_failed_or_missing_baseline_is_named_on_the_plot(make_study: Callable[..., Path]) -> None:
    config = load_study_config(make_study(12, enqueue_baselines=True))
    study = open_study(config, create=False)
    # the effnet baseline failed; drop shufflenet's trial altogether (as when it does not fit the budget)
    kept = []
    for t in study.get_trials():
        family = t.user_attrs.get("baseline")
        if family == "shufflenet":
            continue
        if family == "effnet":
            t = optuna.trial.create_trial(state=TrialState.FAIL, params=t.params, distributions=t.distributions,
                                          user_attrs={**t.user_attrs, "val_accuracy": None})
        kept.append(t)
    other = optuna.create_study(study_name="copy", storage=config.storage)
    other.add_trials(kept)
    fig, _ = _legend_and_data(other, config)
    texts = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert any(t.startswith("baseline: effnet, failed (trial ") and t.endswith("not plotted") for t in texts), texts
    assert "baseline: shufflenet, missing (does not fit the budget): not plotted" in texts
    assert "baseline: mobilenet" in texts


@pytest.mark.slow  # an SQLite study and two pages: seconds
def test_the_html_can_load_plotly_from_its_cdn(make_study: Callable[..., Path]) -> None:
    path = make_study(10)
    inline = report(path, png=False).html.stat().st_size
    page = report(path, png=False, plotly_js="cdn").html.read_text()
    assert re.search(r'<script[^>]+src="https://cdn\.plot\.ly/', page)
    assert len(page) < inline / 20, (len(page), inline)


def test_the_rerank_and_its_pick_of_a_real_search(tmp_path: Path) -> None:
    """The committed 1M Fashion-MNIST search, re-ranked with 3 folds: the report shows each re-ranked candidate's
    mean and standard error, the candidates the noise ties, and the trial export takes; the same record as the
    benchmark's. With another re-rank recipe, it says the re-rank has not run with it."""
    root = Path(__file__).resolve().parents[2]
    journal = tmp_path / "tpe.journal"
    journal.write_bytes((root / "benchmarks" / "fashion_mnist" / "studies" / "1m" / "tpe.journal").read_bytes())
    data = yaml.safe_load((root / "studies" / "fmnist_1m.yaml").read_text())
    data.update(storage=f"journal:{journal}", space=str(root / "search_spaces" / "mixed.yaml"))
    assert data["rerank"] == {"top": 5, "epochs": 2, "train_subset": 30000, "folds": 3}
    path = tmp_path / "fmnist_1m.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    text = report(path, png=False, html=False).text
    section = text.split("re-rank (top 5, 2 epochs on 30,000 images, 3 folds):\n")[1].splitlines()
    record = next(json.loads(line) for line in (root / "benchmarks" / "fashion_mnist" / "results.jsonl")
                  .read_text().splitlines() if json.loads(line)["key"] == "search/1m/tpe")
    ranked = re.findall(r"(\d+) (0\.\d{4}) ± (0\.\d{4})", section[0])
    assert len(ranked) == len(record["reranked"]) == 8  # the 5 searched candidates and the 3 baselines
    for number, mean, se in ranked:
        assert float(mean) == pytest.approx(record["reranked"][number], abs=5e-5)
        assert float(se) == pytest.approx(record["reranked_se"][number], abs=5e-5)
    assert [float(m) for _, m, _ in ranked] == sorted((float(m) for _, m, _ in ranked), reverse=True)
    tied = ", ".join(f"trial {n}" for n in record["pick"]["tied"])
    assert re.fullmatch(rf"  re-rank: the best is not clear of the next by the noise \({tied.replace(', ', '.*, ')}.*"
                        rf"\); picked trial {record['export_pick']}, the one with the lowest MACs \(.* MACs\)",
                        section[1]), section[1]
    assert section[2] == f"  `archsearch export` takes trial {record['export_pick']}"

    data["rerank"]["folds"] = 2
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    assert "re-rank (top 5, 2 epochs on 30,000 images, 2 folds): not run yet with this recipe" \
        in report(path, png=False, html=False).text
