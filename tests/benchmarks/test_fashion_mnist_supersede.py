"""benchmarks.fashion_mnist.supersede on copies of the committed results: the folds_pick experiment's 1M searches
and rows brought into the main file, the main file's own kept as superseded, and the main file then resuming with
nothing to train; every refusal writes nothing.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from benchmarks.fashion_mnist import level as level_module
from benchmarks.fashion_mnist import run as fashion_mnist
from benchmarks.fashion_mnist import supersede

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "benchmarks" / "fashion_mnist"
WHY = "the 3-fold re-rank and the noise-aware pick, issue #36"


EXP = "folds_pick/results.jsonl"  # the experiment's results file, relative to the main one


def _before(path: Path) -> str:
    """The main results file as it was before the experiment's 1M searches were brought in: itself until they are;
    after, without what moved in and with the superseded entries as they were."""
    out = []
    for e in map(json.loads, path.read_text().splitlines()):
        if e.get("level") == "1m" and e.get("moved_from") == EXP:
            continue
        if e.get("level") == "1m" and e.get("superseded_by") == EXP:
            e = {k: v for k, v in e.items() if k not in ("superseded", "superseded_by")}
            e.update(key=e["key"].split("/", 2)[2], kind=e["kind"].removeprefix("superseded-"))
        out.append(json.dumps(e, sort_keys=True) + "\n")
    return "".join(out)


def _rerank(yaml: Path, folds: int | None) -> None:
    """The study's re-rank line, with ``folds`` (or without: one training a candidate)."""
    line = "rerank: {top: 5, epochs: 2, train_subset: 30000" + (f", folds: {folds}" if folds else "") + "}"
    text, n = re.subn(r"(?m)^rerank: .*$", line, yaml.read_text())
    assert n == 1
    yaml.write_text(text)


@pytest.fixture()
def copies(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """The main results (as before the move) and 1M journals, folds_pick's beside them, and the study YAMLs with
    one re-rank training: copies; the benchmark reads the YAMLs from the copy."""
    main = tmp_path / "main"
    (main / "studies").mkdir(parents=True)
    (main / "results.jsonl").write_text(_before(BENCH / "results.jsonl"))
    shutil.copytree(BENCH / "studies" / "1m", main / "studies" / "1m")
    (main / "folds_pick").mkdir()
    shutil.copy(BENCH / EXP, main / EXP)
    shutil.copytree(BENCH / "folds_pick" / "studies" / "1m", main / "folds_pick" / "studies" / "1m")
    shutil.copytree(ROOT / "studies", tmp_path / "yaml" / "studies")
    shutil.copytree(ROOT / "search_spaces", tmp_path / "yaml" / "search_spaces")
    _rerank(tmp_path / "yaml" / "studies" / "fmnist_1m.yaml", None)
    monkeypatch.setattr(level_module, "STUDIES", tmp_path / "yaml" / "studies")
    return {"main": main / "results.jsonl", "studies": main / "studies", "exp": main / EXP,
            "exp_studies": main / "folds_pick" / "studies", "yaml": tmp_path / "yaml" / "studies" / "fmnist_1m.yaml",
            "work": tmp_path / "work"}


def _argv(c: dict[str, Path], why: str = WHY) -> list[str]:
    return ["--from", str(c["exp"]), "--from-studies", str(c["exp_studies"]), "--levels", "1m", "--why", why,
            "--results", str(c["main"]), "--studies", str(c["studies"])]


def _snapshot(c: dict[str, Path]) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in [c["main"], *sorted(c["studies"].rglob("*.journal"))]}


