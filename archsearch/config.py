"""The study YAML: validated into frozen dataclasses, plus the Optuna sampler, pruner and storage it names.

Every check lives in one of the small spec tables below (key -> (checker, default)); a bad value is a
:class:`~archsearch.errors.ConfigError` naming the file, the dotted key path and what was expected.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import keyword
import math
import numbers
import os
import random
import re
import reprlib
import sqlite3
import stat
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import optuna

from archsearch.errors import ConfigError, load_yaml
from archsearch.samplers import ArchTPESampler, PerTrialPruner
from archsearch.train import AUGMENTATIONS, OPTIMIZERS, SCHEDULES, TrainConfig

DATASETS = ("digits", "fashion-mnist", "mnist", "cifar10", "synthetic")
OBJECTIVES = ("constrained", "soft", "pareto")
SOFT_METRICS = ("macs", "params", "latency")
PARETO_METRICS = ("macs", "latency")
SAMPLERS = ("tpe", "nsga2", "random")
PRUNERS = ("median", "hyperband", "none")
DEVICES = ("auto", "cpu", "cuda")
LATENCY_DEVICES = ("cpu", "cuda")
RDB_SCHEMES = ("postgresql", "postgresql+psycopg2", "postgresql+psycopg", "mysql", "mysql+pymysql")

# Heartbeats turn the RUNNING trial of a killed worker into FAIL (and retry it once), so a resumed
# search neither waits on nor "constant-lies" around a zombie. The heartbeat thread runs beside
# training, so the grace period only has to cover SQLite lock waits, not an epoch.
HEARTBEAT_INTERVAL_S = 60
HEARTBEAT_GRACE_PERIOD_S = 180
HEARTBEAT_MAX_RETRY = 1  # a candidate that kills its worker twice is not retried again
SQLITE_TIMEOUT_S = 60  # several workers on one sqlite file wait for the lock instead of failing
_OPEN_ATTEMPTS = 5  # tries to open an RDB storage that other workers may be creating at the same instant

_SQLITE_PREFIX = "sqlite:///"
_JOURNAL_PREFIX = "journal:"
_SQLITE_HEADER = b"SQLite format 3\x00"
_NAME_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_FINGERPRINT_SCHEMA = 1
FIT_SCHEME = 1  # bump when budget fitting picks other widths for the same shape and budget


# ---------------------------------------------------------------------------------------------
# The configuration dataclasses
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DatasetConfig:
    """Which data a candidate is trained and scored on."""

    name: str = "digits"  # a built-in (DATASETS) or "module:function"
    root: Path | None = None  # absolute; None: the loader's default
    val_fraction: float = 0.2
    download: bool = False
    options: dict[str, Any] = field(default_factory=dict)  # extra keyword options for the loader


@dataclass(frozen=True)
class LatencyTarget:
    """Where the latency budget is measured."""

    device: str = "cpu"
    threads: int = 1
    batch: int = 1


@dataclass(frozen=True)
class Budget:
    """Hardware budget of a candidate; None means "no limit on this cost"."""

    max_macs: float | None = None
    max_params: float | None = None
    max_latency_ms: float | None = None
    latency: LatencyTarget = field(default_factory=LatencyTarget)
    # budget fitting (archsearch/fit.py): the sampler picks the shape, the widths are scaled to the budget.
    # None in the YAML: on for the constrained and soft objectives, off for pareto (a front needs spread)
    fit: bool | None = None

    def limit(self, metric: str) -> float | None:
        """The limit on ``metric`` ("macs", "params" or "latency")."""
        return getattr(self, _BUDGET_FIELD[metric])

    def limits(self) -> dict[str, float]:
        """The metrics that have a limit, with it."""
        return {m: self.limit(m) for m in _BUDGET_FIELD if self.limit(m) is not None}


_BUDGET_FIELD = {"macs": "max_macs", "params": "max_params", "latency": "max_latency_ms"}


@dataclass(frozen=True)
class ObjectiveConfig:
    """How a trained candidate is scored.

    constrained: accuracy, with over-budget candidates marked infeasible (trial.set_constraint).
    soft: MnasNet's reward ``acc * (cost / target) ** soft_weight`` (https://arxiv.org/abs/1807.11626).
    pareto: two objectives, accuracy (max) and ``pareto_metric`` (min).
    """

    type: str = "constrained"
    soft_weight: float = -0.07
    soft_metric: str = "macs"
    pareto_metric: str = "macs"

    @property
    def multi_objective(self) -> bool:
        return self.type == "pareto"


@dataclass(frozen=True)
class SamplerConfig:
    type: str = "tpe"
    seed: int | None = 0


@dataclass(frozen=True)
class PrunerConfig:
    type: str = "median"


@dataclass(frozen=True)
class RerankConfig:
    """The search's last step: its ``top`` feasible candidates trained again with a longer recipe.

    ``epochs`` and ``train_subset`` replace the study's training recipe's (None: all training images).
    """

    top: int = 5
    epochs: int = 8
    train_subset: int | None = None


@dataclass(frozen=True)
class StudyConfig:
    """One validated study YAML. Build it with :func:`load_study_config` or :func:`study_config_from_dict`."""

    name: str
    storage: str  # an Optuna storage URL, or "journal:<absolute path>"
    space_path: Path  # absolute
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    resolution: int | None = None  # None: the dataset's own
    training: TrainConfig = field(default_factory=TrainConfig)
    budget: Budget = field(default_factory=Budget)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    pruner: PrunerConfig = field(default_factory=PrunerConfig)
    n_trials: int = 30
    timeout: float | None = None
    device: str = "auto"
    enqueue_baselines: bool = True
    rerank: RerankConfig | None = None  # None: no re-rank
    source: Path | None = field(default=None, compare=False)  # the YAML it was read from

    def to_dict(self) -> dict[str, Any]:
        """A plain JSON-able dict; ``study_config_from_dict(cfg.to_dict()) == cfg`` (all paths are absolute)."""
        out = {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self) if f.name != "source"}
        out["space"] = out.pop("space_path")
        return {key: out[key] for key in _TOP}  # the YAML's key order

    def fingerprint(self) -> dict[str, Any]:
        """What makes old trials incomparable when it changes (JSON-able).

        The search-space file is hashed byte for byte; n_trials, timeout, device, storage, the sampler,
        enqueue_baselines and rerank are left out because changing them does not change what a trial
        measured (a re-rank result records its own recipe). Budget fitting is its own key, present only
        when on, so that studies made before it existed resume with ``fit: false``.
        """
        budget = _plain(self.budget)
        fit = budget.pop("fit")
        return {
            "schema": _FINGERPRINT_SCHEMA,
            "space_sha256": _sha256_file(self.space_path),
            "objective": _plain(self.objective),
            "budget": budget,
            **({"budget.fit": FIT_SCHEME} if fit else {}),
            "dataset": {
                "name": self.dataset.name,
                "options": _plain(self.dataset.options),
                "val_fraction": self.dataset.val_fraction,
                "resolution": self.resolution,
            },
            "training": _plain(self.training),
        }


def _plain(value: Any) -> Any:
    """Dataclasses, paths and tuples as JSON-able dicts, strings and lists."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def _sha256_file(path: Path) -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError as e:
        raise ConfigError(f"cannot read the search-space file: {e.strerror}", path=path, key="space") from None


