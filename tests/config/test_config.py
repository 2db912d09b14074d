"""The study YAML: hostile inputs, defaults, round trips, fingerprints and the Optuna objects it names."""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import os
import shutil
import sqlite3
from pathlib import Path

import optuna
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from archsearch.config.recipe import TrainConfig
from archsearch.config.study_config import StudyConfig, load_study_config, study_config_from_dict, study_schema
from archsearch.config.study_schema import (
    Budget,
    DatasetConfig,
    LatencyTarget,
    ObjectiveConfig,
    PrunerConfig,
    RerankConfig,
    SamplerConfig,
)
from archsearch.core.errors import ConfigError
from archsearch.search.samplers import make_pruner, make_sampler
from archsearch.space.search_space import sample_shapes
from archsearch.study.storage import make_storage

REPO = Path(__file__).resolve().parents[2]
STUDIES = REPO / "studies"
SHIPPED = ["quickstart", "fashion_mnist"]

BASE = "name: t\nspace: space.yaml\n"
B = BASE + "budget: {max_macs: 1000000}\n"  # the smallest valid study


@pytest.fixture
def study_dir(tmp_path: Path) -> Path:
    (tmp_path / "space.yaml").write_text("stages: []\n")
    return tmp_path


def _write(directory: Path, text: str, name: str = "study.yaml") -> Path:
    path = directory / name
    path.write_text(text, encoding="utf-8")
    return path


def _assert_located(err: ConfigError, path: Path, key: str | None) -> None:
    """The message starts with the file, then the dotted key path."""
    message = str(err)
    assert message.startswith(f"{path}: "), message
    assert err.path == str(path)
    if key is not None:
        assert err.key == key, message
        assert message.startswith(f"{path}: {key}: "), message


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ---------------------------------------------------------------------------------------------
# Hostile YAML: (text, key path or None for file-level errors, regex)
# ---------------------------------------------------------------------------------------------

