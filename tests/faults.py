"""What the fault tests share: a small study whose trials take a second or two (so that a fault lands in one), the
command that runs it as a user would, and a real small disk (tmpfs) to fill."""

from __future__ import annotations

import contextlib
import copy
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import TINY_SPACE, TINY_STUDY

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}

__all__ = ["ENV", "fault_study", "search_argv", "tmpfs"]


def fault_study(folder: Path, *, n_trials: int, n_train: int = 8000, epochs: int = 2, **keys: Any) -> Path:
    """``folder/study.yaml`` (and its space): the tiny space at 16x16 with the seed baselines, every candidate
    within the budget, ``n_trials`` trials of ``epochs`` on ``n_train`` synthetic images; ``keys`` replace the
    study's top-level keys (``storage``, ``recovery``...)."""
    study = copy.deepcopy(TINY_STUDY)
    study.update(n_trials=n_trials, enqueue_baselines=True, budget={"max_macs": 400000})  # 16x16: all fit
    study["dataset"]["options"].update(n_train=n_train, n_test=500, resolution=16)
    study["training"]["epochs"] = epochs
    study.update(keys)
    (folder / "tiny_space.yaml").write_text(yaml.safe_dump(TINY_SPACE))
    path = folder / "study.yaml"
    path.write_text(yaml.safe_dump(study))
    return path


def search_argv(path: Path | str, workers: int) -> list[str]:
    """``archsearch search`` on ``path`` as a user runs it, without the progress bar."""
    return [sys.executable, "-m", "archsearch.cli", "search", str(path), "--workers", str(workers), "--no-progress"]


@contextlib.contextmanager
def tmpfs(folder: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` (such as "16m") mounted at ``folder`` (created), unmounted after; the test is skipped
    where this process may not mount one."""
    folder.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root")
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True,
                          text=True)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {made.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)