@pytest.mark.slow  # the benchmark resumed on copies: a second
def test_an_experiments_searches_replace_the_main_files_and_it_resumes_with_nothing_to_train(
        copies: dict[str, Path], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    c = copies
    before = {e["key"]: e for e in map(json.loads, c["main"].read_text().splitlines())}
    theirs = {e["key"]: e for e in map(json.loads, c["exp"].read_text().splitlines())}
    _rerank(c["yaml"], 3)  # the study now says what the experiment ran with
    assert supersede.main(_argv(c)) == 0
    assert "8 entries superseded, 8 moved in" in capsys.readouterr().out
    after = {e["key"]: e for e in map(json.loads, c["main"].read_text().splitlines())}
    moved = [k for k in theirs if re.fullmatch(r"(search/1m/\w+|row/1m/searched/\w+/e8/s\d)", k)]
    assert len(moved) == 8
    for key in moved:
        assert after[key] == {**theirs[key], "moved_from": EXP}
        old = next(v for k, v in after.items() if k.startswith("superseded/") and k.endswith("/" + key))
        assert old["kind"] == "superseded-" + before[key]["kind"] and old["superseded"] == WHY
        assert {k: v for k, v in old.items() if k not in ("key", "kind", "superseded", "superseded_by")} \
            == {k: v for k, v in before[key].items() if k not in ("key", "kind")}  # kept whole
    untouched = [k for k in before if k not in moved]
    assert all(after[k] == before[k] for k in untouched)  # baselines, other levels, runs: as they were
    committed = [e for e in map(json.loads, (BENCH / "results.jsonl").read_text().splitlines())]
    if any(e.get("moved_from") == EXP and e.get("level") == "1m" for e in committed):  # the move made in the repo
        def undated(e: dict) -> dict:
            return {**e, "key": re.sub(r"^superseded/[0-9-]+/", "superseded/", e["key"])}
        made = [undated(e) for e in map(json.loads, c["main"].read_text().splitlines()) if e.get("level") == "1m"]
        assert made == [undated(e) for e in committed if e.get("level") == "1m"]
    for sampler in ("tpe", "random"):  # the longer journal replaced the main one
        journal = f"1m/{sampler}.journal"
        assert (c["studies"] / journal).read_bytes() == (c["exp_studies"] / journal).read_bytes()

    # the main file resumes with the YAML as it is now: its 1M searches and rows are done, nothing trains
    def no_training(*args, **kwargs):
        raise AssertionError("a row trained")
    monkeypatch.setattr(level_module, "final_train", no_training)
    assert fashion_mnist.main(["--levels", "1m", "--parts", "search,rows", "--threads", "1", "--results",
                               str(c["main"]), "--studies", str(c["studies"]), "--work", str(c["work"])]) == 0
    out = capsys.readouterr().out
    assert f"- 1M, superseded ({WHY}): archsearch (trial 11) 90.58 ± 0.26%, random search (trial 13) 91.14" in out
    assert re.search(r"\| 1M \| \*\*archsearch\*\* \(trial 21\) \| 8 \| 90\.87 ± 0\.52 % \|", out)
    table = [line for line in out.splitlines() if line.startswith("| 1M |")]  # the superseded rows are not in it
    assert len(table) == 5 and not any("(trial 11)" in line or "(trial 13)" in line for line in table)

    # once only; nothing written by the refusal
    snap = _snapshot(c)
    with pytest.raises(SystemExit, match="already holds .*searches at 1m"):
        supersede.main(_argv(c, "again"))
    assert _snapshot(c) == snap


def test_refusals_name_what_is_wrong_and_write_nothing(copies: dict[str, Path]) -> None:
    c = copies
    snap = _snapshot(c)
    # the YAML still says one re-rank training: the main file could not resume with the experiment's searches
    with pytest.raises(SystemExit, match=r"search/1m/tpe in .* was not searched with what studies/fmnist_1m\.yaml"):
        supersede.main(_argv(c))
    _rerank(c["yaml"], 2)
    with pytest.raises(SystemExit, match="was not searched with what"):
        supersede.main(_argv(c))
    assert _snapshot(c) == snap
    _rerank(c["yaml"], 3)
    # a main journal that is not a prefix of the experiment's: its trials would be lost
    journal = c["studies"] / "1m" / "random.journal"
    journal.write_bytes(journal.read_bytes() + b'{"op_code": 0}\n')
    snap = _snapshot(c)
    with pytest.raises(SystemExit, match=r"random\.journal is not a prefix of .*replacing it would lose trials"):
        supersede.main(_argv(c))
    assert _snapshot(c) == snap
    # the experiment's journals not where --from-studies says
    with pytest.raises(SystemExit, match=r"no such journal \(--from-studies names"):
        supersede.main([*_argv(c)[:3], str(c["exp_studies"].parent), *_argv(c)[4:]])
    assert _snapshot(c) == snap
    # rows made with other settings are not comparable
    lines = c["exp"].read_text().splitlines()
    settings = json.loads(lines[0])
    lines[0] = json.dumps({**settings, "epochs": 30})
    c["exp"].write_text("\n".join(lines) + "\n")
    with pytest.raises(SystemExit, match=r"other settings .*\(epochs\)"):
        supersede.main(_argv(c))
    assert _snapshot(c) == snap
    # a level the experiment has not searched
    with pytest.raises(SystemExit) as e:
        supersede.main([*_argv(c)[:4], "--levels", "2m", *_argv(c)[6:]])
    assert e.value.code == 2

