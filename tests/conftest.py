"""Shared fixtures: a tiny search space and a short study, written as real YAML files under ``tmp_path``."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import pytest
import torch
import yaml


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


class ReadCounter:
    """Counts the SQL rounds that read a study's trials from a real SQLite storage."""

    def __init__(self, monkeypatch):
        self.reads = 0
        real = optuna.storages.RDBStorage._get_trials

        def counted(storage, *args, **kwargs):
            self.reads += 1
            return real(storage, *args, **kwargs)

        monkeypatch.setattr(optuna.storages.RDBStorage, "_get_trials", counted)
