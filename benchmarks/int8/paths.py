"""Which int8 path archsearch builds on: ONNX Runtime's ``quantize_static`` (QDQ) on the exported ONNX, or
PyTorch's PT2E flow from ``torchao`` (X86InductorQuantizer), measured side by side on the same trained networks.

For each seed baseline at one budget: the float network trained briefly on Fashion-MNIST, then each path's int8
model, calibrated on the same training images: test accuracy, latency (1 thread, batch 1, median of
``measure``'s passes, the two runtimes timed alternately) and the file a user ships.

    python -m benchmarks.int8.paths --macs 3e6 --epochs 2 --train-subset 20000
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from archsearch.config.recipe import TrainConfig
from archsearch.core.threads import set_threads
from archsearch.data.bundle import load_data
from archsearch.data.preprocess import Preprocessing, WithPreprocessing
from archsearch.export.folder import save
from archsearch.network.build import build
from archsearch.network.int8 import quantize_onnx
from archsearch.space.baselines import FAMILIES, fit_to_budget
from archsearch.training.train import train


def _time(run, *args, n: int = 300) -> float:
    for _ in range(20):
        run(*args)
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        run(*args)
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def _ort_session(data: bytes):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])


def _ort_accuracy(session, x: np.ndarray, y: np.ndarray) -> float:
    logits = np.concatenate([session.run(None, {"x": x[i:i + 500]})[0] for i in range(0, len(x), 500)])
    return float((logits.argmax(1) == y).mean())


def _torchao_int8(full: torch.nn.Module, calibration: torch.Tensor, example: torch.Tensor):
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
    from torchao.quantization.pt2e.quantizer.x86_inductor_quantizer import (
        X86InductorQuantizer,
        get_default_x86_inductor_quantization_config,
    )

    quantizer = X86InductorQuantizer().set_global(get_default_x86_inductor_quantization_config())
    batch = torch.export.Dim("batch", min=1, max=65536)
    graph = torch.export.export(full, (example,), dynamic_shapes={"x": {0: batch}}).module()
    prepared = prepare_pt2e(graph, quantizer)
    with torch.no_grad():
        for i in range(0, len(calibration), 64):
            prepared(calibration[i:i + 64])
    return convert_pt2e(prepared)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--macs", type=float, default=3e6)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--train-subset", type=int, default=20000)
    p.add_argument("--calibration", type=int, default=256)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("benchmarks/int8/paths.jsonl"))
    args = p.parse_args(argv)
    set_threads(1)
    data = load_data("fashion-mnist", seed=args.seed)
    x_test, y_test = data.x_test.float().numpy(), data.y_test.numpy()
    gen = torch.Generator().manual_seed(args.seed)
    calibration = data.x_train[torch.randperm(len(data.x_train), generator=gen)[:args.calibration]].float()
    recipe = TrainConfig(epochs=args.epochs, train_subset=args.train_subset, seed=args.seed)
    for family in sorted(FAMILIES):
        arch = fit_to_budget(family, in_chs=1, resolution=28, num_classes=10, max_macs=args.macs)
        torch.manual_seed(args.seed)
        net = build(arch)
        train(net, data.x_train, data.y_train, data.x_val, data.y_val, recipe, device=torch.device("cpu"),
              preprocess=data.preprocess(), threads=1)
        pre = Preprocessing.of_data(data, arch.resolution)
        row = {"family": family, "arch_id": arch.id, "macs_limit": args.macs, "epochs": args.epochs,
               "train_subset": args.train_subset, "calibration": args.calibration, "seed": args.seed,
               "machine": platform.processor() or platform.machine(), "torch": torch.__version__}
        with tempfile.TemporaryDirectory() as tmp:
            folder = save(net, Path(tmp, "export"), preprocessing=pre, classes=data.classes, stream=None)
            float_bytes = (folder / "model.onnx").read_bytes()
            t0 = time.perf_counter()
            ort_bytes = quantize_onnx(float_bytes, calibration.numpy())
            row["ort_quantize_s"] = time.perf_counter() - t0
            f_sess, q_sess = _ort_session(float_bytes), _ort_session(ort_bytes)
            row["float_accuracy"] = _ort_accuracy(f_sess, x_test, y_test)
            row["ort_int8_accuracy"] = _ort_accuracy(q_sess, x_test, y_test)
            row["float_onnx_bytes"], row["ort_int8_bytes"] = len(float_bytes), len(ort_bytes)
            one = x_test[:1]
            row["float_ort_ms"] = _time(f_sess.run, None, {"x": one})
            row["ort_int8_ms"] = _time(q_sess.run, None, {"x": one})

            full = WithPreprocessing(pre.module(), net.eval()).eval()
            t0 = time.perf_counter()
            tao = _torchao_int8(full, calibration, calibration[:2])
            row["torchao_quantize_s"] = time.perf_counter() - t0
            with torch.no_grad():
                logits = torch.cat([tao(torch.from_numpy(x_test[i:i + 500])) for i in range(0, len(x_test), 500)])
            row["torchao_int8_accuracy"] = float((logits.argmax(1).numpy() == y_test).mean())
            xt = torch.from_numpy(one)
            with torch.no_grad():
                row["torchao_eager_ms"] = _time(tao, xt, n=100)
                row["float_torch_eager_ms"] = _time(full, xt)
                try:
                    t0 = time.perf_counter()
                    compiled = torch.compile(tao)
                    compiled(xt)
                    row["torchao_compile_s"] = time.perf_counter() - t0
                    row["torchao_inductor_ms"] = _time(compiled, xt)
                    compiled_float = torch.compile(full)
                    compiled_float(xt)
                    row["float_inductor_ms"] = _time(compiled_float, xt)
                except Exception as e:  # noqa: BLE001  # a finding, recorded
                    row["torchao_inductor_error"] = f"{type(e).__name__}: {e}"[:300]
            program = torch.export.export(tao, (calibration[:2],))
            buffer = io.BytesIO()
            torch.export.save(program, buffer)
            row["torchao_pt2_bytes"] = len(buffer.getvalue())
        print(json.dumps(row), flush=True)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        with args.out.open("a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main(sys.argv[1:])
