"""README's "Your own images", run as a user would: the folder layout it shows (made from Fashion-MNIST's real
images), its study file, its search and export commands, and its Python lines that classify a PNG file."""

from __future__ import annotations

import gzip
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from archsearch.core.errors import load_yaml
from archsearch.data.readers import FASHION_MNIST_CLASSES

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
SECTION = README[README.index("## Your own images"): README.index("## In Python")]
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.M | re.S)
BLOCKS = {}
for m in FENCE.finditer(SECTION):
    BLOCKS.setdefault(m.group(1), m.group(2))
FASHION = Path("/usr/share/datasets/fashion-mnist")


def _idx(name: str) -> np.ndarray:
    raw = gzip.open(FASHION / f"{name}.gz").read()
    dims = np.frombuffer(raw, ">u4", raw[3], 4)
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * raw[3]).reshape(dims)


def _make_images(root: Path, per_class: int = 40, test_per_class: int = 10) -> None:
    """Fashion-MNIST PNGs in the layout the section shows: my_images/{train,test}/<class>/0001.png ..."""
    for part, prefix, n in (("train", "train", per_class), ("test", "t10k", test_per_class)):
        x, y = _idx(f"{prefix}-images-idx3-ubyte"), _idx(f"{prefix}-labels-idx1-ubyte")
        for label, name in enumerate(FASHION_MNIST_CLASSES):
            folder = root / part / name.replace("/", "-").lower().replace(" ", "-")
            folder.mkdir(parents=True)
            for i, j in enumerate(np.flatnonzero(y == label)[:n]):
                Image.fromarray(x[j]).save(folder / f"{i + 1:04d}.png")


def test_the_section_shows_the_shipped_study_file() -> None:
    shipped = load_yaml(ROOT / "studies" / "my_images.yaml")
    assert yaml.safe_load(BLOCKS["yaml"]) == shipped
    for line in BLOCKS["text"].splitlines():  # the layout lines name the files _make_images makes
        assert re.match(r"my_images/(train|test)/sneaker/0001\.png", line.split()[0])


@pytest.mark.slow
@pytest.mark.skipif(not FASHION.is_dir(), reason=f"{FASHION} absent (apt-get install dataset-fashion-mnist)")
def test_own_images_section_runs(tmp_path: Path) -> None:
    _make_images(tmp_path / "my_images")
    (tmp_path / "search_spaces").symlink_to(ROOT / "search_spaces")
    (tmp_path / "studies").mkdir()
    study = load_yaml(ROOT / "studies" / "my_images.yaml")
    # the shipped file, made quick: fewer trials and epochs (the search, the export and the files are the same)
    study.update(n_trials=4, training={**study["training"], "steps": 20})
    (tmp_path / "studies" / "my_images.yaml").write_text(yaml.safe_dump(study))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": ""}
    bindir = Path(sys.executable).parent
    for line in BLOCKS["bash"].splitlines():
        argv = shlex.split(line, comments=True)
        argv[0] = str(bindir / Path(argv[0]).name)
        proc = subprocess.run(argv + ["--workers", "1"] * (argv[1] == "search"), cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, f"{line}\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
    proc = subprocess.run([sys.executable, "-c", BLOCKS["python"]], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() in {n.replace("/", "-").lower().replace(" ", "-") for n in FASHION_MNIST_CLASSES}
