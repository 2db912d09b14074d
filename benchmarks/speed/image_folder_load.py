"""The `folder` dataset on Fashion-MNIST as PNG files: first load (decode) and second load (cache), and the memory
the loaded images take against the float32 tensors archsearch held before images stayed uint8.

Writes Fashion-MNIST's images (Debian's dataset-fashion-mnist) as PNG files in ImageFolder layout
(train/<class>/, test/<class>/) under a temporary folder, then loads them in fresh processes, each with an empty
or a warm cache, and prints wall time and peak RSS (resource.getrusage). Prints figures, asserts nothing.

    python -m benchmarks.speed.image_folder_load [--train 60000] [--test 10000] [--runs 3]
    python -m benchmarks.speed.image_folder_load --train 6000 --test 1000 --search   # + a search and an export on it
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from benchmarks.common import ROOT

FASHION = Path("/usr/share/datasets/fashion-mnist")

CHILD = """
import json, resource, sys, time
import torch
torch.set_num_threads(1)
t0 = time.perf_counter()
from archsearch.data.bundle import load_data
if sys.argv[2] == "import":  # the baseline: torch and archsearch imported, nothing loaded
    print(json.dumps({"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
    sys.exit()
b = load_data("folder", root=sys.argv[1])
seconds = time.perf_counter() - t0
held = sum(getattr(b, f).nbytes for f in ("x_train", "x_val", "x_test"))
if sys.argv[2] == "float32":  # what archsearch held before: every split as normalized float32
    xs = [b.inputs(s) for s in ("train", "val", "test")]
    held = sum(x.nbytes for x in xs)
print(json.dumps({"seconds": seconds, "images": len(b.y_train) + len(b.y_val) + len(b.y_test), "held_mb": held / 2**20,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def _idx(name: str) -> np.ndarray:
    raw = gzip.open(FASHION / f"{name}.gz").read()
    dims = np.frombuffer(raw, ">u4", raw[3], 4)
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * raw[3]).reshape(dims)


def make_folder(root: Path, n_train: int, n_test: int) -> None:
    for part, prefix, n in (("train", "train", n_train), ("test", "t10k", n_test)):
        x, y = _idx(f"{prefix}-images-idx3-ubyte")[:n], _idx(f"{prefix}-labels-idx1-ubyte")[:n]
        for label in range(10):
            (root / part / f"class_{label}").mkdir(parents=True)
        for i, (image, label) in enumerate(zip(x, y, strict=True)):
            Image.fromarray(image).save(root / part / f"class_{label}" / f"{i:05d}.png")


def child(folder: Path, cache: Path, mode: str = "uint8") -> dict:
    env = {**os.environ, "ARCHSEARCH_CACHE_DIR": str(cache), "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", CHILD, str(folder), mode], env=env, capture_output=True, text=True,
                         check=True, cwd=ROOT)
    return json.loads(out.stdout.strip().splitlines()[-1])


def search(folder: Path, work: Path) -> None:
    study = {"name": "fmnist_png", "space": str(ROOT / "search_spaces" / "mixed.yaml"),
             "dataset": {"name": "folder", "root": str(folder)}, "budget": {"max_macs": 3.0e+6},
             "training": {"epochs": 2, "batch_size": 128, "lr": 0.05}, "n_trials": 10,
             "space_overrides": {"resolution_mult": [1.0]}}
    path = work / "fmnist_png.yaml"
    path.write_text(json.dumps(study))  # JSON is YAML
    bindir = Path(sys.executable).parent
    for argv in (["search", str(path), "--no-progress"], ["export", str(path), "--out", str(work / "export")]):
        t0 = time.perf_counter()
        proc = subprocess.run([str(bindir / "archsearch"), *argv], capture_output=True, text=True, cwd=work)
        print(f"archsearch {argv[0]}: exit {proc.returncode}, {time.perf_counter() - t0:.0f} s; last lines:")
        print("  " + "\n  ".join(proc.stdout.strip().splitlines()[-3:] + proc.stderr.strip().splitlines()[-3:]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=60000)
    parser.add_argument("--test", type=int, default=10000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--search", action="store_true", help="also search and export on the folder")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        folder = work / "fmnist_png"
        t0 = time.perf_counter()
        make_folder(folder, args.train, args.test)
        size = sum(p.stat().st_size for p in folder.rglob("*.png"))
        print(f"wrote {args.train} + {args.test} PNGs ({size / 2**20:.1f} MB) in {time.perf_counter() - t0:.0f} s; "
              f"{os.cpu_count()} CPUs, python {sys.version.split()[0]}")
        first, second = [], []
        for run in range(args.runs):
            cache = work / f"cache{run}"
            first.append(child(folder, cache))
            second.append(child(folder, cache))
        old = child(folder, work / "cache0", "float32")
        base = child(folder, work / "cache0", "import")
        for name, rows in (("first load (decode, empty cache)", first), ("second load (cache)", second)):
            s = [r["seconds"] for r in rows]
            print(f"{name:<34} {min(s):6.2f} - {max(s):6.2f} s (median {statistics.median(s):.2f}) over "
                  f"{len(s)} runs; images held {rows[0]['held_mb']:.0f} MB, peak RSS "
                  f"{min(r['peak_rss_mb'] for r in rows):.0f} - {max(r['peak_rss_mb'] for r in rows):.0f} MB")
        print(f"{'as float32 tensors (before)':<34} images held {old['held_mb']:.0f} MB, peak RSS "
              f"{old['peak_rss_mb']:.0f} MB (the cached load, then every split as normalized float32)")
        print(f"{'baseline (torch, archsearch imported)':<34} peak RSS {base['peak_rss_mb']:.0f} MB")
        if args.search:
            search(folder, work)


if __name__ == "__main__":
    main()
