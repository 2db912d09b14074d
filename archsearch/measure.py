"""Measuring a built model's latency: median and p90 wall time of forward passes on a target.

The method every latency figure of archsearch rests on (a trial's candidate, the lookup table's entries in
:mod:`archsearch.latency`, ``archsearch latency check``, the export card): warm-up passes, then timed passes until
there are ``REPEATS`` of them and they add up to ``MIN_SECONDS``, with the garbage collector paused.
"""

from __future__ import annotations

import contextlib
import gc
import math
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

__all__ = ["Latency", "measure_latency", "torch_threads", "WARMUP", "REPEATS", "MIN_SECONDS"]

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
def torch_threads(n: int) -> Iterator[None]:
    """Run the block with ``n`` intra-op threads, isolated from the training threads around it."""
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


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


@torch.inference_mode()
def measure_latency(
    model: nn.Module,
    input_shape: tuple[int, int, int],
    *,
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
    median is as steady as a slow one's. Runs with ``threads`` intra-op threads (restored after), the
    garbage collector paused, under ``torch.inference_mode``; CUDA is synchronised after each pass.
    ``between`` runs before each timed pass (the lookup table's reference network), timed apart: its
    median is ``reference_ms``. The model's train/eval mode is restored; it is moved to ``device``.
    """
    if repeats < 1 or warmup < 0:
        raise ValueError(f"repeats must be >= 1 and warmup >= 0, got repeats={repeats}, warmup={warmup}")
    dev = torch.device(device)
    was_training = model.training
    model = model.eval().to(dev)
    x = torch.randn(batch, *input_shape, device=dev)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    times: list[float] = []
    between_times: list[float] = []
    total = 0.0
    try:
        with torch_threads(threads), _no_gc():
            for _ in range(warmup):
                if between is not None:
                    between()
                model(x)
            sync()
            while len(times) < max_repeats and (len(times) < repeats or total < min_seconds):
                if between is not None:
                    tb = time.perf_counter()
                    between()
                    sync()
                    between_times.append((time.perf_counter() - tb) * 1000)
                t0 = time.perf_counter()
                model(x)
                sync()
                dt = time.perf_counter() - t0
                times.append(dt * 1000)
                total += dt
    finally:
        model.train(was_training)
    times.sort()
    # p90: nearest rank
    reference = statistics.median(between_times) if between_times else None
    return Latency(statistics.median(times), times[math.ceil(0.9 * len(times)) - 1], len(times), reference)
