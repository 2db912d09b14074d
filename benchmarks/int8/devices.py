"""One measured example per device class of docs/int8.md's table: a short search on Fashion-MNIST (10,000 training
images, 2 epochs a trial) with the budgets that device states, then the export that device ships, its figures read
back from ``metrics.json``.

- microcontroller: 64 KiB of int8 weights and 32 KiB of int8 activations (``model_precision``/``activation_precision:
  int8``), exported ``--int8`` (``model.int8.onnx``): its int8 tensors' bytes checked against the budget;
- phone: 1 ms on ONNX Runtime's int8 kernels (``runtime: onnxruntime-int8``, 1 thread), exported ``--int8``: the
  int8 file's latency measured against the budget;
- server: 2 ms for a batch of 16 on 2 threads, float (``runtime: onnxruntime``), exported float (``model.onnx``).

    python -m benchmarks.int8.devices --trials 8          # resumes each study; writes devices.jsonl
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import yaml

from archsearch.config.study_config import load_study_config
from archsearch.core.threads import set_threads
from archsearch.export.folder import export
from archsearch.export.metrics import ExportMetrics
from archsearch.search.study import run
from benchmarks.common import ROOT

HERE = Path(__file__).resolve().parent
WORK = HERE / "work" / "devices"
RESULTS = HERE / "devices.jsonl"

DEVICES: dict[str, dict[str, Any]] = {
    "microcontroller": {"budget": {"max_model_kb": 64, "model_precision": "int8", "max_peak_activation_kb": 32,
                                   "activation_precision": "int8"}, "int8": "ptq"},
    "phone": {"budget": {"max_latency_ms": 1.0, "latency": {"device": "cpu", "threads": 1, "batch": 1,
                                                            "runtime": "onnxruntime-int8"}}, "int8": "ptq"},
    "server": {"budget": {"max_latency_ms": 2.0, "latency": {"device": "cpu", "threads": 2, "batch": 16,
                                                             "runtime": "onnxruntime"}}, "int8": None},
}


def _study(name: str, spec: dict[str, Any], trials: int) -> Path:
    WORK.mkdir(parents=True, exist_ok=True)
    study = {
        "name": f"device-{name}", "space": str(ROOT / "search_spaces" / "mixed.yaml"),
        "space_overrides": {"resolution_mult": [1.0]},
        "dataset": {"name": "fashion-mnist"}, "resolution": 28,
        "training": {"epochs": 2, "train_subset": 10000, "batch_size": 128, "lr": 0.05, "augment": "shift"},
        "budget": {**spec["budget"], "fit": True},
        "n_trials": trials, "device": "cpu", "pruner": {"type": "none"},
        **({"export": {"int8": spec["int8"]}} if spec["int8"] else {}),
    }
    path = WORK / f"{name}.yaml"
    path.write_text(yaml.safe_dump(study, sort_keys=False), encoding="utf-8")
    return path


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=8)
    p.add_argument("--devices", default=",".join(DEVICES))
    args = p.parse_args(argv)
    set_threads(1)
    done = {json.loads(line)["device"] for line in RESULTS.read_text().splitlines()} if RESULTS.exists() else set()
    for name in args.devices.split(","):
        if name in done:
            continue
        config = load_study_config(_study(name, DEVICES[name], args.trials))
        run(config, stream=sys.stdout, progress=False)
        (folder,) = export(config, WORK / f"{name}-export", force=True, stream=sys.stdout)
        m = ExportMetrics.from_json(json.loads((folder / "metrics.json").read_text()))
        row: dict[str, Any] = {"device": name, "budget": DEVICES[name]["budget"], "trials": args.trials,
                               "arch_id": m.arch_id, "macs": m.macs, "params": m.params,
                               "peak_activation_bytes": m.peak_activation_bytes, "test_accuracy": m.test_accuracy,
                               "latency_ms": m.latency_ms, "latency": m.latency.to_json() if m.latency else None,
                               "files": m.files}
        if m.int8 is not None:
            row["int8"] = {k: v for k, v in m.int8.to_json().items() if k != "test"}
        with RESULTS.open("a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