HOSTILE = [
    # YAML itself
    pytest.param("name: a\nname: b\nspace: space.yaml\n", None, "duplicate key 'name'", id="duplicate-top"),
    pytest.param(B + "training:\n  lr: 0.1\n  lr: 0.2\n", None, "duplicate key 'lr'", id="duplicate-nested"),
    pytest.param(B + 'x: !!python/object/apply:os.system ["echo hi"]\n', None, "python/object/apply", id="python-tag"),
    pytest.param("", None, "expected a YAML mapping at the top level, got NoneType", id="empty-file"),
    pytest.param("# only a comment\n", None, "expected a YAML mapping", id="comment-only"),
    pytest.param("- name: t\n- space: space.yaml\n", None, "got list", id="top-level-list"),
    pytest.param("name: [unclosed\n", None, "not valid YAML", id="broken-yaml"),
    pytest.param(B + "1: x\n", None, "keys must be strings, got int 1", id="int-key"),
    # YAML 1.1 number spelling
    pytest.param(B + "training: {lr: 1e-3}\n", "training.lr", r"got str '1e-3'.*write 1\.0e-3", id="1e-3-string"),
    pytest.param(
        BASE + "budget: {max_macs: 2.0e6}\n", "budget.max_macs", r"got str '2\.0e6'.*write 2\.0e\+6", id="2.0e6-string"
    ),
    pytest.param(B + "n_trials: '30'\n", "n_trials", "got str '30'.*remove the quotes", id="quoted-int"),
    # wrong types per section
    pytest.param(B + "training: [1, 2]\n", "training", "expected a mapping.*got list", id="training-list"),
    pytest.param(B + "dataset: digits\n", "dataset", "expected a mapping.*got str 'digits'", id="dataset-str"),
    pytest.param(BASE + "budget: 5\n", "budget", "expected a mapping.*got int 5", id="budget-int"),
    pytest.param(B + "objective: [constrained]\n", "objective", "expected a mapping", id="objective-list"),
    pytest.param(B + "sampler: tpe\n", "sampler", "expected a mapping", id="sampler-str"),
    pytest.param(B + "pruner: null\n", "pruner", r"pruner: \{type: none\}", id="pruner-null"),
    pytest.param(
        BASE + "budget: {max_macs: 1000, latency: [cpu]}\n", "budget.latency", "expected a mapping", id="latency-list"
    ),
    pytest.param(
        B + "dataset: {options: {a: {b: 1}}}\n", "dataset.options.a", "expected a scalar", id="options-nested"
    ),
    pytest.param(B + "dataset: {options: {a-b: 1}}\n", "dataset.options", "identifiers", id="options-key"),
    pytest.param(B + "storage: 5\n", "storage", "expected a storage URL", id="storage-int"),
    pytest.param(B + "training: {epochs: 2.5}\n", "training.epochs", "integer.*got float 2.5", id="epochs-float"),
    pytest.param(B + "training: {optimizer: 1}\n", "training.optimizer", "got int 1", id="optimizer-int"),
    # unknown keys, with and without a suggestion
    pytest.param(B + "n_trails: 5\n", "n_trails", "did you mean 'n_trials'", id="unknown-top"),
    pytest.param(B + "training: {lrr: 0.1}\n", "training.lrr", "did you mean 'lr'.*batch_size", id="unknown-training"),
    pytest.param(
        BASE + "budget: {max_macs: 1000, latency: {thread: 2}}\n",
        "budget.latency.thread",
        "did you mean 'threads'",
        id="unknown-deep",
    ),
    pytest.param(B + "zzz: 1\n", "zzz", "valid keys here: name, storage, space", id="unknown-no-suggestion"),
    # required keys and the space file
    pytest.param("space: space.yaml\nbudget: {max_macs: 1000}\n", "name", "missing required key", id="no-name"),
    pytest.param("name: t\nbudget: {max_macs: 1000}\n", "space", "missing required key", id="no-space"),
    pytest.param("name: t\nspace: nope.yaml\nbudget: {max_macs: 1}\n", "space", "not found", id="space-missing"),
    pytest.param("name: t\nspace: .\nbudget: {max_macs: 1}\n", "space", "directory", id="space-is-dir"),
    pytest.param("name: t\nspace: ''\nbudget: {max_macs: 1}\n", "space", "expected a file", id="space-empty"),
    pytest.param("name: 'a b'\nspace: space.yaml\nbudget: {max_macs: 1}\n", "name", "got str 'a b'", id="name-space"),
    pytest.param("name: " + "x" * 65 + "\nspace: space.yaml\nbudget: {max_macs: 1}\n", "name", "64", id="name-long"),
    pytest.param("name: 7\nspace: space.yaml\nbudget: {max_macs: 1}\n", "name", "got int 7", id="name-int"),
    # budgets: zero, negative, nan, inf, absurd, none at all
    pytest.param(BASE + "budget: {max_macs: 0}\n", "budget.max_macs", r"> 0.*got int 0", id="macs-zero"),
    pytest.param(BASE + "budget: {max_params: -5}\n", "budget.max_params", r"> 0.*got int -5", id="params-negative"),
    pytest.param(BASE + "budget: {max_macs: .nan}\n", "budget.max_macs", "got float nan", id="macs-nan"),
    pytest.param(BASE + "budget: {max_latency_ms: .inf}\n", "budget.max_latency_ms", "got float inf", id="lat-inf"),
    pytest.param(BASE + "budget: {max_macs: 1.0e+30}\n", "budget.max_macs", r"<= 1e\+15", id="macs-absurd"),
    pytest.param(BASE + "budget: {max_macs: true}\n", "budget.max_macs", "bool True.*boolean", id="macs-bool"),
    pytest.param(BASE, "budget", "at least one of max_macs, max_params, max_latency_ms", id="no-budget"),
    pytest.param(BASE + "budget: {max_peak_activation_kb: 0}\n", "budget.max_peak_activation_kb", r"> 0.*got int 0",
                 id="peak-zero"),
    pytest.param(BASE + "budget: {max_model_kb: 64, model_precision: fp16}\n", "budget.model_precision",
                 "'float32', 'int8'", id="precision-unknown"),
    pytest.param(BASE + "budget: {max_peak_activation_kb: 64, activation_precision: uint8}\n",
                 "budget.activation_precision", "'float32', 'int8'.*got str 'uint8'", id="act-precision-unknown"),
    pytest.param(BASE + "budget: {max_peak_activation_kb: 64, activation_precision: 8}\n",
                 "budget.activation_precision", "'float32', 'int8'.*got int 8", id="act-precision-int"),
    pytest.param(BASE + "budget: {max_model_kb: 6.4e1}\n", "budget.max_model_kb", r"write 6\.4e\+1", id="kb-string"),
    pytest.param(BASE + "budget: {}\n", "budget", "at least one", id="empty-budget"),
    pytest.param(
        BASE + "budget: {max_macs: 1, latency: {threads: 0}}\n", "budget.latency.threads", ">= 1", id="threads-0"
    ),
    pytest.param(
        BASE + "budget: {max_macs: 1, latency: {device: tpu}}\n", "budget.latency.device", "'cpu', 'cuda'", id="lat-dev"
    ),
    # absurd sizes, bools for ints
    pytest.param(B + "training: {epochs: 1000000000000}\n", "training.epochs", "<= 10000", id="epochs-huge"),
    pytest.param(B + "training: {batch_size: 1000000000}\n", "training.batch_size", "<= 65536", id="batch-huge"),
    pytest.param(B + "n_trials: 100000000\n", "n_trials", r"<= 10000000", id="n-trials-huge"),
    pytest.param(B + "n_trials: 0\n", "n_trials", ">= 1", id="n-trials-0"),
    pytest.param(B + "resolution: 2048\n", "resolution", "<= 1024", id="resolution-huge"),
    pytest.param(B + "resolution: 3\n", "resolution", ">= 4", id="resolution-tiny"),
    pytest.param(B + "training: {epochs: true}\n", "training.epochs", "bool True.*boolean", id="epochs-bool"),
    pytest.param(B + "n_trials: false\n", "n_trials", "bool False", id="n-trials-bool"),
    pytest.param(B + "enqueue_baselines: 1\n", "enqueue_baselines", "true or false, got int 1", id="int-for-bool"),
    pytest.param(B + "timeout: 0\n", "timeout", "> 0", id="timeout-0"),
    pytest.param(B + "training: {seconds: 0}\n", "training.seconds", "> 0", id="seconds-0"),
    pytest.param(B + "training: {label_smoothing: 1.0}\n", "training.label_smoothing", "< 1", id="smoothing-1"),
    pytest.param(B + "training: {momentum: 1}\n", "training.momentum", "< 1", id="momentum-1"),
    pytest.param(B + "training: {weight_decay: -1.0e-4}\n", "training.weight_decay", ">= 0", id="wd-negative"),
    pytest.param(B + "training: {lr: .inf}\n", "training.lr", "got float inf", id="lr-inf"),
    pytest.param(B + "sampler: {seed: -1}\n", "sampler.seed", ">= 0", id="seed-negative"),
    pytest.param(B + "dataset: {val_fraction: 1.0}\n", "dataset.val_fraction", "< 1", id="val-fraction-1"),
    # names: samplers, pruners, objectives, optimizers, schedules, augmentations, devices, datasets
    pytest.param(B + "sampler: {type: cmaes}\n", "sampler.type", "'tpe', 'nsga2', 'random'", id="sampler-unknown"),
    pytest.param(B + "sampler: {type: TPE}\n", "sampler.type", "did you mean 'tpe'", id="sampler-case"),
    pytest.param(B + "pruner: {type: asha}\n", "pruner.type", "'median', 'hyperband', 'none'", id="pruner-unknown"),
    pytest.param(B + "objective: {type: weighted}\n", "objective.type", "'constrained', 'soft', 'pareto'", id="obj"),
    pytest.param(B + "training: {optimizer: lion}\n", "training.optimizer", "'sgd', 'adamw', 'adam'", id="optim"),
    pytest.param(B + "training: {schedule: poly}\n", "training.schedule", "'cosine', 'constant'", id="schedule"),
    pytest.param(B + "training: {augment: shfit}\n", "training.augment", "did you mean 'shift'", id="augment-typo"),
    pytest.param(B + "device: gpu\n", "device", "'auto', 'cpu', 'cuda'", id="device"),
    pytest.param(B + "dataset: {name: imagenet}\n", "dataset.name", "module:function", id="dataset-unknown"),
    pytest.param(B + "dataset: {name: 'my.mod:1load'}\n", "dataset.name", "module:function", id="entry-bad-func"),
    pytest.param(B + "dataset: {name: 'import:load'}\n", "dataset.name", "module:function", id="entry-keyword"),
    pytest.param(B + "dataset: {name: 'a..b:load'}\n", "dataset.name", "module:function", id="entry-empty-part"),
    # cross-section rules
    pytest.param(
        BASE + "objective: {type: pareto}\npruner: {type: median}\n",
        "pruner.type",
        r"pareto.*pruner: \{type: none\}.*got 'median'",
        id="pareto-median",
    ),
    pytest.param(
        B + "objective: {type: soft, soft_metric: params}\n", "budget.max_params", "target", id="soft-no-target"
    ),
    pytest.param(
        B + "objective: {type: soft, soft_metric: latency}\n", "budget.max_latency_ms", "target", id="soft-no-lat"
    ),
    pytest.param(B + "objective: {type: soft, soft_weight: 0.5}\n", "objective.soft_weight", "<= 0", id="soft-w>0"),
    pytest.param(B + "objective: {pareto_metric: params}\n", "objective.pareto_metric", "'macs', 'latency'", id="pm"),
    pytest.param(
        BASE + "objective: {type: pareto}\nbudget: {fit: true}\n", "budget.fit", r"pareto.*fit: false", id="pareto-fit"
    ),
    pytest.param(B.replace("max_macs: 1000000", "max_macs: 1000000, fit: yes please"), "budget.fit",
                 "true or false", id="fit-not-bool"),
    pytest.param(B + "objective: {score: accuracy}\n", "objective.score", "'val_accuracy', 'val_loss'", id="score"),
    pytest.param(B + "objective: {type: soft, score: val_loss}\n", "objective.score",
                 r"'val_loss'.*'constrained' only.*got type 'soft'", id="score-loss-soft"),
    pytest.param(BASE + "objective: {type: pareto, score: val_loss}\n", "objective.score",
                 r"'val_loss'.*'constrained' only.*got type 'pareto'", id="score-loss-pareto"),
    pytest.param(B + "rerank: {top: 0}\n", "rerank.top", ">= 1", id="rerank-top-0"),
    pytest.param(BASE + "objective: {type: pareto}\nrerank: {top: 3}\n", "rerank", "pareto", id="rerank-pareto"),
    pytest.param(B + "rerank: {epoch: 8}\n", "rerank.epoch", "did you mean 'epochs'", id="rerank-typo"),
    pytest.param(B + "rerank: {folds: 1}\n", "rerank.folds", ">= 2", id="rerank-one-fold"),
    # space_overrides: keys of a space file (the merged space is checked against a real one, below)
    pytest.param(B + "space_overrides: {resolution: [1.0]}\n", "space_overrides", "did you mean 'resolution_mult'",
                 id="overrides-typo"),
    pytest.param(B + "space_overrides: [resolution_mult]\n", "space_overrides", "a mapping of search-space keys",
                 id="overrides-list"),
    # storage URLs
    pytest.param(B + "storage: redis://localhost\n", "storage", "sqlite:///.*journal:<file>", id="storage-redis"),
    pytest.param(B + "storage: sqlite://x.db\n", "storage", "sqlite:///<file>", id="storage-two-slashes"),
    pytest.param(B + "storage: 'journal:'\n", "storage", "journal:<file>", id="storage-journal-empty"),
    pytest.param(B + "storage: 'postgresql://'\n", "storage", "postgresql://", id="storage-pg-empty"),
]


