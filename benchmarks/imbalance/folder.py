"""A folder of Fashion-MNIST PNGs in the layout a user's own images have: ``train/<class>/*.png`` and
``test/<class>/*.png``, with chosen classes and a chosen count per class in each part.

The images are drawn from the IDX files of ``/usr/share/datasets/fashion-mnist`` (the training file for train/,
the test file for test/) by a permutation seeded with ``seed``, so the same arguments write the same files. A
folder already written with the same arguments (recorded in ``<folder>.json`` beside it) is kept as it is, so its
decoded-image cache stays valid; other arguments write it again.

    python -m benchmarks.imbalance.folder OUT --classes T-shirt/top Shirt --train 100 20 --test 50 50
"""

from __future__ import annotations

import argparse
import gzip
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from archsearch.data.readers import FASHION_MNIST_CLASSES
from benchmarks.common import read_json, write_json

FASHION = Path("/usr/share/datasets/fashion-mnist")


def slug(name: str) -> str:
    """A class's folder name: "T-shirt/top" -> "t-shirt-top" (the folder name is the label the search reports)."""
    return name.replace("/", "-").lower().replace(" ", "-")


def _idx(path: Path) -> np.ndarray:
    raw = gzip.open(path).read()
    dims = np.frombuffer(raw, ">u4", raw[3], 4)
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * raw[3]).reshape(dims)


def write_folder(root: Path, classes: Sequence[str], train: Sequence[int], test: Sequence[int], *,
                 seed: int = 0, source: Path = FASHION) -> dict[str, object]:
    """Write ``root/{train,test}/<slug(class)>/NNNN.png``: ``train[i]`` and ``test[i]`` images of ``classes[i]``.

    Returns the folder's record (also written to ``<root>.json``); returns at once when that record says the
    folder already holds these images."""
    unknown = [c for c in classes if c not in FASHION_MNIST_CLASSES]
    if unknown:
        raise ValueError(f"unknown Fashion-MNIST class(es) {unknown}; valid: {list(FASHION_MNIST_CLASSES)}")
    if not len(classes) == len(train) == len(test):
        raise ValueError(f"one train and one test count per class, got {len(classes)} classes, {len(train)} train "
                         f"and {len(test)} test counts")
    spec = {"classes": list(classes), "train": [int(n) for n in train], "test": [int(n) for n in test],
            "seed": seed, "source": str(source)}
    record = root.with_name(root.name + ".json")
    if read_json(record) == spec and root.is_dir():
        return spec
    shutil.rmtree(root, ignore_errors=True)
    record.unlink(missing_ok=True)
    rng = np.random.default_rng(seed)
    for part, prefix, counts in (("train", "train", train), ("test", "t10k", test)):
        x = _idx(source / f"{prefix}-images-idx3-ubyte.gz")
        y = _idx(source / f"{prefix}-labels-idx1-ubyte.gz")
        for name, n in zip(classes, counts, strict=True):
            pool = np.flatnonzero(y == FASHION_MNIST_CLASSES.index(name))
            if n > len(pool):
                raise ValueError(f"{n} {part} images of {name!r} asked for, the source has {len(pool)}")
            folder = root / part / slug(name)
            folder.mkdir(parents=True)
            for i, j in enumerate(rng.permutation(pool)[:n]):
                Image.fromarray(x[j]).save(folder / f"{i + 1:04d}.png")
    write_json(record, spec)  # last: a folder cut short by a kill has no record and is written again
    return spec


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--classes", nargs="+", required=True, help=f"names from {list(FASHION_MNIST_CLASSES)}")
    parser.add_argument("--train", type=int, nargs="+", required=True, help="training images per class")
    parser.add_argument("--test", type=int, nargs="+", required=True, help="test images per class")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(write_folder(args.out, args.classes, args.train, args.test, seed=args.seed))


if __name__ == "__main__":
    main()
