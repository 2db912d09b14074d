"""What a study must hold after any fault, once the same command has run it to its end: the checks every fault
scenario shares (the crash points here, the hosts, database and disk tests in tests/faults/test_faults_*.py).

- exactly ``n_trials`` trials finished (COMPLETE or PRUNED; candidates over the budget are COMPLETE too but are
  not counted: they were never trained);
- none RUNNING or WAITING;
- every seed baseline with exactly one verdict of its own (COMPLETE, PRUNED, or FAIL by its own error);
- no trial that was finished before the fault changed;
- SQLite's ``PRAGMA integrity_check`` is ok (for a SQLite study).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from archsearch.study.trial_record import TrialRecord

__all__ = ["broken", "finished", "trials_of", "verdicts"]


def trials_of(storage: Any, name: str) -> list[dict[str, Any]]:
    """The study's trials as plain dicts (number, state, values, attrs); [] where the study does not exist.
    ``storage``: a URL or an Optuna storage."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    try:
        study = optuna.load_study(study_name=name, storage=storage)
    except KeyError:  # killed before the study existed
        return []
    return [{"number": t.number, "state": t.state.name, "values": t.values, "attrs": t.user_attrs}
            for t in study.get_trials(deepcopy=False)]


def finished(trials: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    """The trials with a final state, by number (what a later run must not change)."""
    return {t["number"]: t for t in trials if t["state"] in ("COMPLETE", "PRUNED", "FAIL")}


def verdicts(trials: list[dict[str, Any]], family: str) -> list[int]:
    """The numbers of baseline ``family``'s trials that ended with a verdict of their own."""
    out = []
    for t in trials:
        record = TrialRecord.of(t["attrs"])
        if record.baseline != family:
            continue
        if t["state"] in ("COMPLETE", "PRUNED") or t["state"] == "FAIL" and not record.ended_without_verdict:
            out.append(t["number"])
    return out


def broken(trials: list[dict[str, Any]], *, n_trials: int, before: dict[int, dict[str, Any]] | None = None,
           sqlite_db: Path | None = None, baselines: bool = True) -> list[str]:
    """What does not hold (empty: everything held). ``before``: :func:`finished` of the trials before the fault."""
    out = []
    trained = [t for t in trials if t["state"] in ("COMPLETE", "PRUNED") and not TrialRecord.of(t["attrs"]).infeasible]
    if len(trained) != n_trials:
        out.append(f"{len(trained)} trials trained, not {n_trials}")
    if left := [t["number"] for t in trials if t["state"] in ("RUNNING", "WAITING")]:
        out.append(f"trials left RUNNING or WAITING: {left}")
    families = sorted({b for t in trials if (b := TrialRecord.of(t["attrs"]).baseline) is not None})
    if baselines and not families:
        out.append("no seed baseline")
    for family in families:
        if len(numbers := verdicts(trials, family)) != 1:
            out.append(f"baseline {family}: {len(numbers)} verdicts (trials {numbers})")
    now = {t["number"]: t for t in trials}
    for number, t in (before or {}).items():
        if (now[number]["state"], now[number]["values"]) != (t["state"], t["values"]):
            out.append(f"finished trial {number} changed")
    if sqlite_db is not None:
        with sqlite3.connect(sqlite_db) as con:
            (ok,) = con.execute("PRAGMA integrity_check").fetchone()
        if ok != "ok":
            out.append(f"integrity_check: {ok}")
    return out