@pytest.mark.parametrize("text,key,match", HOSTILE)
def test_hostile_yaml_is_a_located_config_error(study_dir: Path, text: str, key: str | None, match: str) -> None:
    path = _write(study_dir, text)
    with pytest.raises(ConfigError, match=match) as info:
        load_study_config(path)
    _assert_located(info.value, path, key)


def test_enough_hostile_inputs() -> None:
    assert len(HOSTILE) >= 30


# ---------------------------------------------------------------------------------------------
# Hostile files: (setup(study_dir) -> the study path, key, regex)
# ---------------------------------------------------------------------------------------------


def _missing_study(d: Path) -> Path:
    return d / "nope.yaml"


def _directory_study(d: Path) -> Path:
    (d / "adir.yaml").mkdir()
    return d / "adir.yaml"


def _binary_study(d: Path) -> Path:
    (d / "bin.yaml").write_bytes(b"name: \xff\xfe\x00\n")
    return d / "bin.yaml"


def _unreadable_study(d: Path) -> Path:
    path = _write(d, B)
    path.chmod(0)
    if os.access(path, os.R_OK):  # root reads anything
        pytest.skip("running as a user that can read a chmod 000 file")
    return path


def _unreadable_space(d: Path) -> Path:
    (d / "space.yaml").chmod(0)
    if os.access(d / "space.yaml", os.R_OK):
        pytest.skip("running as a user that can read a chmod 000 file")
    return _write(d, B)


