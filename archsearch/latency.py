"""Latency measurement of a built model on a target (device, threads, batch)."""

from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["Latency", "measure_latency", "torch_threads"]


@dataclass(frozen=True)
class Latency:
    median_ms: float
    p90_ms: float
    repeats: int


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the block with ``n`` intra-op threads, isolated from the training threads around it."""
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


@torch.inference_mode()
def measure_latency(
    model: nn.Module,
    input_shape: tuple[int, int, int],
    *,
    device: str = "cpu",
    threads: int = 1,
    batch: int = 1,
    warmup: int = 10,
    repeats: int = 50,
) -> Latency:
    """Median and p90 wall time of one forward pass, after ``warmup`` passes, in eval mode."""
    dev = torch.device(device)
    model = model.eval().to(dev)
    x = torch.randn(batch, *input_shape, device=dev)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    times = []
    with torch_threads(threads):
        for _ in range(warmup):
            model(x)
        sync()
        for _ in range(repeats):
            t0 = time.perf_counter()
            model(x)
            sync()
            times.append((time.perf_counter() - t0) * 1000)
    times.sort()
    return Latency(statistics.median(times), times[min(len(times) - 1, int(0.9 * len(times)))], repeats)
