"""A kill at a storage write, then the same command again, ends in a whole study (benchmarks/faults/crash_points.py).

12 of the points, spread over a small study's life (creation, the baselines, trials from ask to tell, the
re-rank, the next start's sweep), on SQLite; 4 of them on PostgreSQL (conftest's throw-away server), 4
with a second worker running beside the killed one, and 4 with a Ctrl-C (SIGINT) inside the write instead;
``python -m benchmarks.faults.crash_points`` runs all of them. Real ``archsearch search`` processes killed with SIGKILL;
the second run is the same command in this process. The killed process is forked from one that has imported what
such a run imports (``Preloaded``): a point costs its own run, not importing torch, scikit-learn and Optuna again
(5 s of its 6).
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from benchmarks.faults import crash_points
from tests.faults import Preloaded

POINTS = 12
PG_POINTS = (0, 4, 7, 10)  # of the 12
TWO_WORKER_POINTS = (1, 3, 5, 8)
CTRL_C_POINTS = (2, 6, 9, 11)
pytestmark = [pytest.mark.slow,  # real processes killed
              pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")]


# what the killed run imports, the slow part of starting it (the command line, then what a search imports as it goes)
PRELOAD = ("archsearch.cli.commands", "optuna", "sqlalchemy", "alembic.context", "sklearn.metrics", "torch._dynamo")


@pytest.fixture(scope="module")
def preloaded() -> Iterator[None]:
    """crash_points runs the wrapped ``archsearch search`` (the one killed, and the unkilled one that counts the
    writes) as ``python wrapper.py K crash.yaml MODE``: here the same script, argv and folder in a process forked
    from :class:`Preloaded`."""
    server = Preloaded(PRELOAD, crash_points.ENV)

    def run_first(folder: Path, kill_at: int, mode: str = "kill") -> subprocess.CompletedProcess[str]:
        return server.run([folder / "wrapper.py", str(kill_at), folder / "crash.yaml", mode], cwd=folder, timeout=600)

    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(crash_points, "_run", run_first)
            yield
    finally:
        server.close()


@pytest.fixture(scope="module")
def writes(preloaded: None) -> int:
    return crash_points.count_writes()


@pytest.mark.parametrize("i", range(POINTS))
def test_a_kill_at_a_storage_write_loses_nothing(writes: int, i: int) -> None:
    assert writes > 40  # the small study's whole life, not a run that ended early
    kill_at = 1 + round(i * (writes - 1) / (POINTS - 1))
    torch.set_num_threads(1)
    assert crash_points.check_point(kill_at, in_process=True) == [], f"kill at write {kill_at} of {writes}"


@pytest.mark.parametrize("i", PG_POINTS)
def test_a_kill_at_a_storage_write_loses_nothing_on_postgres(writes: int, i: int, postgres_url: str) -> None:
    kill_at = 1 + round(i * (writes - 1) / (POINTS - 1))
    torch.set_num_threads(1)
    broken = crash_points.check_point(kill_at, in_process=True, storage=postgres_url)
    assert broken == [], f"kill at write {kill_at} of {writes}"


@pytest.mark.parametrize("i", TWO_WORKER_POINTS)
def test_a_kill_beside_another_worker_loses_nothing(writes: int, i: int) -> None:
    kill_at = 1 + round(i * (writes - 1) / (POINTS - 1))
    torch.set_num_threads(1)
    assert crash_points.check_point(kill_at, in_process=True, two_workers=True) == [], f"kill at write {kill_at}"


@pytest.mark.parametrize("i", CTRL_C_POINTS)
def test_a_ctrl_c_inside_a_storage_write_ends_as_a_ctrl_c_and_loses_nothing(writes: int, i: int) -> None:
    # before archsearch/core/interrupt.py, the KeyboardInterrupt raised inside the write's transaction kept SQLite's
    # write lock, Optuna could not record the trial's FAIL, and the command ended with a traceback
    kill_at = 1 + round(i * (writes - 1) / (POINTS - 1))
    torch.set_num_threads(1)
    assert crash_points.check_point(kill_at, in_process=True, ctrl_c=True) == [], f"Ctrl-C inside write {kill_at}"