@pytest.mark.parametrize(
    "setup,key,match",
    [
        pytest.param(_missing_study, None, "file not found", id="missing"),
        pytest.param(_directory_study, None, "found a directory", id="directory"),
        pytest.param(_binary_study, None, "not a UTF-8 text file", id="binary"),
        pytest.param(_unreadable_study, None, "permission denied", id="unreadable"),
        pytest.param(_unreadable_space, "space", "not readable", id="unreadable-space"),
    ],
)
def test_hostile_files(study_dir: Path, setup, key: str | None, match: str) -> None:
    path = setup(study_dir)
    try:
        with pytest.raises(ConfigError, match=match) as info:
            load_study_config(path)
        _assert_located(info.value, path, key)
    finally:
        for p in study_dir.iterdir():
            p.chmod(0o755 if p.is_dir() else 0o644)


def test_error_without_a_file_names_the_key_only() -> None:
    with pytest.raises(ConfigError) as info:
        study_config_from_dict({"name": "t"})
    assert info.value.path is None and info.value.key == "space"
    assert str(info.value).startswith("space: missing required key")


# ---------------------------------------------------------------------------------------------
# Valid studies: defaults, paths, round trips, fingerprints
# ---------------------------------------------------------------------------------------------


def test_defaults(study_dir: Path) -> None:
    path = _write(study_dir, B)
    cfg = load_study_config(path)
    assert cfg.name == "t"
    assert cfg.source == path
    assert cfg.space_path == (study_dir / "space.yaml").resolve()
    assert cfg.storage == f"sqlite:///{(study_dir / 't.db').resolve()}"
    assert cfg.dataset == DatasetConfig(name="digits", root=None, val_fraction=0.2, download=False, options={})
    assert cfg.resolution is None
    assert cfg.training == TrainConfig()
    assert cfg.budget == Budget(max_macs=1e6, latency=LatencyTarget("cpu", 1, 1), fit=True)
    assert cfg.objective == ObjectiveConfig("constrained", -0.07, "macs", "macs")
    assert cfg.rerank is None
    assert cfg.sampler == SamplerConfig("tpe", 0)
    assert cfg.pruner == PrunerConfig("median")
    assert (cfg.n_trials, cfg.timeout, cfg.device, cfg.enqueue_baselines) == (30, None, "auto", True)


def test_null_sections_mean_defaults(study_dir: Path) -> None:
    cfg = load_study_config(_write(study_dir, B + "training:\ndataset:\nobjective:\nsampler:\n"))
    assert cfg.training == TrainConfig() and cfg.dataset == DatasetConfig()


def test_pareto_without_pruner_section_gets_none(study_dir: Path) -> None:
    cfg = load_study_config(_write(study_dir, BASE + "objective: {type: pareto, pareto_metric: latency}\n"))
    assert cfg.pruner == PrunerConfig("none")
    assert cfg.objective.multi_objective
    assert cfg.budget.max_macs is None  # pareto needs no budget
    assert cfg.budget.fit is False  # a front needs candidates spread over the cost axis


def test_relative_paths_follow_the_yaml_directory(study_dir: Path, tmp_path_factory, monkeypatch) -> None:
    (study_dir / "spaces").mkdir()
    (study_dir / "spaces" / "s.yaml").write_text("a: 1\n")
    sub = study_dir / "studies"
    sub.mkdir()
    text = (
        "name: rel\nspace: ../spaces/s.yaml\nstorage: sqlite:///db/rel.db\n"
        "dataset: {root: ../data}\nbudget: {max_params: 1000}\n"
    )
    monkeypatch.chdir(tmp_path_factory.mktemp("elsewhere"))
    cfg = load_study_config(_write(sub, text))
    assert cfg.space_path == (study_dir / "spaces" / "s.yaml").resolve()
    assert cfg.storage == f"sqlite:///{(sub / 'db' / 'rel.db').resolve()}"
    assert cfg.dataset.root == (study_dir / "data").resolve()
    journal = load_study_config(_write(sub, text.replace("sqlite:///db/rel.db", "journal:j/rel.log")))
    assert journal.storage == f"journal:{(sub / 'j' / 'rel.log').resolve()}"


def test_from_dict_base_dir_defaults_to_cwd(study_dir: Path, monkeypatch) -> None:
    monkeypatch.chdir(study_dir)
    cfg = study_config_from_dict({"name": "c", "space": "space.yaml", "budget": {"max_macs": 10}})
    assert cfg.space_path == (study_dir / "space.yaml").resolve() and cfg.source is None


def test_accepted_spellings(study_dir: Path) -> None:
    text = B.replace("1000000", "2.0e+6") + (
        "storage: postgresql+psycopg2://user:pw@localhost/db\n"
        "training: {train_subset: 1.0e+4, lr: 1.0e-3, seconds: 30}\n"
        "dataset: {name: 'my_pkg.data:load', options: {size: 32, gray: true, tag: x, scale: 0.5, none: null}}\n"
        "sampler: {seed: null}\n"
    )
    cfg = load_study_config(_write(study_dir, text))
    assert cfg.budget.max_macs == 2e6
    assert cfg.training.train_subset == 10000 and isinstance(cfg.training.train_subset, int)
    assert cfg.training.lr == 1e-3 and cfg.training.seconds == 30.0
    assert cfg.dataset.name == "my_pkg.data:load"
    assert cfg.dataset.options == {"size": 32, "gray": True, "tag": "x", "scale": 0.5, "none": None}
    assert cfg.sampler.seed is None
    assert cfg.storage == "postgresql+psycopg2://user:pw@localhost/db"


