"""benchmarks.fashion_mnist end to end on the real Fashion-MNIST files, at tiny sizes.

One level (1 M MACs): 5 trials of each search (TPE and random, the 3 baselines among them) with a 1-epoch proxy
on 200 images, a re-rank of the best candidate and the baselines, the final recipe on 150 images (1 epoch, 2
seeds) scored on the first 250 test images, the long rows (2 epochs) and the anytime checkpoints at the same
level. The second invocation must train nothing; a row lost from the results file is trained again, and only it;
``--readme`` on a copy of the results file regenerates a README section without training. Skipped only where the
Fashion-MNIST IDX files are not installed.
"""

from __future__ import annotations

import json
import shlex
import shutil
from pathlib import Path

import optuna
import pytest
import torch
from conftest import Killed, killed_after_first_epoch
from optuna.trial import TrialState

from archsearch.search import rerank
from archsearch.search.study import open_study
from archsearch.study import rerank_results
from archsearch.study.storage import make_storage
from benchmarks.fashion_mnist import level as level_module
from benchmarks.fashion_mnist import run as fashion_mnist
from benchmarks.fashion_mnist.search import search_record, study_digest
from benchmarks.rerank_fidelity import run as rerank_fidelity

ROOT = Path(__file__).resolve().parents[2]
FASHION = Path("/usr/share/datasets/fashion-mnist")
FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")

pytestmark = pytest.mark.skipif(
    not all((FASHION / f).exists() or (FASHION / f"{f}.gz").exists() for f in FILES),
    reason=f"Fashion-MNIST IDX files not found in {FASHION} (Debian package dataset-fashion-mnist)",
)

TINY = ["--quick", "--levels", "1m", "--threads", "1", "--search-trials", "5", "--search-subset", "200",
        "--train-subset", "150", "--seeds", "2", "--eval-limit", "250"]


def _lines(path: Path) -> dict[str, dict]:
    entries = [json.loads(line) for line in path.read_text().splitlines()]
    return {e["key"]: e for e in entries if e.get("kind") != "run"}