# ---------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------


def load_study_config(path: str | os.PathLike) -> StudyConfig:
    """Read and validate a study YAML; relative paths inside it are relative to its directory."""
    path = Path(path)
    return study_config_from_dict(load_yaml(path), path=path, base_dir=path.absolute().parent)


def study_config_from_dict(
    data: Mapping[str, Any],
    *,
    path: str | os.PathLike | None = None,
    base_dir: str | os.PathLike | None = None,
) -> StudyConfig:
    """Validate a study given as a dict (the parsed YAML, or built in code).

    ``path`` is the file named in errors (and kept as ``source``); relative paths in ``data`` are resolved
    against ``base_dir``, by default the directory of ``path``, or the current directory without one.
    """
    path = None if path is None else Path(path)
    if base_dir is None:
        base_dir = path.absolute().parent if path is not None else Path.cwd()
    at = _At(path=path, base_dir=Path(base_dir).absolute())
    if not isinstance(data, Mapping):
        at.fail(f"expected a mapping at the top level, got {_show(data)}")
    values = _section(data, at, _top_spec(data))
    if values["storage"] is None:
        values["storage"] = f"{_SQLITE_PREFIX}{(at.base_dir / (values['name'] + '.db')).resolve()}"
    objective: ObjectiveConfig = values["objective"]
    budget: Budget = values["budget"]
    _check_objective_budget(objective, budget, values["pruner"], at)
    if budget.fit is None:
        values["budget"] = dataclasses.replace(budget, fit=not objective.multi_objective)
    if values["rerank"] is not None and objective.multi_objective:
        at.child("rerank").fail(
            "a re-rank picks one best candidate by a longer recipe, but objective 'pareto' has a front: "
            "remove `rerank` (or set it to null)"
        )
    return StudyConfig(**{_TOP_FIELD.get(k, k): v for k, v in values.items()}, source=path)