def _full_study(study_dir: Path) -> StudyConfig:
    text = (
        "name: full.study-1\nspace: space.yaml\nstorage: journal:runs/full.log\n"
        "dataset: {name: fashion-mnist, root: data, val_fraction: 0.1, download: true, options: {k: 3}}\n"
        "resolution: 28\n"
        "training: {epochs: 3, seconds: 12.5, train_subset: 500, batch_size: 32, optimizer: adamw, lr: 0.002,"
        " schedule: onecycle, warmup_epochs: 0.5, label_smoothing: 0.1, augment: shift+flip, seed: 7}\n"
        "budget: {max_macs: 300000, max_params: 20000, max_latency_ms: 2.5,"
        " latency: {device: cuda, threads: 4, batch: 8}}\n"
        "objective: {type: soft, soft_weight: -0.15, soft_metric: latency}\n"
        "sampler: {type: nsga2, seed: 3}\npruner: {type: hyperband}\n"
        "n_trials: 12\ntimeout: 600\ndevice: cpu\nenqueue_baselines: false\n"
    )
    return load_study_config(_write(study_dir, text))


def test_to_dict_round_trip(study_dir: Path) -> None:
    for cfg in (_full_study(study_dir), load_study_config(_write(study_dir, B, "min.yaml"))):
        plain = cfg.to_dict()
        assert json.loads(json.dumps(plain)) == plain  # JSON-able
        assert list(plain)[:3] == ["name", "storage", "space"]
        again = study_config_from_dict(json.loads(json.dumps(plain)))
        assert again == cfg
        assert again.to_dict() == plain


def test_fingerprint(study_dir: Path) -> None:
    cfg = _full_study(study_dir)
    fp = cfg.fingerprint()
    assert json.loads(json.dumps(fp)) == fp
    assert fp["schema"] == 2 and len(fp["space"]) == 64
    # what does not change what a trial measured
    for change in (
        {"n_trials": 99},
        {"timeout": None},
        {"device": "cuda"},
        {"storage": "sqlite:///other.db"},
        {"sampler": {"type": "random", "seed": 1}},
        {"enqueue_baselines": True},
        {"rerank": {"top": 3, "epochs": 20}},
    ):
        assert study_config_from_dict({**cfg.to_dict(), **change}).fingerprint() == fp, change
    # what does
    base = cfg.to_dict()
    for change in (
        {"budget": {**base["budget"], "max_macs": 400000}},
        {"budget": {**base["budget"], "latency": {"device": "cpu", "threads": 4, "batch": 8}}},
        {"objective": {**base["objective"], "soft_weight": -0.07}},
        {"dataset": {**base["dataset"], "val_fraction": 0.2}},
        {"dataset": {**base["dataset"], "options": {"k": 4}}},
        {"resolution": 32},
        {"training": {**base["training"], "epochs": 4}},
        {"budget": {**base["budget"], "fit": not base["budget"]["fit"]}},
    ):
        assert study_config_from_dict({**base, **change}).fingerprint() != fp, change
    space = study_dir / "space.yaml"
    space.write_text("# a comment, and another layout\nstages: [ ]\ndescription: not part of it\n")
    assert cfg.fingerprint() == fp  # the space as parsed: comments, layout and the description do not count
    space.write_text("stages: [1]\n")
    assert cfg.fingerprint() != fp  # the space file's content, read again


def test_the_score_is_in_the_fingerprint_only_when_not_the_default(study_dir: Path) -> None:
    fp = load_study_config(_write(study_dir, B)).fingerprint()
    # the objective as fingerprinted before `score` existed: every study made then resumes unchanged
    assert fp["objective"] == {"type": "constrained", "soft_weight": -0.07, "soft_metric": "macs",
                               "pareto_metric": "macs"}
    assert load_study_config(_write(study_dir, B + "objective: {score: val_accuracy}\n")).fingerprint() == fp
    by_loss = load_study_config(_write(study_dir, B + "objective: {score: val_loss}\n")).fingerprint()
    assert by_loss["objective"]["score"] == "val_loss"
    assert {k: v for k, v in by_loss.items() if k != "objective"} == {k: v for k, v in fp.items() if k != "objective"}


def test_the_activation_precision_is_in_the_fingerprint_only_where_it_changes_the_peak(study_dir: Path) -> None:
    peak = BASE + "budget: {max_peak_activation_kb: 64%s}\n"
    fp = load_study_config(_write(study_dir, peak % "")).fingerprint()
    # the budget as fingerprinted before `activation_precision` existed: every study made then resumes unchanged
    assert fp["budget"] == {"max_macs": None, "max_params": None, "max_latency_ms": None,
                            "max_peak_activation_kb": 64, "latency": {"device": "cpu", "threads": 1, "batch": 1}}
    assert load_study_config(_write(study_dir, peak % ", activation_precision: float32")).fingerprint() == fp
    at_int8 = load_study_config(_write(study_dir, peak % ", activation_precision: int8"))
    assert at_int8.budget.bytes_per_activation == 1 and at_int8.fingerprint()["budget"] == \
        {**fp["budget"], "activation_precision": "int8"}  # a quarter of the peak: other candidates fit
    # without a peak limit the precision changes no figure a trial is judged by
    macs = load_study_config(_write(study_dir, B)).fingerprint()
    assert load_study_config(_write(study_dir, B.replace("}", ", activation_precision: int8}"))).fingerprint() == macs


