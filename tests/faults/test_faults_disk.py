"""The disk under a study's SQLite file or journal fills mid-search (issue #35): a real, small tmpfs as the study's
folder, filled while two workers train. The command stops with one line naming the place, exit 1; the file is
intact (SQLite's integrity check; the journal reads back); once space is freed the same command resumes to exactly
``n_trials``. (A full disk under an export: tests/faults/test_disk_full.py.)"""

from __future__ import annotations

import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from benchmarks.faults import invariants
from tests.faults import ENV, fault_study, search_argv, tmpfs

N_TRIALS = 12
pytestmark = pytest.mark.slow  # real processes


@pytest.fixture
def small_disk(tmp_path: Path):
    """A 16 MiB tmpfs at ``tmp_path / "disk"`` (skipped where this process may not mount one)."""
    with tmpfs(tmp_path / "disk", "16m") as disk:
        yield disk


def _fill(disk: Path) -> Path:
    filler = disk / "filler"
    with open(filler, "wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass
    return filler


@pytest.mark.parametrize("storage", ["sqlite:///study.db", "journal:study.journal"])
def test_a_disk_that_fills_under_the_study_stops_it_whole_and_the_same_command_resumes(
        small_disk: Path, storage: str) -> None:
    fault_study(small_disk, n_trials=N_TRIALS, epochs=1, storage=storage)
    env, command = ENV, search_argv("study.yaml", 2)
    url = f"sqlite:///{small_disk / 'study.db'}" if storage.startswith("sqlite") else \
        f"journal:{small_disk / 'study.journal'}"
    import optuna

    def trials() -> list[dict]:
        if storage.startswith("journal"):  # read without the archsearch storage, as any tool would
            backend = optuna.storages.journal.JournalFileBackend(str(small_disk / "study.journal"))
            return invariants.trials_of(optuna.storages.JournalStorage(backend), "tiny")
        return invariants.trials_of(url, "tiny")

    proc = subprocess.Popen(command, cwd=small_disk, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    deadline = time.monotonic() + 900
    while sum(t["state"] == "COMPLETE" for t in trials()) < 3:
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[0][-2000:]
        time.sleep(0.3)
    filler = _fill(small_disk)
    out, _ = proc.communicate(timeout=900)
    assert proc.returncode == 1, out[-3000:]
    assert "Traceback" not in out, out[-3000:]
    lines = [line for line in out.splitlines() if line.startswith("archsearch: no space left")]
    assert lines and f"on the device of {small_disk}" in lines[0] and "run the same command to resume" in lines[0]
    assert "worker process(es) died" in out
    if storage.startswith("sqlite"):
        with sqlite3.connect(small_disk / "study.db") as con:
            assert con.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    before = invariants.finished(trials())  # the journal reads back whole

    filler.unlink()
    again = subprocess.run(command, cwd=small_disk, env=env, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    broken = invariants.broken(trials(), n_trials=N_TRIALS, before=before,
                               sqlite_db=small_disk / "study.db" if storage.startswith("sqlite") else None)
    assert not broken, broken
