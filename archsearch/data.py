"""Image-classification datasets as normalized in-memory tensors, loaded once per process.

The validation split is carved from the *training* data with a fixed seed, so a search tunes on
validation accuracy and never sees the test split. Normalization uses the per-channel mean/std of the
training part only (after the validation split) and is applied to all three splits.

Built-in datasets (:data:`DATASETS`), read by :mod:`archsearch.readers`: ``digits`` (scikit-learn's bundled
8x8 digits, 1797 images; it has no official test split, so a stratified 20% test split is carved first with a
fixed seed, the same test set for every ``seed``), ``fashion-mnist`` / ``mnist`` (IDX files), ``cifar10``
(pickles), ``synthetic`` (a toy dataset for tests), and ``module:function`` (your own loader).
"""

from __future__ import annotations

import dataclasses
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .custom_reader import read_custom
from .errors import ConfigError
from .readers import DIGITS_MAX, check_int, read_cifar10, read_digits, read_idx_dataset, read_synthetic

DATASETS = ("digits", "fashion-mnist", "mnist", "cifar10", "synthetic")

_TENSOR_FIELDS = ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test")
_SUBSET_SEED = 0  # fixed: subset(n) prefixes are nested, so a larger budget sees a superset
_RESIZE_CHUNK = 4096  # images per F.interpolate call; bounds the temporary memory of a resize


_CACHE: dict[tuple, DataBundle] = {}
_CACHE_LOCK = threading.Lock()  # optuna may run trials in threads; load each dataset only once


@dataclass(frozen=True, eq=False)
class DataBundle:
    """Train/validation/test images (float32, N x C x H x W, normalized) and labels (int64, N)."""

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    # what the images were before ``x / raw_divisor`` and the normalization: what a user of a trained network
    # feeds it (archsearch.preprocess); ``raw_resolution`` stays the dataset's own through ``resized``
    raw_divisor: float = 1.0
    raw_format: str = "float images, used as given"
    raw_resolution: int = 0  # 0: this bundle's resolution

    def __post_init__(self) -> None:
        if not self.raw_resolution:
            object.__setattr__(self, "raw_resolution", self.resolution)
        for split in ("train", "val", "test"):
            x, y = getattr(self, f"x_{split}"), getattr(self, f"y_{split}")
            if x.dim() != 4 or y.dim() != 1 or len(x) != len(y):
                raise ValueError(
                    f"x_{split} must be N x C x H x W and y_{split} of length N, "
                    f"got {tuple(x.shape)} and {tuple(y.shape)}"
                )
            if x.shape[1:] != self.x_train.shape[1:]:
                raise ValueError(
                    f"x_{split} images are {tuple(x.shape[1:])}, x_train's {tuple(self.x_train.shape[1:])}"
                )
        if len(self.mean) != self.in_chs or len(self.std) != self.in_chs:
            raise ValueError(f"mean/std need {self.in_chs} channels, got {len(self.mean)} and {len(self.std)}")

    def __repr__(self) -> str:
        c, h, w = self.x_train.shape[1:]
        return (
            f"DataBundle(name={self.name!r}, train={len(self.y_train)}, val={len(self.y_val)}, "
            f"test={len(self.y_test)}, image={c}x{h}x{w}, num_classes={self.num_classes}, "
            f"device={self.x_train.device})"
        )

    @property
    def in_chs(self) -> int:
        return int(self.x_train.shape[1])

    @property
    def resolution(self) -> int:
        """Image height (all built-in datasets are square)."""
        return int(self.x_train.shape[2])

    def to(self, device: torch.device | str) -> DataBundle:
        """All tensors on ``device``; ``self`` when they already are."""
        device = torch.device(device)
        # non_blocking is only safe towards an accelerator: a non-blocking copy to the CPU may be read early
        non_blocking = device.type != "cpu"
        moved = {f: getattr(self, f).to(device, non_blocking=non_blocking) for f in _TENSOR_FIELDS}
        if all(moved[f] is getattr(self, f) for f in _TENSOR_FIELDS):
            return self
        return dataclasses.replace(self, **moved)

    def resized(self, resolution: int) -> DataBundle:
        """Images resized to ``resolution`` x ``resolution`` (bilinear, antialiased); ``self`` if unchanged."""
        check_int(resolution, "resolution", minimum=1)
        if resolution == self.resolution and self.x_train.shape[3] == resolution:
            return self
        return dataclasses.replace(
            self,
            x_train=_resize(self.x_train, resolution),
            x_val=_resize(self.x_val, resolution),
            x_test=_resize(self.x_test, resolution),
        )

    def subset(self, n_train: int | None) -> DataBundle:
        """The first ``n_train`` samples of a fixed-seed permutation of the training split.

        ``None``, or a size at least the training split's, returns ``self``. Validation and test are
        kept whole so that scores stay comparable across budgets.
        """
        if n_train is None:
            return self
        check_int(n_train, "n_train", minimum=1)
        if n_train >= len(self.y_train):
            return self
        gen = torch.Generator().manual_seed(_SUBSET_SEED)
        idx = torch.randperm(len(self.y_train), generator=gen)[:n_train].sort().values
        idx = idx.to(self.x_train.device)
        return dataclasses.replace(self, x_train=self.x_train[idx], y_train=self.y_train[idx])