@pytest.mark.slow  # samples the space: over half a second
def test_space_overrides_narrow_the_space_for_one_study(tmp_path: Path) -> None:
    space = tmp_path / "mixed.yaml"
    shutil.copy(REPO / "search_spaces" / "mixed.yaml", space)
    before = space.read_bytes()
    plain = load_study_config(_write(tmp_path, B.replace("space.yaml", "mixed.yaml")))
    narrow = load_study_config(_write(tmp_path, B.replace("space.yaml", "mixed.yaml")
                                      + "space_overrides: {resolution_mult: [1.0], head: gap}\n", "narrow.yaml"))
    assert plain.load_space().resolution_mult == (0.75, 1.0) and plain.space_overrides is None
    assert narrow.load_space().resolution_mult == (1.0,)
    assert narrow.load_space().stages == plain.load_space().stages  # the rest is the file's
    assert {s.resolution for s in sample_shapes(narrow.load_space(), 50, in_chs=1, resolution=28,
                                                num_classes=10)} == {28}
    assert space.read_bytes() == before
    assert narrow.fingerprint()["space"] != plain.fingerprint()["space"]  # a resumed study cannot mix them
    assert {k: v for k, v in narrow.fingerprint().items() if k != "space"} == \
        {k: v for k, v in plain.fingerprint().items() if k != "space"}
    assert study_config_from_dict(json.loads(json.dumps(narrow.to_dict()))) == narrow
    # a mapping is merged key by key: the stem keeps its types, only its widths change
    stem = load_study_config(_write(tmp_path, B.replace("space.yaml", "mixed.yaml")
                                    + "space_overrides: {stem: {channels: [24]}}\n", "stem.yaml")).load_space()
    assert stem.stem_channels == (24,) and stem.stem_types == plain.load_space().stem_types
    # an override that makes the space invalid names the study file and the override's key
    for text, key, match in (("{resolution_mult: [0.0]}", "space_overrides.resolution_mult[0]", ">= 0.05"),
                             ("{stages: []}", "space_overrides.stages", "non-empty list of stages"),
                             ("{stem: {chanels: [8]}}", "space_overrides.stem.chanels", "did you mean 'channels'"),
                             ("{channel_multiple: 7}", "space_overrides: stages[0].groups",
                              "does not divide channel_multiple 7")):
        path = _write(tmp_path, B.replace("space.yaml", "mixed.yaml") + f"space_overrides: {text}\n", "bad.yaml")
        with pytest.raises(ConfigError, match=match) as info:
            load_study_config(path)
        assert str(info.value).startswith(f"{path}: {key}"), str(info.value)
        assert "with the overrides applied to mixed.yaml" in str(info.value)


def test_a_fingerprint_of_an_older_archsearch_still_matches(study_dir: Path) -> None:
    from archsearch.config.study_config import fingerprint_matches

    cfg = _full_study(study_dir)
    space = study_dir / "space.yaml"
    old = {k: v for k, v in cfg.fingerprint().items() if k != "space"}
    old.update(schema=1, space_sha256=_sha256(space))  # schema 1: the space file's bytes
    assert fingerprint_matches(old, cfg)
    # the shipped spaces gained an editor line in front: the bytes before it still name the same study
    space.write_text("# yaml-language-server: $schema=../archsearch/schemas/space.schema.json\n" + space.read_text())
    assert fingerprint_matches(old, cfg)
    space.write_text(space.read_text() + "# one more comment\n")  # any other byte: schema 1 cannot tell
    assert not fingerprint_matches(old, cfg)
    assert not fingerprint_matches({**old, "space_sha256": _sha256(space), "resolution": 99}, cfg)
    assert not fingerprint_matches({**cfg.fingerprint(), "space": "0" * 64}, cfg)


@pytest.mark.parametrize("cls", [TrainConfig, DatasetConfig, LatencyTarget, ObjectiveConfig, SamplerConfig])
def test_each_key_is_declared_once(study_dir: Path, cls: type) -> None:
    # the class the code reads is the file's schema: a file without the section gets that class's own defaults,
    # the shipped JSON Schema lists its fields, and built in code, the same declaration validates
    cfg = load_study_config(_write(study_dir, B))
    section = {TrainConfig: cfg.training, DatasetConfig: cfg.dataset, LatencyTarget: cfg.budget.latency,
               ObjectiveConfig: cfg.objective, SamplerConfig: cfg.sampler}[cls]
    assert type(section) is cls and section == cls()
    assert list(study_schema()["$defs"][cls.__name__]["properties"]) == [f.name for f in dataclasses.fields(cls)]
    with pytest.raises(ValueError, match=r"^epochs: expected an integer >= 1 and <= 10000, got int 0$"):
        TrainConfig(epochs=0)


def test_a_key_left_out_of_the_file_is_the_declared_default(study_dir: Path) -> None:
    read = load_study_config(_write(study_dir, B + "training: {lr: 0.1}\nrerank: {top: 2}\n"))
    assert read.training == TrainConfig(lr=0.1) and read.training.momentum == TrainConfig().momentum
    assert read.rerank == RerankConfig(top=2) and read.rerank.epochs == RerankConfig().epochs
    assert read.budget == Budget(max_macs=1e6, fit=True)  # fit: null in the class, resolved by the objective


def _shipped_copy(tmp_path: Path) -> Path:
    """The shipped studies next to a copy of search_spaces/mixed.yaml, same relative layout."""
    (tmp_path / "studies").mkdir()
    (tmp_path / "search_spaces").mkdir()
    shutil.copy(REPO / "search_spaces" / "mixed.yaml", tmp_path / "search_spaces")  # space_overrides check it
    for name in SHIPPED:
        shutil.copy(STUDIES / f"{name}.yaml", tmp_path / "studies")
    return tmp_path / "studies"


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_study_content(tmp_path: Path, name: str) -> None:
    cfg = load_study_config(_shipped_copy(tmp_path) / f"{name}.yaml")
    assert cfg.name == name
    assert cfg.space_path == (tmp_path / "search_spaces" / "mixed.yaml").resolve()
    assert cfg.objective.type == "constrained" and cfg.enqueue_baselines
    if name == "quickstart":
        assert cfg.dataset.name == "digits" and cfg.dataset.val_fraction == 0.2
        assert (cfg.budget.max_macs, cfg.budget.max_params) == (300000, 20000)
        assert (cfg.sampler, cfg.pruner, cfg.n_trials) == (SamplerConfig("tpe", 0), PrunerConfig("median"), 60)
        assert (cfg.rerank.top, cfg.rerank.epochs, cfg.rerank.train_subset) == (5, 12, None)
    else:
        assert cfg.dataset.name == "fashion-mnist" and cfg.resolution == 28
        assert cfg.space_overrides == {"resolution_mult": [1.0]}  # 28x28 only (README: Proxy fidelity)
        assert cfg.budget.max_macs == 3e6 and cfg.n_trials == 40
        assert (cfg.training.epochs, cfg.training.train_subset, cfg.training.augment) == (2, 10000, "shift")
    assert study_config_from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_study_loads_in_place(name: str) -> None:
    if not (REPO / "search_spaces" / "mixed.yaml").exists():
        pytest.skip("search_spaces/mixed.yaml does not exist yet")
    cfg = load_study_config(STUDIES / f"{name}.yaml")
    assert cfg.space_path == (REPO / "search_spaces" / "mixed.yaml").resolve()


