"""PyTorch eager mode against ONNX Runtime: the same networks timed in both, and where they differ most.

For each sampled network (``mixed.yaml`` and each single-family space), the bare network is timed in eager mode
and in an ONNX Runtime session (:func:`archsearch.latency.measure.measure_latency`, CPU, batch 1, the same threads),
in three interleaved rounds, the fastest of each kept, so that both see the machine in the same states. Prints the
eager/ONNX Runtime ratio per space (median and range) and the networks that gain most and least, and draws the scatter
(``benchmarks/latency/runtimes.png``). With ``--dynamo N`` it also times N networks exported by the dynamo
exporter (as ``archsearch export`` writes ``model.onnx``) beside the TorchScript exporter the latency table uses.

    python -m benchmarks.latency.runtimes                       # 100 mixed + 30 of each family, 1 thread
    python -m benchmarks.latency.runtimes --samples 20 --family-samples 5 --dynamo 0
"""

from __future__ import annotations

import argparse
import io
import logging
import statistics
import time
import warnings
from pathlib import Path

import torch

from archsearch.latency.measure import measure_latency, onnxruntime_pass
from archsearch.network.build import build
from archsearch.network.cost import arch_cost
from archsearch.space.search_space import load_space, sample_architectures
from benchmarks.common import ROOT

FAMILIES = ("mobilenet", "shufflenet", "effnet")
PLOT = ROOT / "benchmarks" / "latency_runtimes.png"
ROUNDS = 3


def timed_pair(arch, threads: int) -> tuple[float, float]:
    """(eager ms, ONNX Runtime ms) of ``arch``'s bare network: the fastest of ``ROUNDS`` interleaved rounds."""
    model = build(arch)
    shape = (arch.in_chs, arch.resolution, arch.resolution)
    rounds = [(measure_latency(model, shape, runtime="torch", threads=threads).median_ms,
               measure_latency(model, shape, runtime="onnxruntime", threads=threads).median_ms)
              for _ in range(ROUNDS)]
    return min(e for e, _ in rounds), min(o for _, o in rounds)


def dynamo_against_torchscript(arch, threads: int) -> tuple[float, float]:
    """ONNX Runtime ms of ``arch`` exported by the dynamo exporter, and by the TorchScript one."""
    model = build(arch).eval()
    shape = (arch.in_chs, arch.resolution, arch.resolution)
    buffer = io.BytesIO()
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.zeros(1, *shape),), buffer, dynamo=True, verbose=False,
                          input_names=["x"], output_names=["y"])
    dynamo = onnxruntime_pass(buffer.getvalue(), shape, threads=threads)
    torchscript = onnxruntime_pass(model, shape, threads=threads)
    # interleaved rounds, the fastest of each kept: a slower phase of the machine hits both alike
    rounds = [(_time(dynamo), _time(torchscript)) for _ in range(ROUNDS)]
    return min(d for d, _ in rounds), min(t for _, t in rounds)


def _time(forward, seconds: float = 0.25) -> float:
    """Median ms of passes of ``forward`` for ``seconds`` (at least 50), after 20 untimed ones."""
    for _ in range(20):
        forward()
    times: list[float] = []
    while len(times) < 50 or sum(times) < 1000 * seconds:
        t0 = time.perf_counter()
        forward()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def plot(rows: dict[str, list[tuple[float, float]]], path: Path, threads: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 5.2))
    colors = {"mixed": "0.55", "mobilenet": "tab:blue", "shufflenet": "tab:orange", "effnet": "tab:green"}
    for name, pairs in rows.items():
        ax.scatter([e for e, _ in pairs], [o for _, o in pairs], s=14, alpha=0.8, color=colors.get(name),
                   label=f"{name}.yaml ({len(pairs)})")
    lo = min(min(e, o) for pairs in rows.values() for e, o in pairs)
    hi = max(max(e, o) for pairs in rows.values() for e, o in pairs)
    ax.plot([lo, hi], [lo, hi], color="black", linewidth=0.8, linestyle="--", label="equal")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(f"PyTorch eager, ms (CPU, {threads} thread(s), batch 1; log)")
    ax.set_ylabel("ONNX Runtime, ms (same; log)")
    ax.set_title("The same networks in eager mode and in ONNX Runtime")
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--samples", type=int, default=100, help="mixed.yaml networks (100)")
    p.add_argument("--family-samples", type=int, default=30, help="networks of each single-family space (30)")
    p.add_argument("--threads", type=int, default=1, help="intra-op threads in both runtimes (1)")
    p.add_argument("--seed", type=int, default=1, help="sampling seed (1: the networks `latency check` uses)")
    p.add_argument("--dynamo", type=int, default=5, help="networks also timed from the dynamo exporter (5)")
    p.add_argument("--plot", type=Path, default=PLOT, help=f"scatter plot file ({PLOT.relative_to(ROOT)})")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows: dict[str, list[tuple[float, float]]] = {}
    worst: list[tuple[float, str, str]] = []
    t0 = time.perf_counter()
    for name in ("mixed", *FAMILIES):
        n = args.samples if name == "mixed" else args.family_samples
        if n <= 0:
            continue
        space = load_space(ROOT / "search_spaces" / f"{name}.yaml")
        archs = sample_architectures(space, n, in_chs=1, resolution=28, num_classes=10, seed=args.seed)
        pairs = [timed_pair(a, args.threads) for a in archs]
        rows[name] = pairs
        ratios = [e / o for e, o in pairs]
        worst += [(r, name, f"{arch_cost(a).macs / 1e6:.2f}M MACs, eager {e:.3f} ms, ONNX Runtime {o:.3f} ms: {a.id}")
                  for r, a, (e, o) in zip(ratios, archs, pairs, strict=True)]
        print(f"{name}.yaml: {n} networks, eager {min(e for e, _ in pairs):.3f}-{max(e for e, _ in pairs):.3f} ms, "
              f"ONNX Runtime {min(o for _, o in pairs):.3f}-{max(o for _, o in pairs):.3f} ms; eager / ONNX "
              f"Runtime median {statistics.median(ratios):.1f}x (range {min(ratios):.1f}x-{max(ratios):.1f}x)",
              flush=True)
    worst.sort()
    print("least gain from ONNX Runtime:")
    for r, name, text in worst[:5]:
        print(f"  {r:5.1f}x  {name}, {text}")
    print("most gain from ONNX Runtime:")
    for r, name, text in worst[-5:]:
        print(f"  {r:5.1f}x  {name}, {text}")
    if args.dynamo > 0:
        space = load_space(ROOT / "search_spaces" / "mixed.yaml")
        archs = sample_architectures(space, args.dynamo, in_chs=1, resolution=28, num_classes=10, seed=args.seed)
        ratios = [d / s for d, s in (dynamo_against_torchscript(a, args.threads) for a in archs)]
        print(f"dynamo-exported / TorchScript-exported, in ONNX Runtime, {len(ratios)} mixed.yaml networks: "
              + ", ".join(f"{r:.2f}" for r in ratios))
    if rows:
        plot(rows, args.plot, args.threads)
        print(f"wrote {args.plot} ({time.perf_counter() - t0:.0f} s in all)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
