"""What users already have keeps working: a study and an export made by the flat-layout archsearch (commit
e26a475, tests/data/before_layout/) resume and load with today's code: the same fingerprint, the baselines not
queued again, the re-rank results still read, the export loaded back and its model.py run."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import archsearch
from archsearch.config.study_config import load_study_config
from archsearch.search.study import open_study, run
from archsearch.study import rerank_results

BEFORE = Path(__file__).resolve().parents[1] / "data" / "before_layout"
pytestmark = pytest.mark.slow  # a search and a fresh process


def test_a_study_made_before_resumes(tmp_path: Path) -> None:
    for name in ("before.db", "before.yaml", "tiny_space.yaml"):
        shutil.copy(BEFORE / name, tmp_path / name)
    config = load_study_config(tmp_path / "before.yaml")
    study = open_study(config, create=False)  # the fingerprint written then is accepted now
    before = {t.number: (t.state, t.values, dict(t.user_attrs)) for t in study.trials}
    reranked = rerank_results.results(study, config)
    assert sorted(reranked) == [0, 1, 4]  # the re-rank results of then are read under their old keys
    # the study was finished: a run does nothing; asked for 7 trials, it trains 2 more and no baseline again
    assert len(run(config, stream=None, progress=False).trials) == len(before)
    study = run(config, n_trials=7, stream=None, progress=False)
    trials = study.get_trials(deepcopy=False)
    assert {t.number: (t.state, t.values, dict(t.user_attrs)) for t in trials if t.number in before} == before
    families = [t.user_attrs["baseline"] for t in trials if "baseline" in t.user_attrs]
    assert sorted(families) == sorted(set(families))  # each baseline once
    assert len(trials) - len(before) >= 2


def test_an_export_made_before_loads(tmp_path: Path) -> None:
    folder = shutil.copytree(BEFORE / "export_before", tmp_path / "export_before")
    net = archsearch.load(folder)
    raw = torch.randint(0, 17, (2, 1, 8, 8)).float()  # digits' raw range, as that export recorded it
    with torch.no_grad():
        logits = net(raw)
    assert logits.shape == (2, 10) and torch.isfinite(logits).all()
    assert json.loads((folder / "metrics.json").read_text())["arch_id"] == net.net.arch.id
    proc = subprocess.run([sys.executable, str(folder / "model.py")], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0 and "logits shape (1, 10)" in proc.stdout, proc.stderr