# ---------------------------------------------------------------------------------------------
# Sampler, pruner, storage
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kind,cls",
    [
        ("tpe", optuna.samplers.TPESampler),
        ("nsga2", optuna.samplers.NSGAIISampler),
        ("random", optuna.samplers.RandomSampler),
    ],
)
@pytest.mark.parametrize("multi_objective", [False, True])
def test_make_sampler(kind: str, cls: type, multi_objective: bool) -> None:
    assert isinstance(make_sampler(SamplerConfig(kind, 0), multi_objective=multi_objective), cls)


@pytest.mark.parametrize(
    "kind,cls",
    [
        ("median", optuna.pruners.MedianPruner),
        ("hyperband", optuna.pruners.HyperbandPruner),
        ("none", optuna.pruners.NopPruner),
    ],
)
def test_make_pruner(kind: str, cls: type) -> None:
    pruner = make_pruner(PrunerConfig(kind))
    # the median pruner reads the study once per trial, through archsearch's wrapper
    assert isinstance(getattr(pruner, "pruner", pruner) if kind == "median" else pruner, cls)


def _run_two_trials(storage, sampler_cfg: SamplerConfig, pruner_cfg: PrunerConfig, *, multi: bool) -> optuna.Study:
    study = optuna.create_study(
        storage=storage,
        study_name=f"s-{sampler_cfg.type}-{multi}",
        directions=["maximize", "minimize"] if multi else ["maximize"],
        sampler=make_sampler(sampler_cfg, multi_objective=multi),
        pruner=make_pruner(pruner_cfg),
    )

    def objective(trial: optuna.Trial):
        x = trial.suggest_float("x", 0.0, 1.0)
        trial.set_constraint("budget", x - 0.5)
        if not multi:
            trial.report(x, 0)
        return (x, x * x) if multi else x

    study.optimize(objective, n_trials=2)
    return study


@pytest.mark.parametrize("scheme", [pytest.param("sqlite", marks=pytest.mark.slow), "journal"])  # SQLite: seconds
def test_make_storage_runs_a_study(tmp_path: Path, scheme: str) -> None:
    file = tmp_path / "new" / "dir" / ("s.db" if scheme == "sqlite" else "s.log")  # parents created
    url = f"sqlite:///{file}" if scheme == "sqlite" else f"journal:{file}"
    storage = make_storage(url)
    for sampler in ("tpe", "nsga2", "random"):
        study = _run_two_trials(storage, SamplerConfig(sampler, 0), PrunerConfig("median"), multi=False)
        assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE] * 2
        assert study.trials[0].constraints.keys() == {"budget"}
    pareto = _run_two_trials(storage, SamplerConfig("tpe", 0), PrunerConfig("none"), multi=True)
    assert len(pareto.trials) == 2 and file.exists()
    # opening the same file again finds the studies (an existing Optuna storage is accepted)
    again = make_storage(url)
    assert len(optuna.load_study(study_name="s-tpe-False", storage=again).trials) == 2


@pytest.mark.slow  # creates an SQLite storage: a second
def test_make_storage_sqlite_settings(tmp_path: Path) -> None:
    storage = make_storage(f"sqlite:///{tmp_path / 'h.db'}").backend
    assert isinstance(storage, optuna.storages.RDBStorage)
    assert storage.heartbeat_interval is not None and storage.grace_period > storage.heartbeat_interval
    assert isinstance(storage.heartbeat_stale_trial_callback, optuna.storages.RetryHeartbeatStaleTrialCallback)
    assert storage.engine_kwargs["connect_args"]["timeout"] >= 30


@pytest.mark.slow  # creates SQLite storages: a second
def test_make_storage_relative_and_empty_files(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "empty.db").write_bytes(b"")  # SQLite treats an empty file as a new database
    assert isinstance(make_storage("sqlite:///empty.db").backend, optuna.storages.RDBStorage)
    (tmp_path / "empty.log").write_bytes(b"")
    assert isinstance(make_storage("journal:empty.log").backend, optuna.storages.JournalStorage)
    assert isinstance(make_storage("sqlite:///:memory:").backend, optuna.storages.RDBStorage)


def _text_file(path: Path) -> Path:
    path.write_text("name: quickstart\nspace: ../search_spaces/mixed.yaml\n")
    return path


def _random_bytes(path: Path) -> Path:
    path.write_bytes(os.urandom(4096))
    return path


def _corrupt_sqlite(path: Path) -> Path:
    path.write_bytes(b"SQLite format 3\x00" + os.urandom(4080))
    return path


def _unrelated_sqlite(path: Path) -> Path:
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY, amount REAL)")
    con.execute("INSERT INTO invoices (amount) VALUES (12.5)")
    con.commit()
    con.close()
    return path


def _directory(path: Path) -> Path:
    path.mkdir()
    return path


@pytest.mark.parametrize(
    "setup,match",
    [
        pytest.param(_text_file, "not an SQLite database", id="text-file"),
        pytest.param(_random_bytes, "not an SQLite database", id="random-bytes"),
        pytest.param(_corrupt_sqlite, "damaged SQLite database", id="corrupt-sqlite"),
        pytest.param(_unrelated_sqlite, "not an Optuna storage.*invoices", id="unrelated-sqlite"),
        pytest.param(_directory, "not a regular file", id="directory"),
    ],
)
def test_make_storage_refuses_a_foreign_sqlite_file(tmp_path: Path, setup, match: str) -> None:
    file = setup(tmp_path / "foreign.db")
    before = None if file.is_dir() else _sha256(file)
    with pytest.raises(ConfigError, match=match) as info:
        make_storage(f"sqlite:///{file}")
    _assert_located(info.value, file, "storage")
    if before is not None:
        assert _sha256(file) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["foreign.db"]  # no -journal / -wal left behind


