"""The study YAML's sections, declared once: frozen pydantic dataclasses that are both the file's schema and the
config classes the code reads.

Each field is stated here only: its type, bounds, default and description. The same declaration validates a file
(:func:`archsearch.config.study_config.study_config_from_dict`, errors located by :mod:`archsearch.core.schema`),
validates a config built in code (``TrainConfig(epochs=0)`` is a ValueError), and generates the shipped JSON Schema
(``archsearch schema study``). The study itself, :class:`~archsearch.config.study_config.StudyConfig`, holds these.
"""

import keyword
import math
import os
import re
import stat
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator, Field, Strict, StringConstraints, ValidationInfo

from archsearch.config.storage_url import SQLITE_PREFIX, normalize_storage
from archsearch.core.errors import show
from archsearch.core.schema import Bool, Expect, Int, Number, OneOf, OrNull, Section, declared, did_you_mean, fail
from archsearch.data.readers import DATASETS
from archsearch.network.metrics import METRICS
from archsearch.network.metrics import metric as metric_row

OBJECTIVES = ("constrained", "soft", "pareto")
SOFT_METRICS = tuple(m.name for m in METRICS if m.soft)  # what a soft objective may take as its target
PARETO_METRICS = ("macs", "latency")
SCORES = ("val_accuracy", "val_loss", "balanced_accuracy", "macro_f1")  # what a candidate's value is built from
SAMPLERS = ("tpe", "nsga2", "random")
PRUNERS = ("median", "hyperband", "none")
DEVICES = ("auto", "cpu", "cuda")
LATENCY_DEVICES = ("cpu", "cuda")
# what measure_latency can run (archsearch.latency.measure)
LATENCY_RUNTIMES = ("torch", "onnxruntime", "onnxruntime-int8")
ONNXRUNTIME_RUNTIMES = ("onnxruntime", "onnxruntime-int8")  # those that time an ONNX model in ONNX Runtime (CPU)

_SEED = Int(0, 2**32 - 1)
_BATCH = Int(1, 65536)
_ENTRY_POINT = r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*"


def _base_dir(info: ValidationInfo) -> Path:
    return (info.context or {}).get("base_dir") or Path.cwd()


def _resolve(value: Any, info: ValidationInfo) -> Path:
    """A non-empty path (a string, or a ``pathlib.Path`` in code), made absolute against the YAML's directory."""
    value = os.fspath(value) if isinstance(value, os.PathLike) else value
    if not isinstance(value, str):
        fail(f"expected a file or directory path, got {show(value)}")
    if not value.strip() or "\x00" in value:
        fail(f"expected a file or directory path, got {show(value)}")
    try:
        return (_base_dir(info) / Path(value).expanduser()).resolve()
    except (OSError, RuntimeError, ValueError) as e:  # RuntimeError: "~user" with no such user
        fail(f"cannot resolve path {value!r}: {e}")


def _space_file(value: Any, info: ValidationInfo) -> Path:
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


def _storage_url(value: Any, info: ValidationInfo) -> str:
    """A storage URL, normalized; null: ``sqlite:///<the YAML's folder>/<name>.db``."""
    if value is None:
        name = info.data.get("name", "")  # missing where the name was bad: that error is reported first
        return f"{SQLITE_PREFIX}{(_base_dir(info) / (name + '.db')).resolve()}"
    if not isinstance(value, str):
        fail(f"expected a storage URL string or null, got {show(value)}")
    try:
        return normalize_storage(value, _base_dir(info))
    except ValueError as e:
        fail(f"{e}, got {show(value)}")


_DATASET_EXPECT = f"a built-in dataset ({', '.join(map(repr, DATASETS))}) or 'module:function' naming a loader"
_Path = Annotated[Path, Expect("a file or directory path"), BeforeValidator(_resolve)]
_Identifier = Annotated[str, Expect("option names must be Python identifiers (they become keyword arguments)"),
                        StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]


@declared()
class DatasetConfig:
    """Which data a candidate is trained and scored on."""

    name: Annotated[str, Strict(), Expect(_DATASET_EXPECT), AfterValidator(_dataset_name)] = Field(
        default="digits", description=f"{', '.join(DATASETS)}, or module:function naming a loader; folder: `root` "
                                      "holds one subfolder per class (or train/ and test/); arrays: `root` is an "
                                      ".npz file")
    root: _Path | None = Field(default=None, description="the data's folder (relative to this file); null: the "
                                                         "loader's default")
    val_fraction: Number(0, 1, lo_open=True, hi_open=True) = Field(  # type: ignore[valid-type]
        default=0.2, description="share of the training images held out to score candidates")
    download: Bool = Field(default=False, description="let the loader download (never in tests)")
    options: OrNull(dict[_Identifier, Annotated[Any, AfterValidator(_scalar)]], dict) = Field(  # type: ignore
        default_factory=dict, description="extra keyword options for the loader: name -> scalar")
    channels: OneOf(1, 3) | None = Field(  # type: ignore[valid-type]
        default=None,
        description="folder: 1 (greyscale) or 3 (RGB) channels; null: 3 if any image is in colour, else 1")
    test_fraction: Number(0, 1, lo_open=True, hi_open=True) | None = Field(  # type: ignore[valid-type]
        default=None,
        description="folder without test/: the share of each class carved off as the test split; null: 0.2")
    bad_files: Literal["stop", "skip"] = Field(
        default="stop", description="folder: image files that cannot be read (empty, not an image, truncated or "
        "corrupt); stop: the search refuses to start and lists them all; skip: they are left out, counted and "
        "named in a one-line note")