def _check_objective_budget(objective: ObjectiveConfig, budget: Budget, pruner: PrunerConfig, at: _At) -> None:
    """Rules that span sections."""
    if objective.type != "pareto" and all(budget.limit(m) is None for m in _BUDGET_FIELD):
        at.child("budget").fail(
            f"objective {objective.type!r} needs at least one of max_macs, max_params, max_latency_ms "
            "(candidates are judged against it), got none"
        )
    if objective.type == "soft" and budget.limit(objective.soft_metric) is None:
        key = _BUDGET_FIELD[objective.soft_metric]
        at.child("budget").child(key).fail(
            f"objective 'soft' with soft_metric {objective.soft_metric!r} uses budget.{key} as its target, "
            "but it is not set"
        )
    if objective.type == "pareto" and budget.fit:
        at.child("budget").child("fit").fail(
            "budget fitting scales every candidate to the budget's edge, but objective 'pareto' needs "
            "candidates spread over the cost axis: set `fit: false` (or leave it out), got true"
        )
    if objective.type == "pareto" and pruner.type != "none":
        at.child("pruner").child("type").fail(
            f"pruning is not available for objective 'pareto' (Optuna cannot prune multi-objective studies): "
            f"set `pruner: {{type: none}}`, got {pruner.type!r}"
        )


# ---------------------------------------------------------------------------------------------
# Checkers: (value, where) -> the validated value
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _At:
    """Where a value sits: the file, the directory relative paths start from, the dotted key path."""

    path: Path | None
    base_dir: Path
    key: str | None = None

    def child(self, name: str) -> _At:
        return dataclasses.replace(self, key=f"{self.key}.{name}" if self.key else name)

    def fail(self, message: str) -> NoReturn:
        raise ConfigError(message, path=self.path, key=self.key)


Check = Callable[[Any, _At], Any]
_REQUIRED = object()

_repr = reprlib.Repr()
_repr.maxstring = 60
_repr.maxother = 60
_repr.maxlevel = 3


def _show(value: Any) -> str:
    """``str '1e-3'``, ``bool True``, ``float nan``: the type and a bounded repr of a bad value."""
    if value is None:
        return "null"
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**40:
        return f"int of {value.bit_length()} bits"  # repr() refuses very long ints
    return f"{type(value).__name__} {_repr.repr(value)}"


def _yaml_float(text: str) -> str:
    """``text`` (a number with an exponent) spelled so that YAML 1.1 reads it as a float: 1e-3 -> 1.0e-3."""
    match = re.fullmatch(r"([+-]?)(\d*)\.?(\d*)[eE]([+-]?)(\d+)", text)
    if match is None or not (match[2] or match[3]):
        return repr(float(text))
    sign, whole, frac, exp_sign, exponent = match.groups()
    return f"{sign}{whole or '0'}.{frac or '0'}e{exp_sign or '+'}{exponent}"


def _hint(value: Any) -> str:
    """Why a value that looks right is not: YAML 1.1 exponent rules, quoted numbers, booleans."""
    if isinstance(value, bool):
        return " (true/false is a boolean, not a number)"
    if isinstance(value, str):
        text = value.strip()
        try:
            number = float(text)
        except ValueError:
            return ""
        if "e" in text.lower() and math.isfinite(number):
            return (
                f" (YAML 1.1 reads {text} as a string: a float needs a dot in the mantissa and a sign in "
                f"the exponent; write {_yaml_float(text)})"
            )
        return " (a quoted number is a string: remove the quotes)"
    return ""


