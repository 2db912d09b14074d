"""The ``folder`` dataset: a folder of images, one subfolder per class (torchvision's ``ImageFolder`` layout).

Either ``root/train/<class>/`` and ``root/test/<class>/``, or ``root/<class>/`` alone, from which a stratified
test split (``test_fraction``) is carved with a fixed seed. Class names are the folder names, sorted; images are
found in class folders and their subfolders. Pillow decodes them (:mod:`archsearch.data.image_file`): PNG, JPEG, BMP,
WebP, GIF, TIFF, PGM/PPM, greyscale or colour, to 1 channel or 3 (``channels``; by default 3 if any image is in
colour). Images of one square size are kept as they are; otherwise every image is resized at load to the study's
``resolution`` (shorter side, then the centre square). The decoded uint8 arrays are cached
(:mod:`archsearch.data.image_cache`), so a second load reads one file instead of every image.
"""

from __future__ import annotations

import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from archsearch.core.errors import ConfigError
from archsearch.data import image_cache
from archsearch.data.image_file import IMAGE_EXTENSIONS, read_image
from archsearch.data.readers import RawSplits

DEFAULT_TEST_FRACTION = 0.2
_TEST_SEED = 0  # fixed: the carved test split must not move with the search seed
_OPTIONS = ("channels", "test_fraction", "resolution")
_MEMORY_SHARE = 0.5  # refuse a dataset whose images would take more than this share of the available memory


class _File(NamedTuple):  # a tuple of strings and ints: 70,000 of them stay small and quick to make
    path: str
    rel: str  # relative to the dataset's root, for the cache key
    label: int
    size: int  # bytes, for the cache key
    mtime_ns: int


def read_folder(root: str | os.PathLike | None, options: dict[str, Any]) -> RawSplits:
    """Scan ``root``, then decode (or read the cache); ``options``: ``channels``, ``test_fraction``, ``resolution``."""
    unknown = sorted(set(options) - set(_OPTIONS))
    if unknown:
        raise ConfigError(f"dataset 'folder': unknown option(s) {unknown}, valid ones are {list(_OPTIONS)}")
    if root is None:
        raise ConfigError("dataset 'folder' needs `root`: the folder that holds one subfolder per class "
                          "(or train/ and test/, each with one subfolder per class)", key="dataset.root")
    root = Path(root).expanduser().resolve()
    channels, resolution = options.get("channels"), options.get("resolution")
    test_fraction = options.get("test_fraction")
    if channels not in (None, 1, 3):
        raise ConfigError(f"dataset.channels must be 1, 3 or null (what the images are), got {channels!r}",
                          path=root, key="dataset.channels")
    classes, parts = _scan(root)
    split = "train" in parts
    if split and test_fraction is not None:
        raise ConfigError(f"test_fraction {test_fraction} is for a folder without test/, but {root} has train/ and "
                          "test/: remove `test_fraction`", path=root, key="dataset.test_fraction")
    test_fraction = DEFAULT_TEST_FRACTION if test_fraction is None else float(test_fraction)
    files = [f for part in parts.values() for f in part]
    key = image_cache.key(root, [(f.rel, f.label, f.size, f.mtime_ns) for f in files],
                          classes=classes, channels=channels, resolution=resolution, test_fraction=test_fraction)
    cached = image_cache.load(key)
    if cached is None:
        mode, size = _plan(files, channels, resolution, root)
        _check_memory(len(files), 1 if mode == "L" else 3, size or _first_size(files), root)
        pixels = _decode(files, mode, size)
        labels = np.array([f.label for f in files], dtype=np.int64)
        cached = image_cache.save(key, pixels, labels)
    x, y = torch.from_numpy(cached[0]), torch.from_numpy(cached[1])
    if split:
        n_train = len(parts["train"])
        x_train, y_train, x_test, y_test = x[:n_train], y[:n_train], x[n_train:], y[n_train:]
    else:
        train_idx, test_idx = _stratified_split(y.numpy(), test_fraction, root)
        x_train, y_train, x_test, y_test = x[train_idx], y[train_idx], x[test_idx], y[test_idx]
    c, h, w = x.shape[1:]
    layout = "train/ and test/" if split else f"one folder per class, {test_fraction:g} carved off as test"
    return RawSplits(x_train, y_train, x_test, y_test, 255.0,
                     f"image files under {root} ({layout}), decoded by Pillow to uint8 {c} x {h} x {w}, 0 to 255",
                     classes)