def load_data(
    name: str,
    *,
    root: str | os.PathLike | None = None,
    val_fraction: float = 0.1,
    seed: int = 0,
    download: bool = False,
    **options: Any,
) -> DataBundle:
    """Load dataset ``name`` (see :data:`DATASETS`, or ``"module:function"``) as a :class:`DataBundle`.

    ``root`` is where to look for files (built-in locations are searched when it is ``None``);
    ``val_fraction`` of the training data, picked by a permutation seeded with ``seed``, becomes the
    validation split. ``download=True`` lets torchvision fetch missing files; nothing is downloaded
    otherwise. ``options`` go to ``synthetic`` or to a custom function. Built-in names are matched
    case-insensitively with ``_`` read as ``-``. Results are cached per process: the same arguments
    return the same object.
    """
    if not isinstance(name, str):
        raise TypeError(f"dataset name must be a str, got {type(name).__name__}")
    if isinstance(val_fraction, bool) or not isinstance(val_fraction, (int, float)):
        raise TypeError(f"val_fraction must be a float, got {type(val_fraction).__name__}")
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    check_int(seed, "seed", minimum=0)
    if not isinstance(download, bool):
        raise TypeError(f"download must be a bool, got {type(download).__name__}")
    key_name = name.strip() if ":" in name else name.strip().lower().replace("_", "-")
    resolved_root = None if root is None else str(Path(root).expanduser().resolve())
    key = (key_name, resolved_root, float(val_fraction), seed, _freeze(options))
    with _CACHE_LOCK:
        if key not in _CACHE:
            x_train, y_train, x_test, y_test, raw = _load_arrays(key_name, root, download, options)
            _CACHE[key] = _make_bundle(key_name, x_train, y_train, x_test, y_test, val_fraction, seed, raw)
        return _CACHE[key]


def clear_cache() -> None:
    """Forget every loaded dataset (frees its memory once no bundle is referenced elsewhere)."""
    with _CACHE_LOCK:
        _CACHE.clear()


# ---------------------------------------------------------------------------------------------------------
# dispatch and the common tail: split, normalize


