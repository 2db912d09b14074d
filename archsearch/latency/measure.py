"""Measuring a built model's latency: median and p90 wall time of forward passes on a target.

The method every latency figure of archsearch rests on (a trial's candidate, the lookup table's entries in
:mod:`archsearch.latency.table`, ``archsearch latency check``, the export card): warm-up passes, then timed passes until
there are ``REPEATS`` of them and they add up to ``MIN_SECONDS``, with the garbage collector paused.

Three runtimes run the passes (:data:`RUNTIMES`): ``torch`` (eager mode, what training uses), ``onnxruntime``
(what runs the exported ``model.onnx``) and ``onnxruntime-int8`` (the same ONNX model statically quantized to int8
by :func:`archsearch.network.int8.quantize_onnx`). For ONNX Runtime the model is exported to ONNX in memory (the
TorchScript exporter, ``dynamo=False``: a tenth of a second where the dynamo exporter takes seconds, and the same
operators once ONNX Runtime has optimised the graph) and timed in an ``InferenceSession`` with ``threads`` intra-op
threads, all graph optimisations on (Conv+BatchNorm+ReLU fused), input and output bound once (``io_binding``), so a
pass times the graph and the session's own call, not copies in and out. An ONNX model's bytes are timed as given.
"""

from __future__ import annotations

import contextlib
import gc
import io
import logging
import math
import statistics
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

# ONNXRUNTIME_RUNTIMES: those that time an ONNX model in an ONNX Runtime session, on the CPU
from archsearch.config.study_schema import LATENCY_RUNTIMES, ONNXRUNTIME_RUNTIMES
from archsearch.core.threads import torch_threads

__all__ = ["INT8_CALIBRATION", "Latency", "MIN_SECONDS", "ONNXRUNTIME_RUNTIMES", "REPEATS", "RUNTIMES", "WARMUP",
           "forward_pass", "int8_calibration", "int8_model", "measure_latency", "onnx_model", "onnxruntime_pass"]

#: what runs a timed forward pass: PyTorch eager mode, or ONNX Runtime on the model exported to ONNX (float32, or
#: statically quantized to int8)
RUNTIMES = LATENCY_RUNTIMES  # declared with the study file's keys
#: runtime onnxruntime-int8's calibration: this many random-normal images from a generator of this seed (the
#: activation ranges they give change the int8 model's outputs, not the speed of its int8 kernels)
INT8_CALIBRATION = (8, 0)

#: how a network is measured (a trial's candidate, ``latency check``): warm-up passes, then timed passes
#: until there are REPEATS of them and they add up to MIN_SECONDS
WARMUP, REPEATS, MIN_SECONDS = 10, 50, 0.25


@dataclass(frozen=True)
class Latency:
    """One measurement: median and p90 (nearest rank) of the timed passes, and how many there were.

    ``reference_ms``: the median time of the ``between`` pass run before each timed pass, where there
    was one (the lookup table's reference network).
    """

    median_ms: float
    p90_ms: float
    repeats: int
    reference_ms: float | None = None


@contextlib.contextmanager
def _no_gc() -> Iterator[None]:
    # a garbage collection inside a timed pass is noise, not the model's latency (timeit does the same)
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def onnx_model(model: nn.Module, input_shape: tuple[int, int, int], *, batch: int = 1) -> bytes:
    """``model`` (eval mode, on the CPU) as an ONNX model of a fixed input ``(batch, *input_shape)``, in memory."""
    was_training = model.training
    model = model.eval().cpu()
    buffer = io.BytesIO()
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice, once a process
            # the TorchScript exporter writes to a file object too; torch annotates `f` as a path only
            torch.onnx.export(model, (torch.zeros(batch, *input_shape),), buffer,  # type: ignore[arg-type]
                              dynamo=False, input_names=["x"], output_names=["y"])
    finally:
        logger.setLevel(level)
        model.train(was_training)
    return buffer.getvalue()


def _onnxruntime() -> Any:
    try:
        import onnxruntime
    except ImportError:
        raise ImportError("latency on runtime onnxruntime needs ONNX Runtime: pip install 'archsearch[onnx]'") from None
    return onnxruntime


def onnxruntime_pass(model: nn.Module | bytes, input_shape: tuple[int, int, int], *, threads: int = 1,
                     batch: int = 1) -> Callable[[], None]:
    """One forward pass of ``model`` (a module, or an ONNX model's bytes) in an ONNX Runtime session, as a call.

    The session runs on the CPU with ``threads`` intra-op threads (one inter-op thread, sequential execution) and
    every graph optimisation; a random input and the output are bound once. An open input or output dimension (the
    dynamic batch of ``model.onnx``) is given ``batch``.
    """
    ort = _onnxruntime()
    data = model if isinstance(model, bytes) else onnx_model(model, input_shape, batch=batch)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    (inp,), (out,) = session.get_inputs(), session.get_outputs()
    # a dimension the model leaves open (a str or None: model.onnx's batch) takes the given size
    if len(inp.shape) != 1 + len(input_shape) or any(
            isinstance(d, int) and d != want for d, want in zip(inp.shape, (batch, *input_shape), strict=True)):
        raise ValueError(f"the ONNX model takes input {inp.name!r} of shape {inp.shape}, which does not fit "
                         f"batch {batch} and input shape {tuple(input_shape)}")
    x = np.random.default_rng(0).standard_normal((batch, *input_shape)).astype(np.float32)
    x_value = ort.OrtValue.ortvalue_from_numpy(x)
    out_shape = [d if isinstance(d, int) else batch for d in out.shape]
    y_value = ort.OrtValue.ortvalue_from_shape_and_type(out_shape, np.float32)
    binding = session.io_binding()
    binding.bind_ortvalue_input(inp.name, x_value)
    binding.bind_ortvalue_output(out.name, y_value)

    def forward() -> None:
        session.run_with_iobinding(binding)

    forward.keep = (session, x_value, y_value)  # type: ignore[attr-defined]  # alive as long as the call
    return forward


