"""Throughput of ``archsearch.training.train.train`` against a plain hand-written PyTorch loop on the same model and
data.

Prints figures, asserts nothing. Both sides train a deep copy of one model (same init) with SGD (momentum 0.9,
nesterov, wd 5e-4), a per-step cosine lr, cross-entropy, randperm batching of 128 and channels_last, for the
same epochs and torch threads, and both run an identical validation pass after each epoch, which is included
in both timings. Rounds are interleaved (and their order alternated) so that drift in machine load hits both;
the final ratio is the median of the per-round ratios.

A third side, ``uint8``, is archsearch's trainer on the images as archsearch now holds them (uint8, each batch
divided, normalized by ``archsearch.data.preprocess.Preprocess`` on the device) against the same trainer on
normalized float32 tensors (how it held them before): the ratio of the two is the cost of keeping images uint8.

    python -m benchmarks.speed.trainer [--epochs 2] [--train 10000] [--rounds 5] [--threads N]
"""

from __future__ import annotations

import argparse
import copy
import gzip
import statistics
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from archsearch.config.recipe import TrainConfig
from archsearch.data.preprocess import Preprocess
from archsearch.training.train import train

FASHION = Path("/usr/share/datasets/fashion-mnist")


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (gzipped): big-endian magic (dtype, ndim), ndim sizes, then the raw uint8 data."""
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def load_data(n_train: int, n_val: int) -> tuple[str, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Real Fashion-MNIST when present, else scikit-learn's digits; normalized (N, 1, H, W) float32 + int64."""
    files = [FASHION / f"{s}-{k}-ubyte.gz" for s in ("train", "t10k") for k in ("images-idx3", "labels-idx1")]
    if all(f.exists() for f in files):
        name = "fashion-mnist"
        x_tr = read_idx(FASHION / "train-images-idx3-ubyte.gz")[:n_train]
        y_tr = read_idx(FASHION / "train-labels-idx1-ubyte.gz")[:n_train]
        x_va = read_idx(FASHION / "t10k-images-idx3-ubyte.gz")[:n_val]
        y_va = read_idx(FASHION / "t10k-labels-idx1-ubyte.gz")[:n_val]
    else:
        from sklearn.datasets import load_digits

        name = "digits"
        d = load_digits()
        x_all, y_all = (d.images * (255 / 16)).astype(np.uint8), d.target
        n_train = min(n_train, len(x_all) - n_val)
        x_tr, y_tr, x_va, y_va = x_all[:n_train], y_all[:n_train], x_all[-n_val:], y_all[-n_val:]
    x_tr_t = torch.from_numpy(x_tr.astype(np.float32) / 255).unsqueeze(1)
    x_va_t = torch.from_numpy(x_va.astype(np.float32) / 255).unsqueeze(1)
    mean, std = x_tr_t.mean(), x_tr_t.std()
    to_label = lambda a: torch.from_numpy(a.astype(np.int64))  # noqa: E731
    global STORED  # the uint8 images and what normalizes them, for the `uint8` side
    STORED = (torch.from_numpy(x_tr.copy()).unsqueeze(1), torch.from_numpy(x_va.copy()).unsqueeze(1),
              Preprocess(255.0, (float(mean),), (float(std),), None))
    return name, (x_tr_t - mean) / std, to_label(y_tr), (x_va_t - mean) / std, to_label(y_va)


STORED: tuple = ()


def make_model() -> nn.Module:
    """A candidate of the size the search samples: three conv-BN-ReLU (two strided), pool, linear."""

    def cbr(cin: int, cout: int, stride: int) -> list[nn.Module]:
        return [nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]

    return nn.Sequential(
        *cbr(1, 16, 1), *cbr(16, 32, 2), *cbr(32, 64, 2), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10)
    )