# ---------------------------------------------------------------------------------------------------------
# the layout


def _scan(root: Path) -> tuple[tuple[str, ...], dict[str, list[_File]]]:
    """The class names and the files of each part (``train`` and ``test``, or ``all``), in a fixed order."""
    if not root.is_dir():
        raise ConfigError("dataset 'folder': root is not a folder" if root.exists() else
                          "dataset 'folder': root does not exist", path=root, key="dataset.root")
    subdirs = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    has_train, has_test = "train" in subdirs, "test" in subdirs
    if has_train != has_test:
        have, lacking = ("train", "test") if has_train else ("test", "train")
        raise ConfigError(f"found {have}/ but no {lacking}/: use train/<class>/ and test/<class>/, or put the class "
                          f"folders directly in root (a test split is then carved off)", path=root / have)
    if has_train:
        train_classes, test_classes = _class_folders(root / "train"), _class_folders(root / "test")
        missing = sorted(set(train_classes) - set(test_classes))
        extra = sorted(set(test_classes) - set(train_classes))
        if missing or extra:
            what = (f"class folder(s) {missing} in train/ have none in test/" if missing else
                    f"class folder(s) {extra} in test/ have none in train/")
            raise ConfigError(f"{what}: every class needs a folder in both",
                              path=root / ("test" if missing else "train"))
        classes = tuple(train_classes)
        parts = {p: _class_files(root / p, classes, root) for p in ("train", "test")}
    else:
        classes = tuple(_class_folders(root))
        parts = {"all": _class_files(root, classes, root)}
    if len(classes) < 2:
        raise ConfigError(f"found {len(classes)} class folder(s) {list(classes)}: a classifier needs at least 2 "
                          "(one subfolder per class)", path=root / "train" if has_train else root)
    return classes, parts


