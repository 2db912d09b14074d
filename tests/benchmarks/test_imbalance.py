"""benchmarks.imbalance on folders of real Fashion-MNIST PNGs, at tiny sizes: each script writes its rows, a second
run trains nothing, and a row lost from the results file is trained again, and only it. Skipped where the
Fashion-MNIST IDX files are not installed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.imbalance import recipe, run
from benchmarks.imbalance.folder import FASHION, slug, write_folder

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not FASHION.is_dir(), reason=f"{FASHION} absent (Debian package dataset-fashion-mnist)"),
]


def _keys(path: Path) -> list[str]:
    return [json.loads(line)["row"] for line in path.read_text().splitlines()]


def _drop_last(path: Path) -> str:
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:-1]))
    return json.loads(lines[-1])["row"]


def test_folder_is_deterministic_and_kept(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    for root in (a, b):
        write_folder(root, ["Shirt", "Trouser"], [3, 1], [1, 2], seed=3)
    files = sorted(p.relative_to(a) for p in a.rglob("*.png"))
    assert [str(p) for p in files] == ["test/shirt/0001.png", "test/trouser/0001.png", "test/trouser/0002.png",
                                       "train/shirt/0001.png", "train/shirt/0002.png", "train/shirt/0003.png",
                                       "train/trouser/0001.png"]
    assert all((a / p).read_bytes() == (b / p).read_bytes() for p in files)
    mtime = (a / files[0]).stat().st_mtime_ns
    write_folder(a, ["Shirt", "Trouser"], [3, 1], [1, 2], seed=3)  # the same arguments: left as it is
    assert (a / files[0]).stat().st_mtime_ns == mtime
    assert slug("T-shirt/top") == "t-shirt-top"


def test_recipe_writes_rows_and_resumes(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("ARCHSEARCH_CACHE_DIR", str(tmp_path / "cache"))
    results = tmp_path / "recipe.jsonl"
    argv = ["--results", str(results), "--work", str(tmp_path / "work"), "--train-per-class", "6",
            "--test-per-class", "2", "--steps", "2", "--long", "3", "--choose-steps", "2", "--seeds", "0",
            "--families", "effnet"]
    recipe.main(argv)
    out = capsys.readouterr().out
    assert sorted(_keys(results)) == ["effnet/epochs4/bs64/seed0", "effnet/steps2/bs32/seed0",
                                      "effnet/steps3/bs32/seed0"]
    row = json.loads(results.read_text().splitlines()[0])
    assert row["n_train"] + row["n_val"] == 24 and row["n_test"] == 8 and row["steps"] == 2
    assert "3 new row(s)" in out and "The best seed baseline: effnet" in out
    recipe.main(argv)
    assert "0 new row(s)" in capsys.readouterr().out
    assert len(_keys(results)) == 3
    lost = _drop_last(results)
    recipe.main(argv)
    assert "1 new row(s)" in capsys.readouterr().out
    assert sorted(_keys(results)) == sorted([*_keys(results)[:2], lost])


def test_run_writes_rows_and_resumes(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("ARCHSEARCH_CACHE_DIR", str(tmp_path / "cache"))
    results = tmp_path / "results.jsonl"
    argv = ["--results", str(results), "--work", str(tmp_path / "work"), "--train", "8", "5", "4", "3",
            "--test", "2", "2", "2", "2", "--scores", "val_accuracy", "balanced_accuracy", "--options", "sampler",
            "--n-trials", "3", "--search-steps", "2", "--final-epochs", "1", "--seeds", "0"]
    run.main(argv)
    out = capsys.readouterr().out
    keys = _keys(results)
    assert [k for k in keys if k.startswith("search/")] == ["search/sampler/val_accuracy",
                                                          "search/sampler/balanced_accuracy"]
    finals = [json.loads(line) for line in results.read_text().splitlines() if '"final/' in line]
    assert finals and all(f["option"] == "sampler" and set(f["test_recall"]) ==
                          {"t-shirt-top", "trouser", "sneaker", "shirt"} for f in finals)
    assert len({f["row"] for f in finals}) == len(finals)  # a network two searches pick is trained once
    assert f"{len(keys)} new row(s)" in out and "rare class (shirt) recall" in out
    run.main(argv)
    assert "0 new row(s)" in capsys.readouterr().out
    assert _keys(results) == keys
    lost = _drop_last(results)
    run.main(argv)
    assert "1 new row(s)" in capsys.readouterr().out
    assert _keys(results)[-1] == lost
