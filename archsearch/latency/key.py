"""The key of a latency table: what its measurements depend on, and the file name that carries it.

A table (:mod:`archsearch.latency.table`) is reused only under an equal key: device, threads, batch, torch version,
the processor or GPU name, and for ONNX Runtime the runtime and its version.
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
from archsearch.latency.measure import RUNTIMES

__all__ = ["METHOD", "ONNXRUNTIME_METHOD", "TableKey", "hardware_name", "table_key"]

#: how entries and the constant are measured; a table measured another way is rebuilt, not mixed in
METHOD = "parts-referenced-v2"
#: ONNX Runtime: the same, less one session call per part (see ``CALL_KEY``), each entry the median of
#: ``ENTRY_ROUNDS`` rounds over the parts being filled
ONNXRUNTIME_METHOD = "parts-referenced-v3-call-rounds"


@dataclass(frozen=True)
class TableKey:
    """What a table's measurements depend on; a table is only reused under an equal key."""

    device: str
    threads: int
    batch: int
    torch: str
    hardware: str
    runtime: str = "torch"
    onnxruntime: str | None = None  # ONNX Runtime's version, for runtime onnxruntime

    def to_dict(self) -> dict[str, Any]:
        """As stored in the table file; a torch table's key as before the runtime existed (old tables still load)."""
        data = asdict(self)
        if self.runtime == "torch":
            del data["runtime"], data["onnxruntime"]
        return data

    def file_name(self) -> str:
        """``cpu-t1-b1-torch2.13.0+cpu-amd-epyc-3f2a9c.json``: readable, and distinct for distinct keys.

        Runtime onnxruntime: ``cpu-t1-b1-onnxruntime1.32.0-torch2.13.0+cpu-...json``.
        """
        slug = re.sub(r"[^a-z0-9]+", "-", self.hardware.lower()).strip("-")[:24].strip("-") or "unknown"
        digest = hashlib.sha256(self.hardware.encode()).hexdigest()[:6]
        version = re.sub(r"[^A-Za-z0-9.+]+", "_", self.torch)
        runtime = "" if self.runtime == "torch" else re.sub(r"[^A-Za-z0-9.+]+", "_", f"onnxruntime{self.onnxruntime}-")
        return f"{self.device}-t{self.threads}-b{self.batch}-{runtime}torch{version}-{slug}-{digest}.json"

    @property
    def method(self) -> str:
        return METHOD if self.runtime == "torch" else ONNXRUNTIME_METHOD


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
    if target.runtime == "onnxruntime" and target.device != "cpu":
        raise ValueError(f"latency runtime onnxruntime is timed on the CPU, got device {target.device!r}")
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
        onnxruntime=_onnxruntime_version() if target.runtime == "onnxruntime" else None,
    )


def _onnxruntime_version() -> str:
    from archsearch.latency.measure import _onnxruntime

    return _onnxruntime().__version__
