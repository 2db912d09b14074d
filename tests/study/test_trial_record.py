"""The trial record (archsearch/study/trial_record.py) declares every attribute archsearch keeps on a trial: what a
search writes reads back typed and whole, an old study's trials read, odd values read as absent, and no other
module spells an attribute key."""

from __future__ import annotations

import dataclasses
import re
import shutil
from pathlib import Path
from typing import Any

import optuna
import pytest

from archsearch.config.study_config import load_study_config
from archsearch.network.arch import Arch
from archsearch.search.study import run
from archsearch.study import study_record, trial_record
from archsearch.study.study_record import StudyRecord
from archsearch.study.trial_record import COSTS, TrialRecord

PACKAGE = Path(__file__).resolve().parents[2] / "archsearch"
BEFORE = Path(__file__).resolve().parents[1] / "data" / "before_layout"
FIELDS = [f.name for f in dataclasses.fields(TrialRecord)]


def _reads_whole(t: optuna.trial.FrozenTrial) -> None:
    """Every stored attribute is a declared field of its declared type: reading and writing back loses nothing."""
    assert set(t.user_attrs) <= set(FIELDS), f"trial {t.number}: undeclared {set(t.user_attrs) - set(FIELDS)}"
    assert TrialRecord.of(t).attrs() == dict(t.user_attrs)


@pytest.mark.slow  # an SQLite study: a second
def test_a_trial_written_through_the_record_reads_back_typed(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'record.db'}"
    study = optuna.create_study(study_name="record", storage=storage)
    trial = study.ask()
    written = TrialRecord(
        worker="host:1:2", arch_id="i1x8", macs=38528, params=13002, budget_use=0.5, feasible=False,
        val_accuracy=0.75, epochs_done=3, curve={"val_accuracy": [0.5, None]}, error="TrainingDiverged: nan",
        retry_of=0, surplus=False,
    )
    written.write(trial)
    study.tell(trial, 0.75)
    stored = optuna.load_study(study_name="record", storage=storage).trials[0]
    # the keys are the field names and the values are stored as given (JSON)
    assert dict(stored.user_attrs) == written.attrs()
    assert list(written.attrs()) == [f for f in FIELDS if getattr(written, f) is not None]  # declared order
    read = TrialRecord.of(stored)
    assert read == written
    assert (read.infeasible, read.ended_without_verdict) == (True, False)
    assert (read.cost("macs"), read.cost("latency"), read.cost("peak_kb")) == (38528, None, None)
    assert read.point("macs") == (38528, 0.75) and read.point("latency") is None
    with pytest.raises(ValueError, match="no 'arch' user attribute"):
        read.architecture()


@pytest.mark.slow  # a search
def test_a_search_writes_only_declared_attributes(write_study: Any) -> None:
    config = load_study_config(write_study(budget={"max_macs": 20000}, n_trials=3, enqueue_baselines=True))
    trials = run(config, stream=None, progress=False).get_trials(deepcopy=False)
    for t in trials:
        _reads_whole(t)
    records = [TrialRecord.of(t) for t in trials]
    assert any(r.infeasible for r in records) and any(r.baseline is not None for r in records)
    for r in records:
        assert isinstance(r.worker, str) and isinstance(r.seconds, float)
        assert Arch.from_dict(r.arch) == r.architecture() and r.architecture().id == r.arch_id  # type: ignore[arg-type]
        assert isinstance(r.macs, int) and r.macs <= 20000 or r.infeasible
        assert r.infeasible or isinstance(r.val_accuracy, float) and isinstance(r.curve, dict)


def test_an_old_study_reads(tmp_path: Path) -> None:
    shutil.copy(BEFORE / "before.db", tmp_path / "before.db")
    storage = f"sqlite:///{tmp_path / 'before.db'}"
    trials = optuna.load_study(study_name="before", storage=storage).trials
    for t in trials:
        _reads_whole(t)
    records = [TrialRecord.of(t) for t in trials]
    assert [r.baseline for r in records].count("effnet") == 1
    assert all(not r.infeasible and r.epochs_done == 1 and r.curve is None and r.latency_runtime is None
               for r in records)  # written before learning curves and latency runtimes were recorded
    assert all(r.architecture().id == r.arch_id for r in records)
    assert sum(r.fit is not None for r in records) == 4 and all(isinstance(r.fit, dict) for r in records if r.fit)


