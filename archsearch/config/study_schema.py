"""The study YAML, declared: pydantic models for every section, the source of ``archsearch schema study``.

:func:`archsearch.config.study_config.study_config_from_dict` validates a file with :class:`StudyModel` and builds
the frozen dataclasses the rest of the code reads; the shipped ``archsearch/schemas/study.schema.json`` is
:func:`study_schema`'s output. Defaults equal the dataclasses' (a test holds it).
"""

import keyword
import math
import os
import re
import stat
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator, Field, StringConstraints, ValidationInfo, field_validator

from archsearch.config.recipe import AUGMENTATIONS, OPTIMIZERS, SCHEDULES, TrainConfig
from archsearch.config.storage import normalize_storage
from archsearch.core.errors import show
from archsearch.core.schema import Expect, Int, Model, Number, did_you_mean, fail, json_schema
from archsearch.data.readers import DATASETS
from archsearch.space.search_space import SpaceModel

OBJECTIVES = ("constrained", "soft", "pareto")
SOFT_METRICS = ("macs", "params", "latency")
PARETO_METRICS = ("macs", "latency")
SAMPLERS = ("tpe", "nsga2", "random")
PRUNERS = ("median", "hyperband", "none")
DEVICES = ("auto", "cpu", "cuda")
LATENCY_DEVICES = ("cpu", "cuda")
LATENCY_RUNTIMES = ("torch", "onnxruntime")  # what measure_latency can run (archsearch.latency.measure)


_TC = TrainConfig()
_SEED = Int(0, 2**32 - 1)
_BATCH = Int(1, 65536)
_ENTRY_POINT = r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*"


def _fspath(value: Any) -> Any:
    """A ``pathlib.Path`` given in code counts as the string it spells."""
    return os.fspath(value) if isinstance(value, os.PathLike) else value


def _base_dir(info: ValidationInfo) -> Path:
    return (info.context or {}).get("base_dir") or Path.cwd()


def _resolve(value: str, info: ValidationInfo) -> Path:
    """A non-empty path, made absolute against the YAML's directory."""
    if not value.strip() or "\x00" in value:
        fail(f"expected a file or directory path, got {show(value)}")
    try:
        return (_base_dir(info) / Path(value).expanduser()).resolve()
    except (OSError, RuntimeError, ValueError) as e:  # RuntimeError: "~user" with no such user
        fail(f"cannot resolve path {value!r}: {e}")


def _space_file(value: str, info: ValidationInfo) -> Path:
    path = _resolve(value, info)
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        fail(f"search-space file not found: {path}")
    except (OSError, ValueError) as e:
        fail(f"cannot access the search-space file {path}: {e}")
    if stat.S_ISDIR(mode):
        fail(f"expected a search-space YAML file, found a directory: {path}")
    if not os.access(path, os.R_OK):
        fail(f"search-space file is not readable (permission denied): {path}")
    return path


def _dataset_name(value: str) -> str:
    module, _, function = value.partition(":")
    if value in DATASETS or (re.fullmatch(_ENTRY_POINT, value) and not any(
            keyword.iskeyword(p) for p in [*module.split("."), function])):
        return value
    fail(f"expected {_DATASET_EXPECT}, got {show(value)}{did_you_mean(value, DATASETS)}")


def _scalar(value: Any) -> Any:
    """A loader option's value: str, int, finite float, bool or null."""
    ok = value is None or isinstance(value, (str, bool)) or (isinstance(value, int) and abs(value) <= 2**63)
    if not (ok or (isinstance(value, float) and math.isfinite(value))):
        fail(f"expected a scalar (string, number, true/false or null), got {show(value)}")
    return value


def _storage_url(value: str, info: ValidationInfo) -> str:
    try:
        return normalize_storage(value, _base_dir(info))
    except ValueError as e:
        fail(f"{e}, got {show(value)}")


_DATASET_EXPECT = f"a built-in dataset ({', '.join(map(repr, DATASETS))}) or 'module:function' naming a loader"
_PathText = Annotated[str, Expect("a file or directory path"), BeforeValidator(_fspath)]
_Identifier = Annotated[str, Expect("option names must be Python identifiers (they become keyword arguments)"),
                        StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]