@declared()
class LatencyTarget:
    """Where the latency budget is measured."""

    device: Literal[LATENCY_DEVICES] = "cpu"  # type: ignore[valid-type]
    threads: Int(1, 1024) = Field(default=1, description="intra-op threads while timing (torch's or ONNX Runtime's)")  # type: ignore[valid-type]
    batch: _BATCH = 1  # type: ignore[valid-type]
    runtime: Literal[LATENCY_RUNTIMES] = Field(  # type: ignore[valid-type]
        default="torch", description="what runs the timed passes: PyTorch eager mode (torch), or ONNX Runtime (CPU) "
                                     "on the network exported to ONNX as model.onnx ships it (onnxruntime), or "
                                     "statically quantized as model.int8.onnx ships it (onnxruntime-int8)")

    def describe(self) -> str:
        """``cpu, 1 thread(s), batch 1`` (``..., onnxruntime`` for that runtime)."""
        runtime = "" if self.runtime == "torch" else f", {self.runtime}"
        return f"{self.device}, {self.threads} thread(s), batch {self.batch}{runtime}"


BUDGET_KEYS = tuple(m.key for m in METRICS)  # max_macs, ..., the YAML keys of the limits


@declared()
class Budget:
    """The hardware budget of one candidate; null: no limit on this cost."""

    # a limit per metric of archsearch/network/metrics.py, in its order: max_macs, max_params, ...
    for _m in METRICS:
        __annotations__[_m.key] = Number(0, _m.high, lo_open=True) | None
        vars()[_m.key] = Field(default=None, description=_m.description)
    del _m
    latency: Section(LatencyTarget) = Field(default_factory=LatencyTarget)  # type: ignore[valid-type]
    model_precision: Literal["float32", "int8"] = Field(
        default="float32", description="bytes per parameter for max_model_kb: float32 4, int8 1")
    activation_precision: Literal["float32", "int8"] = Field(
        default="float32", description="bytes per activation for max_peak_activation_kb: float32 4, what training, "
        "the latency table and the default export run at; int8 1, what the --int8 export's runtimes hold (TF Lite "
        "Micro, CMSIS-NN, ONNX Runtime's QLinear kernels): a quarter of the float32 peak")
    # budget fitting (archsearch/space/fit.py): the sampler picks the shape, the widths are scaled to the budget
    fit: Bool | None = Field(default=None, description="scale every candidate's widths to the budget's edge; "
                                               "null: on, except for objective pareto")

    def limit(self, metric: str) -> float | None:
        """The limit on ``metric`` (a name of archsearch/network/metrics.py: "macs", "latency", ...)."""
        limit: float | None = getattr(self, metric_row(metric).key)
        return limit

    def limits(self) -> dict[str, float]:
        """The metrics that have a limit, with it."""
        return {m.name: limit for m in METRICS if (limit := self.limit(m.name)) is not None}

    @property
    def bytes_per_param(self) -> int:
        return PRECISION_BYTES[self.model_precision]

    @property
    def bytes_per_activation(self) -> int:
        return PRECISION_BYTES[self.activation_precision]

    def words(self, metric: str) -> str:
        """What a value of ``metric`` counts, in a sentence, at this budget's precision: "KiB of activations at
        int8"."""
        m = metric_row(metric)
        return m.words.format(precision=getattr(self, m.precision) if m.precision is not None else "")

    def describe(self) -> str:
        """The limits as YAML keys, with the precision and latency target they are counted at; "none"."""
        parts = [f"{key}={getattr(self, key):,g}" for key in BUDGET_KEYS if getattr(self, key) is not None]
        if self.limit("peak_kb") is not None:
            parts.append(f"activations at {self.activation_precision}")
        if self.limit("model_kb") is not None:
            parts.append(f"weights at {self.model_precision}")
        if self.limit("latency") is not None:
            parts.append(f"latency on {self.latency.describe()}")
        return ", ".join(parts) or "none"
PRECISION_BYTES = {"float32": 4, "int8": 1}


