"""What users already have keeps working: studies and exports made by the flat-layout archsearch (commit e26a475,
tests/data/before_layout/) and by the one before `search/` was split in three (commit 44f7404,
tests/data/before_three_layers/) resume and load with today's code: the same fingerprint, the baselines not
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

DATA = Path(__file__).resolve().parents[1] / "data"
BEFORE = DATA / "before_layout"
# (folder, study file, export folder, the trials the re-rank of then trained again)
MADE_BEFORE = [
    pytest.param(BEFORE, "before.yaml", "export_before", [0, 1, 4], id="flat-layout"),
    pytest.param(DATA / "before_three_layers", "before_layers.yaml", "export_before_layers", [0, 1, 3],
                 id="before-three-layers"),
]
pytestmark = pytest.mark.slow  # a search and a fresh process


@pytest.mark.parametrize(("folder", "study_file", "export", "reranked_then"), MADE_BEFORE)
def test_a_study_made_before_resumes(folder: Path, study_file: str, export: str, reranked_then: list[int],
                                     tmp_path: Path) -> None:
    for file in folder.iterdir():
        if file.is_file() and file.suffix in (".db", ".yaml"):
            shutil.copy(file, tmp_path / file.name)
    config = load_study_config(tmp_path / study_file)
    study = open_study(config, create=False)  # the fingerprint written then is accepted now
    before = {t.number: (t.state, t.values, dict(t.user_attrs)) for t in study.trials}
    reranked = rerank_results.results(study, config)
    assert sorted(reranked) == reranked_then  # the re-rank results of then are read under their old keys
    # the study was finished: a run does nothing; asked for 7 trials, it trains 2 more and no baseline again
    assert len(run(config, stream=None, progress=False).trials) == len(before)
    study = run(config, n_trials=7, stream=None, progress=False)
    trials = study.get_trials(deepcopy=False)
    assert {t.number: (t.state, t.values, dict(t.user_attrs)) for t in trials if t.number in before} == before
    families = [t.user_attrs["baseline"] for t in trials if "baseline" in t.user_attrs]
    assert sorted(families) == sorted(set(families))  # each baseline once
    assert len(trials) - len(before) >= 2


@pytest.mark.parametrize(("made_in", "study_file", "export", "reranked_then"), MADE_BEFORE)
def test_an_export_made_before_loads(made_in: Path, study_file: str, export: str, reranked_then: list[int],
                                     tmp_path: Path) -> None:
    folder = shutil.copytree(made_in / export, tmp_path / export)
    net = archsearch.load(folder)
    raw = torch.randint(0, 17, (2, 1, 8, 8)).float()  # digits' raw range, as that export recorded it
    with torch.no_grad():
        logits = net(raw)
    assert logits.shape == (2, 10) and torch.isfinite(logits).all()
    assert json.loads((folder / "metrics.json").read_text())["arch_id"] == net.net.arch.id
    proc = subprocess.run([sys.executable, str(folder / "model.py")], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0 and "logits shape (1, 10)" in proc.stdout, proc.stderr
