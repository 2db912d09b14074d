"""The study YAML: :class:`StudyConfig`, declared once as a frozen pydantic dataclass that the rest of the code reads.

Its fields and its sections' (:mod:`archsearch.config.study_schema`, :class:`~archsearch.config.recipe.TrainConfig`)
are the one statement of what each key accepts; the shipped JSON Schema (``archsearch schema study``) is generated
from them. A bad value is a :class:`~archsearch.core.errors.ConfigError` naming the file, the dotted key path and
what was expected (:mod:`archsearch.core.schema`); rules that span sections (an objective and its budget) are
checked after. Also here: the study's fingerprint, which tells whether stored trials are comparable.
"""

import dataclasses
import hashlib
import importlib.util
import json
import os
from collections.abc import Mapping
from dataclasses import field
from pathlib import Path
from typing import Annotated, Any, Literal, NoReturn

from pydantic import AfterValidator, BeforeValidator, Field, Strict, StringConstraints, ValidationInfo
from pydantic.json_schema import SkipJsonSchema

from archsearch.config.recipe import TRAINING_KEYS_LATER, TrainConfig
from archsearch.config.study_schema import (
    BUDGET_KEYS,
    DEVICES,
    ONNXRUNTIME_RUNTIMES,
    PRECISION_BYTES,
    Budget,
    DatasetConfig,
    ExportConfig,
    LatencyTarget,
    ObjectiveConfig,
    PrunerConfig,
    RecoveryConfig,
    RerankConfig,
    SamplerConfig,
    _space_file,
    _storage_url,
)
from archsearch.core.errors import ConfigError, load_yaml, show
from archsearch.core.schema import (
    AcceptsNull,
    Bool,
    Expect,
    Int,
    Number,
    Section,
    declared,
    did_you_mean,
    fail,
    json_schema,
    keys,
    validate,
)
from archsearch.network.metrics import metric
from archsearch.space.search_space import Space, SpaceModel, space_from_dict

__all__ = ["StudyConfig", "DatasetConfig", "LatencyTarget", "Budget", "ObjectiveConfig", "SamplerConfig",
           "PrunerConfig", "RerankConfig", "ExportConfig", "TrainConfig", "ConfigError", "BUDGET_KEYS",
           "PRECISION_BYTES", "FIT_SCHEME", "load_study_config", "study_config_from_dict", "study_schema",
           "fingerprint_matches", "merge_overrides"]

_FINGERPRINT_SCHEMA = 2  # 2: the space as parsed (1: its file's bytes, see fingerprint_matches)
FIT_SCHEME = 1  # bump when budget fitting picks other widths for the same shape and budget


def _space_keys(value: dict[str, Any]) -> dict[str, Any]:
    for key in value:
        if key not in SpaceModel.model_fields:
            fail(f"expected keys of a search-space file ({', '.join(SpaceModel.model_fields)}), got "
                 f"{show(key)}{did_you_mean(key, SpaceModel.model_fields)}")
    return value


def _pruner_not_null(value: Any) -> Any:
    if value is None:
        fail("expected a mapping such as {type: median}; for no pruning write `pruner: {type: none}`, got null")
    return value


def _default_pruner(data: dict[str, Any]) -> PrunerConfig:
    """Without a pruner section: median, none for objective pareto (Optuna cannot prune multi-objective studies)."""
    return PrunerConfig(type="none" if data["objective"].multi_objective else "median")


def _not_a_key(value: Any, info: ValidationInfo) -> Any:
    if value is not None and info.context is not None:  # context: validating a file
        fail(f"unknown key 'source'; valid keys here: {', '.join(_TOP)}")
    return value