def _did_you_mean(word: Any, options: Any) -> str:
    if not isinstance(word, str):
        return ""
    close = difflib.get_close_matches(word.lower(), list(options), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _is_number(value: Any) -> bool:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return False
    return isinstance(value, numbers.Integral) or math.isfinite(value)  # math.isfinite(10**400) overflows


def _fmt(x: float) -> str:
    if isinstance(x, int) or (x.is_integer() and abs(x) < 1e7):
        return str(int(x))
    return f"{x:g}"


def _bounds(lo: float, hi: float, lo_open: bool, hi_open: bool) -> str:
    return f"{'>' if lo_open else '>='} {_fmt(lo)} and {'<' if hi_open else '<='} {_fmt(hi)}"


def _integer(lo: int, hi: int) -> Check:
    def check(value: Any, at: _At) -> int:
        number = value
        if isinstance(value, float) and math.isfinite(value) and value.is_integer():
            number = int(value)  # 1.0e+4 written for an int
        if not isinstance(number, numbers.Integral) or isinstance(number, bool) or not lo <= number <= hi:
            at.fail(f"expected an integer {_bounds(lo, hi, False, False)}, got {_show(value)}{_hint(value)}")
        return int(number)

    return check


def _number(lo: float, hi: float, *, lo_open: bool = False, hi_open: bool = False) -> Check:
    def check(value: Any, at: _At) -> float:
        ok = _is_number(value)
        ok = ok and (lo < value if lo_open else lo <= value) and (value < hi if hi_open else value <= hi)
        if not ok:
            at.fail(f"expected a number {_bounds(lo, hi, lo_open, hi_open)}, got {_show(value)}{_hint(value)}")
        return float(value)

    return check


def _choice(options: tuple[str, ...]) -> Check:
    def check(value: Any, at: _At) -> str:
        if not isinstance(value, str) or value not in options:
            listed = ", ".join(repr(o) for o in options)
            at.fail(f"expected one of {listed}, got {_show(value)}{_did_you_mean(value, options)}")
        return value

    return check


def _boolean(value: Any, at: _At) -> bool:
    if not isinstance(value, bool):
        at.fail(f"expected true or false, got {_show(value)}")
    return value


def _optional(check: Check) -> Check:
    def optional(value: Any, at: _At) -> Any:
        return None if value is None else check(value, at)

    return optional


def _text_path(value: Any, at: _At) -> Path:
    """A non-empty path written as a string, made absolute against the YAML's directory."""
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if not isinstance(value, str) or not value.strip() or "\x00" in value:
        at.fail(f"expected a file or directory path, got {_show(value)}")
    try:
        return (at.base_dir / Path(value).expanduser()).resolve()
    except (OSError, RuntimeError, ValueError) as e:  # RuntimeError: "~user" with no such user
        at.fail(f"cannot resolve path {value!r}: {e}")


def _name(value: Any, at: _At) -> str:
    if not isinstance(value, str) or not _NAME_RE.fullmatch(value):
        at.fail(f"expected 1 to 64 characters from A-Z a-z 0-9 _ . -, got {_show(value)}")
    return value


def _space_file(value: Any, at: _At) -> Path:
    path = _text_path(value, at)
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        at.fail(f"search-space file not found: {path}")
    except (OSError, ValueError) as e:
        at.fail(f"cannot access the search-space file {path}: {e}")
    if stat.S_ISDIR(mode):
        at.fail(f"expected a search-space YAML file, found a directory: {path}")
    if not os.access(path, os.R_OK):
        at.fail(f"search-space file is not readable (permission denied): {path}")
    return path


def _dataset_name(value: Any, at: _At) -> str:
    if isinstance(value, str) and (value in DATASETS or _is_entry_point(value)):
        return value
    listed = ", ".join(repr(d) for d in DATASETS)
    at.fail(
        f"expected a built-in dataset ({listed}) or 'module:function' naming a loader, "
        f"got {_show(value)}{_did_you_mean(value, DATASETS)}"
    )


def _is_entry_point(text: str) -> bool:
    """``package.module:function``: dotted identifiers, then one identifier, no keywords."""
    module, sep, function = text.partition(":")
    parts = [*module.split("."), function]
    return bool(sep) and all(p.isidentifier() and not keyword.iskeyword(p) for p in parts)


def _options(value: Any, at: _At) -> dict[str, Any]:
    """Extra loader keyword options: identifier -> str / int / finite float / bool / null."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        at.fail(f"expected a mapping of option name -> scalar, got {_show(value)}")
    out = {}
    for key, item in value.items():
        if not isinstance(key, str) or not key.isidentifier():
            at.fail(f"option names must be Python identifiers (they become keyword arguments), got {_show(key)}")
        scalar = item is None or isinstance(item, (str, bool, numbers.Integral)) or _is_number(item)
        if not scalar or (isinstance(item, numbers.Integral) and abs(item) > 2**63):
            at.child(key).fail(f"expected a scalar (string, number, true/false or null), got {_show(item)}")
        out[key] = item if item is None or isinstance(item, (str, bool)) else _as_python_number(item)
    return out


def _as_python_number(x: numbers.Real) -> int | float:
    return int(x) if isinstance(x, numbers.Integral) else float(x)


def _storage(value: Any, at: _At) -> str:
    """A storage URL with its file (sqlite, journal) made absolute against the YAML's directory."""
    if isinstance(value, str):
        try:
            return _normalize_storage(value, at.base_dir)
        except ValueError as e:
            at.fail(f"{e}, got {_show(value)}")
    at.fail(f"expected a storage URL string or null, got {_show(value)}")


def _normalize_storage(url: str, base_dir: Path) -> str:
    """Absolute form of a storage URL; ValueError (says what is accepted) when the scheme is not known."""
    try:
        return _normalize_storage_url(url, base_dir)
    except (OSError, RuntimeError) as e:  # RuntimeError: "~user" with no such user
        raise ValueError(f"cannot resolve the storage file: {e}") from None


def _normalize_storage_url(url: str, base_dir: Path) -> str:
    if url.startswith(_SQLITE_PREFIX):
        file, query = _sqlite_file(url)
        if file is None:
            return url
        resolved = (base_dir / Path(file).expanduser()).resolve()
        return f"{_SQLITE_PREFIX}{resolved}{query}"
    if url.startswith(_JOURNAL_PREFIX) and url[len(_JOURNAL_PREFIX) :].strip():
        resolved = (base_dir / Path(url[len(_JOURNAL_PREFIX) :]).expanduser()).resolve()
        return f"{_JOURNAL_PREFIX}{resolved}"
    scheme, sep, rest = url.partition("://")
    if sep and scheme in RDB_SCHEMES and rest.strip() and not any(c.isspace() for c in url):
        return url
    raise ValueError(
        "expected null (an sqlite file next to the YAML), sqlite:///<file>, "
        f"{'://..., '.join(RDB_SCHEMES)}://... or journal:<file>"
    )


def _sqlite_file(url: str) -> tuple[str | None, str]:
    """The database file of a sqlite URL (None: in memory) and its ``?query`` suffix."""
    file, mark, query = url[len(_SQLITE_PREFIX) :].partition("?")
    if "\x00" in file:
        raise ValueError("a path cannot contain a NUL character")
    return (None if file in ("", ":memory:") else file), mark + query


def _section_check(spec: dict[str, tuple[Check, Any]], make: Callable[..., Any]) -> Check:
    def check(value: Any, at: _At) -> Any:
        return make(**_section(value, at, spec))

    return check


def _section(value: Any, at: _At, spec: dict[str, tuple[Check, Any]]) -> dict[str, Any]:
    """Check a mapping against ``spec`` (key -> (checker, default or _REQUIRED)); null means all defaults."""
    if value is None:
        value = {}
    if not isinstance(value, Mapping):
        at.fail(f"expected a mapping with keys {', '.join(spec)}, got {_show(value)}")
    for key in value:
        if not isinstance(key, str):
            at.fail(f"keys must be strings, got {_show(key)}")
        if key not in spec:
            at.child(key).fail(
                f"unknown key {_repr.repr(key)}{_did_you_mean(key, spec)}; valid keys here: {', '.join(spec)}"
            )
    out = {}
    for key, (check, default) in spec.items():
        if key in value:
            out[key] = check(value[key], at.child(key))
        elif default is _REQUIRED:
            at.child(key).fail("missing required key")
        else:
            out[key] = default
    return out


def _train_config(value: Any, at: _At) -> TrainConfig:
    values = _section(value, at, _TRAINING)
    try:
        return TrainConfig(**values)
    except (TypeError, ValueError) as e:  # TrainConfig's own cross-field rules
        at.fail(str(e))


def _pruner(value: Any, at: _At) -> PrunerConfig:
    if value is None:
        at.fail("expected a mapping such as {type: median}; for no pruning write `pruner: {type: none}`, got null")
    return PrunerConfig(**_section(value, at, _PRUNER))


# ---------------------------------------------------------------------------------------------
# The spec tables (the schema of docs/the study YAML)
# ---------------------------------------------------------------------------------------------

_SEED = _integer(0, 2**32 - 1)
_BATCH = _integer(1, 65536)

# Validation of each TrainConfig field; the defaults come from the dataclass itself.
_TRAINING_CHECKS: dict[str, Check] = {
    "epochs": _integer(1, 10_000),
    "seconds": _optional(_number(0, 1e7, lo_open=True)),
    "train_subset": _optional(_integer(1, 10**9)),
    "batch_size": _BATCH,
    "eval_batch_size": _BATCH,
    "optimizer": _choice(OPTIMIZERS),
    "lr": _number(0, 10, lo_open=True),
    "momentum": _number(0, 1, hi_open=True),
    "weight_decay": _number(0, 1),
    "schedule": _choice(SCHEDULES),
    "warmup_epochs": _number(0, 10_000),
    "label_smoothing": _number(0, 1, hi_open=True),
    "augment": _choice(AUGMENTATIONS),
    "seed": _SEED,
}


def _unchecked(value: Any, at: _At) -> Any:
    """A TrainConfig field without an entry above: left to TrainConfig.__post_init__."""
    return value


_TRAINING: dict[str, tuple[Check, Any]] = {
    f.name: (_TRAINING_CHECKS.get(f.name, _unchecked), f.default) for f in dataclasses.fields(TrainConfig)
}

_DATASET: dict[str, tuple[Check, Any]] = {
    "name": (_dataset_name, "digits"),
    "root": (_optional(_text_path), None),
    "val_fraction": (_number(0, 1, lo_open=True, hi_open=True), 0.2),
    "download": (_boolean, False),
    "options": (_options, {}),
}

_LATENCY: dict[str, tuple[Check, Any]] = {
    "device": (_choice(LATENCY_DEVICES), "cpu"),
    "threads": (_integer(1, 1024), 1),
    "batch": (_BATCH, 1),
}

_BUDGET: dict[str, tuple[Check, Any]] = {
    "max_macs": (_optional(_number(0, 1e15, lo_open=True)), None),
    "max_params": (_optional(_number(0, 1e12, lo_open=True)), None),
    "max_latency_ms": (_optional(_number(0, 1e7, lo_open=True)), None),
    "latency": (_section_check(_LATENCY, LatencyTarget), LatencyTarget()),
    "fit": (_optional(_boolean), None),
}

_RERANK: dict[str, tuple[Check, Any]] = {
    "top": (_integer(1, 1000), RerankConfig.top),
    "epochs": (_integer(1, 10_000), RerankConfig.epochs),
    "train_subset": (_optional(_integer(1, 10**9)), None),
}

_OBJECTIVE: dict[str, tuple[Check, Any]] = {
    "type": (_choice(OBJECTIVES), "constrained"),
    "soft_weight": (_number(-10, 0), -0.07),
    "soft_metric": (_choice(SOFT_METRICS), "macs"),
    "pareto_metric": (_choice(PARETO_METRICS), "macs"),
}

_SAMPLER: dict[str, tuple[Check, Any]] = {
    "type": (_choice(SAMPLERS), "tpe"),
    "seed": (_optional(_SEED), 0),
}

_PRUNER: dict[str, tuple[Check, Any]] = {"type": (_choice(PRUNERS), "median")}

_TOP = (
    "name", "storage", "space", "dataset", "resolution", "training", "budget", "objective",
    "sampler", "pruner", "n_trials", "timeout", "device", "enqueue_baselines", "rerank",
)  # fmt: skip
_TOP_FIELD = {"space": "space_path"}  # YAML key -> StudyConfig field, where they differ


def _top_spec(data: Mapping[str, Any]) -> dict[str, tuple[Check, Any]]:
    """The top-level table; the pruner's default depends on the objective."""
    objective = data.get("objective")
    pareto = isinstance(objective, Mapping) and objective.get("type") == "pareto"
    return {
        "name": (_name, _REQUIRED),
        "storage": (_optional(_storage), None),  # None: sqlite:///<YAML dir>/<name>.db, filled in later
        "space": (_space_file, _REQUIRED),
        "dataset": (_section_check(_DATASET, DatasetConfig), DatasetConfig()),
        "resolution": (_optional(_integer(4, 1024)), None),
        "training": (_train_config, TrainConfig()),
        "budget": (_section_check(_BUDGET, Budget), Budget()),
        "objective": (_section_check(_OBJECTIVE, ObjectiveConfig), ObjectiveConfig()),
        "sampler": (_section_check(_SAMPLER, SamplerConfig), SamplerConfig()),
        # multi-objective studies cannot prune: a pareto study without a pruner section gets none
        "pruner": (_pruner, PrunerConfig("none" if pareto else "median")),
        "n_trials": (_integer(1, 10**7), 30),
        "timeout": (_optional(_number(0, 1e8, lo_open=True)), None),
        "device": (_choice(DEVICES), "auto"),
        "enqueue_baselines": (_boolean, True),
        "rerank": (_optional(_section_check(_RERANK, RerankConfig)), None),
    }


# ---------------------------------------------------------------------------------------------
# Optuna objects named by the config
# ---------------------------------------------------------------------------------------------


def make_sampler(cfg: SamplerConfig, *, multi_objective: bool) -> optuna.samplers.BaseSampler:
    """The sampler of ``cfg``.

    In Optuna 5 constraints are per trial (``trial.set_constraint``) and TPESampler, NSGAIISampler read
    them from ``FrozenTrial.constraints`` on their own; ``constraints_func`` is deprecated, so no flag is
    passed. All three samplers handle single- and multi-objective studies with the same arguments
    (multivariate TPE included), so ``multi_objective`` changes nothing today; callers pass it so that a
    sampler needing it later does not change this signature.
    """
    if cfg.type == "tpe":
        # multivariate TPE over grouped (conditional) parameters; its constant liar keeps parallel workers
        # from sampling around the same running trial, and is off while no other trial runs (samplers.py)
        return ArchTPESampler(seed=cfg.seed)
    if cfg.type == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=cfg.seed)
    if cfg.type == "random":
        return optuna.samplers.RandomSampler(seed=cfg.seed)
    raise ConfigError(f"expected one of {', '.join(map(repr, SAMPLERS))}, got {cfg.type!r}", key="sampler.type")