def int8_calibration(input_shape: tuple[int, int, int]) -> np.ndarray:
    """Runtime onnxruntime-int8's calibration images (:data:`INT8_CALIBRATION`), ``N x C x H x W`` float32."""
    count, seed = INT8_CALIBRATION
    return np.random.default_rng(seed).standard_normal((count, *input_shape)).astype(np.float32)


def int8_model(model: nn.Module | bytes, input_shape: tuple[int, int, int], *, batch: int = 1) -> bytes:
    """``model`` (a module, or a float32 ONNX model's bytes) statically quantized to int8, as runtime
    onnxruntime-int8 times it: :func:`onnx_model`'s export, calibrated on :func:`int8_calibration`'s images."""
    from archsearch.network.int8 import quantize_onnx

    data = model if isinstance(model, bytes) else onnx_model(model, input_shape, batch=batch)
    if isinstance(model, bytes) and _quantized(data):
        raise ValueError("runtime onnxruntime-int8 quantizes a float32 model, but these ONNX bytes are quantized "
                         "already (QuantizeLinear or QLinear operators): time them on runtime onnxruntime")
    # min and max: the ranges do not change the kernels' speed, and they cost no histogram per part
    return quantize_onnx(data, int8_calibration(input_shape), method=("minmax", 0))


def _quantized(data: bytes) -> bool:
    import onnx

    return any(node.op_type in {"QuantizeLinear", "DequantizeLinear"} or node.op_type.startswith("QLinear")
               for node in onnx.load_from_string(data).graph.node)


def forward_pass(model: nn.Module | bytes, input_shape: tuple[int, int, int], *, runtime: str = "torch",
                 device: str = "cpu", threads: int = 1, batch: int = 1) -> Callable[[], Any]:
    """One forward pass of ``model`` on ``runtime`` as a call (torch: call it under ``torch.inference_mode``).

    ``model``: a module, or (ONNX Runtime's runtimes) an ONNX model's bytes; onnxruntime times the bytes as
    given, onnxruntime-int8 quantizes them first (they must be float32).
    """
    if runtime in ONNXRUNTIME_RUNTIMES:
        if device != "cpu":
            raise ValueError(f"runtime {runtime} runs on the CPU here, not on {device!r}")
        if runtime == "onnxruntime-int8":
            model = int8_model(model, input_shape, batch=batch)
        return onnxruntime_pass(model, input_shape, threads=threads, batch=batch)
    if runtime != "torch":
        raise ValueError(f"runtime must be one of {list(RUNTIMES)}, got {runtime!r}")
    if isinstance(model, bytes):
        raise TypeError("runtime torch times a torch module, got an ONNX model's bytes: time them on runtime "
                        f"{' or '.join(ONNXRUNTIME_RUNTIMES)}")
    model = model.eval().to(device)
    x = torch.randn(batch, *input_shape, device=device)
    return lambda: model(x)


def measure_latency(
    model: nn.Module | bytes,
    input_shape: tuple[int, int, int],
    *,
    runtime: str = "torch",
    device: str = "cpu",
    threads: int = 1,
    batch: int = 1,
    warmup: int = WARMUP,
    repeats: int = REPEATS,
    min_seconds: float = MIN_SECONDS,
    max_repeats: int = 10_000,
    between: Callable[[], Any] | None = None,
) -> Latency:
    """Median and p90 wall time of one forward pass of ``model`` in eval mode, in milliseconds.

    ``warmup`` untimed passes, then timed passes until there are at least ``repeats`` of them and
    they add up to ``min_seconds`` (at most ``max_repeats``): a fast model gets more passes, so its
    median is as steady as a slow one's. Runs on ``runtime`` (:data:`RUNTIMES`) with ``threads``
    intra-op threads (restored after), the garbage collector paused, under ``torch.inference_mode``;
    CUDA is synchronised after each pass. ``between`` runs before each timed pass (the lookup table's
    reference network), timed apart: its median is ``reference_ms``. A module's train/eval mode is
    restored; for torch it is moved to ``device``. ``model`` may be an ONNX model's bytes (ONNX Runtime's
    runtimes, :func:`forward_pass`).
    """
    if repeats < 1 or warmup < 0:
        raise ValueError(f"repeats must be >= 1 and warmup >= 0, got repeats={repeats}, warmup={warmup}")
    dev = torch.device(device)
    was_training = not isinstance(model, bytes) and model.training
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    times: list[float] = []
    between_times: list[float] = []
    total = 0.0
    try:
        forward = forward_pass(model, input_shape, runtime=runtime, device=device, threads=threads, batch=batch)
        with torch.inference_mode(), torch_threads(threads), _no_gc():
            for _ in range(warmup):
                if between is not None:
                    between()
                forward()
            sync()
            while len(times) < max_repeats and (len(times) < repeats or total < min_seconds):
                if between is not None:
                    tb = time.perf_counter()
                    own = between()
                    sync()
                    between_times.append(own if isinstance(own, float) else (time.perf_counter() - tb) * 1000)
                t0 = time.perf_counter()
                forward()
                sync()
                dt = time.perf_counter() - t0
                times.append(dt * 1000)
                total += dt
    finally:
        if not isinstance(model, bytes):
            model.train(was_training)
    times.sort()
    # p90: nearest rank
    reference = statistics.median(between_times) if between_times else None
    return Latency(statistics.median(times), times[math.ceil(0.9 * len(times)) - 1], len(times), reference)
