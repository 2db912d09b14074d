"""The study YAML: declared as pydantic models, validated into the frozen dataclasses the rest of the code reads.

The models (:class:`StudyModel` and its sections) are the one statement of what each key accepts; the shipped JSON
Schema (``archsearch schema study``) is generated from them. A bad value is a
:class:`~archsearch.core.errors.ConfigError` naming the file, the dotted key path and what was expected
(:mod:`archsearch.core.schema`); rules that span sections (an objective and its budget) are checked after.
"""

import dataclasses
import hashlib
import importlib.util
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn, cast

from archsearch.config.recipe import TrainConfig
from archsearch.config.storage import SQLITE_PREFIX
from archsearch.config.study_schema import StudyModel
from archsearch.core.errors import ConfigError, load_yaml, show
from archsearch.core.schema import Model, validate
from archsearch.space.search_space import Space, space_from_dict

_FINGERPRINT_SCHEMA = 2  # 2: the space as parsed (1: its file's bytes, see fingerprint_matches)
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
    channels: int | None = None  # folder: 1 or 3; None: what the images are
    test_fraction: float | None = None  # folder without test/: the share carved off as test (None: 0.2)


@dataclass(frozen=True)
class LatencyTarget:
    """Where the latency budget is measured."""

    device: str = "cpu"
    threads: int = 1
    batch: int = 1
    runtime: str = "torch"  # or "onnxruntime"

    def describe(self) -> str:
        """``cpu, 1 thread(s), batch 1`` (``..., onnxruntime`` for that runtime)."""
        runtime = "" if self.runtime == "torch" else f", {self.runtime}"
        return f"{self.device}, {self.threads} thread(s), batch {self.batch}{runtime}"


@dataclass(frozen=True)
class Budget:
    """Hardware budget of a candidate; None means "no limit on this cost"."""

    max_macs: float | None = None
    max_params: float | None = None
    max_latency_ms: float | None = None
    latency: LatencyTarget = field(default_factory=LatencyTarget)
    max_peak_activation_kb: float | None = None  # KiB of float32 activations alive at once, batch 1 (cost.py)
    max_model_kb: float | None = None  # KiB of parameters at ``model_precision``
    model_precision: str = "float32"  # float32 (4 bytes a parameter) or int8 (1)
    # budget fitting (archsearch/space/fit.py): the sampler picks the shape, the widths are scaled to the budget.
    # None in the YAML: on for the constrained and soft objectives, off for pareto (a front needs spread)
    fit: bool | None = None

    def limit(self, metric: str) -> float | None:
        """The limit on ``metric`` ("macs", "params" or "latency")."""
        return getattr(self, _BUDGET_FIELD[metric])

    def limits(self) -> dict[str, float]:
        """The metrics that have a limit, with it."""
        return {m: limit for m in _BUDGET_FIELD if (limit := self.limit(m)) is not None}

    @property
    def bytes_per_param(self) -> int:
        return PRECISION_BYTES[self.model_precision]

    def describe(self) -> str:
        """The limits as YAML keys, with the precision and latency target they are counted at; "none"."""
        parts = [f"{key}={getattr(self, key):,g}" for key in BUDGET_KEYS if getattr(self, key) is not None]
        if self.max_model_kb is not None:
            parts.append(f"weights at {self.model_precision}")
        if self.max_latency_ms is not None:
            parts.append(f"latency on {self.latency.describe()}")
        return ", ".join(parts) or "none"


_BUDGET_FIELD = {"macs": "max_macs", "params": "max_params", "latency": "max_latency_ms",
                 "peak_kb": "max_peak_activation_kb", "model_kb": "max_model_kb"}