def make_pruner(cfg: PrunerConfig) -> optuna.pruners.BasePruner:
    """The pruner of ``cfg``; steps are epochs (a trial reports validation accuracy after each)."""
    if cfg.type == "median":
        # n_warmup_steps=1: the first epoch's accuracy says little about a candidate
        return PerTrialPruner(optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=1))
    if cfg.type == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource="auto", reduction_factor=3)
    if cfg.type == "none":
        return optuna.pruners.NopPruner()
    raise ConfigError(f"expected one of {', '.join(map(repr, PRUNERS))}, got {cfg.type!r}", key="pruner.type")


def make_storage(url: str, *, create: bool = True) -> optuna.storages.BaseStorage:
    """An Optuna storage for ``url`` (as :attr:`StudyConfig.storage` holds it).

    sqlite/postgresql/mysql: ``RDBStorage`` with heartbeats (a dead worker's trial becomes FAIL and is
    retried once). ``journal:<file>``: ``JournalStorage`` on a journal file. A relative file is relative to
    the current directory; its parent directory is created. An existing file that is not an SQLite
    database, or an SQLite database that is not an Optuna storage (or not a journal, for journal:), is
    refused before Optuna opens it, so a foreign file is never modified. With ``create=False`` a missing
    file is an error instead of a new, empty storage (for commands that read a study).
    """
    if not isinstance(url, str):
        raise ConfigError(f"expected a storage URL string, got {_show(url)}", key="storage")
    try:
        url = _normalize_storage(url, Path.cwd())
    except ValueError as e:
        raise ConfigError(f"{e}, got {redact(url)!r}", key="storage") from None
    if url.startswith(_JOURNAL_PREFIX):
        file = Path(url[len(_JOURNAL_PREFIX) :])
        _prepare_file(file, _check_journal_file, create=create)
        return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(file)))
    engine_kwargs: dict[str, Any] = {}
    if url.startswith(_SQLITE_PREFIX):
        engine_kwargs = {"connect_args": {"timeout": SQLITE_TIMEOUT_S}}
        file_text, _ = _sqlite_file(url)
        if file_text is not None:
            _prepare_file(Path(file_text), _check_sqlite_file, create=create)
    try:
        storage = _rdb_storage(url, engine_kwargs)
    except ImportError as e:
        raise ConfigError(f"no database driver for {redact(url)!r}: {e}", key="storage") from None
    except Exception as e:  # sqlalchemy errors (unreachable server, bad schema version) are user-facing
        raise ConfigError(f"cannot open storage {redact(url)!r}: {type(e).__name__}: {e}", key="storage") from None
    if url.startswith(_SQLITE_PREFIX):
        _use_wal(storage)
    return storage


