"""benchmarks/fashion_mnist.py end to end on the real Fashion-MNIST files, at tiny sizes.

One level (1 M MACs), a few seconds of search with a 1-epoch proxy on 2000 images, the final recipe on 300 images
(1 epoch, 2 seeds) scored on the first 500 validation and test images, 4 architectures in the fidelity check. The
second invocation must train nothing: the row files keep their bytes and mtimes, the study keeps its trials.
Skipped only where the Fashion-MNIST IDX files are not installed.
"""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import optuna
import pytest

ROOT = Path(__file__).resolve().parents[1]
FASHION = Path("/usr/share/datasets/fashion-mnist")
FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")

pytestmark = pytest.mark.skipif(
    not all((FASHION / f).exists() or (FASHION / f"{f}.gz").exists() for f in FILES),
    reason=f"Fashion-MNIST IDX files not found in {FASHION} (Debian package dataset-fashion-mnist)",
)

TINY = ["--quick", "--levels", "1m", "--threads", "1", "--search-seconds", "4", "--train-subset", "300",
        "--seeds", "2", "--tau-archs", "4", "--tau-level", "1m", "--eval-limit", "500"]


def _benchmark():
    spec = importlib.util.spec_from_file_location("fashion_mnist_benchmark", ROOT / "benchmarks" / "fashion_mnist.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the file runs
    spec.loader.exec_module(module)
    return module


def test_pipeline_caches_rows_and_writes_results(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bench = _benchmark()
    out = tmp_path / "out"
    assert bench.main([*TINY, "--out", str(out)]) == 0
    first = capsys.readouterr().out

    rows_dir = out / "1m" / "rows"
    rows = {p.name: json.loads(p.read_text()) for p in rows_dir.glob("*.json")}
    expected = {f"baseline-{f}-s{s}.json" for f in ("mobilenet", "shufflenet", "effnet") for s in (0, 1)}
    expected |= {"searched-s0.json", "searched-s1.json"}
    assert expected <= set(rows)
    taus = [r for r in rows.values() if r["kind"] == "tau"]
    assert len(taus) >= 2  # the 3 baseline trials and the best at least; 4 asked for
    for name, r in rows.items():
        assert 0.0 <= r["test_accuracy"] <= 1.0, name
        assert r["n_test"] == 500
        assert 0 < r["macs"] <= 1_000_000, name
        assert r["params"] > 0 and r["latency_ms"] > 0, name
        assert r["level"] == "1m" and r["seed"] in (0, 1)
    # a baseline is the widest variant under the budget; the searched rows retrain the study's best searched trial
    search = json.loads((out / "1m" / "search.json").read_text())
    assert rows["searched-s0.json"]["arch_id"] == search["best"]["arch_id"]
    assert rows["searched-s0.json"]["trial"] == search["best"]["number"]
    assert (out / "1m" / "export" / "arch.json").is_file() and (out / "1m" / "export" / "weights.pt").is_file()
    storage = f"sqlite:///{out / '1m' / 'study.db'}"
    study = optuna.load_study(study_name="fmnist_1m", storage=storage)
    baseline_trials = [t for t in study.trials if "baseline" in t.user_attrs]
    assert {t.user_attrs["baseline"] for t in baseline_trials} == {"mobilenet", "shufflenet", "effnet"}
    for r in taus:  # the fidelity rows carry the search-time score of their trial
        trial = study.trials[r["trial"]]
        assert math.isclose(r["search_score"], trial.values[0])
        assert r["arch_id"] == trial.user_attrs["arch_id"]

    results = (out / "results.md").read_text()
    assert "| 1M | **archsearch**" in results and "Kendall tau" in results
    png = (out / "accuracy_vs_macs.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert "Kendall tau" in first

    # the second invocation trains nothing and searches no further
    stamps = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in rows_dir.glob("*.json")}
    n_trials = len(study.trials)
    assert bench.main([*TINY, "--out", str(out)]) == 0
    second = capsys.readouterr().out
    assert ": training " not in second and ": searching," not in second
    assert {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in rows_dir.glob("*.json")} == stamps
    assert len(optuna.load_study(study_name="fmnist_1m", storage=storage).trials) == n_trials
    assert (out / "results.md").read_text() == results

    # a process ended during a row loses only that row: the next run trains it, and nothing else
    (rows_dir / "searched-s1.json").unlink()
    assert bench.main([*TINY, "--out", str(out)]) == 0
    third = capsys.readouterr().out
    assert third.count(": training ") == 1 and ": training searched-s1 " in third
    again = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in rows_dir.glob("*.json")}
    assert {k: v for k, v in again.items() if k != "searched-s1.json"} == \
        {k: v for k, v in stamps.items() if k != "searched-s1.json"}
    # the same seed and recipe train the same network: the row comes back with the same accuracy
    assert json.loads((rows_dir / "searched-s1.json").read_text())["test_accuracy"] == \
        json.loads(stamps["searched-s1.json"][1])["test_accuracy"]


def test_other_settings_on_the_same_out_are_refused(tmp_path: Path) -> None:
    bench = _benchmark()
    out = tmp_path / "out"
    bench.check_settings(out, bench.settings_of(bench.parse_args(["--quick"])))
    with pytest.raises(SystemExit, match="epochs: 1 there, 4 now"):
        bench.check_settings(out, bench.settings_of(bench.parse_args([])))


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--levels", "2m"], "--levels: expected a comma-separated list of 1m, 3m, 10m, got '2m'"),
        (["--seeds", "0"], "--seeds: expected a positive integer, got 0"),
        (["--search-seconds", "nan"], "--search-seconds: expected a number of seconds > 0, got 'nan'"),
        (["--tau-archs", "1"], "--tau-archs: a rank correlation needs at least 2 architectures, got 1"),
        (["--quick", "--readme"], "--quick figures are only a smoke check"),
    ],
)
def test_bad_options_are_named(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        _benchmark().parse_args(argv)
    assert message in capsys.readouterr().err
