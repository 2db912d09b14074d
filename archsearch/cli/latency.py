"""``archsearch latency build|check TARGET``: fill a target's lookup table, and check its predictions.

    archsearch latency build cpu:1:1 --samples 200     # fill the table for the parts of 200 candidates
    archsearch latency check cpu:1:1 --samples 100     # predicted against measured on 100 others
    archsearch latency check cpu:1:1 --runtime onnxruntime   # the same in ONNX Runtime (its own table)
    archsearch latency check cpu:1:1 --runtime onnxruntime-int8   # ONNX Runtime at int8 (another table)
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib.util
import math
import os
import re
import statistics
import sys
import time

import torch

from archsearch.config.study_schema import LATENCY_DEVICES, LATENCY_RUNTIMES, LatencyTarget
from archsearch.core.text import input_shape
from archsearch.core.text import table as format_table
from archsearch.latency.measure import ONNXRUNTIME_RUNTIMES
from archsearch.latency.table import DEFAULT_DIRECTORY, table_for
from archsearch.network.arch import Arch

__all__ = ["add_parser", "cmd_build", "cmd_check", "parse_target"]


def parse_target(text: str) -> LatencyTarget:
    """``device:threads:batch`` (``cpu:1:1``, ``cuda:1:8``) -> LatencyTarget."""
    m = re.fullmatch(r"([a-z]+):(\d+):(\d+)", text)
    if not m or m.group(1) not in LATENCY_DEVICES or int(m.group(2)) < 1 or int(m.group(3)) < 1:
        raise argparse.ArgumentTypeError(
            f"expected DEVICE:THREADS:BATCH with DEVICE one of {', '.join(LATENCY_DEVICES)} and THREADS, BATCH "
            f">= 1, e.g. cpu:1:1, got {text!r}"
        )
    return LatencyTarget(m.group(1), int(m.group(2)), int(m.group(3)))


def _sample(args: argparse.Namespace) -> list[Arch]:
    from archsearch.space.search_space import load_space, sample_architectures

    in_chs, res = args.input
    return sample_architectures(load_space(args.space), args.samples, in_chs=in_chs, resolution=res,
                                num_classes=args.classes, seed=args.seed)


def _load() -> str:
    with contextlib.suppress(OSError):
        return "load average " + ", ".join(f"{v:.2f}" for v in os.getloadavg())
    return "load average unknown"


def _target(args: argparse.Namespace) -> LatencyTarget | None:
    """The target with its runtime; None (and says why) where it cannot be timed on this machine."""
    target = dataclasses.replace(args.target, runtime=args.runtime)
    problem = None
    if target.device == "cuda" and not torch.cuda.is_available():
        problem = "target device cuda, but CUDA is not available"
    elif target.runtime in ONNXRUNTIME_RUNTIMES and target.device != "cpu":
        problem = f"runtime {target.runtime} is timed on the CPU, not on {target.device}"
    elif target.runtime in ONNXRUNTIME_RUNTIMES and importlib.util.find_spec("onnxruntime") is None:
        problem = f"runtime {target.runtime} needs ONNX Runtime: pip install 'archsearch[onnx]'"
    elif target.runtime == "onnxruntime-int8" and importlib.util.find_spec("onnx") is None:
        problem = "runtime onnxruntime-int8 needs ONNX's tools to quantize: pip install 'archsearch[onnx]'"
    if problem:
        print(f"archsearch: error: {problem}", file=sys.stderr)
        return None
    return target


def cmd_build(args: argparse.Namespace) -> int:
    target = _target(args)
    if target is None:
        return 2
    archs = _sample(args)
    t0 = time.perf_counter()
    table = table_for(target, directory=args.dir)
    before = len(table)
    print(f"latency table {table.path}: {before} entries; filling it for {len(archs)} candidates of {args.space} "
          f"({_load()})", flush=True)
    new = table.fill(archs)
    print(f"{len(table)} entries ({new} new) in {time.perf_counter() - t0:.1f} s; the table's speed: reference "
          f"network {table.reference_ms:.4f} ms; per-network constant {table.overhead_ms:.4f} ms ({_load()})")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from archsearch.network.build import build

    target = _target(args)
    if target is None:
        return 2
    archs = _sample(args)
    table = table_for(target, directory=args.dir)
    print(f"latency table {table.path} (runtime {target.runtime}): {len(table)} entries; {len(archs)} candidates "
          f"of {args.space}, seed {args.seed} ({_load()})", flush=True)
    t0 = time.perf_counter()
    predicted = [table.predict(a) for a in archs]
    print(f"predicted in {time.perf_counter() - t0:.1f} s ({table.measurements} parts measured on demand)",
          flush=True)
    load_before = _load()
    t0 = time.perf_counter()
    # each network measured in ``--rounds`` passes over all of them; the median of its rounds
    models = [build(a) for a in archs]
    rounds: list[list[tuple[float, float]]] = [[] for _ in archs]
    for _ in range(args.rounds):
        for a, model, kept in zip(archs, models, rounds, strict=False):
            scaled, raw = table.measure(model, (a.in_chs, a.resolution, a.resolution))
            kept.append((scaled.median_ms, raw.median_ms))
    measured = [statistics.median(m for m, _ in kept) for kept in rounds]
    timed = [statistics.median(t for _, t in kept) for kept in rounds]
    if args.rounds > 1:
        apart = sum(max(m for m, _ in kept) / min(m for m, _ in kept) > 1.10 for kept in rounds)
        print(f"{apart} of {len(archs)} networks had rounds more than 10% apart")
    print(f"measured in {time.perf_counter() - t0:.1f} s ({load_before} before, {_load()} after); the "
          f"reference ran at {min(timed[i] / measured[i] for i in range(len(archs))):.2f}x to "
          f"{max(timed[i] / measured[i] for i in range(len(archs))):.2f}x the table's time meanwhile")
    errors = [p / m - 1 for p, m in zip(predicted, measured, strict=False)]
    order = sorted(range(len(archs)), key=lambda i: -abs(errors[i]))
    rows = [[archs[i].id, f"{predicted[i]:.3f}", f"{measured[i]:.3f}", f"{100 * errors[i]:+.1f}%"]
            for i in order[: args.worst]]
    print(format_table(rows, ["worst predictions", "predicted ms", "measured ms", "error"]))
    within = sum(abs(e) <= 0.10 for e in errors) / len(errors)
    abs_err = sorted(abs(e) for e in errors)
    raw_within = sum(abs(p / m - 1) <= 0.10 for p, m in zip(predicted, timed, strict=False)) / len(timed)
    print(f"against the wall times as timed, unscaled: {100 * raw_within:.0f}% within +-10%")
    print(f"within +-10%: {100 * within:.0f}% of {len(errors)}; within +-5%: "
          f"{100 * sum(e <= 0.05 for e in abs_err) / len(errors):.0f}%; |error| median "
          f"{100 * statistics.median(abs_err):.1f}%, p90 {100 * abs_err[math.ceil(0.9 * len(abs_err)) - 1]:.1f}%, "
          f"max {100 * abs_err[-1]:.1f}%; mean error {100 * statistics.fmean(errors):+.1f}% "
          f"(measured {min(measured):.3f} to {max(measured):.3f} ms)")
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``latency build`` and ``latency check`` to the ``archsearch`` command line."""

    text = "latency lookup table of a target: build it, check its predictions"
    p = subparsers.add_parser("latency", help=text, description=text)
    sub = p.add_subparsers(dest="latency_command", required=True)
    for name, func, samples, seed, text in (
        ("build", cmd_build, 200, 0, "measure the table's entries for the parts of sampled candidates"),
        ("check", cmd_check, 100, 1, "predicted against measured latency of sampled candidates"),
    ):
        s = sub.add_parser(name, help=text, description=text)
        s.add_argument("target", type=parse_target, metavar="TARGET", help="DEVICE:THREADS:BATCH, e.g. cpu:1:1")
        s.add_argument("--runtime", choices=LATENCY_RUNTIMES, default="torch",
                       help="what runs the timed passes: torch (eager mode), onnxruntime or onnxruntime-int8 "
                            "(CPU; the ONNX model as exported, or statically quantized to int8; default torch)")
        s.add_argument("--space", default="search_spaces/mixed.yaml", help="search-space YAML file")
        s.add_argument("--input", type=input_shape, default=(1, 28), metavar="CxHxW", help="input shape (1x28x28)")
        s.add_argument("--classes", type=int, default=10, help="classes of the head (10)")
        s.add_argument("--samples", type=int, default=samples, help=f"candidates sampled ({samples})")
        s.add_argument("--seed", type=int, default=seed, help=f"sampling seed ({seed})")
        s.add_argument("--dir", default=str(DEFAULT_DIRECTORY), help=f"table directory ({DEFAULT_DIRECTORY})")
        if name == "check":
            s.add_argument("--worst", type=int, default=10, help="rows of the worst-predictions table")
            s.add_argument("--rounds", type=int, default=1,
                           help="measure every network this many times, in rounds over all of them, and "
                                "compare with the median (1)")
        s.set_defaults(func=func)
    return p