def _rdb_storage(url: str, engine_kwargs: dict[str, Any]) -> optuna.storages.RDBStorage:
    """``RDBStorage`` with heartbeats, retried where workers open a new database at the same instant.

    Optuna creates its tables without a lock, so of several processes opening a new database together
    some fail ("table studies already exists", a duplicate type on PostgreSQL); a second try finds the
    tables made and creates nothing.
    """
    import sqlalchemy.exc

    for attempt in range(_OPEN_ATTEMPTS):
        try:
            return _rdb_storage_once(url, engine_kwargs)
        except sqlalchemy.exc.SQLAlchemyError:
            if attempt == _OPEN_ATTEMPTS - 1:
                raise
            time.sleep(random.uniform(0.05, 0.5) * (attempt + 1))  # jitter: not all retry together
    raise AssertionError("unreachable")


def _rdb_storage_once(url: str, engine_kwargs: dict[str, Any]) -> optuna.storages.RDBStorage:
    with warnings.catch_warnings():
        # heartbeat_interval and the retry callback are marked experimental; they are what we want
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.storages.RDBStorage(
            url,
            engine_kwargs=engine_kwargs,
            heartbeat_interval=HEARTBEAT_INTERVAL_S,
            grace_period=HEARTBEAT_GRACE_PERIOD_S,
            heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(
                max_retry=HEARTBEAT_MAX_RETRY
            ),
        )


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # no implicit BEGIN from the sqlite3 module (it begins only before a write): _begin_immediate does it
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _begin_immediate(connection: Any) -> None:
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def _use_wal(storage: optuna.storages.RDBStorage) -> None:
    """Write-ahead logging with ``synchronous=NORMAL`` on every connection.

    A trial makes some 30 small writes (parameters, attributes, reports); with SQLite's default
    rollback journal each one waits for two fsyncs, which measured 4-24 ms a write on this project's
    machines, a large share of a quick trial. WAL keeps commits durable against a process crash
    (a killed worker loses nothing committed), and readers no longer block the writer, which
    several workers on one file need. WAL needs a local file system (not NFS).

    Every transaction begins with ``BEGIN IMMEDIATE`` (SQLAlchemy's recipe for pysqlite). Optuna checks a
    trial's state and then changes it (WAITING -> RUNNING when a worker takes a queued trial, RUNNING ->
    FAIL when a dead worker's trial is swept) in one session, relying on ``SELECT ... FOR UPDATE``, which
    SQLite ignores; the sqlite3 module began the transaction only at the write, so two workers could both
    see WAITING and both take the trial (both trained it, the second could not record its result), or
    both fail a dead worker's trial and queue it twice. Taking the write lock at the start makes the check
    and the change one step; transactions here last milliseconds, so workers barely wait.
    """
    import sqlalchemy

    sqlalchemy.event.listen(storage.engine, "connect", _sqlite_pragmas)
    sqlalchemy.event.listen(storage.engine, "begin", _begin_immediate)
    storage.engine.dispose()  # reconnect: the connections opened at creation lack the pragmas