class DatasetModel(Model):
    """Which data a candidate is trained and scored on."""

    name: Annotated[str, Expect(_DATASET_EXPECT), AfterValidator(_dataset_name)] = Field(
        "digits", description=f"{', '.join(DATASETS)}, or module:function naming a loader; folder: `root` "
                              "holds one subfolder per class (or train/ and test/); arrays: `root` is an .npz file")
    root: Annotated[_PathText | None, Field(description="the data's folder (relative to this file); "
                                                        "null: the loader's default")] = None
    val_fraction: Number(0, 1, lo_open=True, hi_open=True) = Field(  # type: ignore[valid-type]
        0.2, description="share of the training images held out to score candidates")
    download: bool = Field(False, description="let the loader download (never in tests)")
    options: dict[_Identifier, Annotated[Any, AfterValidator(_scalar)]] | None = Field(
        None, description="extra keyword options for the loader: name -> scalar")
    channels: Literal[1, 3] | None = Field(
        None, description="folder: 1 (greyscale) or 3 (RGB) channels; null: 3 if any image is in colour, else 1")
    test_fraction: Number(0, 1, lo_open=True, hi_open=True) | None = Field(  # type: ignore[valid-type]
        None, description="folder without test/: the share of each class carved off as the test split; null: 0.2")

    @field_validator("root")
    @classmethod
    def _root(cls, value: str | None, info: ValidationInfo) -> Path | None:
        return None if value is None else _resolve(value, info)


class LatencyModel(Model):
    """Where the latency budget is measured."""

    device: Literal[LATENCY_DEVICES] = "cpu"  # type: ignore[valid-type]
    runtime: Literal[LATENCY_RUNTIMES] = Field(  # type: ignore[valid-type]
        "torch", description="what runs the timed passes: PyTorch eager mode, or ONNX Runtime (CPU) on the network "
                             "exported to ONNX, as model.onnx ships it")
    threads: Int(1, 1024) = Field(1, description="intra-op threads while timing (torch's or ONNX Runtime's)")  # type: ignore[valid-type]
    batch: _BATCH = 1  # type: ignore[valid-type]


class BudgetModel(Model):
    """The hardware budget of one candidate; null: no limit on this cost."""

    max_macs: Number(0, 1e15, lo_open=True) | None = Field(  # type: ignore[valid-type]
        None, description="multiply-accumulates of one image (batch 1); YAML 1.1: write 3.0e+6, not 3e6")
    max_params: Number(0, 1e12, lo_open=True) | None = None  # type: ignore[valid-type]
    max_latency_ms: Number(0, 1e7, lo_open=True) | None = Field(  # type: ignore[valid-type]
        None, description="milliseconds per batch on `latency`'s target")
    latency: LatencyModel | None = None
    max_peak_activation_kb: Number(0, 1e9, lo_open=True) | None = Field(  # type: ignore[valid-type]
        None, description="KiB of float32 activations alive at once at batch 1 (the RAM a forward pass needs)")
    max_model_kb: Number(0, 1e9, lo_open=True) | None = Field(  # type: ignore[valid-type]
        None, description="KiB of parameters at model_precision (the flash or disk that holds the weights)")
    model_precision: Literal["float32", "int8"] = Field(
        "float32", description="bytes per parameter for max_model_kb: float32 4, int8 1")
    fit: bool | None = Field(None, description="scale every candidate's widths to the budget's edge; "
                                               "null: on, except for objective pareto")


class ObjectiveModel(Model):
    """How a trained candidate is scored."""

    type: Literal[OBJECTIVES] = Field(  # type: ignore[valid-type]
        "constrained", description="constrained: accuracy within the budget; soft: MnasNet's reward; "
                                   "pareto: accuracy against a cost")
    soft_weight: Number(-10, 0) = -0.07  # type: ignore[valid-type]
    soft_metric: Literal[SOFT_METRICS] = "macs"  # type: ignore[valid-type]
    pareto_metric: Literal[PARETO_METRICS] = "macs"  # type: ignore[valid-type]


class SamplerModel(Model):
    type: Literal[SAMPLERS] = "tpe"  # type: ignore[valid-type]
    seed: _SEED | None = 0  # type: ignore[valid-type]


class PrunerModel(Model):
    # default= by keyword: mypy (dataclass_transform) misses a positional default, and PrunerModel() is called
    type: Literal[PRUNERS] = Field(default="median", description="none for no pruning")  # type: ignore[valid-type]


class RerankModel(Model):
    """The search's last step: its top candidates trained again with a longer recipe."""

    top: Int(1, 1000) = 5  # type: ignore[valid-type]
    epochs: Int(1, 10_000) = 8  # type: ignore[valid-type]
    train_subset: Int(1, 10**9) | None = Field(None, description="null: all training images")  # type: ignore
    folds: Int(2, 20) | None = Field(  # type: ignore[valid-type]
        None, description="score by k-fold cross-validation over the training and validation images together "
        "(the mean of k trainings, fold i from the recipe's seed + i); null: one training, the validation split")


