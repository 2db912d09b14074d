"""Shared fixtures: a tiny search space and a short study, written as real YAML files under ``tmp_path``."""

from __future__ import annotations

import copy
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import optuna
import pytest
import torch
import yaml

# the files of the longest tests (tens of seconds each: whole commands started several times, a database stopped
# for 30 s), longest first; a file named by a folder is every file in it
LONG_FIRST = (
    "tests/faults/test_faults_database.py",
    "tests/docs/test_readme.py",
    "tests/faults/test_faults_baselines.py",
    "tests/benchmarks/test_fashion_mnist.py",
    "tests/faults/",
    "tests/search/test_workers.py",
    "tests/latency/",
    "tests/export/",
    "tests/docs/",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The slow tier first, the files of LONG_FIRST at its head, and the fast tier last (a stable sort: each file
    keeps its order).

    With ``-n auto`` and ``--maxschedchunk 1`` (pyproject's addopts) each worker is sent the next test in this order
    as it finishes one (holding at most one more): the longest tests start first and the run ends on the fast
    tier's, rather than on one worker running a minute-long test while the other waits (the suite runs on 2
    cores)."""
    def rank(item: pytest.Item) -> tuple[bool, int]:
        path = item.nodeid.split("::")[0]
        first = next((i for i, name in enumerate(LONG_FIRST) if path.startswith(name)), len(LONG_FIRST))
        return item.get_closest_marker("slow") is None, first

    items.sort(key=rank)


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Every test on one intra-op thread.

    The networks under test are tiny, so a second thread gains nothing; and the suite runs one pytest
    worker per core (pytest-xdist), where two OpenMP threads per worker waiting on each other made a 1 s
    test take 90 s. Behaviour does not depend on the thread count.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)

# 384 candidates; at 8x8 inputs their MACs run from 7,744 to about 91,000
# (a budget of 20,000 makes about half of them infeasible). Every trial trains in a fraction of a second.
TINY_SPACE: dict[str, Any] = {
    "name": "tiny",
    "channel_multiple": 8,
    "width_mult": [0.5, 1.0],
    "stem": {"type": ["conv"], "channels": [8, 16]},
    "stages": [
        {"block": ["dwsep", "shuffle"], "channels": [16, 32], "depth": [1, 2], "stride": 2, "groups": [1, 2]},
        {"block": ["dwsep", "effnet"], "channels": [32, 64], "depth": [1, 2], "stride": 2},
    ],
    "head": "gap",
}

# the study every test starts from: synthetic 8x8 data in 4 classes (205 train / 51 val images), one epoch
TINY_STUDY: dict[str, Any] = {
    "name": "tiny",
    "storage": "sqlite:///tiny.db",  # relative to the YAML's directory
    "space": "tiny_space.yaml",
    "dataset": {"name": "synthetic", "options": {"n_train": 256, "n_test": 64, "classes": 4, "resolution": 8}},
    "training": {"epochs": 1, "batch_size": 64, "lr": 0.1, "seed": 0},
    "budget": {"max_macs": 100000},  # every candidate of TINY_SPACE fits
    "sampler": {"type": "tpe", "seed": 0},
    "pruner": {"type": "none"},
    "n_trials": 4,
    "device": "cpu",
    "enqueue_baselines": False,
}


# the first lines of a script that must run without archsearch: any import of it fails (an export's model.py
# and files must be enough); the scripts of the export tests start with it
WITHOUT_ARCHSEARCH = """\
import importlib.abc, sys

class _Blocked(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "archsearch":
            raise ImportError("archsearch is blocked in this process")

sys.meta_path.insert(0, _Blocked())
"""

DIGITS = {"name": "digits", "options": {}}  # a `dataset=` override: scikit-learn's 8x8 digits, 10 classes


def study_dict(**overrides: Any) -> dict[str, Any]:
    """TINY_STUDY with ``overrides``; a mapping given for a section updates that section key by key."""
    data = copy.deepcopy(TINY_STUDY)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key].update(copy.deepcopy(value))
        else:
            data[key] = copy.deepcopy(value)
    return data


@pytest.fixture
def write_study(tmp_path: Path) -> Callable[..., Path]:
    """``write_study(**overrides) -> Path``: write the space and a study YAML into ``tmp_path``.

    ``space=`` a dict writes that space (default TINY_SPACE) to ``tiny_space.yaml``; every other keyword
    overrides the study (see :func:`study_dict`). The study file is ``<name>.yaml``; writing the same name
    again replaces it, which is how a test changes the config of an existing study.
    """

    def write(*, space: dict[str, Any] | None = None, **overrides: Any) -> Path:
        study = study_dict(**overrides)
        (tmp_path / study["space"]).write_text(yaml.safe_dump(space or TINY_SPACE, sort_keys=False))
        path = tmp_path / f"{study['name']}.yaml"
        path.write_text(yaml.safe_dump(study, sort_keys=False))
        return path

    return write


class Killed(Exception):
    """Stands in for the end of a process: raised from ``on_epoch`` once that epoch's checkpoint is written."""


def stop_after(epochs: int) -> Callable[[int, float], None]:
    """An ``on_epoch`` that raises :class:`Killed` after ``epochs`` epochs."""
    def on_epoch(epoch: int, acc: float) -> None:
        if epoch + 1 == epochs:
            raise Killed

    return on_epoch


def killed_after_first_epoch(train: Callable[..., Any]) -> Callable[..., Any]:
    """``archsearch.training.train.train`` as a process ended after the first epoch of every training sees it."""
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        caller, stop = kwargs.pop("on_epoch", None), stop_after(1)

        def on_epoch(epoch: int, accuracy: float) -> None:  # the caller's hook first, then the end of the process
            if caller is not None:
                caller(epoch, accuracy)
            stop(epoch, accuracy)

        return train(*args, on_epoch=on_epoch, **kwargs)

    return wrapper


class ReadCounter:
    """Counts the SQL rounds that read a study's trials from a real SQLite storage."""

    def __init__(self, monkeypatch):
        self.reads = 0
        real = optuna.storages.RDBStorage._get_trials

        def counted(storage, *args, **kwargs):
            self.reads += 1
            return real(storage, *args, **kwargs)

        monkeypatch.setattr(optuna.storages.RDBStorage, "_get_trials", counted)


# -- a real PostgreSQL server ---------------------------------------------------------------------------------


def _postgres_bindir() -> Path | None:
    """The newest Debian PostgreSQL bin folder, else the folder of ``initdb`` on PATH."""
    for folder in sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: p.parent.name, reverse=True):
        if all((folder / name).is_file() for name in ("initdb", "pg_ctl", "createdb")):
            return folder
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _as_postgres() -> list[str]:
    """The command prefix that runs a program as the ``postgres`` user (initdb refuses root)."""
    if pwd.getpwuid(os.geteuid()).pw_name == "postgres":
        return []
    if os.geteuid() != 0:
        pytest.skip("starting a PostgreSQL server needs root (to run initdb as `postgres`) or the `postgres` user")
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        pytest.skip("no `postgres` user to run initdb and pg_ctl as")
    if shutil.which("runuser") is None:
        pytest.skip("`runuser` is missing: cannot run initdb as `postgres`")
    return ["runuser", "-u", "postgres", "--"]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _check_call(cmd: list[str], cwd: Path) -> None:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed (rc {proc.returncode}):\n{proc.stdout}{proc.stderr}")


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL server on 127.0.0.1 with an empty ``archsearch`` database; stopped and deleted after."""
    pytest.importorskip("psycopg2", reason="psycopg2 is missing (pip install psycopg2-binary, in the test extra)")
    bindir = _postgres_bindir()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) are not installed (Debian: apt-get install "
                    "postgresql)")
    prefix = _as_postgres()
    # not under pytest's tmp_path: its parents are private to root, and the server runs as `postgres`
    tmp = Path(tempfile.mkdtemp(prefix="archsearch-pg-"))
    try:
        if prefix:
            shutil.chown(tmp, "postgres", "postgres")
        data, port = tmp / "data", _free_port()
        _check_call([*prefix, str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres",
                     "-E", "UTF8", "--no-sync"], tmp)
        # fsync off: the server is thrown away; a SIGKILLed *worker* loses what it did not commit either way
        options = f"-p {port} -k {tmp} -c listen_addresses=127.0.0.1 -c fsync=off"
        pg_ctl = str(bindir / "pg_ctl")
        _check_call([*prefix, pg_ctl, "-D", str(data), "-l", str(tmp / "server.log"), "-o", options, "-w",
                     "-t", "60", "start"], tmp)
        try:
            _check_call([*prefix, str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres",
                         "archsearch"], tmp)
            yield f"postgresql+psycopg2://postgres@127.0.0.1:{port}/archsearch"
        finally:
            _check_call([*prefix, pg_ctl, "-D", str(data), "-m", "fast", "-w", "stop"], tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
