"""Image-classification datasets as in-memory tensors, loaded once per process.

The validation split is carved from the *training* data with a fixed seed, so a search tunes on
validation accuracy and never sees the test split. Images stay as stored (uint8 pixels where the data is
uint8); the per-channel mean/std of the training part only (after the validation split) normalize each
batch on the training device, for all three splits (:meth:`DataBundle.preprocess`).

Datasets (:data:`DATASETS`): ``digits`` (scikit-learn's bundled 8x8 digits, 1797 images; a stratified 20%
test split is carved first with a fixed seed, the same test set for every ``seed``), ``fashion-mnist`` /
``mnist`` (IDX files), ``cifar10`` (pickles) and ``synthetic`` (a toy dataset for tests), read by
:mod:`archsearch.data.readers`; ``folder`` (a folder of images, :mod:`archsearch.data.image_folder`); ``arrays`` (an
``.npz`` file, :mod:`archsearch.data.npz_reader`); and ``module:function`` (your own loader,
:mod:`archsearch.data.custom_reader`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from archsearch.core.errors import ConfigError
from archsearch.data.custom_reader import read_custom
from archsearch.data.image_folder import read_folder
from archsearch.data.npz_reader import read_arrays
from archsearch.data.preprocess import Preprocess
from archsearch.data.readers import (
    DATASETS,
    RawSplits,
    check_int,
    read_cifar10,
    read_digits,
    read_idx_dataset,
    read_synthetic,
)

__all__ = ["DATASETS", "DataBundle", "load_data", "clear_cache"]

_TENSOR_FIELDS = ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test")
#: the built-in datasets keep their validation split as it was (a seeded permutation), so that studies and
#: benchmarks made with them score on the same images; every other dataset's is stratified by class
_UNSTRATIFIED = ("digits", "fashion-mnist", "mnist", "cifar10", "synthetic")
#: a class with fewer validation images than this is named in a note: its recall is noise
MIN_VAL_IMAGES = 10
_SUBSET_SEED = 0  # fixed: subset(n) prefixes are nested, so a larger budget sees a superset
_CHUNK = 4096  # images per step where a whole split is converted: bounds the temporary memory


_CACHE: dict[tuple, DataBundle] = {}
_CACHE_LOCK = threading.Lock()  # optuna may run trials in threads; load each dataset only once


@dataclass(frozen=True, eq=False)
class DataBundle:
    """Train/validation/test images as stored (uint8 where the data is uint8, else float32; N x C x H x W) and
    labels (int64, N), with what turns a batch of them into the network's input (:meth:`preprocess`).

    The images stay as the dataset stores them, a quarter of float32's memory for uint8 pixels; training and
    evaluation divide, normalize and resize each batch on the training device, exactly as an exported model's
    ``Preprocess`` does. :meth:`inputs` gives a whole split as the network sees it.
    """

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int
    mean: tuple[float, ...]  # per channel, of ``x_train / raw_divisor``
    std: tuple[float, ...]
    # what a user of a trained network feeds it (archsearch.data.preprocess): the stored pixels divided by
    # ``raw_divisor`` are in [0, 1] (or as the loader gave them)
    raw_divisor: float = 1.0
    raw_format: str = "float images, used as given"
    classes: tuple[str, ...] = ()  # a name per label; () means "0".."num_classes-1"
    size: int | None = None  # the network's input resolution where it is not the stored one (resized per batch)
    identity: str = ""  # sha256 of the unsplit images, labels and class names: tells one dataset from another
    # one line each, for the user: what the loader left out and why (files without an image extension, bad
    # image files under ``bad_files: skip``); a search and an export print them
    notes: tuple[str, ...] = ()
    skipped_files: tuple[tuple[str, str], ...] = ()  # (path, reason) of each image file left out as bad

    def __post_init__(self) -> None:
        for split in ("train", "val", "test"):
            x, y = getattr(self, f"x_{split}"), getattr(self, f"y_{split}")
            if x.dim() != 4 or y.dim() != 1 or len(x) != len(y):
                raise ValueError(
                    f"x_{split} must be N x C x H x W and y_{split} of length N, "
                    f"got {tuple(x.shape)} and {tuple(y.shape)}"
                )
            if x.shape[1:] != self.x_train.shape[1:] or x.dtype != self.x_train.dtype:
                raise ValueError(
                    f"x_{split} images are {tuple(x.shape[1:])} {x.dtype}, "
                    f"x_train's {tuple(self.x_train.shape[1:])} {self.x_train.dtype}"
                )
        if len(self.mean) != self.in_chs or len(self.std) != self.in_chs:
            raise ValueError(f"mean/std need {self.in_chs} channels, got {len(self.mean)} and {len(self.std)}")
        if not self.classes:
            object.__setattr__(self, "classes", tuple(str(i) for i in range(self.num_classes)))
        if len(self.classes) != self.num_classes:
            raise ValueError(f"{self.num_classes} classes but {len(self.classes)} class names")

    def __repr__(self) -> str:
        c, h, w = self.x_train.shape[1:]
        resized = f", resized to {self.size}x{self.size}" if self.size else ""
        return (
            f"DataBundle(name={self.name!r}, train={len(self.y_train)}, val={len(self.y_val)}, "
            f"test={len(self.y_test)}, image={c}x{h}x{w} {str(self.x_train.dtype).removeprefix('torch.')}"
            f"{resized}, num_classes={self.num_classes}, device={self.x_train.device})"
        )

    @property
    def in_chs(self) -> int:
        return int(self.x_train.shape[1])

    @property
    def raw_resolution(self) -> int:
        """The stored images' height (and width: every dataset here is square)."""
        return int(self.x_train.shape[2])

    @property
    def resolution(self) -> int:
        """The network's input height and width."""
        return self.size or self.raw_resolution

    def preprocess(self) -> Preprocess:
        """Stored images -> the network's input, per batch: divide, normalize per channel, resize."""
        return Preprocess(self.raw_divisor, self.mean, self.std, self.size)

    def inputs(self, split: str) -> torch.Tensor:
        """Split ``train``, ``val`` or ``test`` as the network sees it (float32, normalized, resized)."""
        if split not in ("train", "val", "test"):
            raise ValueError(f"split must be 'train', 'val' or 'test', got {split!r}")
        x = getattr(self, f"x_{split}")
        pre = self.preprocess().to(x.device)
        return torch.cat([pre(x[i : i + _CHUNK]) for i in range(0, len(x), _CHUNK)]) if len(x) else x.float()

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
        """The network's input at ``resolution`` x ``resolution`` (bilinear, antialiased, per batch from the
        stored images); ``self`` if unchanged."""
        check_int(resolution, "resolution", minimum=1)
        size = None if resolution == self.raw_resolution else resolution
        return self if size == self.size else dataclasses.replace(self, size=size)

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
    base_dir: str | os.PathLike | None = None,
    channels: int | None = None,
    test_fraction: float | None = None,
    resolution: int | None = None,
    bad_files: str = "stop",
    **options: Any,
) -> DataBundle:
    """Load dataset ``name`` (see :data:`DATASETS`, or ``"module:function"``) as a :class:`DataBundle`.

    ``root`` is where to look for files (built-in locations are searched when it is ``None``; the folder of
    images for ``folder``, the ``.npz`` file for ``arrays``); ``val_fraction`` of the training data, picked by a
    permutation seeded with ``seed``, becomes the validation split. ``download=True`` lets torchvision fetch
    missing files; nothing is downloaded otherwise. ``base_dir`` (the study file's folder) is where a
    ``module:function`` loader is also looked for. ``folder`` takes ``channels`` (1, 3 or None: what the
    images are), ``test_fraction`` (where it has no test/ folder), ``resolution`` (what images of several
    sizes are resized to) and ``bad_files`` ("stop": image files that cannot be read are one error naming them
    all; "skip": they are left out, in :attr:`DataBundle.skipped_files` and a note). ``options`` go to
    ``synthetic`` or to a custom function. Built-in names are matched case-insensitively with ``_`` read as
    ``-``. Results are cached per process: the same arguments return the same object.
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
    folder_keys = {"channels": channels, "test_fraction": test_fraction, "resolution": resolution}
    if key_name == "folder":
        if options:
            raise ConfigError(f"dataset 'folder' takes no options, got {sorted(options)}", key="dataset.options")
        options = {**folder_keys, "bad_files": bad_files}
    elif test_fraction is not None or bad_files != "stop":
        which = "test_fraction" if test_fraction is not None else "bad_files"
        raise ConfigError(f"dataset {name!r} takes no {which} (it is the folder dataset's)", key=f"dataset.{which}")
    else:  # synthetic's options of the same names, or a custom loader's
        options = {**options, **{k: v for k, v in folder_keys.items() if v is not None}}
    resolved_root = None if root is None else str(Path(root).expanduser().resolve())
    resolved_base = None if base_dir is None else str(Path(base_dir).resolve())
    key = (key_name, resolved_root, float(val_fraction), seed, resolved_base, _freeze(options))
    with _CACHE_LOCK:
        if key not in _CACHE:
            raw = _load_raw(key_name, root, download, options, base_dir)
            _CACHE[key] = _make_bundle(key_name, raw, val_fraction, seed)
        return _CACHE[key]


def clear_cache() -> None:
    """Forget every loaded dataset (frees its memory once no bundle is referenced elsewhere)."""
    with _CACHE_LOCK:
        _CACHE.clear()


# ---------------------------------------------------------------------------------------------------------
# dispatch and the common tail: split, statistics


def _load_raw(
    name: str, root: str | os.PathLike | None, download: bool, options: dict[str, Any], base_dir: Any
) -> RawSplits:
    """The unsplit train and test parts as stored, with their divisor, format and class names."""
    if ":" in name:
        return read_custom(name, root, options, base_dir)
    if name not in DATASETS:
        raise ConfigError(
            f"unknown dataset {name!r}: expected one of {list(DATASETS)}, "
            "or 'module:function' naming a function that returns (train, test)"
        )
    if name == "folder":
        return read_folder(root, options)
    if name == "arrays":
        return read_arrays(root, options)
    if name == "synthetic":
        return read_synthetic(options)
    if options:
        raise ConfigError(f"dataset {name!r} takes no options, got {sorted(options)}")
    if name == "digits":
        return read_digits()
    if name == "cifar10":
        return read_cifar10(root, download)
    return read_idx_dataset(name, root, download)


def _make_bundle(name: str, raw: RawSplits, val_fraction: float, seed: int) -> DataBundle:
    """Carve validation from training data; the normalization statistics of the training part."""
    x_train, y_train, x_test, y_test = raw.x_train, raw.y_train, raw.x_test, raw.y_test
    n = len(y_train)
    if n < 2:
        raise ConfigError(f"dataset {name!r}: need at least 2 training samples to split off validation, got {n}")
    if len(y_test) < 1:
        raise ConfigError(f"dataset {name!r}: the test split is empty")
    num_classes = len(raw.classes) if raw.classes else int(max(y_train.max(), y_test.max())) + 1
    if num_classes < 2:
        raise ConfigError(f"dataset {name!r}: need at least 2 classes, got only labels {sorted(set(y_train.tolist()))}")
    identity = _identity(raw)
    n_val = min(max(round(n * val_fraction), 1), n - 1)
    if name in _UNSTRATIFIED:
        perm = torch.from_numpy(np.random.default_rng(seed).permutation(n))
        val_idx, train_idx = perm[:n_val].sort().values, perm[n_val:].sort().values
    else:
        val_idx, train_idx = _stratified_val(y_train, n_val, seed)
    notes = raw.notes + _few_val_images(y_train[val_idx], raw.classes or tuple(map(str, range(num_classes))))
    x_tr, y_tr = x_train[train_idx], y_train[train_idx]
    mean, std = _channel_stats(x_tr, raw.divisor)
    return DataBundle(
        name=name,
        x_train=x_tr,
        y_train=y_tr,
        x_val=x_train[val_idx],
        y_val=y_train[val_idx],
        x_test=x_test,
        y_test=y_test,
        num_classes=num_classes,
        mean=mean,
        std=std,
        raw_divisor=raw.divisor,
        raw_format=raw.format,
        classes=raw.classes,
        identity=identity,
        notes=notes,
        skipped_files=raw.skipped_files,
    )


def _stratified_val(y: torch.Tensor, n_val: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``n_val`` validation indices and the rest, each class in its share (scikit-learn's stratified split), both
    sorted; a seeded permutation where stratifying cannot be done (a class of one image, fewer validation images
    than classes)."""
    from sklearn.model_selection import train_test_split

    index = np.arange(len(y))
    try:
        train_idx, val_idx = train_test_split(index, test_size=n_val, stratify=y.numpy(), random_state=seed)
    except ValueError:
        perm = np.random.default_rng(seed).permutation(len(y))
        val_idx, train_idx = perm[:n_val], perm[n_val:]
    return torch.from_numpy(np.sort(val_idx)), torch.from_numpy(np.sort(train_idx))


