"""The key of a latency table: what its measurements depend on, and the file name that carries it.

A table (:mod:`archsearch.latency.table`) is reused only under an equal key: device, threads, batch, torch version,
the processor or GPU name, and for ONNX Runtime (float32 or int8) the runtime and its version.
"""

from __future__ import annotations

import contextlib
import hashlib
import platform
import re
from dataclasses import asdict, dataclass
from typing import Any

import torch

from archsearch.config.study_schema import LATENCY_DEVICES, LatencyTarget
from archsearch.latency.measure import INT8_CALIBRATION, ONNXRUNTIME_RUNTIMES, RUNTIMES

__all__ = ["INT8_METHOD", "METHOD", "ONNXRUNTIME_METHOD", "TableKey", "hardware_name", "table_key"]

#: how entries and the constant are measured; a table measured another way is rebuilt, not mixed in
METHOD = "parts-referenced-v2"
#: ONNX Runtime: the same, less one session call per part (see ``CALL_KEY``), each entry the median of
#: ``ENTRY_ROUNDS`` rounds over the parts being filled
ONNXRUNTIME_METHOD = "parts-referenced-v3-call-rounds"
#: ONNX Runtime at int8: the same, each part quantized alone (QDQ, per-channel int8 weights, uint8 activations)
#: on INT8_CALIBRATION's images
INT8_METHOD = f"{ONNXRUNTIME_METHOD}-int8-qdq-calibration{INT8_CALIBRATION[0]}s{INT8_CALIBRATION[1]}"


@dataclass(frozen=True)
class TableKey:
    """What a table's measurements depend on; a table is only reused under an equal key."""

    device: str
    threads: int
    batch: int
    torch: str
    hardware: str
    runtime: str = "torch"
    onnxruntime: str | None = None  # ONNX Runtime's version, for runtimes onnxruntime and onnxruntime-int8

    def to_dict(self) -> dict[str, Any]:
        """As stored in the table file; a torch table's key as before the runtime existed (old tables still load)."""
        data = asdict(self)
        if self.runtime == "torch":
            del data["runtime"], data["onnxruntime"]
        return data

    def file_name(self) -> str:
        """``cpu-t1-b1-torch2.13.0+cpu-amd-epyc-3f2a9c.json``: readable, and distinct for distinct keys.

        Runtime onnxruntime: ``cpu-t1-b1-onnxruntime1.32.0_torch2.13.0+cpu-...json``; onnxruntime-int8:
        ``cpu-t1-b1-onnxruntime1.32.0-int8_torch2.13.0+cpu-...json``.
        """
        slug = re.sub(r"[^a-z0-9]+", "-", self.hardware.lower()).strip("-")[:24].strip("-") or "unknown"
        digest = hashlib.sha256(self.hardware.encode()).hexdigest()[:6]
        version = re.sub(r"[^A-Za-z0-9.+]+", "_", self.torch)
        runtime = ""
        if self.runtime != "torch":
            ort = re.sub(r"[^A-Za-z0-9.+]+", "_", f"onnxruntime{self.onnxruntime}")
            runtime = f"{ort}{self.runtime.removeprefix('onnxruntime')}_"  # "-int8" for onnxruntime-int8
        return f"{self.device}-t{self.threads}-b{self.batch}-{runtime}torch{version}-{slug}-{digest}.json"

    @property
    def method(self) -> str:
        """How the table's entries are measured (:data:`METHOD`, :data:`ONNXRUNTIME_METHOD`, :data:`INT8_METHOD`)."""
        return {"torch": METHOD, "onnxruntime": ONNXRUNTIME_METHOD, "onnxruntime-int8": INT8_METHOD}[self.runtime]


def hardware_name(device: str) -> str:
    """The processor model (``/proc/cpuinfo``'s model name) or the CUDA device's name."""
    if device == "cuda":
        return torch.cuda.get_device_name() if torch.cuda.is_available() else "cuda (unavailable)"
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "unknown cpu"


def table_key(target: LatencyTarget, *, torch_version: str | None = None, hardware: str | None = None) -> TableKey:
    """The key of ``target``'s table on this machine; ``torch_version``/``hardware`` default to this process's."""
    if target.device not in LATENCY_DEVICES:
        raise ValueError(f"latency device must be one of {list(LATENCY_DEVICES)}, got {target.device!r}")
    if target.runtime not in RUNTIMES:
        raise ValueError(f"latency runtime must be one of {list(RUNTIMES)}, got {target.runtime!r}")
    if target.runtime in ONNXRUNTIME_RUNTIMES and target.device != "cpu":
        raise ValueError(f"latency runtime {target.runtime} is timed on the CPU, got device {target.device!r}")
    for name in ("threads", "batch"):
        value = getattr(target, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"latency {name} must be an int >= 1, got {value!r}")
    return TableKey(
        device=target.device,
        threads=target.threads,
        batch=target.batch,
        torch=torch.__version__ if torch_version is None else torch_version,
        hardware=hardware_name(target.device) if hardware is None else hardware,
        runtime=target.runtime,
        onnxruntime=_onnxruntime_version() if target.runtime in ONNXRUNTIME_RUNTIMES else None,
    )


def _onnxruntime_version() -> str:
    from archsearch.latency.measure import _onnxruntime

    return _onnxruntime().__version__
