"""Kill at every storage write: a small study killed with SIGKILL at write k, then run again, ends whole.

Each point runs a real ``archsearch search`` in a subprocess whose storage is wrapped (in that process only, by
this script, not by hooks in archsearch): every write to the storage counts, and write k kills the process
(SIGKILL) before it happens. Then the same command runs again, unwrapped, to the end. For each k it checks:
exactly ``n_trials`` finished; none RUNNING or WAITING; every seed baseline with exactly one verdict; no trial
that was finished when the kill landed changed; SQLite's ``PRAGMA integrity_check`` is ok. The writes cover
the study's creation, the baselines' enqueueing, each trial from ask to tell, the re-rank's claims and results,
and the sweep of the killed trial at the next start. The heartbeat thread's writes are not counted (their
moment depends on the clock), but they run.

    python -m benchmarks.faults.crash_points [--points all|N] [--jobs 2] [--storage postgresql+psycopg2://...]
        [--two-workers]
    # prints "kill at write k: H/N held"
    python -m benchmarks.faults.crash_points --ctrl-c
    # a SIGINT inside write k instead: "Ctrl-C inside write k: H/N held"

With ``--ctrl-c`` the first run must also end as a Ctrl-C does: exit 130, no traceback.

``tests/faults/test_crash_points.py`` runs a fixed sample of the points.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

from benchmarks.common import ROOT
from benchmarks.faults import invariants
from benchmarks.faults.invariants import trials_of

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}

SPACE = {
    "name": "crash", "channel_multiple": 8, "width_mult": [0.5, 1.0],
    "stem": {"type": ["conv"], "channels": [8, 16]},
    "stages": [{"block": ["dwsep", "shuffle"], "channels": [16, 32], "depth": [1, 2], "stride": 2, "groups": [1, 2]}],
    "head": "gap",
}
STUDY = {
    "name": "crash", "storage": "sqlite:///crash.db", "space": "space.yaml",
    "dataset": {"name": "synthetic", "options": {"n_train": 128, "n_test": 32, "classes": 4, "resolution": 8}},
    "training": {"epochs": 2, "batch_size": 64, "lr": 0.1, "seed": 0},
    "budget": {"max_macs": 100000}, "sampler": {"type": "tpe", "seed": 0}, "pruner": {"type": "median"},
    "n_trials": 4, "device": "cpu", "enqueue_baselines": True, "rerank": {"top": 1, "epochs": 1},
}

# run in the subprocess: count the storage's writes; at write KILL_AT (0: never; print the count) SIGKILL before
# it (mode kill), or SIGINT inside it (mode int: from SQLAlchemy's hook before the write's first SQL statement that
# changes something, so that Python raises in the middle of the write's transaction, the lock held)
WRAPPER = textwrap.dedent(
    """
    import os, signal, sys, threading
    import optuna
    import sqlalchemy

    kill_at, count, mode, armed = int(sys.argv[1]), [0], sys.argv[3], [False]
    main_thread = threading.main_thread()

    @sqlalchemy.event.listens_for(sqlalchemy.engine.Engine, "before_cursor_execute")
    def interrupt_inside(conn, cursor, statement, parameters, context, executemany):
        if armed[0] and threading.current_thread() is main_thread and not statement.lstrip().upper().startswith(
                ("SELECT", "PRAGMA", "BEGIN")):
            armed[0] = False
            os.kill(os.getpid(), signal.SIGINT)
    WRITES = [name for name in dir(optuna.storages.RDBStorage)
              if name.startswith(("create_", "set_", "delete_", "record_")) and name != "record_heartbeat"]

    def wrap(name):
        real = getattr(optuna.storages.RDBStorage, name)

        def counted(self, *args, **kwargs):
            if threading.current_thread() is main_thread:
                count[0] += 1
                if count[0] == kill_at:
                    if mode == "kill":
                        os.kill(os.getpid(), signal.SIGKILL)
                    armed[0] = True
            return real(self, *args, **kwargs)
        return counted

    for name in WRITES:
        setattr(optuna.storages.RDBStorage, name, wrap(name))
    from archsearch.cli.commands import main
    code = main(["search", sys.argv[2], "--no-progress", "--workers", "1"])
    print(f"WRITES {count[0]}", file=sys.stderr)
    sys.exit(code)
    """
)


def make_study(folder: Path, storage: str | None = None, name: str = "crash") -> Path:
    """The small study in ``folder``: SQLite beside it, or ``storage`` (a PostgreSQL URL) under ``name``."""
    (folder / "space.yaml").write_text(yaml.safe_dump(SPACE, sort_keys=False))
    path = folder / "crash.yaml"
    path.write_text(yaml.safe_dump({**STUDY, "name": name, "storage": storage or STUDY["storage"]}, sort_keys=False))
    (folder / "wrapper.py").write_text(WRAPPER)
    return path


def _run(folder: Path, kill_at: int, mode: str = "kill") -> subprocess.CompletedProcess:
    # SIGINT at its default, as from a terminal: a caller that ignores it (a pytest-xdist worker, a background job)
    # would pass that on, and an archsearch that ignores SIGINT stays so
    return subprocess.run([sys.executable, str(folder / "wrapper.py"), str(kill_at), str(folder / "crash.yaml"), mode],
                          cwd=folder, env=ENV, capture_output=True, text=True, timeout=600,
                          preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def count_writes() -> int:
    """The writes of one whole, unkilled run (the points to kill at are 1 to this)."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        make_study(folder)
        proc = _run(folder, 0)  # counted unkilled
        if proc.returncode != 0:
            raise RuntimeError(proc.stderr[-2000:])
        return int(proc.stderr.strip().splitlines()[-1].split()[1])