def _load_arrays(
    name: str, root: str | os.PathLike | None, download: bool, options: dict[str, Any]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, tuple[float, str]]:
    """Unsplit, unnormalized float images and int64 labels of the train and test parts, and the raw format
    (the divisor that brought the stored pixels to these floats, and what the stored pixels are)."""
    if ":" in name:
        return read_custom(name, root, options)
    if name not in DATASETS:
        raise ConfigError(
            f"unknown dataset {name!r}: expected one of {list(DATASETS)}, "
            "or 'module:function' naming a function that returns (train, test)"
        )
    if name == "synthetic":
        return (*read_synthetic(options), (1.0, "float32 images (class prototypes plus noise), used as given"))
    if options:
        raise ConfigError(f"dataset {name!r} takes no options, got {sorted(options)}")
    if name == "digits":
        return (*read_digits(), (DIGITS_MAX, "sklearn.datasets.load_digits().images: float, 0 to 16, N x 8 x 8"))
    if name == "cifar10":
        return (*read_cifar10(root, download), (255.0, "the pickles' uint8 pixels, 0 to 255, N x 3 x 32 x 32"))
    return (*read_idx_dataset(name, root, download), (255.0, "the IDX files' uint8 pixels, 0 to 255, N x 28 x 28"))


def _make_bundle(
    name: str,
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    x_test: torch.Tensor,
    y_test: torch.Tensor,
    val_fraction: float,
    seed: int,
    raw: tuple[float, str],
) -> DataBundle:
    """Carve validation from training data, normalize with the training part's statistics."""
    n = len(y_train)
    if n < 2:
        raise ConfigError(f"dataset {name!r}: need at least 2 training samples to split off validation, got {n}")
    if len(y_test) < 1:
        raise ConfigError(f"dataset {name!r}: the test split is empty")
    n_val = min(max(round(n * val_fraction), 1), n - 1)
    perm = torch.from_numpy(np.random.default_rng(seed).permutation(n))
    val_idx, train_idx = perm[:n_val].sort().values, perm[n_val:].sort().values
    x_tr, y_tr = x_train[train_idx], y_train[train_idx]
    x_val, y_val = x_train[val_idx], y_train[val_idx]

    var, mean = torch.var_mean(x_tr, dim=(0, 2, 3), correction=0)
    std = var.sqrt()
    std = torch.where(std > 1e-12, std, torch.ones_like(std))  # a constant channel stays as it is
    shift, scale = mean.view(1, -1, 1, 1), std.view(1, -1, 1, 1)
    # in place: every loader hands over fresh tensors (and x_tr / x_val are copies made by indexing)
    for x in (x_tr, x_val, x_test):
        x.sub_(shift).div_(scale)
    num_classes = int(max(y_train.max(), y_test.max())) + 1
    return DataBundle(
        name=name,
        x_train=x_tr,
        y_train=y_tr,
        x_val=x_val,
        y_val=y_val,
        x_test=x_test,
        y_test=y_test,
        num_classes=num_classes,
        mean=tuple(float(m) for m in mean),
        std=tuple(float(s) for s in std),
        raw_divisor=raw[0],
        raw_format=raw[1],
    )


# ---------------------------------------------------------------------------------------------------------
# digits and synthetic


# ---------------------------------------------------------------------------------------------------------
# IDX (MNIST, Fashion-MNIST)


# ---------------------------------------------------------------------------------------------------------
# CIFAR-10


# ---------------------------------------------------------------------------------------------------------
# custom module:function


# ---------------------------------------------------------------------------------------------------------
# small helpers


def _resize(x: torch.Tensor, resolution: int) -> torch.Tensor:
    out = torch.empty((*x.shape[:2], resolution, resolution), dtype=x.dtype, device=x.device)
    for start in range(0, len(x), _RESIZE_CHUNK):
        chunk = x[start : start + _RESIZE_CHUNK]
        out[start : start + _RESIZE_CHUNK] = F.interpolate(
            chunk, size=(resolution, resolution), mode="bilinear", align_corners=False, antialias=True
        )
    return out


def _freeze(value: Any) -> Any:
    """A hashable stand-in for option values (lists and dicts included), for the cache key."""
    if isinstance(value, dict):
        return tuple(sorted((str(k), _freeze(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return (type(value).__name__, tuple(_freeze(v) for v in value))
    try:
        hash(value)
    except TypeError:
        return ("unhashable", type(value).__name__, repr(value))
    return value
