"""What int8 costs the Fashion-MNIST benchmark's networks: float against post-training quantization (PTQ) against
quantization-aware fine-tuning (QAT), with latency and file size.

For each level (1M, 3M, 10M MACs) the searched pick and the three seed baselines of ``benchmarks/fashion_mnist``
(their architectures read from its ``results.jsonl``) are trained as its rows are (``final_train``: the study's
recipe, 8 epochs on all 60,000 images, the row's seed), exported as the export does (``model.onnx``, preprocessing
inside), quantized with archsearch's int8 path (``archsearch.network.int8``: calibration on 256 training images; also
with 8-bit weights and with min/max ranges, and with 16 to 1,024 calibration images, for the record) and,
for QAT, fine-tuned ``--qat-epochs`` epochs with int8 rounding simulated first. Every file is scored on the 10,000
raw test images in ONNX Runtime; latency: ONNX Runtime, 1 thread, batch 1, the float and int8 files measured one
after the other in one process.

    python -m benchmarks.int8.run --levels 1m,3m,10m --seeds 0,1,2     # resumes: finished rows are skipped
    python -m benchmarks.int8.run --table                              # the markdown table from results.jsonl

A row in training keeps its state in ``work/`` after each epoch (git-ignored) and resumes from it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from archsearch.config.study_config import load_study_config
from archsearch.core.threads import set_threads
from archsearch.data.bundle import load_data
from archsearch.data.preprocess import Preprocessing
from archsearch.export.folder import save
from archsearch.export.metrics import ExportMetrics
from archsearch.export.quantized import Int8Job
from archsearch.network.arch import Arch
from archsearch.network.build import build
from archsearch.network.int8 import quantize_onnx
from archsearch.training.qat import qat_finetune
from benchmarks.common import ROOT
from benchmarks.fashion_mnist.level import final_train, machine

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results.jsonl"
WORK = HERE / "work"
FM_RESULTS = ROOT / "benchmarks" / "fashion_mnist" / "results.jsonl"
NETWORKS = ("archsearch", "mobilenet", "shufflenet", "effnet")
CALIBRATION = 256
CALIBRATION_SWEEP = (16, 64, 256, 1024)  # PTQ's test accuracy at each: the default's measurement


def _archs(level: str) -> dict[str, Arch]:
    """The level's searched pick and seed baselines, as the Fashion-MNIST benchmark's rows trained them."""
    out: dict[str, Arch] = {}
    for line in FM_RESULTS.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        for family in NETWORKS:
            kind = "searched" if family == "archsearch" else "baseline"
            if row.get("key") == f"row/{level}/{kind}/{family}/e8/s0":
                out[family] = Arch.from_dict(row["arch"])
    return out


def _done() -> set[str]:
    if not RESULTS.exists():
        return set()
    return {json.loads(line)["key"] for line in RESULTS.read_text(encoding="utf-8").splitlines() if line.strip()}


def _row(level: str, family: str, arch: Arch, seed: int, qat_epochs: int) -> dict[str, Any]:
    config = load_study_config(ROOT / "studies" / f"fmnist_{level}.yaml")
    data = load_data("fashion-mnist", seed=seed)
    recipe = dataclasses.replace(config.training, epochs=8)
    key = f"{level}/{family}/s{seed}"
    ckpt = WORK / (key.replace("/", "_") + ".pt")
    ckpt.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    weights = WORK / (key.replace("/", "_") + ".weights.pt")  # the trained network, kept for a rerun's int8 part
    if weights.exists():
        saved = torch.load(weights, weights_only=True)
        measured, model = saved["measured"], build(arch)
        model.load_state_dict(saved["state"])
        model.eval()
    else:
        measured = final_train(arch, recipe, data, seed=seed, checkpoint=ckpt)
        model = measured.pop("model")
        torch.save({"state": model.state_dict(), "measured": measured}, weights)
    row: dict[str, Any] = {"key": key, "level": level, "family": family, "seed": seed, "arch_id": arch.id,
                           "torch_test_accuracy": measured["test_accuracy"], "epochs": measured["epochs"],
                           "train_seconds": measured["train_seconds"], "machine": machine(torch.device("cpu")),
                           "qat_epochs": qat_epochs, "calibration": CALIBRATION}
    gen = torch.Generator().manual_seed(seed)
    calibration = data.x_train[torch.randperm(len(data.x_train), generator=gen)[:CALIBRATION]]
    pre = Preprocessing.of_data(data, arch.resolution)
    sized = data.resized(arch.resolution)
    tuned, result = qat_finetune(model, sized.x_train, sized.y_train, sized.x_val, sized.y_val, recipe,
                                 epochs=qat_epochs, device=torch.device("cpu"), preprocess=sized.preprocess())
    row["qat_val_accuracy"] = result.val_accuracy
    with tempfile.TemporaryDirectory() as tmp:
        for method, job in (("ptq", Int8Job(calibration, data.x_test, data.y_test)),
                            ("qat", Int8Job(calibration, data.x_test, data.y_test, method="qat", network=tuned,
                                            qat_epochs=qat_epochs, qat_val_accuracy=result.val_accuracy))):
            folder = save(model, Path(tmp, method), preprocessing=pre, classes=data.classes, int8=job)
            int8 = ExportMetrics.from_json(json.loads((folder / "metrics.json").read_text())).int8
            assert int8 is not None
            row["float_accuracy"] = int8.float_test_accuracy
            row[f"{method}_accuracy"] = int8.test_accuracy
            row["float_ms"], row[f"{method}_ms"] = int8.float_latency_ms, int8.latency_ms
            row["float_bytes"], row[f"{method}_bytes"] = int8.float_file_bytes, int8.file_bytes
            row["int8_weight_bytes"] = (int8.weight_bytes or {}).get("int8")
            if method == "ptq":
                float_onnx = (folder / "model.onnx").read_bytes()
                row["ptq_8bit_weights_accuracy"] = _accuracy(quantize_onnx(
                    float_onnx, calibration.float().numpy(), reduce_range=False), data)
                row["ptq_minmax_accuracy"] = _accuracy(quantize_onnx(
                    float_onnx, calibration.float().numpy(), method=("minmax", 0)), data)
    row["ptq_by_calibration"] = _calibration_sweep(float_onnx, data, seed)
    row["seconds"] = time.perf_counter() - t0
    ckpt.unlink(missing_ok=True)
    return row


def _calibration_sweep(float_onnx: bytes, data: Any, seed: int) -> dict[str, float]:
    """PTQ's test accuracy with each number of calibration images (drawn with ``seed``, as the export draws them)."""
    out = {}
    for n in CALIBRATION_SWEEP:
        pick = torch.randperm(len(data.x_train), generator=torch.Generator().manual_seed(seed))[:n]
        out[str(n)] = _accuracy(quantize_onnx(float_onnx, data.x_train[pick].float().numpy()), data)
    return out