@pytest.mark.parametrize("scheme", ["sqlite:///", "journal:"])
def test_reading_a_missing_storage_creates_nothing(tmp_path: Path, scheme: str) -> None:
    file = tmp_path / "studies" / "missing.db"
    with pytest.raises(ConfigError, match="does not exist.*run `archsearch search` first") as info:
        make_storage(f"{scheme}{file}", create=False)
    _assert_located(info.value, file, "storage")
    assert list(tmp_path.iterdir()) == []  # neither the file nor its directory


@pytest.mark.parametrize("setup", [_text_file, _random_bytes, _unrelated_sqlite])
def test_make_storage_refuses_a_foreign_journal_file(tmp_path: Path, setup) -> None:
    file = setup(tmp_path / "foreign.log")
    before = _sha256(file)
    with pytest.raises(ConfigError, match="not an Optuna journal") as info:
        make_storage(f"journal:{file}")
    _assert_located(info.value, file, "storage")
    assert _sha256(file) == before


@pytest.mark.parametrize(
    "url,match",
    [
        ("redis://localhost:6379", "sqlite:///"),
        ("sqlite:/relative.db", "sqlite:///"),
        ("journal:", "journal:<file>"),
        ("mongodb://user:secret@host/db", "user:\\*\\*\\*@host"),
    ],
)
def test_make_storage_bad_url(url: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match) as info:
        make_storage(url)
    assert info.value.key == "storage" and "secret" not in str(info.value)


# ---------------------------------------------------------------------------------------------
# Fuzz: random structures and mutated valid configs raise ConfigError or nothing
# ---------------------------------------------------------------------------------------------

_STRINGS = [
    "1e-3", "2.0e6", "1.0e-3", "tpe", "nsga2", "random", "none", "median", "hyperband", "pareto", "soft",
    "constrained", "macs", "params", "latency", "cpu", "cuda", "auto", "digits", "mnist", "a.b:c", "os:system",
    "sqlite:///x.db", "sqlite:///:memory:", "sqlite:///sub/x.db?timeout=3", "journal:j.log", "journal:",
    "postgresql://u:p@h/db", "space.yaml", "../space.yaml", "~nouser_zz_archsearch/x", "\x00", "..", "/", "",
    " ", "nan", "inf", "-0", "sgd", "shift", "cosine",
]  # fmt: skip
_DELETE = object()

_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-3, max_value=70_000),
    st.floats(),
    st.floats(min_value=-1.0, max_value=2.0),
    st.text(max_size=10),
    st.sampled_from(_STRINGS),
)


def _valid_base(space: Path) -> dict:
    return {
        "name": "fz",
        "space": str(space),
        "storage": None,
        "dataset": {"name": "digits", "root": None, "val_fraction": 0.2, "download": False, "options": {}},
        "resolution": None,
        "training": dataclasses.asdict(TrainConfig()),
        "budget": {
            "max_macs": 1e6,
            "max_params": 5e4,
            "max_latency_ms": None,
            "latency": {"device": "cpu", "threads": 1, "batch": 1},
        },
        "objective": {"type": "constrained", "soft_weight": -0.07, "soft_metric": "macs", "pareto_metric": "macs"},
        "sampler": {"type": "tpe", "seed": 0},
        "pruner": {"type": "median"},
        "n_trials": 30,
        "timeout": None,
        "device": "auto",
        "enqueue_baselines": True,
    }


def _key_paths(d: dict, prefix: tuple = ()) -> list[tuple]:
    paths = []
    for k, v in d.items():
        paths.append((*prefix, k))
        if isinstance(v, dict):
            paths.extend(_key_paths(v, (*prefix, k)))
    return paths


_PATHS = _key_paths(_valid_base(Path("s"))) + [("bogus",), ("training", "lrr"), ("budget", "latency", "x")]
_keys = st.one_of(st.text(max_size=6), st.sampled_from(sorted({p[-1] for p in _PATHS})), st.integers(-2, 2))
_values = st.recursive(
    _scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_keys, inner, max_size=3), max_leaves=8
)


def _mutate(base: dict, edits: list[tuple[tuple, object]]) -> dict:
    data = copy.deepcopy(base)
    for path, value in edits:
        node = data
        for key in path[:-1]:
            if not isinstance(node.get(key), dict):
                node[key] = {}
            node = node[key]
        if value is _DELETE:
            node.pop(path[-1], None)
        else:
            node[path[-1]] = value
    return data


@pytest.fixture(scope="module")
def fuzz_space(tmp_path_factory) -> Path:
    space = tmp_path_factory.mktemp("fuzz") / "space.yaml"
    space.write_text("stages: []\n")
    return space


_edits = st.lists(st.tuples(st.sampled_from(_PATHS), st.one_of(_values, st.just(_DELETE))), min_size=1, max_size=4)


@pytest.mark.slow  # 300 examples: seconds
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_data=_values, edits=_edits, use_random=st.booleans())
def test_fuzz_only_config_errors(fuzz_space: Path, random_data, edits, use_random: bool) -> None:
    data = random_data if use_random else _mutate(_valid_base(fuzz_space), edits)
    try:
        cfg = study_config_from_dict(data, base_dir=fuzz_space.parent)
    except ConfigError:
        return
    plain = cfg.to_dict()
    assert json.loads(json.dumps(plain)) == plain
    assert study_config_from_dict(plain) == cfg
    json.dumps(cfg.fingerprint())