def _class_folders(folder: Path) -> list[str]:
    names = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    stray = sorted(p.name for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    if stray:
        warnings.warn(f"{folder}: {len(stray)} file(s) outside the class folders skipped, e.g. {stray[0]!r}",
                      stacklevel=4)
    return names


def _class_files(folder: Path, classes: tuple[str, ...], root: Path) -> list[_File]:
    files: list[_File] = []
    skipped: list[str] = []
    cut = len(str(root)) + 1
    for label, name in enumerate(classes):
        found = len(files)
        _walk(str(folder / name), label, cut, files, skipped)
        if len(files) == found:
            raise ConfigError(f"class folder {name!r} has no images (looked for {', '.join(IMAGE_EXTENSIONS)})",
                              path=folder / name)
    if skipped:
        warnings.warn(f"{len(skipped)} file(s) without an image extension skipped, e.g. {skipped[0]}", stacklevel=4)
    return files


def _walk(folder: str, label: int, cut: int, files: list[_File], skipped: list[str]) -> None:
    """The images under ``folder`` (and its subfolders), sorted by name; os.scandir, not pathlib: 10x quicker."""
    with os.scandir(folder) as it:
        entries = sorted((e for e in it if not e.name.startswith(".")), key=lambda e: e.name)  # .DS_Store & co.
    for e in entries:
        if e.is_dir():
            _walk(e.path, label, cut, files, skipped)
        elif os.path.splitext(e.name)[1].lower() not in IMAGE_EXTENSIONS:
            skipped.append(e.path)
        else:
            st = e.stat()
            files.append(_File(e.path, e.path[cut:], label, st.st_size, st.st_mtime_ns))


def _stratified_split(y: np.ndarray, fraction: float, root: Path) -> tuple[torch.Tensor, torch.Tensor]:
    if not 0 < fraction < 1:
        raise ConfigError(f"test_fraction must be in (0, 1), got {fraction}", path=root, key="dataset.test_fraction")
    rng = np.random.default_rng(_TEST_SEED)
    test: list[np.ndarray] = []
    for label in np.unique(y):
        idx = np.flatnonzero(y == label)
        if len(idx) < 2:
            raise ConfigError(f"class {label} has {len(idx)} image: carving a test split needs at least 2 per class",
                              path=root)
        n_test = min(max(round(len(idx) * fraction), 1), len(idx) - 1)
        test.append(rng.permutation(idx)[:n_test])
    test_idx = np.sort(np.concatenate(test))
    train_idx = np.setdiff1d(np.arange(len(y)), test_idx)
    return torch.from_numpy(train_idx), torch.from_numpy(test_idx)


# ---------------------------------------------------------------------------------------------------------
# decoding


def _header(path: str) -> tuple[tuple[int, int], str]:
    """Size and mode from the file's header, without decoding it."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            return img.size, img.mode
    except UnidentifiedImageError:
        raise ConfigError("not an image Pillow can read (its extension says it is one)", path=path) from None
    except OSError as e:
        raise ConfigError(f"cannot read the image ({e})", path=path) from None


def _plan(files: list[_File], channels: int | None, resolution: int | None, root: Path) -> tuple[str, int | None]:
    """The Pillow mode to convert to, and the size to resize to (None: all images are one square size)."""
    with ThreadPoolExecutor(_threads()) as pool:
        headers = list(pool.map(_header, [f.path for f in files]))
    colour = any(mode not in ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F") for _, mode in headers)
    mode = {1: "L", 3: "RGB"}.get(channels or 0, "RGB" if colour else "L")
    sizes = {size for size, _ in headers}
    if len(sizes) == 1 and next(iter(sizes))[0] == next(iter(sizes))[1]:
        return mode, None
    if resolution is None:
        first = headers[0][0]
        odd = next((i for i, (size, _) in enumerate(headers) if size != first), None)
        what = (f"images of several sizes, e.g. {files[0].path} is {_wxh(first)} and {files[odd].path} is "
                f"{_wxh(headers[odd][0])}" if odd is not None else f"images of {_wxh(first)}, not square")
        raise ConfigError(f"{what}: set the study's `resolution` (e.g. resolution: 32) and each image is resized "
                          "to it at load (shorter side to the resolution, then the centre square)", path=root)
    return mode, resolution


def _wxh(size: tuple[int, int]) -> str:
    return f"{size[0]}x{size[1]}"


def _first_size(files: list[_File]) -> int:
    return _header(files[0].path)[0][0]


def _decode(files: list[_File], mode: str, size: int | None) -> np.ndarray:
    """Every file decoded into one preallocated N x C x H x W uint8 array (no second copy while stacking)."""
    first = _read(files[0], mode, size)
    out = np.empty((len(files), *first.shape), dtype=np.uint8)

    def one(i: int) -> None:
        x = first if i == 0 else _read(files[i], mode, size)
        if x.shape != first.shape:  # headers agreed; a damaged file may still decode to another shape
            raise ConfigError(f"decoded to {tuple(x.shape)}, but {files[0].path} to {tuple(first.shape)}",
                              path=files[i].path)
        out[i] = x.numpy()

    with ThreadPoolExecutor(_threads()) as pool:  # Pillow releases the GIL while it decodes
        list(pool.map(one, range(len(files))))
    return out


def _read(f: _File, mode: str, size: int | None) -> torch.Tensor:
    try:
        return read_image(f.path, mode, size)
    except Exception as e:  # truncated, corrupt, unsupported: all mean "this file"
        raise ConfigError(f"corrupt or truncated image ({type(e).__name__}: {e})", path=f.path) from None


def _threads() -> int:
    return max(1, min(8, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1))


def _check_memory(n: int, channels: int, resolution: int, root: Path) -> None:
    """Refuse, before decoding, images that would not fit in memory (uint8, one copy)."""
    need = n * channels * resolution * resolution
    available = image_cache.available_memory()
    if available is not None and need > _MEMORY_SHARE * available:
        raise ConfigError(
            f"{n} images of {channels} x {resolution} x {resolution} need {need / 2**30:.1f} GiB as uint8, more than "
            f"half of the {available / 2**30:.1f} GiB of memory available: set a smaller `resolution`, `channels: 1` "
            "for greyscale, or use fewer images", path=root)
