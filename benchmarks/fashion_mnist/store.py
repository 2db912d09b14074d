"""The Fashion-MNIST benchmark's settings and results file, shared by its runner, its report,
``benchmarks.proxy_fidelity`` and ``benchmarks.rerank_fidelity``: the budget levels, :class:`Settings` and
:class:`Results`, the committed one-JSON-object-a-line file that makes every part resumable.
"""

from __future__ import annotations

import fcntl
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# the committed results file: every finished row and search, one JSON object a line
RESULTS = Path(__file__).resolve().parent / "results.jsonl"
# the searches' Optuna studies, as journal files (text, appended to): committed, so that a search stopped by the end
# of a session resumes in the next one, on another machine
STUDIES_DIR = Path(__file__).resolve().parent / "studies"
LEVELS = {"1m": 1_000_000, "3m": 3_000_000, "10m": 10_000_000}  # name -> MAC budget (its study YAML says the same)
SAMPLERS = {"tpe": "archsearch", "random": "random"}  # search -> the family name of its rows


@dataclass(frozen=True)
class Settings:
    """Everything that makes rows comparable; stored as the results file's first line and checked on every run."""

    search_trials: int  # per search: finished trials, the seed baselines included (their trial time is reported)
    search_epochs: int | None  # proxy recipe override (None: the study YAML's)
    search_subset: int | None  # proxy training subset override (None: the study YAML's)
    val_fraction: float | None  # the validation split's share override (None: the study YAML's)
    rerank: tuple[int, int, int | None] | None  # re-rank (top, epochs, training images); None: the study YAML's
    epochs: int  # final recipe
    train_subset: int | None  # final recipe: the first N of the 60,000 training images (None: all)
    seeds: int  # seeds per row
    long_epochs: int  # the long rows' epochs
    long_level: str
    anytime_level: str
    eval_limit: int | None  # rows score only the first N test images (None: all; QUICK only)
    # the widths a hidden FC layer in the head may take (the space key head_hidden, 0: none), added to the
    # space for this results file's searches; None: the space's own (mixed.yaml offers none)
    head_hidden: tuple[int, ...] | None = None
    # the search space file both searches use instead of the study YAML's (relative to the repository root);
    # None: the study's own (mixed.yaml). Its space_overrides (28x28 only) still apply
    space: str | None = None
    # the re-rank scored by k-fold cross-validation (the study's rerank with ``folds: k``), which makes each
    # candidate's standard error known to the pick (archsearch/study/best.py); None: the study's own (no folds)
    rerank_folds: int | None = None


FULL = Settings(search_trials=30, search_epochs=None, search_subset=None, val_fraction=None, rerank=None,
                epochs=8, train_subset=None, seeds=3, long_epochs=30, long_level="3m", anytime_level="3m",
                eval_limit=None)
QUICK = Settings(search_trials=5, search_epochs=1, search_subset=500, val_fraction=0.02, rerank=(1, 1, 500),
                 epochs=1, train_subset=1000, seeds=2, long_epochs=2, long_level="1m", anytime_level="1m",
                 eval_limit=1000)


# -------------------------------------------------------------------------------------------------
# printing, the results file


def say(text: str) -> None:
    print(f"[{os.getpid()}] {text}", flush=True)


class Results:
    """The results file: one JSON object a line, each with a unique ``key``; appended under an exclusive lock.

    A line is written whole with one ``write`` on a file opened for appending, so a killed process leaves
    either the whole line or none of it; a torn last line (a full disk) is ignored when read.
    """

    def __init__(self, path: Path):
        self.path = path

    def read(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return out
        for line in text.splitlines():
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue
            out.setdefault(entry["key"], entry)
        return out

    def get(self, key: str) -> dict[str, Any] | None:
        return self.read().get(key)

    def add(self, entry: dict[str, Any]) -> bool:
        """Append ``entry`` unless its key is there already; whether it was appended."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            if entry["key"] in self.read():
                return False
            f.write(json.dumps(entry, sort_keys=True) + "\n")
            f.flush()
            os.fsync(f.fileno())
        return True
