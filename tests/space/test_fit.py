"""Budget fitting: shapes scaled to the budget's edge, never over it, for every shipped space and budget."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from latency_tables import CPU1, LATENCY_CPU1, make_table

from archsearch.cli import commands as cli
from archsearch.config.study_config import load_study_config
from archsearch.latency.key import table_key
from archsearch.network.arch import make_divisible
from archsearch.network.cost import arch_cost
from archsearch.space.baselines import FAMILIES, fit_baseline
from archsearch.space.fit import CAPPED, FITTED, INFEASIBLE, budget_use, cost_values, fit_shape, summarize
from archsearch.space.search_space import Shape, StageShape, load_space, sample_shapes, space_from_dict

ROOT = Path(__file__).resolve().parents[2]
SPACES = ("mixed", "mobilenet", "shufflenet", "effnet")
# the shipped studies' budgets and inputs: (in_chs, resolution, limits)
BUDGETS = {
    "quickstart": (1, 8, {"macs": 300_000, "params": 20_000}),
    "fmnist_1m": (1, 28, {"macs": 1e6}),
    "fmnist_3m": (1, 28, {"macs": 3e6}),
    "fmnist_10m": (1, 28, {"macs": 1e7}),
}


def test_the_budgets_here_are_the_shipped_studies():
    for name, (_, _, limits) in BUDGETS.items():
        cfg = load_study_config(ROOT / "studies" / f"{name}.yaml")
        assert cfg.budget.limits() == limits
        assert cfg.budget.fit is True


def _fits(space_name: str, budget: str, n: int, seed: int = 0):
    space = load_space(ROOT / "search_spaces" / f"{space_name}.yaml")
    in_chs, res, limits = BUDGETS[budget]
    shapes = sample_shapes(space, n, in_chs=in_chs, resolution=res, num_classes=10, seed=seed)
    low, high = min(space.width_mult), max(space.width_mult)
    return space, limits, [fit_shape(s, limits, low=low, high=high) for s in shapes]


@pytest.mark.parametrize("budget", list(BUDGETS))
@pytest.mark.parametrize("space_name", SPACES)
def test_fitted_candidates_spend_the_budget_and_never_exceed_it(space_name, budget):
    # a smaller sample than benchmarks/cost/budget_fit.py's 200 (where >= 95% reach 0.95 but for the shufflenet
    # space, whose coarser costs README states), so a lower share: 40 shapes give a noisier count
    _, limits, fits = _fits(space_name, budget, 40)
    for f in fits:
        use = budget_use(cost_values(f.arch), limits)
        assert use == pytest.approx(f.budget_use)
        if f.feasible:
            assert all(cost_values(f.arch)[m] <= limit for m, limit in limits.items()), f.arch.id
    s = summarize(fits)
    share = 0.8 if space_name == "shufflenet" else 0.9
    assert s["at_threshold"] >= share * len(fits), s
    assert s["infeasible"] <= 0.05 * len(fits), s


@pytest.mark.parametrize("space_name", ["mixed", "shufflenet"])
def test_a_fitted_record_is_the_largest_multiplier_within_budget(space_name):
    space, limits, fits = _fits(space_name, "fmnist_3m", 30, seed=1)
    shapes = sample_shapes(space, 30, in_chs=1, resolution=28, num_classes=10, seed=1)
    high = max(space.width_mult)
    for shape, f in zip(shapes, fits, strict=True):
        assert f.status in (FITTED, CAPPED)
        if f.status == CAPPED:
            assert f.arch == shape.at(high)
            continue
        points = shape.breakpoints(min(space.width_mult), high)
        i = points.index(f.width_mult)
        assert budget_use(cost_values(shape.at(points[i])), limits) <= 1.0
        assert budget_use(cost_values(shape.at(points[i + 1])), limits) > 1.0  # the next multiplier is over
        # the top-up adds at most two channel units to a width
        assert all(0 <= e <= 2 for e in f.extra)
        assert f.arch == shape.at(f.width_mult, f.extra)


def test_breakpoints_are_where_the_record_changes():
    shape = Shape(1, 28, 10, "conv", 16, 1, 0,
                  (StageShape("dwsep", 24, 1, 2), StageShape("shuffle", 40, 2, 2, groups=2),
                   StageShape("effnet", 64, 1, 2)))
    points = shape.breakpoints(0.25, 4.0)
    assert points[0] == 0.25 and points == sorted(points) and points[-1] <= 4.0 * (1 + 1e-9)
    records = [shape.at(p) for p in points]
    assert len(set(records)) > 20
    for p, q, rec in zip(points, points[1:], records, strict=False):
        assert shape.at((p + q) / 2) == rec  # constant in between: the record changes only at a point
        assert shape.at(q * (1 - 1e-6)) == rec
    assert shape.at(4.0) == records[-1]
    # the widths are alpha x base rounded to the channel multiple, as sampling rounds them
    assert records[-1].stem.out_chs == make_divisible(16 * points[-1], 8)


def test_capped_and_infeasible_shapes():
    tiny = Shape(1, 8, 10, "conv", 8, 1, 0, (StageShape("dwsep", 16, 1, 2),))
    capped = fit_shape(tiny, {"macs": 1e9}, low=0.5, high=2.0)
    assert capped.status == CAPPED and capped.arch == tiny.at(2.0) and capped.budget_use < 0.01
    big = Shape(1, 28, 10, "conv", 64, 1, 0, (StageShape("dwsep", 512, 3, 2),))
    over = fit_shape(big, {"macs": 1000}, low=0.5, high=2.0)
    assert over.status == INFEASIBLE and not over.feasible
    assert over.arch == big.at(0.5) and over.budget_use == arch_cost(big.at(0.5)).macs / 1000


def test_fitting_to_two_limits_binds_the_tighter():
    space = load_space(ROOT / "search_spaces" / "mixed.yaml")
    shape = sample_shapes(space, 1, in_chs=1, resolution=28, num_classes=10, seed=3)[0]
    macs_only = fit_shape(shape, {"macs": 3e6}, low=0.25, high=8.0)
    params = arch_cost(macs_only.arch).params
    both = fit_shape(shape, {"macs": 3e6, "params": params / 2}, low=0.25, high=8.0)
    assert arch_cost(both.arch).params <= params / 2 and both.width_mult < macs_only.width_mult


def test_fitting_to_a_peak_at_int8_admits_networks_float32_rejects():
    space = load_space(ROOT / "search_spaces" / "mixed.yaml")
    shape = sample_shapes(space, 1, in_chs=1, resolution=28, num_classes=10, seed=3)[0]
    low, high = min(space.width_mult), max(space.width_mult)
    thinnest = arch_cost(shape.at(low)).peak_activation_bytes / 1024
    limits = {"peak_kb": thinnest / 2}  # below the thinnest network at float32, twice it at int8
    float32 = fit_shape(shape, limits, low=low, high=high)
    int8 = fit_shape(shape, limits, low=low, high=high, bytes_per_activation=1)
    assert float32.status == INFEASIBLE and float32.budget_use == 2.0
    assert int8.feasible and int8.width_mult > low
    at_int8, at_float32 = cost_values(int8.arch, bytes_per_activation=1), cost_values(int8.arch)
    assert at_int8["peak_kb"] == at_float32["peak_kb"] / 4 <= limits["peak_kb"] < at_float32["peak_kb"]
    assert int8.budget_use == pytest.approx(at_int8["peak_kb"] / limits["peak_kb"])


def test_bad_arguments():
    shape = Shape(1, 8, 10, "conv", 8, 1, 0, (StageShape("dwsep", 16, 1, 2),))
    with pytest.raises(ValueError, match="at least one limit"):
        fit_shape(shape, {}, low=0.5, high=1.0)
    with pytest.raises(ValueError, match="latency predictor"):
        fit_shape(shape, {"latency": 1.0}, low=0.5, high=1.0)
    with pytest.raises(ValueError, match="0 < low <= high"):
        fit_shape(shape, {"macs": 1e6}, low=2.0, high=1.0)


@pytest.mark.slow  # subprocesses
def test_space_command_shows_budget_use():
    out = subprocess.run(
        [sys.executable, "-m", "archsearch.cli", "space", str(ROOT / "search_spaces" / "mixed.yaml"),
         "--input", "1x28x28", "--samples", "40", "--budget", "macs=3e6"],
        capture_output=True, text=True, check=True,
    ).stdout
    assert "budget fitting to macs <= 3,000,000, multiplier 0.25-8x, over 40 sampled shapes" in out
    assert ">= 0.95: " in out and "fitting time per shape: median" in out
    bad = subprocess.run(
        [sys.executable, "-m", "archsearch.cli", "space", str(ROOT / "search_spaces" / "mixed.yaml"),
         "--budget", "flops=3e6"], capture_output=True, text=True,
    )
    assert bad.returncode == 2 and "METRIC from ['macs', 'params', 'peak_kb', 'model_kb']" in bad.stderr


def _space_command(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    """``archsearch space ARGS --samples 40``, in this process; its output."""
    capsys.readouterr()
    assert cli.main(["space", *args, "--samples", "40"]) == 0
    return capsys.readouterr().out


def _candidates(out: str) -> int:
    """The count in ``space NAME (...): N candidates; ...``."""
    return int(out.split("): ", 1)[1].split(" candidates")[0].replace(",", ""))


@pytest.mark.slow  # `archsearch space` three times: seconds
def test_space_command_on_a_study_shows_its_space_input_and_budget(capsys):
    # the quickstart: digits (1x8x8, 10 classes), macs <= 300,000 and params <= 20,000, mixed.yaml as it is
    out = _space_command(capsys, str(ROOT / "studies" / "quickstart.yaml"))
    assert "as study" in out and "input 1x8x8, 10 classes" in out
    assert "budget fitting to macs <= 300,000, params <= 20,000, multiplier 0.25-8x, over 40 sampled shapes" in out
    whole = _space_command(capsys, str(ROOT / "search_spaces" / "mixed.yaml"))
    # a Fashion-MNIST study searches 28x28 only (space_overrides): half of mixed.yaml's candidates; options win
    narrowed = _space_command(capsys, str(ROOT / "studies" / "fmnist_3m.yaml"), "--budget", "macs=1e6")
    assert _candidates(narrowed) * 2 == _candidates(whole) == _candidates(out)
    assert "input 1x28x28, 10 classes" in narrowed and "budget fitting to macs <= 1,000,000," in narrowed


def _latency_study(write_study, limit_ms: float) -> Path:
    """A study of the tests' tiny space (conftest.TINY_SPACE, 8x8 inputs, 4 classes) with a latency limit."""
    return write_study(budget={"max_macs": 3.0e+5, "max_latency_ms": limit_ms, "latency": LATENCY_CPU1})


