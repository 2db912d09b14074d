"""The export's int8 model, ``model.int8.onnx``: the retrained network (or its quantization-aware fine-tune),
preprocessing inside, statically quantized (:func:`archsearch.network.int8.quantize_onnx`), then measured as the
float model is: test accuracy on the same raw test images, file and weight bytes, and latency in ONNX Runtime.

The float figures beside it (``float_test_accuracy``, ``float_latency_ms``) are ``model.onnx``'s, measured here the
same way, so that the drop compares two files a user can ship. The file's metadata holds them too.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from archsearch.config.study_config import StudyConfig
from archsearch.core.class_metrics import ClassMetrics, confusion
from archsearch.data.bundle import DataBundle
from archsearch.data.preprocess import Preprocessing, WithPreprocessing
from archsearch.export._formats import onnx_program_bytes
from archsearch.export.metrics import Int8Metrics, SplitMetrics
from archsearch.latency.measure import measure_latency
from archsearch.network.build import Net
from archsearch.network.int8 import CALIBRATION, quantize_onnx, weight_bytes
from archsearch.training.qat import qat_finetune

__all__ = ["INT8_FILE", "Int8Job", "int8_budget", "int8_job", "write_int8"]

INT8_FILE = "model.int8.onnx"
_EVAL_BATCH = 500


@dataclasses.dataclass(frozen=True)
class Int8Job:
    """What the int8 model is made from and measured on.

    ``calibration``: raw images (as the dataset stores them) whose activation ranges set the int8 ranges;
    ``x_test``/``y_test``: raw test images and labels (None: no test split); ``network``: the quantization-aware
    fine-tuned network (:func:`archsearch.training.qat.qat_finetune`) for ``method="qat"``, None for ``"ptq"`` (the
    exported network itself); ``qat_epochs``: how long it was fine-tuned; ``qat_val_accuracy``: its validation
    accuracy at the end, with int8 rounding simulated; ``latency_threads``/``latency_batch``: how both files are
    timed; ``config``: the study whose int8 limits the file is checked against (:func:`int8_budget`).
    """

    calibration: torch.Tensor
    x_test: torch.Tensor | None = None
    y_test: torch.Tensor | None = None
    method: str = "ptq"
    network: nn.Module | None = None
    qat_epochs: int | None = None
    qat_val_accuracy: float | None = None
    latency_threads: int = 1
    latency_batch: int = 1
    config: StudyConfig | None = None

    def __post_init__(self) -> None:
        if self.method not in ("ptq", "qat"):
            raise ValueError(f"int8 method must be 'ptq' or 'qat', got {self.method!r}")
        if (self.method == "qat") != (self.network is not None):
            raise ValueError("an int8 job of method 'qat' takes the fine-tuned network, one of method 'ptq' none")
        if len(self.calibration) == 0:
            raise ValueError("int8 calibration needs at least one image")


def write_int8(folder: Path, float_onnx: Path, job: Int8Job, *, preprocessing: Preprocessing | None,
               classes: list[str], metadata: dict[str, str], peak_activation_bytes: int | None = None) -> Int8Metrics:
    """Write ``folder/model.int8.onnx`` from ``float_onnx`` (or from ``job.network``) and measure it beside the
    float file (latency: ONNX Runtime on the CPU, at the job's threads and batch); returns its record
    (metrics.json's ``int8``), with the study's int8 limits checked where the job names the study."""
    latency_threads, latency_batch = job.latency_threads, job.latency_batch
    float_bytes = float_onnx.read_bytes()
    if job.network is not None:
        full: nn.Module = job.network if preprocessing is None else WithPreprocessing(preprocessing.module(),
                                                                                     job.network).eval()
        source = onnx_program_bytes(full, job.calibration[:2].float())
    else:
        source = float_bytes
    # the fine-tune simulated ranges that follow the batches' min and max: its file is calibrated the same way
    method = ("minmax", 0) if job.network is not None else CALIBRATION
    quantized = quantize_onnx(source, job.calibration.float().numpy(), method=method)
    c, h, w = (int(d) for d in job.calibration.shape[1:])
    input_shape = (c, h, w)
    record: dict[str, Any] = {
        "file": INT8_FILE,
        "method": job.method,
        "format": "ONNX QDQ: weights int8 (7 bits) per channel, activations uint8 per tensor",
        "calibration_images": len(job.calibration),
        "calibration": "min and max" if method[0] == "minmax" else f"{method[1]:g}th percentile",
        "qat_epochs": job.qat_epochs,
        "qat_val_accuracy": job.qat_val_accuracy,
        "float_file_bytes": len(float_bytes),
        "weight_bytes": weight_bytes(quantized),
        "float_weight_bytes": weight_bytes(float_bytes)["total"],
        "latency_threads": latency_threads,
        "latency_batch": latency_batch,
        "float_latency_ms": measure_latency(float_bytes, input_shape, runtime="onnxruntime",
                                            threads=latency_threads, batch=latency_batch).median_ms,
        "latency_ms": measure_latency(quantized, input_shape, runtime="onnxruntime",
                                      threads=latency_threads, batch=latency_batch).median_ms,
        "onnxruntime": _ort().__version__,
    }
    if job.x_test is not None and job.y_test is not None and len(job.y_test):
        y = job.y_test.cpu().numpy()
        float_pred = _predict(float_bytes, job.x_test)
        int8_pred = _predict(quantized, job.x_test)
        record["float_test_accuracy"] = float((float_pred == y).mean())
        record["test_accuracy"] = float((int8_pred == y).mean())
        record["drop_points"] = 100 * (record["float_test_accuracy"] - record["test_accuracy"])
        record["agreement"] = float((float_pred == int8_pred).mean())
        record["test"] = SplitMetrics.of_metrics(ClassMetrics.from_matrix(
            confusion(job.y_test.cpu(), torch.from_numpy(int8_pred), len(classes)), classes))
    figures = {k: v for k, v in record.items() if k not in ("test", "weight_bytes") and v is not None}
    figures["weight_bytes"] = record["weight_bytes"]["total"]
    meta = {**metadata, "classes": json.dumps(classes), "archsearch.int8": json.dumps(figures, sort_keys=True)}
    data = _with_metadata(quantized, meta)
    record["file_bytes"] = len(data)
    (folder / INT8_FILE).write_bytes(data)
    measured = Int8Metrics.of(record)
    if job.config is not None:
        measured = measured.replace(budget=int8_budget(job.config, measured, peak_activation_bytes))
    return measured


def int8_job(model: Net, data: DataBundle, config: StudyConfig, method: str, resolution: int, *, images: int,
              epochs: int, device: torch.device) -> Int8Job:
    """What the int8 model is made from: ``images`` training images drawn with the recipe's seed (the raw
    images, as the file takes them), the test split, and for ``qat`` the network fine-tuned ``epochs`` epochs
    on the training split (scored on the validation split)."""
    gen = torch.Generator().manual_seed(config.training.seed)
    pick = torch.randperm(len(data.x_train), generator=gen)[:images]
    target = config.budget.latency  # timed as the study times candidates, where that is on the CPU
    on_cpu = target.device == "cpu"
    job = Int8Job(data.x_train[pick].cpu(), data.x_test.cpu(), data.y_test.cpu(),
                  latency_threads=target.threads if on_cpu else 1, latency_batch=target.batch if on_cpu else 1,
                  config=config)
    if method == "ptq":
        return job
    sized = data.resized(resolution).to(device)
    tuned, result = qat_finetune(model, sized.x_train, sized.y_train, sized.x_val, sized.y_val, config.training,
                                 epochs=epochs, device=device, preprocess=sized.preprocess())
    return dataclasses.replace(job, method="qat", network=tuned, qat_epochs=epochs,
                               qat_val_accuracy=result.val_accuracy)


def int8_budget(config: StudyConfig, int8: Int8Metrics, peak_activation_bytes: int | None) -> dict[str, Any]:
    """The study's limits that speak of the int8 model, against the file as measured: ``max_model_kb`` (at
    ``model_precision: int8``) against its int8 weights' bytes, ``max_latency_ms`` (on ``runtime:
    onnxruntime-int8``) against its latency (wall time, at the study's threads and batch), and
    ``max_peak_activation_kb`` (at ``activation_precision: int8``) against the analytic peak at a byte an
    activation (ONNX Runtime does not report its own). Each: ``{"limit", "value", "within"}``."""
    b = config.budget
    out: dict[str, Any] = {}
    weights = (int8.weight_bytes or {}).get("int8")
    if b.max_model_kb is not None and b.model_precision == "int8" and weights is not None:
        out["max_model_kb"] = {"limit": b.max_model_kb, "value": weights / 1024, "what": "KiB of int8 weights in "
                               "the file"}
    if b.max_latency_ms is not None and b.latency.runtime == "onnxruntime-int8" and int8.latency_ms is not None:
        out["max_latency_ms"] = {"limit": b.max_latency_ms, "value": int8.latency_ms,
                                 "what": f"ms, the file in ONNX Runtime ({int8.latency_threads} thread(s), batch "
                                         f"{int8.latency_batch}), wall time as measured"}
    if b.max_peak_activation_kb is not None and b.activation_precision == "int8" and peak_activation_bytes:
        out["max_peak_activation_kb"] = {"limit": b.max_peak_activation_kb, "value": peak_activation_bytes / 4 / 1024,
                                         "what": "KiB of int8 activations (analytic, a byte each)"}
    for entry in out.values():
        entry["within"] = entry["value"] <= entry["limit"]
    return out


def _with_metadata(model: bytes, metadata: dict[str, str]) -> bytes:
    """``model`` with ``metadata`` in its metadata_props, and ``archsearch.int8_file_bytes``: the file's own size."""
    import onnx

    proto = onnx.load_from_string(model)
    kept = [p for p in proto.metadata_props if p.key not in metadata]
    del proto.metadata_props[:]
    proto.metadata_props.extend(kept)
    onnx.helper.set_model_props(proto, {**{p.key: p.value for p in kept}, **metadata})
    size = len(proto.SerializeToString())
    for _ in range(5):  # the size's own digits change the size: a few rounds settle it
        props = {p.key: p.value for p in proto.metadata_props}
        props["archsearch.int8_file_bytes"] = str(size)
        del proto.metadata_props[:]
        onnx.helper.set_model_props(proto, props)
        data = proto.SerializeToString()
        if len(data) == size:
            break
        size = len(data)
    return bytes(data)


def _ort() -> Any:
    import onnxruntime

    return onnxruntime


def _predict(model: bytes, x: torch.Tensor) -> np.ndarray:
    ort = _ort()
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    images = x.float().cpu().numpy()
    logits = [session.run(None, {name: images[i:i + _EVAL_BATCH]})[0] for i in range(0, len(images), _EVAL_BATCH)]
    return np.concatenate(logits).argmax(1)