class TrainingModel(Model):
    """The training recipe of every trial (the defaults are TrainConfig's)."""

    epochs: Int(1, 10_000) = _TC.epochs  # type: ignore[valid-type]
    seconds: Number(0, 1e7, lo_open=True) | None = Field(  # type: ignore[valid-type]
        _TC.seconds, description="wall-clock cap per trial: training stops after the epoch that crosses it")
    train_subset: Int(1, 10**9) | None = Field(  # type: ignore[valid-type]
        _TC.train_subset, description="train on at most this many images (a fixed subset); null: all")
    batch_size: _BATCH = _TC.batch_size  # type: ignore[valid-type]
    eval_batch_size: _BATCH = _TC.eval_batch_size  # type: ignore[valid-type]
    optimizer: Literal[OPTIMIZERS] = _TC.optimizer  # type: ignore[valid-type]
    lr: Number(0, 10, lo_open=True) = _TC.lr  # type: ignore[valid-type]
    momentum: Number(0, 1, hi_open=True) = _TC.momentum  # type: ignore[valid-type]
    weight_decay: Number(0, 1) = _TC.weight_decay  # type: ignore[valid-type]
    schedule: Literal[SCHEDULES] = _TC.schedule  # type: ignore[valid-type]
    warmup_epochs: Number(0, 10_000) = _TC.warmup_epochs  # type: ignore[valid-type]
    label_smoothing: Number(0, 1, hi_open=True) = _TC.label_smoothing  # type: ignore[valid-type]
    augment: Literal[AUGMENTATIONS] = _TC.augment  # type: ignore[valid-type]
    seed: _SEED = _TC.seed  # type: ignore[valid-type]


class StudyModel(Model):
    """One study: what to search, on which data, against which budget, and where the trials are kept."""

    name: Annotated[str, Expect("1 to 64 characters from A-Z a-z 0-9 _ . -"),
                    StringConstraints(pattern=r"^[A-Za-z0-9_.-]{1,64}$")] = Field(
        description="the study's name in its storage")
    storage: Annotated[str, Expect("a storage URL string or null")] | None = Field(
        None, description="null: sqlite:///<this file's folder>/<name>.db; sqlite:///<file>, postgresql://..., "
                          "mysql://... or journal:<file> (files relative to this file)")
    space: _PathText = Field(description="the search-space YAML (relative to this file)")
    space_overrides: Annotated[dict[str, Any], Expect("a mapping of search-space keys")] | None = Field(
        None, description="keys of the space file replaced for this study, e.g. {resolution_mult: [1.0]} (a "
                          "mapping such as stem merged key by key, a list replaced whole); the file is not changed")
    dataset: DatasetModel | None = None
    resolution: Int(4, 1024) | None = Field(  # type: ignore[valid-type]
        None, description="input size the images are resized to; null: the dataset's own")
    training: TrainingModel | None = None
    budget: BudgetModel | None = None
    objective: ObjectiveModel | None = None
    sampler: SamplerModel | None = None
    pruner: PrunerModel = Field(PrunerModel(), description="median by default; none for objective pareto")
    n_trials: Int(1, 10**7) = Field(30, description="finished trials the study should hold")  # type: ignore
    timeout: Number(0, 1e8, lo_open=True) | None = Field(  # type: ignore[valid-type]
        None, description="seconds; stops starting new trials")
    device: Literal[DEVICES] = Field("auto", description="auto: cuda when available")  # type: ignore
    enqueue_baselines: bool = Field(True, description="start with the seed MobileNet/ShuffleNet/EffNet "
                                                      "scaled to the budget")
    rerank: RerankModel | None = Field(None, description="null: no re-rank")

    @field_validator("space")
    @classmethod
    def _space(cls, value: str, info: ValidationInfo) -> Path:
        return _space_file(value, info)

    @field_validator("space_overrides")
    @classmethod
    def _space_overrides(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        for key in value or {}:
            if key not in SpaceModel.model_fields:
                fail(f"expected keys of a search-space file ({', '.join(SpaceModel.model_fields)}), got "
                     f"{show(key)}{did_you_mean(key, SpaceModel.model_fields)}")
        return value

    @field_validator("storage")
    @classmethod
    def _storage(cls, value: str | None, info: ValidationInfo) -> str | None:
        return None if value is None else _storage_url(value, info)

    @field_validator("pruner", mode="before")
    @classmethod
    def _pruner_not_null(cls, value: Any) -> Any:
        if value is None:
            fail("expected a mapping such as {type: median}; for no pruning write `pruner: {type: none}`, got null")
        return value




def study_schema() -> dict[str, Any]:
    """The study YAML's JSON Schema (shipped as archsearch/schemas/study.schema.json)."""
    return json_schema(StudyModel, title="archsearch study",
                       description="An archsearch study file: `archsearch search <file>` (docs/guide.md: Study "
                                   "configuration).")