@pytest.mark.slow  # measures latency table entries: seconds
def test_space_command_on_a_study_with_a_latency_limit_fits_to_the_study_s_table(write_study, capsys):
    study = _latency_study(write_study, 1000.0)
    # the table a search of the study wrote beside it, holding the seed baselines' parts (quick measurements)
    table = make_table(study.parent / "latency")
    limits = {"macs": 3e5, "latency": 1000.0}
    fitted = {f: fit_baseline(f, in_chs=1, resolution=8, num_classes=4, limits=limits, latency=table.predict)
              for f in FAMILIES}
    before = len(table)
    capsys.readouterr()
    assert cli.main(["space", str(study), "--samples", "40", "--fit-samples", "1"]) == 0
    out, err = capsys.readouterr()
    assert "latency build" not in out + err and "left out" not in out  # no request for a table that exists
    assert f"latency: predicted from the study's table {table.path} ({before} entries, cpu, 1 thread(s), batch 1)" \
        in out
    assert "latency: the first 1 of the 40 sampled shapes are fitted" in out
    assert "budget fitting to macs <= 300,000, latency <= 1,000 ms, multiplier 0.5-1x, over 1 sampled shapes" in out
    # the seed baselines as a search of the study enqueues them, with their predicted latency and budget use
    lines = out.splitlines()
    at = lines.index("seed baselines fitted to macs <= 300,000, latency <= 1,000 ms (what a search enqueues):")
    rows = {line.split()[0]: line.split() for line in lines[at + 3:at + 3 + len(FAMILIES)]}
    for family, fit in fitted.items():
        assert fit.arch is not None and fit.budget_use is not None
        assert rows[family] == [family, f"x{fit.width:.3g}", f"{arch_cost(fit.arch).macs:,}",
                                f"{arch_cost(fit.arch).params:,}", f"{fit.values['latency']:.3g}",
                                f"{fit.budget_use:.3f}", fit.arch.id]
    # the sampled shape's parts, which the table lacked, were measured and saved to it
    assert len(make_table(study.parent / "latency")) > before
    assert f"parts measured on this machine and saved to {table.path}" in out