@declared(kw_only=True)
class StudyConfig:
    """One study: what to search, on which data, against which budget, and where the trials are kept.

    Build it with :func:`load_study_config` or :func:`study_config_from_dict`.
    """

    name: Annotated[str, Strict(), Expect("1 to 64 characters from A-Z a-z 0-9 _ . -"),
                    StringConstraints(pattern=r"^[A-Za-z0-9_.-]{1,64}$")] = Field(
        description="the study's name in its storage")
    storage: Annotated[str, Expect("a storage URL string or null"), BeforeValidator(_storage_url), AcceptsNull()] \
        = Field(default=None, validate_default=True, description="null: sqlite:///<this file's folder>/<name>.db; "
                "sqlite:///<file>, postgresql://..., mysql://... or journal:<file> (files relative to this file)")
    space_path: Annotated[Path, Expect("a file or directory path"), BeforeValidator(_space_file)] = Field(
        alias="space", description="the search-space YAML (relative to this file)")
    space_overrides: Annotated[dict[str, Any], Expect("a mapping of search-space keys"),
                               AfterValidator(_space_keys)] | None = Field(
        default=None, description="keys of the space file replaced for this study, e.g. {resolution_mult: [1.0]} (a "
                          "mapping such as stem merged key by key, a list replaced whole); the file is not changed")
    dataset: Section(DatasetConfig) = Field(default_factory=DatasetConfig)  # type: ignore[valid-type]
    resolution: Int(4, 1024) | None = Field(  # type: ignore[valid-type]
        default=None, description="input size the images are resized to; null: the dataset's own")
    training: Section(TrainConfig) = Field(default_factory=TrainConfig)  # type: ignore[valid-type]
    budget: Section(Budget) = Field(default_factory=Budget)  # type: ignore[valid-type]
    objective: Section(ObjectiveConfig) = Field(default_factory=ObjectiveConfig)  # type: ignore[valid-type]
    sampler: Section(SamplerConfig) = Field(default_factory=SamplerConfig)  # type: ignore[valid-type]
    # multi-objective studies cannot prune: a pareto study without a pruner section gets none
    pruner: Annotated[PrunerConfig, BeforeValidator(_pruner_not_null)] = Field(
        default_factory=_default_pruner, description="median by default; none for objective pareto")
    n_trials: Int(1, 10**7) = Field(default=30, description="finished trials the study should hold")  # type: ignore
    timeout: Number(0, 1e8, lo_open=True) | None = Field(  # type: ignore[valid-type]
        default=None, description="seconds; stops starting new trials")
    device: Literal[DEVICES] = Field(default="auto", description="auto: cuda when available")  # type: ignore
    enqueue_baselines: Bool = Field(default=True, description="start with the seed MobileNet/ShuffleNet/EffNet "
                                                      "scaled to the budget")
    rerank: RerankConfig | None = Field(default=None, description="null: no re-rank")
    recovery: Section(RecoveryConfig) = Field(default_factory=RecoveryConfig)  # type: ignore[valid-type]
    export: Section(ExportConfig) = Field(default_factory=ExportConfig)  # type: ignore[valid-type]
    # not a key of the file: the YAML it was read from
    source: Annotated[SkipJsonSchema[Path | None], Field(exclude=True), BeforeValidator(_not_a_key)] = field(
        default=None, compare=False)

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
        enqueue_baselines, rerank and recovery are left out because changing them does not change what a trial
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
        # the activations' precision came later still: present only when it changes the peak's limit (int8)
        if "max_peak_activation_kb" not in budget or budget["activation_precision"] == "float32":
            del budget["activation_precision"]
        if budget["latency"]["runtime"] == "torch":  # the runtime came later too
            del budget["latency"]["runtime"]
        training = _plain(self.training)
        for key in TRAINING_KEYS_LATER:  # came later: present only when set
            if training[key] is None:
                del training[key]
        objective = _plain(self.objective)
        if objective["score"] == "val_accuracy":  # and the score: present only when not the default
            del objective["score"]
        return {
            "schema": _FINGERPRINT_SCHEMA,
            "space": _space_digest(self.space_data()),
            "objective": objective,
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
            "training": training,
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


_TOP = tuple(keys(StudyConfig))  # the YAML's key order


def study_schema() -> dict[str, Any]:
    """The study YAML's JSON Schema (shipped as archsearch/schemas/study.schema.json)."""
    return json_schema(StudyConfig, title="archsearch study",
                       description="An archsearch study file: `archsearch search <file>` (docs/guide.md: Study "
                                   "configuration).")


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
    cfg: StudyConfig = validate(StudyConfig, dict(data), path=path, context={"base_dir": base_dir})
    pareto = cfg.objective.multi_objective
    _check_objective_budget(cfg.objective, cfg.budget, cfg.pruner, path)
    if cfg.rerank is not None and pareto:
        raise ConfigError("a re-rank picks one best candidate by a longer recipe, but objective 'pareto' has a "
                          "front: remove `rerank` (or set it to null)", path=path, key="rerank")
    if cfg.space_overrides:
        _check_space_overrides(cfg.space_path, cfg.space_overrides, path)
    if cfg.recovery.grace_s <= cfg.recovery.heartbeat_s:
        raise ConfigError(f"expected more than heartbeat_s ({cfg.recovery.heartbeat_s}): a trial is failed only after "
                          f"it missed a heartbeat, got {cfg.recovery.grace_s}", path=path, key="recovery.grace_s")
    fit = not pareto if cfg.budget.fit is None else cfg.budget.fit
    return dataclasses.replace(cfg, budget=dataclasses.replace(cfg.budget, fit=fit),
                               space_overrides=cfg.space_overrides or None, source=path)


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


def _check_objective_budget(objective: ObjectiveConfig, budget: Budget, pruner: PrunerConfig,
                            path: Path | None) -> None:
    """Rules that span sections."""
    def fail_at(key: str, message: str) -> NoReturn:
        raise ConfigError(message, path=path, key=key)

    if objective.type != "pareto" and not budget.limits():
        fail_at("budget", f"objective {objective.type!r} needs at least one of {', '.join(BUDGET_KEYS)} (candidates "
                          "are judged against it), got none")
    if objective.score == "val_loss" and objective.type != "constrained":
        fail_at("objective.score", "score 'val_loss' is available with objective 'constrained' only (the soft reward "
                                   "and the Pareto front are built from the accuracy): set `type: constrained` or "
                                   f"`score: val_accuracy`, got type {objective.type!r}")
    if objective.type == "soft" and budget.limit(objective.soft_metric) is None:
        key = metric(objective.soft_metric).key
        fail_at(f"budget.{key}", f"objective 'soft' with soft_metric {objective.soft_metric!r} uses "
                                 f"budget.{key} as its target, but it is not set")
    runtime = budget.latency.runtime
    if runtime in ONNXRUNTIME_RUNTIMES and budget.latency.device != "cpu":
        fail_at("budget.latency.device", f"runtime {runtime} is timed on the CPU (archsearch runs ONNX Runtime's "
                                         f"CPU execution provider): set `device: cpu`, got {budget.latency.device!r}")
    needs = ("onnxruntime",) + (("onnx",) if runtime == "onnxruntime-int8" else ())
    missing = [m for m in needs if importlib.util.find_spec(m) is None] if runtime in ONNXRUNTIME_RUNTIMES else []
    if missing:
        fail_at("budget.latency.runtime", f"runtime {runtime} needs {' and '.join(missing)}, not installed: "
                                          "pip install 'archsearch[onnx]' (or use runtime torch)")
    if objective.type == "pareto" and budget.fit:
        fail_at("budget.fit", "budget fitting scales every candidate to the budget's edge, but objective 'pareto' "
                              "needs candidates spread over the cost axis: set `fit: false` (or leave it out), "
                              "got true")
    if objective.type == "pareto" and pruner.type != "none":
        fail_at("pruner.type", "pruning is not available for objective 'pareto' (Optuna cannot prune "
                               f"multi-objective studies): set `pruner: {{type: none}}`, got {pruner.type!r}")