def redact(url: str) -> str:
    """``postgresql://user:***@host/db``: never print a password."""
    return re.sub(r"(//[^:/@]*):[^@/]*@", r"\1:***@", url)


def _prepare_file(file: Path, check: Callable[[Path], None], *, create: bool) -> None:
    """Refuse a foreign file at ``file`` (or a missing one unless ``create``), else create its parent directory."""
    if not create and _existing_regular_file(file) is None:
        raise ConfigError(
            "does not exist: no study has run with this storage yet; run `archsearch search` first",
            path=file,
            key="storage",
        )
    check(file)
    try:
        file.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"cannot create directory {file.parent}: {e.strerror}", path=file, key="storage") from None


def _existing_regular_file(file: Path) -> int | None:
    """The size of ``file``, None when it does not exist; ConfigError when it is not a regular file."""
    try:
        st = file.stat()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise ConfigError(f"cannot access storage file: {e.strerror}", path=file, key="storage") from None
    if not stat.S_ISREG(st.st_mode):
        raise ConfigError("storage path exists but is not a regular file", path=file, key="storage")
    return st.st_size


def _read_head(file: Path, n: int) -> bytes:
    try:
        with open(file, "rb") as f:
            return f.read(n)
    except OSError as e:
        raise ConfigError(f"cannot read storage file: {e.strerror}", path=file, key="storage") from None


