"""The study's PostgreSQL server restarts, or stops for a while, under two running workers (issue #35).

The workers reconnect and go on: each call that finds the connection gone is tried again until the server answers
(``recovery.reconnect_s``, default 300 s), so a restart or a 30 s outage costs the wait and nothing else. A server
gone for longer ends the command with one line and exit 1; the same command resumes. Each scenario ends with the
invariants of the crash-point test (benchmarks/faults/invariants.py).
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from benchmarks.faults import invariants
from tests.faults import ENV, fault_study, search_argv
from tests.hosts import PgServer, postgres_bindir

N_TRIALS = 8

pytestmark = [pytest.mark.slow,  # a PostgreSQL server and real processes
              pytest.mark.skipif(postgres_bindir() is None or os.geteuid() != 0,
                                 reason="needs PostgreSQL's server binaries (apt-get install postgresql) and root "
                                        "(to run the server as `postgres`)")]


@pytest.fixture
def server() -> Any:
    pytest.importorskip("psycopg2", reason="psycopg2 is missing (pip install psycopg2-binary, in the test extra)")
    pg = PgServer()
    yield pg
    pg.close()


def _study(folder: Path, url: str, **extra: Any) -> Path:
    return fault_study(folder, n_trials=N_TRIALS, storage=url, **extra)


def _search(path: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(search_argv(path, 2), cwd=path.parent, env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def _wait_for_trained(url: str, n: int, proc: subprocess.Popen[str], timeout: float = 900) -> dict[int, Any]:
    """Poll until ``n`` trials are finished; returns them (for "no finished trial changed")."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = invariants.finished(invariants.trials_of(url, "tiny"))
        if sum(t["state"] == "COMPLETE" for t in done.values()) >= n:
            return done
        if proc.poll() is not None:
            break
        time.sleep(0.3)
    proc.kill()
    pytest.fail(f"no {n} trials finished in time: {proc.communicate()[0][-2000:]}")


def _check(url: str, before: dict[int, Any]) -> None:
    broken = invariants.broken(invariants.trials_of(url, "tiny"), n_trials=N_TRIALS, before=before)
    assert not broken, broken


@pytest.mark.parametrize("outage", ["restart", "stop 30 s"])
def test_workers_ride_out_a_database_restart(tmp_path: Path, server: PgServer, outage: str) -> None:
    proc = _search(_study(tmp_path, server.url))
    before = _wait_for_trained(server.url, 2, proc)
    if outage == "restart":
        server.restart()
    else:
        server.stop()
        time.sleep(30)
        server.start()
    out, _ = proc.communicate(timeout=900)
    assert proc.returncode == 0, out[-3000:]
    assert "Traceback" not in out, out[-3000:]
    assert "connection lost" in out and "reconnected after" in out, out[-3000:]
    assert " FAIL " not in out, out[-3000:]  # no trial took the outage for its own error
    _check(server.url, before)


def test_a_database_gone_too_long_ends_the_command_with_one_line_and_the_same_command_resumes(
        tmp_path: Path, server: PgServer) -> None:
    path = _study(tmp_path, server.url, recovery={"reconnect_s": 5})
    proc = _search(path)
    before = _wait_for_trained(server.url, 2, proc)
    server.stop()
    try:
        out, _ = proc.communicate(timeout=900)
    finally:
        server.start()
    assert proc.returncode == 1, out[-3000:]
    assert "Traceback" not in out, out[-3000:]
    assert "unreachable for" in out and "run the same command again" in out, out[-3000:]
    assert "worker process(es) died" in out, out[-3000:]  # never an exit 0 when a worker gave up

    again = _search(path)
    out, _ = again.communicate(timeout=900)
    assert again.returncode == 0, out[-3000:]
    _check(server.url, before)
