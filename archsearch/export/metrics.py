"""An export's ``metrics.json``: every key it holds, declared once as :class:`ExportMetrics`, read and written typed.

The export builds the record (:func:`archsearch.export.folder.save` and :func:`~archsearch.export.folder.export`,
:func:`archsearch.export.selection.retrain_record`), writes ``to_json()`` and the card reads its fields. A key is
written where its field was given, null or not, as the plain dicts of earlier versions were: an export of a study
writes ``"baseline": null``, a plain ``save`` no ``baseline`` at all. The keys come in the order declared here, the
order ``export`` wrote them in; keys that no field declares follow, as they came.

``from_json`` reads the file of any archsearch version, as the trial record reads a trial: a key the file lacks
reads as None and is not written back; one this version does not declare is kept as it was; a value of another
type than declared (written by another tool) reads as None, a whole float for an int as that int. Building a
record from values is not tolerant: a value of another type than declared is an error.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, TypeAlias, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError, ValidationInfo, field_validator
from pydantic_core.core_schema import ValidatorFunctionWrapHandler
from typing_extensions import Self

from archsearch.core.class_metrics import ClassMetrics
from archsearch.data.preprocess import Preprocessing

__all__ = ["ExportMetrics", "LatencyWhere", "RuntimeLatencies", "SplitMetrics", "ClassFigures", "DatasetInfo",
           "RerankResult", "PreprocessingRecord", "Checks", "Int8Metrics"]

T = TypeVar("T")
_READING = "archsearch.export.metrics: reading"  # the validation context key of from_json


def _as_list(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


Listed = Annotated[list[T], BeforeValidator(_as_list)]  # a list (a tuple is taken as one: JSON has one kind)
Real: TypeAlias = int | float  # a number, kept as given: an int stays an int in the file


class _Record(BaseModel):
    """A JSON object of metrics.json: its declared keys typed, the others kept (``model_extra``), each written
    where given (``model_fields_set``)."""

    model_config = ConfigDict(frozen=True, extra="allow", strict=True)

    @field_validator("*", mode="wrap")
    @classmethod
    def _tolerant(cls, value: Any, handler: ValidatorFunctionWrapHandler, info: ValidationInfo) -> Any:
        """From a file, a value of another type reads as None (a whole float for an int: that int)."""
        try:
            return handler(value)
        except ValidationError:
            if not (info.context or {}).get(_READING):
                raise
        if isinstance(value, float) and value.is_integer():
            try:
                return handler(int(value))
            except ValidationError:
                pass
        return None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Self:
        """The record of a JSON object as any archsearch version wrote it (see the module's docstring)."""
        if not isinstance(data, Mapping):
            raise TypeError(f"{cls.__name__} reads a JSON object, got {type(data).__name__}")
        return cls.model_validate(dict(data), context={_READING: True})

    @classmethod
    def of(cls, data: Mapping[str, Any]) -> Self:
        """The record of the keys and values in ``data``, each validated: TypeError for a value of another type."""
        try:
            return cls.model_validate(dict(data))
        except ValidationError as e:
            first = e.errors()[0]
            key = first["loc"][0] if first["loc"] else "?"
            raise TypeError(f"{cls.__name__}.{key}: {first['msg'].lower()}, got {data.get(str(key))!r}") from None

    def to_json(self) -> dict[str, Any]:
        """The JSON object: the keys given, declared ones first in their order; tuples as lists, paths as
        strings, and NaN or an infinity as null (JSON has none)."""
        return _jsonable(self.model_dump(exclude_unset=True))

    def given(self) -> dict[str, Any]:
        """The fields given (declared or not) and their values, as they are held (nested records as records)."""
        out = {name: getattr(self, name) for name in type(self).model_fields if name in self.model_fields_set}
        out.update(self.model_extra or {})
        return out

    def replace(self, **changes: Any) -> Self:
        """A copy with ``changes`` given (validated)."""
        return type(self).of({**self.given(), **changes})

    def merged(self, other: _Record) -> Self:
        """A copy with each field ``other`` gives replacing or adding to this one's."""
        return self.replace(**other.given())

    def defaulted(self, **defaults: Any) -> Self:
        """A copy with ``defaults`` for the fields not given (``dict.setdefault``: a field given as None stays)."""
        return self.replace(**{k: v for k, v in defaults.items() if k not in self.model_fields_set})


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


# ---------------------------------------------------------------------------------------------------------
# the objects inside


class LatencyWhere(_Record):
    """Where and how ``latency_ms`` was measured."""

    source: str | None = None  # "trial": the trial's measurement on the study's target; "export": measured at export
    device: str | None = None  # "cpu", "cuda"
    threads: int | None = None
    batch: int | None = None
    runtime: str | None = None  # "torch", "onnxruntime" (absent: torch, an older export)


class RuntimeLatencies(_Record):
    """The bare network's latency in each runtime, measured at export on the CPU (ms; None: not installed)."""

    device: str | None = None
    threads: int | None = None
    batch: int | None = None
    torch: Real | None = None  # PyTorch eager mode
    onnxruntime: Real | None = None  # ONNX Runtime, model.onnx's network

    def runtimes(self) -> dict[str, Real | None]:
        """Runtime -> ms, for each runtime recorded."""
        named = {"torch": self.torch, "onnxruntime": self.onnxruntime}
        return {k: v for k, v in named.items() if k in self.model_fields_set}


class ClassFigures(_Record):
    """One class's figures on a split (:class:`~archsearch.core.class_metrics.ClassMetrics`)."""

    precision: Real | None = None
    recall: Real | None = None
    f1: Real | None = None
    support: int | None = None


class SplitMetrics(_Record):
    """A split's figures as metrics.json holds them (``ClassMetrics.to_dict()``, which writes them)."""

    accuracy: Real | None = None
    balanced_accuracy: Real | None = None
    macro_f1: Real | None = None
    majority_class: str | None = None  # the split's most common true class
    majority_rate: Real | None = None  # the accuracy of always predicting it
    per_class: dict[str, ClassFigures] | None = None  # by class name
    confusion_matrix: Listed[Listed[int]] | None = None  # rows: true class, columns: predicted
    classes: Listed[str] | None = None  # a name per row

    @classmethod
    def of_metrics(cls, metrics: ClassMetrics) -> SplitMetrics:
        return cls.of(metrics.to_dict())

    def class_metrics(self) -> ClassMetrics | None:
        """The figures of the confusion matrix (None: none recorded, or a damaged one)."""
        if self.confusion_matrix is None:
            return None
        try:
            return ClassMetrics.from_matrix(self.confusion_matrix, self.classes)
        except (ValueError, TypeError):  # written by another tool
            return None


class DatasetInfo(_Record):
    """The data the export trained on."""

    name: str | None = None
    resolution: int | None = None
    in_chs: int | None = None
    n_train: int | None = None
    n_val: int | None = None
    n_test: int | None = None
    skipped_files: Listed[str] | None = None  # image files left out by ``dataset.bad_files: skip``


class RerankResult(_Record):
    """The trial's re-rank result, as the study holds it (:mod:`archsearch.search.rerank`; under folds also
    ``folds`` and the other keys it writes, kept as they are)."""

    val_accuracy: Real | None = None
    value: Real | None = None  # the score the best trial is chosen by
    epochs: int | None = None
    seconds: Real | None = None
    recipe: dict[str, Any] | None = None


class PreprocessingRecord(_Record):
    """How raw images become the network's input (``Preprocessing.to_dict()``, which writes it)."""

    raw: str | None = None  # what the dataset stores
    input_shape: Listed[int] | None = None  # C, H, W of a raw image
    divisor: Real | None = None
    mean: Listed[Real] | None = None
    std: Listed[Real] | None = None
    resize: dict[str, Any] | None = None  # {"from", "to", and how}; None: none
    network_input_shape: Listed[int] | None = None
    formula: str | None = None  # the steps as one line of text

    @classmethod
    def of_preprocessing(cls, preprocessing: Preprocessing) -> PreprocessingRecord:
        return cls.of(preprocessing.to_dict())

    def preprocessing(self, where: Any = None) -> Preprocessing:
        """The :class:`Preprocessing`; a damaged record is a ConfigError naming ``where``."""
        return Preprocessing.from_dict(self.to_json(), where=where)


class Checks(_Record):
    """What every exported format gave against the network on one batch."""

    max_abs_logit_difference: dict[str, Real] | None = None  # by file: "model.py", "model.pt2", ...
    batch: Listed[int] | None = None  # the batch's shape


class Int8Metrics(_Record):
    """The int8 model, ``model.int8.onnx`` (:mod:`archsearch.export.quantized`), measured beside ``model.onnx``."""

    file: str | None = None
    method: str | None = None  # "ptq": post-training static quantization; "qat": after quantization-aware tuning
    format: str | None = None  # what the file holds
    calibration_images: int | None = None  # training images the activation ranges come from
    calibration: str | None = None  # how: "99.99th percentile" (ptq), "min and max" (qat, as its fine-tune simulated)
    qat_epochs: int | None = None
    qat_val_accuracy: Real | None = None  # the fine-tune's validation accuracy, int8 rounding simulated
    test_accuracy: Real | None = None  # the int8 file's, on the raw test images
    float_test_accuracy: Real | None = None  # model.onnx's, on the same images
    drop_points: Real | None = None  # 100 x (float - int8)
    agreement: Real | None = None  # the share of test images both files give the same class
    test: SplitMetrics | None = None  # the int8 file's figures on the test split
    file_bytes: int | None = None
    float_file_bytes: int | None = None  # model.onnx's
    weight_bytes: dict[str, int] | None = None  # the file's tensors by element type ("int8", ...) and "total"
    float_weight_bytes: int | None = None  # model.onnx's tensors
    latency_ms: Real | None = None  # ONNX Runtime on the CPU, median, at latency_threads and latency_batch
    float_latency_ms: Real | None = None  # model.onnx's, measured alike, in the same run
    latency_threads: int | None = None
    latency_batch: int | None = None
    onnxruntime: str | None = None  # the version that quantized and measured it
    budget: dict[str, Any] | None = None  # the study's int8 limits against the file: {key: {limit, value, within}}


# ---------------------------------------------------------------------------------------------------------
# metrics.json


class ExportMetrics(_Record):
    """``metrics.json`` of an export folder (None: not recorded). ``ExportMetrics.from_json(json.load(f))`` reads
    one; ``to_json()`` is what the file holds."""

    # -- the network (archsearch.network.cost), every export
    arch_id: str | None = None  # Arch.id
    macs: int | None = None  # multiply-accumulates per image
    params: int | None = None
    peak_activation_bytes: int | None = None  # float32, batch 1
    # -- the study and trial, an export of a study
    study: str | None = None  # the study's name
    storage: str | None = None  # its storage URL, password redacted
    trial: int | None = None  # the trial's number
    trial_state: str | None = None  # "COMPLETE"
    trial_values: Listed[Real] | None = None
    baseline: str | None = None  # the seed baseline family of a baseline trial
    feasible: bool | None = None  # within the budget in the search
    search_val_accuracy: Real | None = None  # the trial's validation accuracy in the search
    rerank: RerankResult | None = None  # its re-rank result, where the study re-ranked it
    # -- the retrain (archsearch.export.selection.retrain_record)
    retrained: str | None = None  # "train": the search's recipe on the training split; "train+val": with epochs
    val_accuracy: Real | None = None  # None after "train+val"
    val: SplitMetrics | None = None  # the validation split's figures (None after "train+val")
    test_accuracy: Real | None = None  # None: the data has no test split
    test: SplitMetrics | None = None
    trained_on: int | None = None  # images trained on
    epochs: int | None = None  # epochs trained
    train_seconds: Real | None = None
    resumed_epochs: int | None = None  # epochs that came from the retrain's checkpoint
    training: dict[str, Any] | None = None  # the recipe trained with (the study's TrainConfig, as a dict)
    dataset: DatasetInfo | None = None
    # -- the study's settings, an export of a study
    budget: dict[str, Any] | None = None  # the study's BudgetConfig, as a dict
    objective: dict[str, Any] | None = None  # its ObjectiveConfig, as a dict
    command: str | None = None  # the command line that made the export
    # -- the folder (archsearch.export.folder.save)
    classes: Listed[str] | None = None  # the name of each output
    preprocessing: PreprocessingRecord | None = None  # absent: the formats take the network's own input
    latency_by_runtime: RuntimeLatencies | None = None
    latency_ms: Real | None = None  # the trial's measured latency, else the eager one measured at export
    latency: LatencyWhere | None = None  # where latency_ms is from
    onnx: str | None = None  # why model.onnx was not written
    int8: Int8Metrics | None = None  # model.int8.onnx, where the export made one (--int8)
    checks: Checks | None = None
    files: Listed[str] | None = None  # the folder's files
    created: str | None = None  # ISO 8601, UTC
    torch_version: str | None = None

    # -- readings

    @property
    def of_study(self) -> bool:
        """An export of a study's trial (it records the study, trial and budget)."""
        return "study" in self.model_fields_set

    @property
    def records_search_accuracy(self) -> bool:
        """It records the trial's validation accuracy in the search (null or not)."""
        return "search_val_accuracy" in self.model_fields_set

    def budget_limits(self) -> dict[str, Any]:
        """The study's budget limits that were set, by key (``max_macs``, ...), in the budget's order."""
        return {k: v for k, v in (self.budget or {}).items() if k.startswith("max_") and v is not None}

    @property
    def training_steps(self) -> int | None:
        """The optimizer steps the recipe trained for (None: counted in epochs)."""
        steps = (self.training or {}).get("steps")
        return steps if isinstance(steps, int) and not isinstance(steps, bool) else None
