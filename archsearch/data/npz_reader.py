"""The ``arrays`` dataset: one ``.npz`` file with ``x_train``, ``y_train``, ``x_test``, ``y_test`` and, optionally,
``classes`` (a name per label), as numpy's ``savez`` writes it and many tools export.

Images are N x H x W (greyscale), N x H x W x C or N x C x H x W (C of 1 or 3; the channel axis is the one of
size 1 or 3 where the layout leaves a doubt, last first), uint8 (0 to 255) or float (used as given).
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from archsearch.core.errors import ConfigError
from archsearch.data.readers import RawSplits, check_images, to_images

_KEYS = ("x_train", "y_train", "x_test", "y_test")


def read_arrays(root: str | os.PathLike | None, options: dict[str, Any]) -> RawSplits:
    if options:
        raise ConfigError(f"dataset 'arrays' takes no options, got {sorted(options)}")
    if root is None:
        raise ConfigError("dataset 'arrays' needs `root`: an .npz file with x_train, y_train, x_test, y_test",
                          key="dataset.root")
    path = Path(root).expanduser()
    if not path.is_file():
        raise ConfigError("dataset 'arrays': no such file (expected an .npz file with x_train, y_train, x_test, "
                          "y_test)", path=path, key="dataset.root")
    try:
        with np.load(path, allow_pickle=False) as f:
            missing = [k for k in _KEYS if k not in f.files]
            if missing:
                raise ConfigError(f"missing array(s) {missing}; it has {sorted(f.files)} (expected x_train, "
                                  "y_train, x_test, y_test, and optionally classes)", path=path)
            arrays = {k: f[k] for k in (*_KEYS, *(["classes"] if "classes" in f.files else []))}
    except ConfigError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise ConfigError(f"not a readable .npz file ({type(e).__name__}: {e})", path=path) from None
    x_train, x_test = _images(arrays["x_train"], "x_train", path), _images(arrays["x_test"], "x_test", path)
    if x_train.shape[1:] != x_test.shape[1:] or x_train.dtype != x_test.dtype:
        raise ConfigError(f"x_train is {tuple(x_train.shape[1:])} {x_train.dtype} a sample but x_test "
                          f"{tuple(x_test.shape[1:])} {x_test.dtype}: both need the same image shape and dtype",
                          path=path, key="x_test")
    classes = _classes(arrays.get("classes"), path)
    y_train = _labels(arrays["y_train"], "y_train", x_train, len(classes) or None, path)
    # without names, the training labels say how many classes there are
    y_test = _labels(arrays["y_test"], "y_test", x_test, len(classes) or int(y_train.max()) + 1, path)
    shape = " x ".join(map(str, x_train.shape[1:]))
    if x_train.dtype == torch.uint8:
        return RawSplits(x_train, y_train, x_test, y_test, 255.0, f"{path.name}'s uint8 pixels, 0 to 255, "
                         f"N x {shape}", classes)
    return RawSplits(x_train, y_train, x_test, y_test, 1.0, f"{path.name}'s float images, used as given, "
                     f"N x {shape}", classes)


def _images(x: np.ndarray, key: str, path: Path) -> torch.Tensor:
    if x.dtype != np.uint8 and not np.issubdtype(x.dtype, np.floating):
        raise ConfigError(f"images must be uint8 or float, got {x.dtype}", path=path, key=key)
    t = to_images(x, f"{path}: {key}")  # N x H x W, N x H x W x C or N x C x H x W -> N x C x H x W
    if t.shape[1] not in (1, 3):
        raise ConfigError(f"images must be N x H x W, N x H x W x C or N x C x H x W with C 1 or 3, got shape "
                          f"{x.shape}", path=path, key=key)
    return check_images(t, f"{path}: {key}")


def _labels(y: np.ndarray, key: str, x: torch.Tensor, n_classes: int | None, path: Path) -> torch.Tensor:
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise ConfigError(f"labels must be a 1-D integer array, got {y.dtype} of shape {y.shape}", path=path, key=key)
    if len(y) != len(x):
        raise ConfigError(f"{len(y)} labels but {len(x)} images in x_{key[2:]}", path=path, key=key)
    if len(y) and (y.min() < 0 or (n_classes is not None and y.max() >= n_classes)):
        bad = int(y.min()) if y.min() < 0 else int(y.max())
        limit = (">= 0" if n_classes is None else f"0 to {n_classes - 1}" +
                 (" (y_train's labels)" if key == "y_test" else " (one per name in `classes`)"))
        raise ConfigError(f"label {bad} is outside {limit}", path=path, key=key)
    return torch.from_numpy(y.astype(np.int64))


def _classes(names: np.ndarray | None, path: Path) -> tuple[str, ...]:
    if names is None:
        return ()
    if names.ndim != 1 or names.dtype.kind not in "US":
        raise ConfigError(f"classes must be a 1-D array of strings, got {names.dtype} of shape {names.shape}",
                          path=path, key="classes")
    out = tuple(n.decode() if isinstance(n, bytes) else str(n) for n in names.tolist())
    if len(set(out)) != len(out):
        raise ConfigError(f"class names must be unique, got {list(out)}", path=path, key="classes")
    return out
