"""A full disk under an export: the command stops with one line naming the place and saying the same command
resumes, and leaves no half-written export folder. A real file system that fills: a small tmpfs (root only)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import DIGITS

from archsearch.config.study_config import load_study_config
from archsearch.search.study import run
from tests.faults import tmpfs

pytestmark = pytest.mark.slow


@pytest.fixture
def small_disk(tmp_path: Path):
    """A 2 MiB tmpfs mounted at ``tmp_path / "disk"`` (skipped where this process may not mount one)."""
    with tmpfs(tmp_path / "disk", "2m") as disk:
        yield disk


def test_an_export_onto_a_full_disk_says_so_in_one_line_and_leaves_no_half_folder(write_study, tmp_path: Path,
                                                                                     small_disk: Path) -> None:
    path = write_study(dataset=DIGITS, training={"epochs": 1, "batch_size": 32}, n_trials=1,
                       budget={"max_macs": 300000})
    run(load_study_config(path), stream=None, progress=False)
    filler = small_disk / "filler"
    filler.write_bytes(b"\0" * (1950 * 1024))  # what is left cannot hold the export's files
    out = small_disk / "best"
    proc = subprocess.run([sys.executable, "-m", "archsearch.cli", "export", str(path), "--out", str(out),
                           "--no-onnx"], cwd=tmp_path, capture_output=True, text=True, timeout=900,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    [line] = [line for line in proc.stderr.splitlines() if line.startswith("archsearch:")]
    assert f"no space left on the device of {small_disk}" in line and "run the same command to resume" in line
    assert sorted(p.name for p in small_disk.iterdir()) in (["filler"], [".best.trial-0.train.pt", "filler"])
    # space freed: the same command writes the whole folder
    filler.unlink()
    again = subprocess.run([sys.executable, "-m", "archsearch.cli", "export", str(path), "--out", str(out),
                            "--no-onnx"], cwd=tmp_path, capture_output=True, text=True, timeout=900,
                           env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert again.returncode == 0, again.stderr
    assert {"model.py", "weights.pt", "metrics.json", "card.md"} <= {p.name for p in out.iterdir()}