def _few_val_images(y_val: torch.Tensor, classes: tuple[str, ...]) -> tuple[str, ...]:
    """A note naming the classes with fewer than :data:`MIN_VAL_IMAGES` validation images (their recall is noise)."""
    counts = torch.bincount(y_val, minlength=len(classes)).tolist()
    few = [f"{name!r} {n}" for name, n in zip(classes, counts, strict=True) if n < MIN_VAL_IMAGES]
    if not few:
        return ()
    return (f"{len(few)} class(es) with fewer than {MIN_VAL_IMAGES} validation images ({', '.join(few[:5])}"
            f"{', ...' if len(few) > 5 else ''}): their recall on the validation split moves by 1/n per image, so the "
            "balanced accuracy and macro-F1 the search scores are noisy; add images of them, or raise "
            "dataset.val_fraction",)


def _channel_stats(x: torch.Tensor, divisor: float) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std (population) of ``x / divisor``, in float64 and in chunks: no float copy of x."""
    c = x.shape[1]
    total, total_sq = torch.zeros(c, dtype=torch.float64), torch.zeros(c, dtype=torch.float64)
    for i in range(0, len(x), _CHUNK):
        chunk = x[i : i + _CHUNK].to(torch.float64) / divisor
        total += chunk.sum(dim=(0, 2, 3))
        total_sq += chunk.square().sum(dim=(0, 2, 3))
    count = len(x) * x.shape[2] * x.shape[3]
    mean = total / count
    std = (total_sq / count - mean.square()).clamp_min(0).sqrt()
    std = torch.where(std > 1e-6, std, torch.ones_like(std))  # a constant channel stays as it is
    return tuple(float(m) for m in mean), tuple(float(s) for s in std)


def _identity(raw: RawSplits) -> str:
    """sha256 over the stored images, labels and class names of both parts: what the data *is*, wherever
    it lives (file times and paths do not count)."""
    h = hashlib.sha256()
    for t in (raw.x_train, raw.y_train, raw.x_test, raw.y_test):
        h.update(f"{t.dtype}{tuple(t.shape)}".encode())
        # the bytes in place, no copy (numpy's stubs give ndarray __buffer__ for Python >= 3.12 only)
        h.update(memoryview(t.contiguous().numpy()).cast("B"))  # type: ignore[arg-type]
    h.update("\0".join(raw.classes).encode())
    return h.hexdigest()


# ---------------------------------------------------------------------------------------------------------
# small helpers


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
