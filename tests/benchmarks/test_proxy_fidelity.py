"""benchmarks.proxy_fidelity: its committed rows belong to the architectures the code draws today, and the
table is made from them alone (``--table`` trains nothing); a row of another architecture is refused, naming
the file. Training itself is ``archsearch.training.train`` and the benchmark's final recipe, tested elsewhere; the
script's ``--quick`` run (about 3 minutes) is left out of the suite for time.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from benchmarks.proxy_fidelity import run as proxy_fidelity

ROOT = Path(__file__).resolve().parents[2]
ROWS = ROOT / "benchmarks" / "proxy_fidelity"


@pytest.fixture(scope="module")
def proxy():
    return proxy_fidelity


def test_committed_rows_are_of_todays_architectures(proxy) -> None:
    archs = proxy.architectures(proxy.FULL.archs)
    assert len(archs) == proxy.FULL.archs == len({a.id for a in archs})
    rows = [json.loads(p.read_text()) for p in sorted(ROWS.glob("a*.json"))]
    assert rows, f"no rows in {ROWS}"
    for row in rows:
        assert row["arch_id"] == archs[row["arch"]].id, row
    for arch in archs:  # fitted as a search fits them: within the study's budget
        assert proxy.arch_cost(arch).macs <= 3_000_000


@pytest.mark.slow  # the table of every committed row, with bootstrap intervals: seconds
def test_table_from_the_committed_rows_alone(proxy, capsys) -> None:
    before = sorted(p.name for p in ROWS.iterdir())
    assert proxy.main(["--table"]) == 0
    out = capsys.readouterr().out
    assert sorted(p.name for p in ROWS.iterdir()) == before  # nothing trained, nothing written
    done = int(re.search(r"\((\d+) of 24 done\)", out).group(1))
    assert done == sum(1 for p in ROWS.glob("a*-reference.json"))
    for recipe in (*proxy.FULL.recipes, proxy.SCHEDULE):
        if len(list(ROWS.glob(f"a*-{recipe}.json"))) < 3:  # a recipe added since, still running: no tau yet
            continue
        line = next(line for line in out.splitlines() if line.startswith(f"| {recipe} |"))
        tau = float(re.search(r"\| (-?[01]\.\d{3}) \(", line).group(1))
        assert -1.0 <= tau <= 1.0, line
    assert "| reference | 8 x all | 1 |" in out
    # issue #36's score table: tau with its bootstrap interval, Spearman and the top-5 overlap per score
    score = next(line for line in out.splitlines() if line.startswith("| e2-n10k | val accuracy (final) |"))
    tau, lo, hi = map(float, re.search(r"\| (-?\d\.\d{3}) \[(-?\d\.\d\d), (-?\d\.\d\d)\] \|", score).groups())
    assert lo <= tau <= hi and re.search(r"\| \d of 5 \| 24 \|", score), score


@pytest.mark.slow  # draws the architectures: a second
def test_a_row_of_another_architecture_is_refused(proxy, tmp_path: Path) -> None:
    row = json.loads((ROWS / "a00-e2-n10k.json").read_text())
    shutil.copy(ROWS / "a01-e2-n10k.json", tmp_path / "a01-e2-n10k.json")
    (tmp_path / "a00-e2-n10k.json").write_text(json.dumps({**row, "arch_id": "i1x28-n10_stem-conv-c8_gap"}))
    with pytest.raises(SystemExit, match=r"a00-e2-n10k\.json: a row of 'i1x28-n10_stem-conv-c8_gap', but "
                                         r"architecture 0 is now i1x28"):
        proxy.main(["--table", "--out", str(tmp_path)])
