"""A host that vanishes mid-trial (issue #35): three hosts on one machine (network namespaces on a bridge, each its
own address and host name, tests/hosts.py), the study's PostgreSQL server on the first, one worker on each of the
others. The second host loses power (every process killed, its link down) while it trains; the third finishes the
study. Nothing but the heartbeat can tell the lost trial's worker is gone: another host's process ids mean nothing
here. The trial is failed once its heartbeat is ``grace_s`` old, and run again.
"""

from __future__ import annotations

import datetime
import time
from pathlib import Path
from typing import Any

import pytest

from archsearch.study.trial_record import TrialRecord
from benchmarks.faults import invariants
from tests.faults import ENV, fault_study, search_argv
from tests.hosts import Hosts, PgServer, hosts_unavailable, postgres_bindir

N_TRIALS = 8
HEARTBEAT_S, GRACE_S = 1, 4
pytestmark = pytest.mark.slow  # network namespaces, a PostgreSQL server and real processes


@pytest.fixture
def hosts() -> Any:
    pytest.importorskip("psycopg2", reason="psycopg2 is missing (pip install psycopg2-binary, in the test extra)")
    if (why := hosts_unavailable()) is not None:
        pytest.skip(f"cannot make network namespaces: {why}")
    if postgres_bindir() is None:
        pytest.skip("PostgreSQL's server binaries are not installed (apt-get install postgresql)")
    made = Hosts(3)
    yield made
    made.close()


def test_a_host_that_vanishes_mid_trial_loses_nothing(tmp_path: Path, hosts: Hosts) -> None:
    server = PgServer(hosts=hosts, netns=0)
    try:
        fault_study(tmp_path, n_trials=N_TRIALS, storage=server.url,
                    recovery={"heartbeat_s": HEARTBEAT_S, "grace_s": GRACE_S})
        env, argv = ENV, search_argv("study.yaml", 1)
        logs = [tmp_path / "host1.log", tmp_path / "host2.log"]
        hosts.spawn(1, argv, cwd=tmp_path, env=env, log=logs[0])
        survivor = hosts.spawn(2, argv, cwd=tmp_path, env=env, log=logs[1])

        # wait until host 1 has finished a trial and is running the next
        deadline = time.monotonic() + 900
        while True:
            trials = invariants.trials_of(server.url, "tiny")
            mine = [t for t in trials if (TrialRecord.of(t["attrs"]).worker or "").startswith("host1-")]
            if any(t["state"] == "COMPLETE" for t in mine) and any(t["state"] == "RUNNING" for t in mine):
                break
            assert time.monotonic() < deadline, logs[0].read_text()[-2000:]
            time.sleep(0.2)
        before = invariants.finished(trials)
        hosts.vanish(1)
        died = datetime.datetime.now()
        lost = next(t["number"] for t in invariants.trials_of(server.url, "tiny")
                    if t["state"] == "RUNNING" and (TrialRecord.of(t["attrs"]).worker or "").startswith("host1-"))

        assert survivor.wait(timeout=900) == 0, logs[1].read_text()[-3000:]
        assert "Traceback" not in logs[1].read_text()
        trials = invariants.trials_of(server.url, "tiny")
        broken = invariants.broken(trials, n_trials=N_TRIALS, before=before)
        assert not broken, broken
        by_number = {t["number"]: t for t in trials}
        assert by_number[lost]["state"] == "FAIL" and TrialRecord.of(by_number[lost]["attrs"]).swept
        retry = next(t for t in trials if TrialRecord.of(t["attrs"]).retry_of == lost)
        assert retry["state"] == "COMPLETE"

        import optuna

        started = optuna.load_study(study_name="tiny", storage=server.url).trials[retry["number"]].datetime_start
        to_retry = (started - died).total_seconds()
        print(f"host vanished: trial {lost} failed by the heartbeat and run again as trial {retry['number']} "
              f"{to_retry:.1f} s after the power cut (heartbeat {HEARTBEAT_S} s, grace {GRACE_S} s)")
        assert GRACE_S - 1 <= to_retry <= GRACE_S + 30
    finally:
        server.close()