@pytest.mark.slow  # searches and trainings: a minute
def test_pipeline_appends_rows_resumes_and_regenerates_readme(tmp_path: Path, capsys, monkeypatch) -> None:
    bench = fashion_mnist
    results, work = tmp_path / "results.jsonl", tmp_path / "work"
    argv = [*TINY, "--results", str(results), "--work", str(work)]
    assert bench.main(argv) == 0
    capsys.readouterr()

    done = _lines(results)
    rows = {k: v for k, v in done.items() if k.startswith("row/")}
    families = ("mobilenet", "shufflenet", "effnet")
    expected = {f"row/1m/baseline/{f}/e1/s{s}" for f in families for s in (0, 1)}
    expected |= {f"row/1m/searched/{f}/e1/s{s}" for f in ("archsearch", "random") for s in (0, 1)}
    expected |= {f"row/1m/long/archsearch/e2/s{s}" for s in (0, 1)}
    assert expected <= set(rows)
    assert sum(k.startswith("row/1m/long/") for k in rows) == 4  # archsearch and the best baseline, 2 seeds each
    for key, r in rows.items():
        assert 0.0 <= r["test_accuracy"] <= 1.0, key
        assert r["n_test"] == 250 and r["trained_on"] == 150, key
        assert 0 < r["macs"] <= 1_000_000, key
        assert r["params"] > 0 and r["latency_ms"] > 0, key
    # each search: its network is its best searched candidate by the re-rank, and the rows retrain it
    for sampler, family in (("tpe", "archsearch"), ("random", "random")):
        search = done[f"search/1m/{sampler}"]
        assert search["best"]["baseline"] is None and search["best"]["rerank"] is not None
        assert rows[f"row/1m/searched/{family}/e1/s0"]["arch_id"] == search["best"]["arch_id"]
        name = "fmnist_1m" if sampler == "tpe" else "fmnist_1m-random"
        journal = work / "studies" / "1m" / f"{sampler}.journal"  # --quick: the journal files in the work folder
        study = optuna.load_study(study_name=name, storage=make_storage(f"journal:{journal}", create=False))
        counted = [t for t in study.trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
        assert len(counted) == 5 and search["curve"] and search["spent_seconds"] > 0
        # the checkpoints: after 1/4 and 1/2 of the 2 searched trials (ceil: 1 each), with the time by then
        assert [c["fraction"] for c in search["checkpoints"]] == [0.25, 0.5]
        assert 0 < search["checkpoints"][0]["seconds"] <= search["checkpoints"][1]["seconds"] <= search["spent_seconds"]
        assert {t.user_attrs["baseline"] for t in study.trials if "baseline" in t.user_attrs} == set(families)
        assert all("fit" in t.user_attrs for t in study.trials if "baseline" not in t.user_attrs)
        assert search["best"]["number"] in {int(n) for n in search["reranked"]}
    assert done["settings"]["epochs"] == 1

    # benchmarks.rerank_fidelity re-ranks the finished TPE search again with another recipe, on a copy of its
    # journal (never written), side by side with its own re-rank; a rerun resumes and trains nothing
    rf = rerank_fidelity
    journal = work / "studies" / "1m" / "tpe.journal"
    before_journal = journal.read_bytes()
    rf_argv = ["--level", "1m", "--epochs", "1", "--images", "200", "--results", str(results),
               "--studies", str(work / "studies"), "--out", str(tmp_path / "rf")]
    assert rf.main(rf_argv) == 0
    first_rf = capsys.readouterr().out
    record = json.loads((tmp_path / "rf" / "1m-tpe-e1-n200.json").read_text())
    assert set(record["reranked"]) == set(done["search/1m/tpe"]["reranked"])  # the same candidates
    assert record["shipped_pick"] == done["search/1m/tpe"]["best"]["number"]
    assert first_rf.count("re-rank trial") == len(record["reranked"]) and journal.read_bytes() == before_journal
    assert rf.main(rf_argv) == 0
    assert "re-rank trial" not in capsys.readouterr().out

    # the second invocation trains nothing and searches no further
    before = results.read_text()
    assert bench.main(argv) == 0
    second = capsys.readouterr().out
    assert ": training " not in second and ": searching," not in second
    after = results.read_text()
    assert after.startswith(before) and all('"kind": "run"' in line for line in after[len(before):].splitlines())

    # a process ended during a row loses only that row: the next run trains it, and nothing else
    lost = "row/1m/baseline/mobilenet/e1/s1"  # no other row trains its network with its seed
    kept = [line for line in results.read_text().splitlines() if json.loads(line)["key"] != lost]
    results.write_text("\n".join(kept) + "\n")
    assert bench.main(argv) == 0
    third = capsys.readouterr().out
    assert third.count(": training ") == 1 and f": training {lost} " in third
    again = _lines(results)
    assert again[lost]["test_accuracy"] == rows[lost]["test_accuracy"]  # same seed and recipe, same network

    # a process killed after a row's first epoch: the next run resumes that row from its checkpoint (saved beside
    # the journals), and ends with the network the uninterrupted run made
    lost = "row/1m/long/archsearch/e2/s1"
    kept = [line for line in results.read_text().splitlines() if json.loads(line)["key"] != lost]
    results.write_text("\n".join(kept) + "\n")
    monkeypatch.setattr(level_module, "train", killed_after_first_epoch(level_module.train))
    with pytest.raises(Killed):
        bench.main(argv)
    monkeypatch.undo()
    capsys.readouterr()
    ckpt = work / "studies" / "1m" / "rows-in-training" / (lost.replace("/", "_") + ".pt")
    assert ckpt.exists() and ckpt.with_suffix(".json").exists() and lost not in _lines(results)
    assert bench.main(argv) == 0
    fourth = capsys.readouterr().out
    assert fourth.count(": training ") == 1 and f": training {lost} " in fourth
    resumed = _lines(results)[lost]
    assert resumed["resumed_epochs"] == 1 and resumed["epochs"] == 2 and len(resumed["segments"]) == 2
    assert resumed["test_accuracy"] == rows[lost]["test_accuracy"]
    assert not ckpt.exists() and not ckpt.with_suffix(".json").exists()

    # a search recorded for another study (here: its digest changed) is refused, not reused for this one's rows
    lines = results.read_text().splitlines()
    tampered = [json.dumps({**json.loads(line), "study": "0" * 16}) if json.loads(line)["key"] == "search/1m/tpe"
                else line for line in lines]
    results.write_text("\n".join(tampered) + "\n")
    with pytest.raises(SystemExit, match="search/1m/tpe in .* was searched with another study"):
        bench.main(argv)
    # a row of another network than the one its key names now (e.g. the baselines' scaling changed): refused
    tampered = [json.dumps({**json.loads(line), "arch_id": "i1x28-n10_stem-conv-c8_gap"})
                if json.loads(line)["key"] == "row/1m/baseline/effnet/e1/s0" else line for line in lines]
    results.write_text("\n".join(tampered) + "\n")
    with pytest.raises(SystemExit, match="row/1m/baseline/effnet/e1/s0 trained i1x28-n10_stem-conv-c8_gap, but "
                                         "that row is now i1x28-n10_stem-effnet"):
        bench.main(argv)
    results.write_text("\n".join(lines) + "\n")

    # --readme regenerates the section from a copy of the results file alone
    copy_dir = tmp_path / "copy"
    (copy_dir / "benchmarks").mkdir(parents=True)
    shutil.copy(results, copy_dir / "results.jsonl")
    readme = copy_dir / "README.md"
    readme.write_text("# x\n\n<!-- fashion-mnist-benchmark:start -->\nold\n<!-- fashion-mnist-benchmark:end -->\nend\n")
    assert bench.main(["--readme", "--results", str(copy_dir / "results.jsonl"), "--work", str(tmp_path / "w2"),
                       "--readme-file", str(readme)]) == 0
    out = capsys.readouterr().out
    assert ": training " not in out
    text = readme.read_text()
    assert "old" not in text and text.endswith("<!-- fashion-mnist-benchmark:end -->\nend\n")
    assert "| 1M | **archsearch** (trial" in text and "random search (trial" in text and "vs random search" in text
    for png in ("accuracy_vs_macs.png", "anytime.png"):
        assert (copy_dir / "benchmarks" / "fashion_mnist" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not (tmp_path / "w2" / "studies").exists()  # no study was opened


def test_other_settings_on_the_same_results_file_are_refused(tmp_path: Path) -> None:
    bench = fashion_mnist
    results = bench.Results(tmp_path / "r.jsonl")
    bench.check_settings(results, bench.settings_of(bench.parse_args(["--quick"])))
    bench.check_settings(results, bench.settings_of(bench.parse_args(["--quick"])))  # the same: accepted
    with pytest.raises(SystemExit, match="epochs: 1 there, 8 now"):
        bench.check_settings(results, bench.settings_of(bench.parse_args([])))


def test_head_hidden_widths_join_the_searched_space_and_the_settings(tmp_path: Path) -> None:
    bench = fashion_mnist
    settings = bench.settings_of(bench.parse_args(["--head-hidden", "0,64,128"]))
    assert settings.head_hidden == (0, 64, 128)
    level = bench.Level("1m", tmp_path / "w", tmp_path / "s", bench.Results(tmp_path / "r.jsonl"), settings)
    for sampler in ("tpe", "random"):
        space = level.config(sampler).load_space()
        assert space.head_hidden == (0, 64, 128) and space.resolution_mult == (1.0,)  # the study's own override kept
    plain = bench.Level("1m", tmp_path / "w", tmp_path / "s", bench.Results(tmp_path / "r.jsonl"), bench.FULL)
    assert plain.config("tpe").load_space().head_hidden == (0,)
    # a results file made before the setting existed has no such key: it still matches the default
    results = bench.Results(tmp_path / "old.jsonl")
    stored = json.loads(json.dumps(bench.dataclasses.asdict(bench.FULL)))
    del stored["head_hidden"]
    results.add({"key": "settings", **stored})
    bench.check_settings(results, bench.FULL)
    with pytest.raises(SystemExit, match=r"head_hidden: None there, \[0, 64, 128\] now"):
        bench.check_settings(results, settings)


def test_space_file_replaces_the_studys_space_and_joins_the_settings(tmp_path: Path) -> None:
    bench = fashion_mnist
    deep = "benchmarks/fashion_mnist/1m_deep/space.yaml"
    settings = bench.settings_of(bench.parse_args(["--space", str(bench.ROOT / deep)]))
    assert settings.space == deep  # stored relative to the checkout, so a results file moves with it
    level = bench.Level("1m", tmp_path / "w", tmp_path / "s", bench.Results(tmp_path / "r.jsonl"), settings)
    for sampler in ("tpe", "random"):
        space = level.config(sampler).load_space()
        assert space.name == "mixed-deep" and space.resolution_mult == (1.0,)  # the study's override kept
        assert max(space.stages[1].depth) == 6
    plain = bench.Level("1m", tmp_path / "w", tmp_path / "s", bench.Results(tmp_path / "r.jsonl"), bench.FULL)
    assert plain.config("tpe").load_space().name == "mixed"
    assert plain.config("tpe").fingerprint() != level.config("tpe").fingerprint()  # another study, other journals
    with pytest.raises(SystemExit):
        bench.parse_args(["--space", str(tmp_path / "missing.yaml")])
    bad = tmp_path / "bad.yaml"
    bad.write_text((bench.ROOT / deep).read_text().replace("depth: [1, 2, 4, 6]", "depth: [1, -2]", 1))
    broken = bench.settings_of(bench.parse_args(["--space", str(bad)]))
    with pytest.raises(SystemExit, match=r"--space: .*bad\.yaml.*depth"):
        bench.Level("1m", tmp_path / "w", tmp_path / "s", bench.Results(tmp_path / "r.jsonl"), broken)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--levels", "2m"], "--levels: expected a comma-separated list of 1m, 3m, 10m, got '2m'"),
        (["--parts", "search,tau"], "--parts: expected a comma-separated list of search, rows, long, anytime"),
        (["--seeds", "0"], "--seeds: expected a positive integer, got 0"),
        (["--search-trials", "0"], "--search-trials: expected a positive integer, got 0"),
        (["--quick", "--readme"], "--quick figures are only a smoke check"),
        (["--head-hidden", "0,64,x"], "--head-hidden: expected comma-separated integers such as 0,64,128"),
        (["--head-hidden", "0,-64"], "--head-hidden: expected distinct integers >= 0, got '0,-64'"),
        (["--rerank-folds", "1"], "--rerank-folds: expected an integer from 2 to 20, got '1'"),
        (["--rerank-folds", "x"], "--rerank-folds: expected an integer from 2 to 20, got 'x'"),
    ],
)
def test_bad_options_are_named(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        fashion_mnist.parse_args(argv)
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("device", ["tpu", "cuda:7"])
def test_a_device_that_is_not_here_is_named_before_anything_runs(device: str, tmp_path: Path) -> None:
    if device.startswith("cuda") and torch.cuda.device_count() > 7:
        pytest.skip("this machine has a cuda:7")
    with pytest.raises(SystemExit, match=f"--device: device (must be|{device!r})"):
        fashion_mnist.main(["--quick", "--device", device, "--results", str(tmp_path / "r.jsonl"),
                           "--work", str(tmp_path / "w")])
    assert not (tmp_path / "r.jsonl").exists()


FOLDS_PICK = ROOT / "benchmarks" / "fashion_mnist" / "folds_pick"


def _readme_command(folder: Path) -> list[str]:
    """The options of the ``python -m benchmarks.fashion_mnist.run`` command in ``folder``'s README."""
    lines = [line for line in (folder / "README.md").read_text().splitlines()
             if line.startswith("python -m benchmarks.fashion_mnist.run ")]
    assert len(lines) == 1, lines
    return shlex.split(lines[0])[3:]


def test_rerank_folds_reranks_copies_of_the_finished_1m_and_10m_searches(tmp_path: Path) -> None:
    bench = fashion_mnist
    args = bench.parse_args(_readme_command(FOLDS_PICK))
    settings = bench.settings_of(args)
    assert settings == bench.dataclasses.replace(bench.FULL, rerank_folds=3) and args.threads == 1
    assert args.levels == ["1m", "10m"] and args.parts == ["search", "rows"]
    # its own results file, which the command's settings match (its first line), holding the main file's 1M and
    # 10M baseline rows as they are there
    results = bench.Results((ROOT / args.results).resolve())
    assert results.path == FOLDS_PICK / "results.jsonl" != bench.RESULTS
    assert next(iter(results.read())) == "settings"
    bench.check_settings(results, settings, store=False)
    main = bench.Results(bench.RESULTS).read()
    baselines = {k: v for k, v in results.read().items() if v.get("kind") == "baseline"}
    assert len(baselines) == 18 and all(main[k] == v for k, v in baselines.items())
    assert {v["level"] for v in baselines.values()} == {"1m", "10m"}
    # the study: the level's, re-ranked by 3 folds, on copies of the main benchmark's journals
    studies = (ROOT / args.studies).resolve()
    assert studies == FOLDS_PICK / "studies" != bench.STUDIES_DIR
    for name in ("1m", "10m"):
        level = bench.Level(name, tmp_path / "w", studies, results, settings)
        plain = bench.Level(name, tmp_path / "w", bench.STUDIES_DIR, bench.Results(bench.RESULTS), bench.FULL)
        for sampler in ("tpe", "random"):
            config, before = level.config(sampler), plain.config(sampler)
            assert config.rerank == bench.dataclasses.replace(before.rerank, folds=3)
            assert (config.rerank.top, config.rerank.epochs, config.rerank.train_subset) == (5, 2, 30000)
            assert config.fingerprint() == before.fingerprint()  # the same trials ...
            if before.rerank.folds is None:
                assert study_digest(config) != study_digest(before)  # ... another pick
            else:  # the YAML says 3 folds since the experiment's searches moved into the main file (supersede.py)
                assert main[f"search/{name}/{sampler}"]["moved_from"] == "folds_pick/results.jsonl"
            journal = studies / name / f"{sampler}.journal"
            assert config.storage == f"journal:{journal}"
            main_journal = bench.STUDIES_DIR / name / f"{sampler}.journal"
            assert journal.read_bytes().startswith(main_journal.read_bytes())  # a copy, appended to by the re-rank


def test_the_search_record_picks_among_candidates_within_the_noise_by_fewer_macs(tmp_path: Path) -> None:
    bench = fashion_mnist
    shutil.copytree(bench.STUDIES_DIR / "1m", tmp_path / "s" / "1m")  # the main 1M TPE search, on a copy
    results = bench.Results(tmp_path / "r.jsonl")
    config = bench.Level("1m", tmp_path / "w", tmp_path / "s", results,
                         bench.dataclasses.replace(bench.FULL, rerank_folds=3)).config("tpe")
    plain = bench.dataclasses.replace(config, rerank=bench.dataclasses.replace(config.rerank, folds=None))
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = open_study(bench.dataclasses.replace(config, rerank=None), create=False)
    # trial 11 best by 0.002, trial 21 (fewer MACs) close behind, the others clear of both
    folds = {11: [0.858, 0.862, 0.860], 21: [0.855, 0.861, 0.858]}

    def reranked(cfg, with_folds: bool) -> None:
        for t in rerank.candidates(study, 5):
            values = folds.get(t.number, [0.80, 0.80, 0.80])
            result = {"val_accuracy": sum(values) / 3, "value": sum(values) / 3, "epochs": 2, "seconds": 1.0,
                      "recipe": rerank_results.recipe_key(cfg)}
            study.set_user_attr(f"{rerank_results.PREFIX}{t.number}",
                                {**result, "folds": values, "fold_values": values} if with_folds else result)

    # one training a candidate (the main run's first re-rank): the best mean, its noise unknown
    reranked(plain, with_folds=False)
    record = search_record(study, plain, level="1m", sampler="tpe", budget=30)
    assert record["best"]["number"] == 11 and record["pick"] == {"tied": [11], "by": None}
    assert set(record["reranked_se"].values()) == {None}
    # 3 folds: trial 21 is within the noise of trial 11, and has fewer MACs
    reranked(config, with_folds=True)
    record = search_record(study, config, level="1m", sampler="tpe", budget=30)
    assert record["best"]["number"] == 21 and record["pick"] == {"tied": [11, 21], "by": "MACs"}
    assert record["export_pick"] == 21 and record["reranked_se"]["11"] == pytest.approx(0.002 / 3 ** 0.5)
    # the main file's first 1M search record, re-ranked once, superseded by the 3-fold re-rank (supersede.py)
    main = next(v for k, v in bench.Results(bench.RESULTS).read().items()
                if k.startswith("superseded/") and k.endswith("/search/1m/tpe"))
    assert record["study"] == study_digest(config) != main["study"] == study_digest(plain)
