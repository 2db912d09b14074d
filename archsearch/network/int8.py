"""A network at int8: post-training static quantization of its ONNX form with ONNX Runtime's tools.

The ONNX model (float32, as :mod:`archsearch.export` or :func:`archsearch.latency.measure.onnx_model` wrote it) is
prepared (``quant_pre_process``: shape inference, Conv+BatchNorm folded) and quantized to QDQ form
(``quantize_static``): weights int8 in 7 bits (-64..64: ``reduce_range``), symmetric, one scale per output channel;
activations uint8, asymmetric, their ranges the 0.01% and 99.99% percentiles of what the calibration images give
(``CALIBRATION``: the min and max let a few outliers stretch every range). The 7-bit weights keep the x86 kernels
without VNNI from saturating their 16-bit sums, so the file gives the same accuracy on every CPU. Both choices
are measured in docs/int8.md. The result runs in ONNX Runtime alone, on its
int8 kernels (QLinearConv, ...). Why this path and not PyTorch's PT2E flow: docs/int8.md.

Quantization-aware fine-tuning (:mod:`archsearch.training.qat`) simulates the same arithmetic in PyTorch, so
that its weights come out of this function with the ranges they were tuned for.
"""

from __future__ import annotations

import contextlib
import io
import logging
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["CALIBRATION", "CALIBRATION_BATCH", "QUANT_FORMAT", "quantize_onnx", "weight_bytes"]

#: how many calibration images go through ONNX Runtime's calibrator at once (where the batch is dynamic)
CALIBRATION_BATCH = 64
#: what the quantized file holds: QuantizeLinear/DequantizeLinear pairs around each quantized operator
QUANT_FORMAT = "QDQ"
#: how the activations' ranges are set from the calibration images: ONNX Runtime's calibration method and percentile
CALIBRATION = ("percentile", 99.99)


def _ort_quantization() -> Any:
    try:
        from onnxruntime import quantization
    except ImportError:
        raise ImportError("an int8 model needs ONNX Runtime: pip install 'archsearch[onnx]'") from None
    return quantization


def quantize_onnx(model: bytes | Path, calibration: np.ndarray, *, per_channel: bool = True,
                  reduce_range: bool = True, method: tuple[str, float] = CALIBRATION,
                  input_name: str | None = None) -> bytes:
    """``model`` (an ONNX float32 model's bytes or file) statically quantized to int8; returns the new model's bytes.

    ``calibration``: N images as the model takes them (``N x C x H x W`` float32); each activation's range is
    set by ``method`` (``("percentile", p)``: the p-th percentile, ``("minmax", 0)``: the min and max) over them.
    Where the model's batch is fixed they go through at that batch size.
    """
    import onnx

    q = _ort_quantization()
    calibration = np.ascontiguousarray(calibration, dtype=np.float32)
    if calibration.ndim < 2 or len(calibration) == 0:
        raise ValueError(f"calibration needs at least one image (N x C x H x W), got shape {calibration.shape}")
    proto = onnx.load_from_string(model) if isinstance(model, bytes) else onnx.load(str(model))
    graph_input = proto.graph.input[0]
    name = input_name or graph_input.name
    first_dim = graph_input.type.tensor_type.shape.dim[0]
    fixed = first_dim.HasField("dim_value") and first_dim.dim_value > 0
    batch = first_dim.dim_value if fixed else min(CALIBRATION_BATCH, len(calibration))

    class Reader(q.CalibrationDataReader):  # type: ignore[name-defined]
        def __init__(self) -> None:
            self.batches: Iterator[np.ndarray] = _batches(calibration, batch)

        def get_next(self) -> dict[str, np.ndarray] | None:
            chunk = next(self.batches, None)
            return None if chunk is None else {name: chunk}

    # the tools log each tensor they skip and warn about their own internals
    logger = logging.getLogger()
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        # the histogram calibration prints its progress: it goes nowhere
        with tempfile.TemporaryDirectory(prefix="archsearch-int8-") as tmp, warnings.catch_warnings(), \
                contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            src, pre, out = Path(tmp, "float.onnx"), Path(tmp, "prepared.onnx"), Path(tmp, "int8.onnx")
            onnx.save(proto, str(src))
            q.quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
            q.quantize_static(
                str(pre), str(out), Reader(),
                quant_format=q.QuantFormat.QDQ, per_channel=per_channel, reduce_range=reduce_range,
                activation_type=q.QuantType.QUInt8, weight_type=q.QuantType.QInt8,
                calibrate_method=_method(q, method[0]),
                extra_options={"WeightSymmetric": True, "ActivationSymmetric": False,
                               **({"CalibPercentile": method[1]} if method[0] == "percentile" else {})},
            )
            quantized = onnx.load(str(out))
    finally:
        logger.setLevel(level)
    quantized.metadata_props.extend(p for p in proto.metadata_props
                                    if p.key not in {m.key for m in quantized.metadata_props})
    for node in quantized.graph.node:  # the exporter's provenance (source lines, module paths): a third of the file
        del node.metadata_props[:]
        node.doc_string = ""
    del quantized.graph.value_info[:]  # intermediate shapes, which ONNX Runtime infers again when it loads the file
    return bytes(quantized.SerializeToString())


def _method(q: Any, name: str) -> Any:
    methods = {"percentile": q.CalibrationMethod.Percentile, "minmax": q.CalibrationMethod.MinMax}
    if name not in methods:
        raise ValueError(f"calibration method must be one of {sorted(methods)}, got {name!r}")
    return methods[name]


def _batches(images: np.ndarray, batch: int) -> Iterator[np.ndarray]:
    """``images`` in batches of ``batch``, the last filled up from the first images: a model with a fixed batch
    takes no other size, and ONNX Runtime's histogram calibration stacks the batches it saw."""
    for start in range(0, len(images), batch):
        chunk = images[start:start + batch]
        if len(chunk) < batch:
            chunk = np.concatenate((chunk, np.resize(images, (batch - len(chunk), *images.shape[1:]))))
        yield chunk


def weight_bytes(model: bytes | Path) -> dict[str, int]:
    """Bytes of the model's tensors (initializers) by what they are: ``"int8"`` (quantized weights), ``"int32"``
    (quantized biases), ``"quantization"`` (the scales and zero points), ``"float32"`` (tensors left in float),
    ``"other"``, and ``"total"``."""
    import onnx
    from onnx import numpy_helper

    proto = onnx.load_from_string(model) if isinstance(model, bytes) else onnx.load(str(model))
    out = {"int8": 0, "int32": 0, "quantization": 0, "float32": 0, "other": 0}
    for init in proto.graph.initializer:
        array = numpy_helper.to_array(init)
        if init.name.endswith(("_scale", "_zero_point")):
            key = "quantization"
        else:
            key = str(array.dtype) if str(array.dtype) in out else "other"
        out[key] += int(array.nbytes)
    out["total"] = sum(out.values())
    return out