def check_point(kill_at: int, *, in_process: bool = False, storage: str | None = None,
                two_workers: bool = False, ctrl_c: bool = False) -> list[str]:
    """Kill at write ``kill_at``, run again, and return what did not hold (empty: all held).

    ``ctrl_c``: a SIGINT inside the write instead of a SIGKILL before it; the first run must then end as a
    Ctrl-C does (exit 130, the "interrupted" line, no traceback).

    ``in_process``: the second run is ``archsearch.cli.commands.main`` in this process (the same command, without a
    second interpreter start: what the tests do). ``storage``: a PostgreSQL URL instead of a SQLite file (a
    study of its own per point; no integrity check there). ``two_workers``: a second, unwrapped ``archsearch
    search`` on the same study runs beside the one killed (as another worker would), to its end, before the
    second run; where it finished the study before write ``kill_at`` came, nothing was killed."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        name = "crash" if storage is None else f"crash-{kill_at}-{os.getpid()}-{folder.name}"
        make_study(folder, storage, name)
        db = folder / "crash.db"
        url = storage or f"sqlite:///{db}"
        companion = None
        if two_workers:
            companion = subprocess.Popen([sys.executable, "-m", "archsearch.cli", "search", str(folder / "crash.yaml"),
                                          "--no-progress", "--workers", "1"], cwd=folder, env=ENV,
                                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        first = _run(folder, kill_at, "int" if ctrl_c else "kill")
        if companion is not None:
            _, err = companion.communicate(timeout=600)
            if companion.returncode != 0:
                return [f"the other worker failed (rc {companion.returncode}): {err[-800:]}"]
        if ctrl_c and not (two_workers and first.returncode == 0):
            if first.returncode != 130 or "Traceback" in first.stderr or "interrupted" not in first.stderr:
                return [f"the Ctrl-C did not end the first run as a Ctrl-C (rc {first.returncode}): "
                        f"{first.stderr[-800:]}"]
        elif first.returncode != -9 and not (two_workers and first.returncode == 0):
            return [f"the first run was not killed (rc {first.returncode}): {first.stderr[-500:]}"]
        before = invariants.finished(trials_of(url, name) if storage or db.exists() else [])
        command = ["search", str(folder / "crash.yaml"), "--no-progress", "--workers", "1"]
        if in_process:
            from archsearch.cli.commands import main as cli

            code, err = cli(command), ""
        else:
            again = subprocess.run([sys.executable, "-m", "archsearch.cli", *command], cwd=folder, env=ENV,
                                   capture_output=True, text=True, timeout=600)
            code, err = again.returncode, again.stderr
        if code != 0:
            return [f"the second run failed (rc {code}): {err[-800:]}"]
        return invariants.broken(trials_of(url, name), n_trials=STUDY["n_trials"], before=before,
                                 sqlite_db=db if storage is None else None)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", default="all", help="'all' or a number of points spread over the run")
    parser.add_argument("--jobs", type=int, default=1, help="points checked at once")
    parser.add_argument("--storage", default=None, help="a PostgreSQL URL (default: a SQLite file per point)")
    parser.add_argument("--two-workers", action="store_true", help="another worker runs beside the killed one")
    parser.add_argument("--ctrl-c", action="store_true", help="SIGINT inside the write instead of SIGKILL before it")
    args = parser.parse_args(argv)
    total = count_writes()
    if args.points == "all":
        points = list(range(1, total + 1))
    else:
        n = int(args.points)
        points = sorted({1 + round(i * (total - 1) / max(n - 1, 1)) for i in range(n)})
    print(f"one whole run makes {total} storage writes; killing at {len(points)} of them", flush=True)
    with ThreadPoolExecutor(args.jobs) as pool:
        def check(k: int) -> list[str]:
            return check_point(k, storage=args.storage, two_workers=args.two_workers, ctrl_c=args.ctrl_c)

        results = dict(zip(points, pool.map(check, points), strict=True))
    for k, broken in results.items():
        if broken:
            print(f"kill at write {k}: " + "; ".join(broken), flush=True)
    held = sum(not b for b in results.values())
    print(json.dumps({"writes": total, "points": len(points), "held": held}))
    what = "Ctrl-C inside" if args.ctrl_c else "kill at"
    where = (" on PostgreSQL" if args.storage else "") + (" beside a second worker" if args.two_workers else "")
    print(f"{what} write k{where}: {held}/{len(points)} held")
    return 0 if held == len(points) else 1


if __name__ == "__main__":
    sys.exit(main())