@pytest.mark.parametrize(("attrs", "read"), [
    ({}, {}),  # a trial that stopped before archsearch wrote anything
    ({"val_accuracy": 1, "seconds": 2}, {"val_accuracy": 1, "seconds": 2}),  # an int for a float
    ({"macs": 38528.0, "epochs_done": 2.5}, {"macs": 38528}),  # a whole float for an int; a fraction is no int
    ({"macs": True, "feasible": "yes", "baseline": 3}, {}),  # a bool is no number; other types read as absent
    ({"other_tool": 1, "feasible": False}, {"feasible": False}),  # keys that are not archsearch's are not read
])
def test_odd_values_read_as_absent(attrs: dict[str, Any], read: dict[str, Any]) -> None:
    record = TrialRecord.of(attrs)
    assert record.attrs() == read
    assert record.infeasible == (read.get("feasible") is False)


def test_the_named_keys_are_fields() -> None:
    assert {trial_record.ARCH_ATTR, trial_record.BASELINE_ATTR, *COSTS.values()} <= set(FIELDS)
    study_keys = [*study_record.KEYS.values(), study_record.RERANK_PREFIX]
    assert len(set(study_keys)) == len(study_keys) and all(k.startswith("archsearch.") for k in study_keys)
    assert set(study_record.KEYS) == {f.name for f in dataclasses.fields(StudyRecord)}


def test_the_study_record_reads_what_it_wrote_and_odd_values_as_absent(tmp_path) -> None:
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 's.db'}", study_name="s")
    assert StudyRecord.of(study) == StudyRecord()
    record = StudyRecord(created=12.5, created_by="host:1:2", fingerprint={"space": "x"}, config={"name": "s"},
                         baselines=True, data_identity="abc")
    record.write(study)
    assert StudyRecord.of(study) == record
    StudyRecord(created_by="other:3:4").write(study)  # only the fields given are written
    assert StudyRecord.of(study) == dataclasses.replace(record, created_by="other:3:4")
    study.set_user_attr(study_record.KEYS["baselines"], "yes")  # not a bool: read as not written
    study.set_user_attr(study_record.KEYS["created"], 7)  # a whole number of seconds is a time
    assert (StudyRecord.of(study).baselines, StudyRecord.of(study).created) == (None, 7)


# a trial attribute spelled as a string: read (user_attrs["k"], user_attrs.get("k")), written (set_user_attr("k"),
# set_trial_user_attr(id, "k"), user_attrs={"k": ...}), or looked up ("k" in t.user_attrs)
_SPELLED = re.compile(
    r"""user_attrs\s*(\[|\.get\()\s*[rbfu]*["']"""
    r"""|set_(trial_)?user_attr\((\s*[\w.]+\s*,)?\s*[rbfu]*["']"""
    r"""|user_attrs\s*=\s*\{\s*[rbfu]*["']"""
    r"""|["']\s+(not\s+)?in\s+[\w.]*user_attrs"""
)
# a trial's attributes read other than through the record: only a study's own are read directly
_TRIAL_ATTRS = re.compile(r"(?<!study)\.user_attrs\b")


def test_the_regexes_catch_what_they_are_for() -> None:
    caught = ['t.user_attrs["val_accuracy"]', "t.user_attrs.get('feasible', True)", 'trial.set_user_attr("seconds", 1)',
              'study._storage.set_trial_user_attr(t._trial_id, "swept", True)', 'create_trial(user_attrs={"arch": a})',
              '"duplicate_of" not in t.user_attrs']
    assert all(_SPELLED.search(line) for line in caught)
    assert not _SPELLED.search("study.user_attrs.get(FINGERPRINT_ATTR)")
    assert _TRIAL_ATTRS.search("t.user_attrs") and not _TRIAL_ATTRS.search("study.user_attrs.items()")


def test_no_module_but_the_record_spells_a_trial_attribute() -> None:
    record = PACKAGE / "study" / "trial_record.py"
    modules = [p for p in sorted(PACKAGE.rglob("*.py")) if p != record]
    assert len(modules) > 40
    spelled, read = [], []
    for path in modules:
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            where = f"{path.relative_to(PACKAGE.parent)}:{n}: {line.strip()}"
            if _SPELLED.search(line):
                spelled.append(where)
            if _TRIAL_ATTRS.search(line):
                read.append(where)
    assert spelled == [], "trial attribute keys belong in archsearch/study/trial_record.py"
    assert read == [], "a trial's attributes are read through TrialRecord.of"