@declared()
class ObjectiveConfig:
    """How a trained candidate is scored.

    constrained: accuracy, with over-budget candidates marked infeasible (trial.set_constraint).
    soft: MnasNet's reward ``acc * (cost / target) ** soft_weight`` (https://arxiv.org/abs/1807.11626).
    pareto: two objectives, accuracy (max) and ``pareto_metric`` (min).
    ``score: val_loss`` (constrained only) makes the value minus the final validation loss instead of the accuracy;
    ``balanced_accuracy`` (the mean recall over classes) and ``macro_f1`` (the mean F1 over classes), both on the
    validation split, see a rare class that overall accuracy hides (docs/guide.md: Scores for imbalanced data).
    """

    type: Literal[OBJECTIVES] = Field(  # type: ignore[valid-type]
        default="constrained", description="constrained: accuracy within the budget; soft: MnasNet's reward; "
                                   "pareto: accuracy against a cost")
    soft_weight: Number(-10, 0) = -0.07  # type: ignore[valid-type]
    soft_metric: Literal[SOFT_METRICS] = "macs"  # type: ignore[valid-type]
    pareto_metric: Literal[PARETO_METRICS] = "macs"  # type: ignore[valid-type]
    score: Literal[SCORES] = Field(  # type: ignore[valid-type]
        default="val_accuracy", description="what a trained candidate's value is built from: val_accuracy, its final "
        "validation accuracy; val_loss, minus its final validation loss (objective constrained only), which ranked "
        "candidates at least as well in docs/results.md (Scores from one training); balanced_accuracy, the mean "
        "recall over classes, and macro_f1, the mean F1 over classes, on the validation split: for imbalanced data, "
        "where always predicting the common class scores well on accuracy")

    @property
    def multi_objective(self) -> bool:
        return self.type == "pareto"


@declared()
class SamplerConfig:
    type: Literal[SAMPLERS] = "tpe"  # type: ignore[valid-type]
    seed: _SEED | None = 0  # type: ignore[valid-type]


@declared()
class PrunerConfig:
    type: Literal[PRUNERS] = Field(default="median", description="none for no pruning")  # type: ignore[valid-type]


@declared()
class RecoveryConfig:
    """How a study rides out faults beyond one process (docs/workers.md: What each fault does).

    The heartbeat tells a worker on another host that died (power, network) from a slow one: each running trial
    records a beat every ``heartbeat_s``; one silent for ``grace_s`` is failed and run again. A database server that
    goes away (a restart, a failover) pauses the workers for up to ``reconnect_s``.
    """

    heartbeat_s: Int(1, 3600) = Field(  # type: ignore[valid-type]
        default=60, description="seconds between a running trial's heartbeats (server databases and SQLite)")
    grace_s: Int(2, 86_400) = Field(  # type: ignore[valid-type]
        default=180, description="a running trial whose last heartbeat is this old has lost its worker: it is "
                                 "failed and run again (more than heartbeat_s)")
    reconnect_s: Number(0, 86_400) = Field(  # type: ignore[valid-type]
        default=300, description="a PostgreSQL/MySQL server that went away: how long the workers wait for it "
                                 "before they stop (the same command resumes)")


@declared()
class RerankConfig:
    """The search's last step: its top feasible candidates trained again with a longer recipe.

    ``epochs`` and ``train_subset`` replace the study's training recipe's; ``folds`` scores each candidate by
    k-fold cross-validation instead of one training scored on the validation split (:mod:`archsearch.search.rerank`).
    """

    top: Int(1, 1000) = 5  # type: ignore[valid-type]
    epochs: Int(1, 10_000) = 8  # type: ignore[valid-type]
    train_subset: Int(1, 10**9) | None = Field(default=None, description="null: all training images")  # type: ignore
    folds: Int(2, 20) | None = Field(  # type: ignore[valid-type]
        default=None, description="score by k-fold cross-validation over the training and validation images together "
        "(the mean of k trainings, fold i from the recipe's seed + i); null: one training, the validation split")

    def describe(self) -> str:
        """``top 5, 2 epochs on 30,000 images, 3 folds`` (``all images``; no folds: one training)."""
        images = "all" if self.train_subset is None else f"{self.train_subset:,}"
        folds = f", {self.folds} folds" if self.folds else ""
        return f"top {self.top}, {self.epochs} epochs on {images} images{folds}"


#: training images the int8 model's activation ranges come from, by default (measured: docs/int8.md)
INT8_CALIBRATION_IMAGES = 256


@declared()
class ExportConfig:
    """What ``archsearch export`` ships beside the float files; the command's options override it."""

    int8: Literal["ptq", "qat"] | None = Field(
        default=None, description="also write model.int8.onnx: ptq (post-training static quantization) or qat "
        "(quantization-aware fine-tuning first); null: float files only")
    calibration_images: Int(1, 1_000_000) = Field(  # type: ignore[valid-type]
        default=INT8_CALIBRATION_IMAGES, description="training images that set the int8 activation ranges")
    qat_epochs: Int(1, 1000) = Field(  # type: ignore[valid-type]
        default=2, description="epochs of quantization-aware fine-tuning (int8: qat)")