BUDGET_KEYS = tuple(_BUDGET_FIELD.values())  # max_macs, ..., the YAML keys of the limits
PRECISION_BYTES = {"float32": 4, "int8": 1}


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
    ``folds`` (None: off): score each candidate by k-fold cross-validation over the search's training and
    validation images together, the mean of ``folds`` trainings, instead of one training scored on the
    validation split (:mod:`archsearch.search.rerank`).
    """

    top: int = 5
    epochs: int = 8
    train_subset: int | None = None
    folds: int | None = None


@dataclass(frozen=True)
class StudyConfig:
    """One validated study YAML. Build it with :func:`load_study_config` or :func:`study_config_from_dict`."""

    name: str
    storage: str  # an Optuna storage URL, or "journal:<absolute path>"
    space_path: Path  # absolute
    space_overrides: Mapping[str, Any] | None = None  # space keys replaced for this study (merge_overrides)
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

    def space_data(self) -> dict[str, Any]:
        """The search space's YAML data with this study's ``space_overrides`` applied."""
        return merge_overrides(load_yaml(self.space_path), _plain(self.space_overrides or {}))

    def load_space(self) -> Space:
        """The study's search space: its file, with ``space_overrides`` applied (validated at load)."""
        return space_from_dict(self.space_data(), path=self.space_path)

    def fingerprint(self) -> dict[str, Any]:
        """What makes old trials incomparable when it changes (JSON-able).

        The search space is hashed as parsed (its YAML's data with the study's ``space_overrides``, without
        ``description``), so comments and layout do not count; n_trials, timeout, device, storage, the sampler,
        enqueue_baselines and rerank are left out because changing them does not change what a trial
        measured (a re-rank result records its own recipe). Budget fitting is its own key, present only
        when on, so that studies made before it existed resume with ``fit: false``.
        """
        budget = _plain(self.budget)
        fit = budget.pop("fit")
        # the memory budgets came later: present only when set, so that older studies resume unchanged
        for key in ("max_peak_activation_kb", "max_model_kb"):
            if budget[key] is None:
                del budget[key]
        if "max_model_kb" not in budget:
            del budget["model_precision"]
        if budget["latency"]["runtime"] == "torch":  # the runtime came later too
            del budget["latency"]["runtime"]
        return {
            "schema": _FINGERPRINT_SCHEMA,
            "space": _space_digest(self.space_data()),
            "objective": _plain(self.objective),
            "budget": budget,
            **({"budget.fit": FIT_SCHEME} if fit else {}),
            "dataset": {
                "name": self.dataset.name,
                "options": _plain(self.dataset.options),
                "val_fraction": self.dataset.val_fraction,
                "resolution": self.resolution,
                # the folder dataset's keys came later: present only when set, so older studies resume unchanged
                **{k: v for k in ("channels", "test_fraction") if (v := getattr(self.dataset, k)) is not None},
            },
            "training": _plain(self.training),
        }


def fingerprint_matches(stored: Mapping[str, Any], config: StudyConfig) -> bool:
    """Whether a study's stored fingerprint is ``config``'s: today's, or one an older archsearch wrote for it.

    Schema 1 hashed the space file byte for byte (``space_sha256``); it matches where every other key is equal
    and the file's bytes are unchanged, or unchanged but for the ``# yaml-language-server`` line the shipped
    spaces gained in front (archsearch 0.1.0 to today's).
    """
    current = config.fingerprint()
    if stored == current:
        return True
    if stored.get("schema") != 1:
        return False
    rest = {k: v for k, v in current.items() if k not in ("schema", "space")}
    if {k: v for k, v in stored.items() if k not in ("schema", "space_sha256")} != rest:
        return False
    data = _read_space(config.space_path)
    first, newline, after = data.partition(b"\n")
    old_bytes = [data] + ([after] if newline and first.startswith(b"# yaml-language-server:") else [])
    return stored.get("space_sha256") in {hashlib.sha256(b).hexdigest() for b in old_bytes}


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