def _check_sqlite_file(file: Path) -> None:
    """An existing file must be an SQLite database with Optuna's ``studies`` table (or no tables yet).

    The file is read through SQLite only, never with a plain ``open()``: POSIX locks belong to a process,
    and closing any descriptor of a file drops all of the process's locks on it. A worker that opened its
    study before (its WAL connections hold a shared lock all along) would lose them; another worker
    closing its last connection then believes itself alone, checkpoints and deletes the write-ahead log
    the first one is still writing, and the two go on with different views of one file: duplicate trial
    numbers, lost trials, a malformed database. SQLite itself shares one descriptor per file within a
    process and keeps it open while any lock is held.
    """
    if not _existing_regular_file(file):  # missing or empty: SQLite starts a new database
        return
    try:
        tables = _sqlite_tables(file)
    except sqlite3.DatabaseError as e:
        if getattr(e, "sqlite_errorname", "") != "SQLITE_NOTADB":
            raise ConfigError(f"is a damaged or unreadable SQLite database ({e})", path=file, key="storage") from None
        # not a database: no SQLite connection can hold a lock on it, so reading it plainly is safe
        header = _read_head(file, len(_SQLITE_HEADER))
        if header == _SQLITE_HEADER:
            raise ConfigError(f"is a damaged SQLite database ({e})", path=file, key="storage") from None
        raise ConfigError(
            f"exists but is not an SQLite database (it starts with {header!r}); refusing to use it as the "
            "study storage: point `storage` at a new file",
            path=file,
            key="storage",
        ) from None
    if tables and "studies" not in tables:
        shown = ", ".join(tables[:8]) + (", ..." if len(tables) > 8 else "")
        raise ConfigError(
            f"is an SQLite database but not an Optuna storage (its tables: {shown}); refusing to add "
            "Optuna's tables to it: point `storage` at a new file",
            path=file,
            key="storage",
        )


def _sqlite_tables(file: Path) -> list[str]:
    """The table names of an SQLite file, opened read-only so that even opening it cannot change it.

    Not with ``immutable=1``: that opens the file without SQLite's locking, and closing it drops the
    process's locks like a plain ``open()`` would (see :func:`_check_sqlite_file`).
    """
    con = sqlite3.connect(f"{file.absolute().as_uri()}?mode=ro", uri=True, timeout=SQLITE_TIMEOUT_S)
    try:
        return sorted(r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'"))
    finally:
        con.close()


def _check_journal_file(file: Path) -> None:
    """An existing non-empty journal must start with an Optuna journal record (a JSON line with op_code)."""
    if not _existing_regular_file(file):
        return
    first = _read_head(file, 1 << 16).split(b"\n", 1)[0]
    try:
        record = json.loads(first)
    except ValueError:
        record = None
    if not isinstance(record, dict) or "op_code" not in record:
        raise ConfigError(
            "exists but is not an Optuna journal file; refusing to append to it: point `storage` at a new file",
            path=file,
            key="storage",
        )