def _accuracy(model: bytes, data: Any) -> float:
    """An ONNX model's accuracy on the raw test images, in ONNX Runtime (its int8 kernels on this CPU)."""
    import onnxruntime

    x, y = data.x_test.float().numpy(), data.y_test.numpy()
    session = onnxruntime.InferenceSession(model, providers=["CPUExecutionProvider"])
    logits = [session.run(None, {"x": x[i:i + 1000]})[0] for i in range(0, len(x), 1000)]
    return float((np.concatenate(logits).argmax(1) == y).mean())


def table() -> str:
    rows = [json.loads(line) for line in RESULTS.read_text(encoding="utf-8").splitlines() if line.strip()]
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["level"], r["family"]), []).append(r)

    def fig(rs: list[dict[str, Any]], key: str, scale: float = 100, digits: int = 2) -> str:
        values = [scale * r[key] for r in rs if r.get(key) is not None]
        if not values:
            return "-"
        if len(values) == 1:
            return f"{values[0]:.{digits}f}"
        return f"{min(values):.{digits}f}-{max(values):.{digits}f}"

    lines = ["| level | network | seeds | float % | PTQ % | QAT % | float ms | int8 ms | float KiB | int8 KiB |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    order = {"1m": 0, "3m": 1, "10m": 2}
    for (level, family), rs in sorted(groups.items(), key=lambda kv: (order.get(kv[0][0], 9), kv[0][1])):
        lines.append(f"| {level} | {family} | {len(rs)} | {fig(rs, 'float_accuracy')} | {fig(rs, 'ptq_accuracy')} | "
                     f"{fig(rs, 'qat_accuracy')} | {fig(rs, 'float_ms', 1, 3)} | {fig(rs, 'ptq_ms', 1, 3)} | "
                     f"{fig(rs, 'float_bytes', 1 / 1024, 1)} | {fig(rs, 'ptq_bytes', 1 / 1024, 1)} |")
    medians = [r["ptq_ms"] / r["float_ms"] for r in rows if r.get("ptq_ms") and r.get("float_ms")]
    if medians:
        lines.append(f"\nint8 / float latency: median {statistics.median(medians):.2f}x over {len(medians)} rows")
    lines += ["", "| level | network | seeds | float % | min and max % | 99.99th percentile % | 8-bit weights % |",
              "|---|---|---|---|---|---|---|"]
    for (level, family), rs in sorted(groups.items(), key=lambda kv: (order.get(kv[0][0], 9), kv[0][1])):
        lines.append(f"| {level} | {family} | {len(rs)} | {fig(rs, 'float_accuracy')} | "
                     f"{fig(rs, 'ptq_minmax_accuracy')} | {fig(rs, 'ptq_accuracy')} | "
                     f"{fig(rs, 'ptq_8bit_weights_accuracy')} |")
    sweep = [str(n) for n in CALIBRATION_SWEEP]
    lines += ["", "| level | network | seed | " + " | ".join(f"{n} images %" for n in sweep) + " |",
              "|---|---|---|" + "---|" * len(sweep)]
    for r in sorted(rows, key=lambda r: (order.get(r["level"], 9), r["family"], r["seed"])):
        by = r.get("ptq_by_calibration") or {}
        lines.append(f"| {r['level']} | {r['family']} | {r['seed']} | "
                     + " | ".join("-" if by.get(n) is None else f"{100 * by[n]:.2f}" for n in sweep) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--levels", default="1m,3m,10m")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--networks", default=",".join(NETWORKS))
    p.add_argument("--qat-epochs", type=int, default=2)
    p.add_argument("--table", action="store_true", help="print the table from results.jsonl and stop")
    args = p.parse_args(argv)
    if args.table:
        print(table())
        return
    set_threads(1)
    done = _done()
    # the first seed of every network before the next seeds: a partial run covers every row once
    for seed in (int(s) for s in args.seeds.split(",")):
        for level in args.levels.split(","):
            archs = _archs(level)
            for family in args.networks.split(","):
                key = f"{level}/{family}/s{seed}"
                if key in done or family not in archs:
                    continue
                row = _row(level, family, archs[family], seed, args.qat_epochs)
                with RESULTS.open("a", encoding="utf-8") as f:
                    f.write(json.dumps(row) + "\n")
                print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