@pytest.mark.slow  # calibrates a new latency table: seconds
def test_space_command_without_the_study_s_latency_table_builds_it(write_study, capsys):
    study = _latency_study(write_study, 0.001)  # below every network: nothing fits
    capsys.readouterr()
    assert cli.main(["space", str(study), "--samples", "1"]) == 0
    out, err = capsys.readouterr()
    path = study.parent / "latency" / table_key(CPU1).file_name()
    assert f"latency table {path} does not exist: a new one is built (parts are measured as needed)" in err
    assert f"latency: predicted from the study's table {path} (0 entries" in out
    assert "infeasible 1 (over budget at 0.5x, never built)" in out
    rows = [line for line in out.splitlines() if "not queued" in line]
    assert sorted(row.split()[0] for row in rows) == sorted(FAMILIES) and all(
        "not queued: even its thinnest variant (x0.0312) is over the budget: latency " in row for row in rows)
    assert len(make_table(study.parent / "latency")) > 0


def test_space_command_counts_a_study_s_peak_at_its_activation_precision(tmp_path, capsys):
    out = {}
    for precision in ("float32", "int8"):
        study = tmp_path / f"{precision}.yaml"
        study.write_text(f"name: p\nspace: {ROOT / 'search_spaces' / 'mixed.yaml'}\ndataset: {{name: digits}}\n"
                         f"budget: {{max_peak_activation_kb: 2, activation_precision: {precision}}}\n")
        out[precision] = _space_command(capsys, str(study))
    rows = {p: next(line for line in text.splitlines() if line.startswith("peak activations"))
            for p, text in out.items()}
    assert rows["float32"].startswith("peak activations (bytes at float32)")
    assert rows["int8"].startswith("peak activations (bytes at int8)")
    figures = {p: [int(v.replace(",", "")) for v in row.split(")", 1)[1].split()] for p, row in rows.items()}
    assert figures["int8"] == [v // 4 for v in figures["float32"]]  # min, median, max: a quarter
    # 2 KiB is below every float32 network of the space at 8x8, and above most int8 ones: fitted, they fit
    infeasible = {p: int(text.split("infeasible ")[1].split()[0]) for p, text in out.items()}
    assert infeasible == {"float32": 40, "int8": 0}, infeasible


def test_a_head_with_a_hidden_layer_is_fitted_with_the_rest():
    # the hidden layer is not scaled by alpha: the multiplier spends what the head leaves of the budget
    mixed = ROOT / "search_spaces" / "mixed.yaml"
    space = space_from_dict({**yaml.safe_load(mixed.read_text()), "head_hidden": [0, 256]}, path=mixed)
    limits = {"macs": 1e6}
    shapes = sample_shapes(space, 40, in_chs=1, resolution=28, num_classes=10, seed=2)
    assert {s.hidden for s in shapes} == {0, 256}
    fits = [fit_shape(s, limits, low=min(space.width_mult), high=max(space.width_mult)) for s in shapes]
    for shape, f in zip(shapes, fits, strict=True):
        assert f.arch.hidden == shape.hidden
        if f.feasible:
            assert arch_cost(f.arch).macs <= 1e6, f.arch.id
    assert summarize(fits)["at_threshold"] >= 0.9 * len(fits)