def _read_space(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise ConfigError(f"cannot read the search-space file: {e.strerror}", path=path, key="space") from None


def _space_digest(space: Mapping[str, Any]) -> str:
    """sha256 of the space YAML's data as parsed (canonical JSON, without ``description``)."""
    data = {k: v for k, v in space.items() if k != "description"}
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()


_TOP = tuple(StudyModel.model_fields)  # the YAML's key order
_TOP_FIELD = {"space": "space_path"}  # YAML key -> StudyConfig field, where they differ


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
    base_dir = Path(base_dir).absolute()
    if not isinstance(data, Mapping):
        raise ConfigError(f"expected a mapping at the top level, got {show(data)}", path=path)
    model: StudyModel = validate(StudyModel, dict(data), path=path, context={"base_dir": base_dir})
    objective = _dataclass(ObjectiveConfig, model.objective)
    pareto = objective.multi_objective
    latency = _dataclass(LatencyTarget, model.budget.latency if model.budget else None)
    budget = _dataclass(Budget, model.budget, latency=latency)
    # multi-objective studies cannot prune: a pareto study without a pruner section gets none
    pruner = PrunerConfig("none" if pareto and "pruner" not in model.model_fields_set else model.pruner.type)
    _check_objective_budget(objective, budget, pruner, path)
    if budget.fit is None:
        budget = dataclasses.replace(budget, fit=not pareto)
    training = _dataclass(TrainConfig, model.training)
    dataset = _dataclass(DatasetConfig, model.dataset)
    dataset = dataclasses.replace(dataset, options=dict(dataset.options or {}))
    if model.rerank is not None and pareto:
        raise ConfigError("a re-rank picks one best candidate by a longer recipe, but objective 'pareto' has a "
                          "front: remove `rerank` (or set it to null)", path=path, key="rerank")
    space_path = cast(Path, model.space)  # a string in the YAML, made an absolute Path by StudyModel's validator
    if model.space_overrides:
        _check_space_overrides(space_path, model.space_overrides, path)
    return StudyConfig(
        name=model.name,
        storage=model.storage or f"{SQLITE_PREFIX}{(base_dir / (model.name + '.db')).resolve()}",
        space_path=space_path,
        space_overrides=model.space_overrides or None,
        dataset=dataset,
        resolution=model.resolution,
        training=training,
        budget=budget,
        objective=objective,
        sampler=_dataclass(SamplerConfig, model.sampler),
        pruner=pruner,
        n_trials=model.n_trials,
        timeout=model.timeout,
        device=model.device,
        enqueue_baselines=model.enqueue_baselines,
        rerank=None if model.rerank is None else _dataclass(RerankConfig, model.rerank),
        source=path,
    )


def merge_overrides(data: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """``data`` with ``overrides``: a mapping in both is merged key by key, anything else (a list, a number)
    replaced whole."""
    out = dict(data)
    for key, value in overrides.items():
        both = isinstance(value, Mapping) and isinstance(out.get(key), Mapping)
        out[key] = merge_overrides(out[key], value) if both else value
    return out


def _check_space_overrides(space_path: Path, overrides: Mapping[str, Any], path: Path | None) -> None:
    """The space with the overrides applied must be a valid space. An error that the space file has without them
    is the file's; any other is the overrides', named by the study file and ``space_overrides[.<key>]``."""
    try:
        space_from_dict(merge_overrides(load_yaml(space_path), overrides), path=space_path)
    except ConfigError as e:
        space_from_dict(load_yaml(space_path), path=space_path)  # the file's own error, if it has one
        top = (e.key or "").split(".")[0].split("[")[0]
        key, message = (f"space_overrides.{e.key}", e.message) if top in overrides else \
            ("space_overrides", f"{e.key}: {e.message}" if e.key else e.message)
        raise ConfigError(f"{message} (with the overrides applied to {space_path.name})", path=path,
                          key=key) from None


def _dataclass(cls: type, section: Model | None, **override: Any) -> Any:
    """The frozen dataclass of a validated section (a null or missing section: all defaults)."""
    values = {} if section is None else {k: getattr(section, k) for k in type(section).model_fields}
    return cls(**{**values, **override})


def _check_objective_budget(objective: ObjectiveConfig, budget: Budget, pruner: PrunerConfig,
                            path: Path | None) -> None:
    """Rules that span sections."""
    def fail_at(key: str, message: str) -> NoReturn:
        raise ConfigError(message, path=path, key=key)

    if objective.type != "pareto" and all(budget.limit(m) is None for m in _BUDGET_FIELD):
        fail_at("budget", f"objective {objective.type!r} needs at least one of max_macs, max_params, "
                          "max_latency_ms, max_peak_activation_kb, max_model_kb (candidates are judged against "
                          "it), got none")
    if objective.type == "soft" and budget.limit(objective.soft_metric) is None:
        key = _BUDGET_FIELD[objective.soft_metric]
        fail_at(f"budget.{key}", f"objective 'soft' with soft_metric {objective.soft_metric!r} uses "
                                 f"budget.{key} as its target, but it is not set")
    if budget.latency.runtime == "onnxruntime" and budget.latency.device != "cpu":
        fail_at("budget.latency.device", "runtime onnxruntime is timed on the CPU (archsearch runs ONNX Runtime's "
                                         f"CPU execution provider): set `device: cpu`, got {budget.latency.device!r}")
    if budget.latency.runtime == "onnxruntime" and importlib.util.find_spec("onnxruntime") is None:
        fail_at("budget.latency.runtime", "runtime onnxruntime needs ONNX Runtime, which is not installed: "
                                          "pip install 'archsearch[onnx]' (or use runtime torch)")
    if objective.type == "pareto" and budget.fit:
        fail_at("budget.fit", "budget fitting scales every candidate to the budget's edge, but objective 'pareto' "
                              "needs candidates spread over the cost axis: set `fit: false` (or leave it out), "
                              "got true")
    if objective.type == "pareto" and pruner.type != "none":
        fail_at("pruner.type", "pruning is not available for objective 'pareto' (Optuna cannot prune "
                               f"multi-objective studies): set `pruner: {{type: none}}`, got {pruner.type!r}")