def plain_loop(model: nn.Module, x, y, x_val, y_val, *, epochs: int, batch_size: int, lr: float) -> float:
    """The reference: what one writes by hand. Returns wall seconds (including the per-epoch eval)."""
    t0 = time.perf_counter()
    torch.manual_seed(0)
    model = model.to(memory_format=torch.channels_last)
    x = x.contiguous(memory_format=torch.channels_last)
    x_val = x_val.contiguous(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, nesterov=True, weight_decay=5e-4)
    steps_per_epoch = -(-len(x) // batch_size)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs * steps_per_epoch)
    for _ in range(epochs):
        model.train()
        perm = torch.randperm(len(x))
        for i in range(0, len(x), batch_size):
            idx = perm[i : i + batch_size]
            loss = F.cross_entropy(model(x[idx]), y[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
        model.eval()
        with torch.inference_mode():
            correct = torch.zeros((), dtype=torch.int64)
            for i in range(0, len(x_val), 1024):
                correct += (model(x_val[i : i + 1024]).argmax(1) == y_val[i : i + 1024]).sum()
        _ = correct.item() / len(x_val)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--train", type=int, default=10000)
    parser.add_argument("--val", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    name, x, y, x_val, y_val = load_data(args.train, args.val)
    torch.manual_seed(0)
    base = make_model()
    config = TrainConfig(epochs=args.epochs, batch_size=128, eval_batch_size=1024, lr=0.05, momentum=0.9,
                         weight_decay=5e-4, schedule="cosine", augment="none")
    cpu = torch.device("cpu")
    print(f"data: {name}, train {tuple(x.shape)}, val {tuple(x_val.shape)}; epochs {args.epochs}, batch 128, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads, device cpu")
    print("timings include one identical validation pass per epoch on both sides")
    print("archsearch uses fused SGD with no weight decay on 1-D params; the plain loop uses torch's default SGD")

    # warm-up: oneDNN primitive creation and the allocator's first pages are not what we compare
    small = slice(0, 1024)
    train(copy.deepcopy(base), x[small], y[small], x_val, y_val, TrainConfig(epochs=1), device=cpu)
    plain_loop(copy.deepcopy(base), x[small], y[small], x_val, y_val, epochs=1, batch_size=128, lr=0.05)

    samples = args.epochs * len(x)
    ours, plain, ratios, stored = [], [], [], []
    for r in range(args.rounds):
        timings = {}
        for side in (("archsearch", "uint8", "plain") if r % 2 == 0 else ("plain", "uint8", "archsearch")):
            model = copy.deepcopy(base)
            if side == "uint8":
                x_u8, x_val_u8, pre = STORED
                result = train(model, x_u8, y, x_val_u8, y_val, config, device=cpu, preprocess=pre)
                timings[side] = result.train_seconds
                extra = f" (archsearch on uint8 images, val acc {result.val_accuracy:.3f})"
            elif side == "archsearch":
                result = train(model, x, y, x_val, y_val, config, device=cpu)
                timings[side] = result.train_seconds
                extra = f" (compute {result.compute_seconds:.2f} s, val acc {result.val_accuracy:.3f})"
            else:
                timings[side] = plain_loop(model, x, y, x_val, y_val, epochs=args.epochs, batch_size=128, lr=0.05)
                extra = ""
            print(f"round {r + 1} {side:>10}: {timings[side]:6.2f} s, {samples / timings[side]:8.0f} samples/s{extra}")
        ours.append(samples / timings["archsearch"])
        plain.append(samples / timings["plain"])
        ratios.append(timings["plain"] / timings["archsearch"])
        stored.append(timings["archsearch"] / timings["uint8"])

    print(f"median samples/s: archsearch {statistics.median(ours):.0f}, plain {statistics.median(plain):.0f}")
    print(f"per-round ratios: {', '.join(f'{q:.3f}' for q in ratios)} (target >= 0.95)")
    # other load on the machine only ever adds time, so the best round of each side is the least disturbed
    print(f"best-of-rounds ratio: {max(ours) / max(plain):.3f}")
    print(f"trainer_speed ratio (archsearch / plain loop): {statistics.median(ratios):.2f}")
    print(f"uint8 images / float32 tensors, per round: {', '.join(f'{q:.3f}' for q in stored)}; median "
          f"{statistics.median(stored):.3f} (samples/s ratio; target >= 0.95)")


if __name__ == "__main__":
    main()
