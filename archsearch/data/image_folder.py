"""The ``folder`` dataset: a folder of images, one subfolder per class (torchvision's ``ImageFolder`` layout).

Either ``root/train/<class>/`` and ``root/test/<class>/``, or ``root/<class>/`` alone, from which a stratified
test split (``test_fraction``) is carved with a fixed seed. Class names are the folder names, sorted; images are
found in class folders and their subfolders. Pillow decodes them (:mod:`archsearch.data.image_file`): PNG, JPEG, BMP,
WebP, GIF, TIFF, PGM/PPM, greyscale or colour, to 1 channel or 3 (``channels``; by default 3 if any image is in
colour). Images of one square size are kept as they are; otherwise every image is resized at load to the study's
``resolution`` (shorter side, then the centre square). The decoded uint8 arrays are cached
(:mod:`archsearch.data.image_cache`), so a second load reads one file instead of every image.

Image files that cannot be used (empty, not an image, truncated or corrupt) are all found in one pass and named in
one error, or left out with ``bad_files: skip``; what is left out (those, files without an image extension, files
beside the class folders) is said in one-line notes on the returned data, never as a Python warning.
"""

from __future__ import annotations

import os
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
_OPTIONS = ("channels", "test_fraction", "resolution", "bad_files")
_BAD_FILES = ("stop", "skip")  # what to do with image files that cannot be read: refuse to start, or leave out
_MEMORY_SHARE = 0.5  # refuse a dataset whose images would take more than this share of the available memory
# why an image file cannot be used: each reason starts with one of these (a truncated file's adds Pillow's words)
_EMPTY, _NOT_AN_IMAGE, _CORRUPT = "empty (0 bytes)", "not an image Pillow can read", "truncated or corrupt"
_NAMED = 5  # files named per reason in the error and the note; the rest are counted


class _File(NamedTuple):  # a tuple of strings and ints: 70,000 of them stay small and quick to make
    path: str
    rel: str  # relative to the dataset's root, for the cache key
    label: int
    size: int  # bytes, for the cache key
    mtime_ns: int


def read_folder(root: str | os.PathLike | None, options: dict[str, Any]) -> RawSplits:
    """Scan ``root``, then decode (or read the cache); ``options``: ``channels``, ``test_fraction``, ``resolution``,
    ``bad_files`` ("stop": unreadable image files are an error naming them all; "skip": they are left out)."""
    unknown = sorted(set(options) - set(_OPTIONS))
    if unknown:
        raise ConfigError(f"dataset 'folder': unknown option(s) {unknown}, valid ones are {list(_OPTIONS)}")
    if root is None:
        raise ConfigError("dataset 'folder' needs `root`: the folder that holds one subfolder per class "
                          "(or train/ and test/, each with one subfolder per class)", key="dataset.root")
    root = Path(root).expanduser().resolve()
    channels, resolution = options.get("channels"), options.get("resolution")
    test_fraction, bad_files = options.get("test_fraction"), options.get("bad_files") or "stop"
    if channels not in (None, 1, 3):
        raise ConfigError(f"dataset.channels must be 1, 3 or null (what the images are), got {channels!r}",
                          path=root, key="dataset.channels")
    if bad_files not in _BAD_FILES:
        raise ConfigError(f"dataset.bad_files must be 'stop' or 'skip', got {bad_files!r}", path=root,
                          key="dataset.bad_files")
    classes, parts, notes = _scan(root)
    split = "train" in parts
    if split and test_fraction is not None:
        raise ConfigError(f"test_fraction {test_fraction} is for a folder without test/, but {root} has train/ and "
                          "test/: remove `test_fraction`", path=root, key="dataset.test_fraction")
    test_fraction = DEFAULT_TEST_FRACTION if test_fraction is None else float(test_fraction)
    files = [f for part in parts.values() for f in part]
    # every file with an image extension is in the key, the bad ones too: fixing one decodes the folder again
    key = image_cache.key(root, [(f.rel, f.label, f.size, f.mtime_ns) for f in files], classes=classes,
                          channels=channels, resolution=resolution, test_fraction=test_fraction, bad_files=bad_files)
    cached = image_cache.load(key)
    if cached is None or len(cached.x) != len(files) - len(cached.skipped):
        cached = image_cache.save(key, *_load_images(files, channels, resolution, root, bad_files))
    x, y = torch.from_numpy(cached.x), torch.from_numpy(cached.y)
    left_out = {rel for rel, _ in cached.skipped}
    n_train = sum(f.rel not in left_out for f in parts.get("train", ()))
    if left_out:
        _check_classes_left(y, n_train if split else None, classes, root)
        by_rel = {f.rel: f.path for f in files}
        skipped = tuple((by_rel[rel], why) for rel, why in cached.skipped)
        notes.append(f"{len(skipped)} bad image file(s) left out (bad_files: skip): {'; '.join(_by_reason(skipped))}")
    else:
        skipped = ()
    if split:
        x_train, y_train, x_test, y_test = x[:n_train], y[:n_train], x[n_train:], y[n_train:]
    else:
        train_idx, test_idx = _stratified_split(y.numpy(), test_fraction, root)
        x_train, y_train, x_test, y_test = x[train_idx], y[train_idx], x[test_idx], y[test_idx]
    c, h, w = x.shape[1:]
    layout = "train/ and test/" if split else f"one folder per class, {test_fraction:g} carved off as test"
    return RawSplits(x_train, y_train, x_test, y_test, 255.0,
                     f"image files under {root} ({layout}), decoded by Pillow to uint8 {c} x {h} x {w}, 0 to 255",
                     classes, tuple(notes), skipped)


# ---------------------------------------------------------------------------------------------------------
# the layout


def _scan(root: Path) -> tuple[tuple[str, ...], dict[str, list[_File]], list[str]]:
    """The class names, the files of each part (``train`` and ``test``, or ``all``) in a fixed order, and notes on
    the files left out (no image extension, outside the class folders)."""
    if not root.is_dir():
        raise ConfigError("dataset 'folder': root is not a folder" if root.exists() else
                          "dataset 'folder': root does not exist", path=root, key="dataset.root")
    subdirs = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    has_train, has_test = "train" in subdirs, "test" in subdirs
    if has_train != has_test:
        have, lacking = ("train", "test") if has_train else ("test", "train")
        raise ConfigError(f"found {have}/ but no {lacking}/: use train/<class>/ and test/<class>/, or put the class "
                          f"folders directly in root (a test split is then carved off)", path=root / have)
    notes: list[str] = []
    other: list[str] = []  # files without an image extension
    if has_train:
        train_classes, test_classes = _class_folders(root / "train", notes), _class_folders(root / "test", notes)
        missing = sorted(set(train_classes) - set(test_classes))
        extra = sorted(set(test_classes) - set(train_classes))
        if missing or extra:
            what = (f"class folder(s) {missing} in train/ have none in test/" if missing else
                    f"class folder(s) {extra} in test/ have none in train/")
            raise ConfigError(f"{what}: every class needs a folder in both",
                              path=root / ("test" if missing else "train"))
        classes = tuple(train_classes)
        parts = {p: _class_files(root / p, classes, root, other) for p in ("train", "test")}
    else:
        classes = tuple(_class_folders(root, notes))
        parts = {"all": _class_files(root, classes, root, other)}
    if len(classes) < 2:
        raise ConfigError(f"found {len(classes)} class folder(s) {list(classes)}: a classifier needs at least 2 "
                          "(one subfolder per class)", path=root / "train" if has_train else root)
    if other:
        notes.append(f"{len(other)} file(s) without an image extension left out, e.g. {other[0]}")
    return classes, parts, notes


def _class_folders(folder: Path, notes: list[str]) -> list[str]:
    names = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    stray = sorted(p.name for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    if stray:
        notes.append(f"{len(stray)} file(s) outside the class folders left out, e.g. {folder / stray[0]}")
    return names


def _class_files(folder: Path, classes: tuple[str, ...], root: Path, other: list[str]) -> list[_File]:
    files: list[_File] = []
    cut = len(str(root)) + 1
    for label, name in enumerate(classes):
        found = len(files)
        _walk(str(folder / name), label, cut, files, other)
        if len(files) == found:
            raise ConfigError(f"class folder {name!r} has no images (looked for {', '.join(IMAGE_EXTENSIONS)})",
                              path=folder / name)
    return files


def _walk(folder: str, label: int, cut: int, files: list[_File], other: list[str]) -> None:
    """The images under ``folder`` (and its subfolders), sorted by name, and the other files' paths in ``other``;
    os.scandir, not pathlib: 10x quicker."""
    with os.scandir(folder) as it:
        entries = sorted((e for e in it if not e.name.startswith(".")), key=lambda e: e.name)  # .DS_Store & co.
    for e in entries:
        if e.is_dir():
            _walk(e.path, label, cut, files, other)
        elif os.path.splitext(e.name)[1].lower() not in IMAGE_EXTENSIONS:
            other.append(e.path)
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


def _check_classes_left(y: torch.Tensor, n_train: int | None, classes: tuple[str, ...], root: Path) -> None:
    """Refuse a class that the bad files left without images (in train/ or test/ where the folder has them)."""
    parts = {"": y} if n_train is None else {"train/": y[:n_train], "test/": y[n_train:]}
    for part, labels in parts.items():
        counts = torch.bincount(labels, minlength=len(classes))
        empty = [name for name, n in zip(classes, counts.tolist(), strict=True) if n == 0]
        if empty:
            raise ConfigError(f"class folder(s) {empty}{' in ' + part if part else ''} have no images left once the "
                              "bad image files are left out (bad_files: skip): fix some of them, or add images",
                              path=root)


# ---------------------------------------------------------------------------------------------------------
# decoding


def _load_images(files: list[_File], channels: int | None, resolution: int | None, root: Path,
                 bad_files: str) -> tuple[np.ndarray, np.ndarray, tuple[tuple[str, str], ...]]:
    """The images and labels of the files that decode, and (relative path, reason) of those that do not.

    Every file is looked at before anything is refused: the headers first (empty files, files that are not
    images), then a decode of the rest (truncated or corrupt ones), so that one error names them all.
    """
    headers = _map(_header, files)
    bad = {i: h for i, h in enumerate(headers) if isinstance(h, str)}  # file index -> why it cannot be read
    good = [i for i in range(len(files)) if i not in bad]
    if not good:
        raise _bad_files_error(files, bad, root)
    sizes_modes = [h for h in headers if not isinstance(h, str)]
    mode = _mode([m for _, m in sizes_modes], channels)
    try:
        size, side = _size([files[i] for i in good], [s for s, _ in sizes_modes], resolution, root)
    except ConfigError as e:
        if bad_files == "skip":
            raise
        # the truncated ones too, so that one error says all: each decoded to 1x1, only whether it decodes counts
        _, failed = _decode([files[i] for i in good], mode, 1, (1 if mode == "L" else 3, 1, 1))
        bad.update({good[j]: why for j, why in failed.items()})
        if not bad:
            raise
        raise _bad_files_error(files, bad, root, also=e.message) from None
    _check_memory(len(good), 1 if mode == "L" else 3, side, root)
    pixels, failed = _decode([files[i] for i in good], mode, size, (1 if mode == "L" else 3, side, side))
    bad.update({good[j]: why for j, why in failed.items()})
    if bad and bad_files == "stop":
        raise _bad_files_error(files, bad, root)
    if failed:  # a copy without the rows that did not decode (skip only: rare, and then once)
        pixels = pixels[np.array([j not in failed for j in range(len(good))])]
    labels = np.array([f.label for i, f in enumerate(files) if i not in bad], dtype=np.int64)
    return pixels, labels, tuple((files[i].rel, why) for i, why in sorted(bad.items()))


def _header(f: _File) -> tuple[tuple[int, int], str] | str:
    """Size (upright: after the EXIF orientation) and mode from the file's header, without decoding it; or why the
    file cannot be read."""
    from PIL import Image, UnidentifiedImageError

    if f.size == 0:
        return _EMPTY
    try:
        with Image.open(f.path) as img:
            return _upright_size(img), img.mode
    except UnidentifiedImageError:
        return _NOT_AN_IMAGE
    except Exception as e:  # unreadable, damaged: all mean "this file"
        return _corrupt(e)


def _upright_size(img: Any) -> tuple[int, int]:
    """Width and height once :func:`read_image` has applied the EXIF orientation (5 to 8 turn the image on its
    side). A PNG's EXIF is read only where it comes before the pixels: reading it otherwise decodes the image."""
    w, h = img.size
    if img.format == "PNG" and "exif" not in img.info:
        return w, h
    try:
        turned = img.getexif().get(0x0112, 1) in (5, 6, 7, 8)  # 0x0112: Orientation
    except Exception:  # an unreadable EXIF block: read_image keeps the pixels as stored
        turned = False
    return (h, w) if turned else (w, h)


def _corrupt(e: Exception) -> str:
    first = str(e).splitlines()[0] if str(e) else ""
    return f"{_CORRUPT} ({type(e).__name__}{': ' + first if first else ''})"


def _mode(modes: list[str], channels: int | None) -> str:
    """The Pillow mode to convert to: ``channels``' or, by default, RGB if any image is in colour.

    Transparency does not change it: an RGBA image laid on the background stays colour, an LA one grey."""
    colour = any(mode not in ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F") for mode in modes)
    return {1: "L", 3: "RGB"}.get(channels or 0, "RGB" if colour else "L")


def _size(files: list[_File], sizes: list[tuple[int, int]], resolution: int | None,
          root: Path) -> tuple[int | None, int]:
    """The size to resize to (None: all images are one square size, kept) and the side of the decoded images."""
    distinct = set(sizes)
    if len(distinct) == 1 and sizes[0][0] == sizes[0][1]:
        return None, sizes[0][0]
    if resolution is None:
        first = sizes[0]
        odd = next((i for i, size in enumerate(sizes) if size != first), None)
        what = (f"images of several sizes, e.g. {files[0].path} is {_wxh(first)} and {files[odd].path} is "
                f"{_wxh(sizes[odd])}" if odd is not None else f"images of {_wxh(first)}, not square")
        raise ConfigError(f"{what}: set the study's `resolution` (e.g. resolution: 32) and each image is resized "
                          "to it at load (shorter side to the resolution, then the centre square)", path=root)
    return resolution, resolution


def _wxh(size: tuple[int, int]) -> str:
    return f"{size[0]}x{size[1]}"


def _decode(files: list[_File], mode: str, size: int | None,
            shape: tuple[int, int, int]) -> tuple[np.ndarray, dict[int, str]]:
    """Every file decoded into one preallocated N x C x H x W uint8 array (no second copy while stacking), and
    why each that did not decode failed (file index -> reason; its row is left as it was)."""
    out = np.empty((len(files), *shape), dtype=np.uint8)
    failed: dict[int, str] = {}

    def one(i: int) -> None:
        try:
            x = read_image(files[i].path, mode, size)
        except Exception as e:  # truncated, corrupt, unsupported: all mean "this file"
            failed[i] = _corrupt(e)
            return
        if tuple(x.shape) != shape:  # headers agreed; a damaged file may still decode to another shape
            failed[i] = f"{_CORRUPT} (decoded to {_wxh((x.shape[2], x.shape[1]))}, its header says otherwise)"
            return
        out[i] = x.numpy()

    _map(one, range(len(files)))  # Pillow releases the GIL while it decodes
    return out, failed


def _bad_files_error(files: list[_File], bad: dict[int, str], root: Path, also: str = "") -> ConfigError:
    """One error for all of them: how many, a line per reason naming the first few, and what to do."""
    named = [(files[i].path, why) for i, why in sorted(bad.items())]
    lines = "".join(f"\n  {line}" for line in _by_reason(named))
    more = f"\nAlso: {also}" if also else ""
    return ConfigError(f"{len(bad)} of {len(files)} image files cannot be read:{lines}\nDelete or fix them, or set "
                       "`bad_files: skip` under `dataset:` to leave them out (they are then counted and named in a "
                       f"note){more}", path=root)


def _by_reason(named: list[tuple[str, str]] | tuple[tuple[str, str], ...]) -> list[str]:
    """``2 empty (0 bytes): a.jpg, b.jpg`` per reason, the first few files named (a corrupt one with Pillow's
    words)."""
    kinds = (_EMPTY, _NOT_AN_IMAGE, _CORRUPT)
    groups: dict[str, list[str]] = {kind: [] for kind in kinds}
    for path, why in named:
        kind = next((k for k in kinds if why.startswith(k)), _CORRUPT)  # every reason starts with one
        groups[kind].append(f"{path}{why[len(kind):]}" if why.startswith(kind) else f"{path} ({why})")
    return [f"{len(paths)} {kind}: {', '.join(paths[:_NAMED])}"
            + (f" and {len(paths) - _NAMED} more" if len(paths) > _NAMED else "")
            for kind, paths in groups.items() if paths]


def _map(fn: Any, items: Any) -> list[Any]:
    """``fn`` over ``items`` in threads (Pillow releases the GIL while it reads and decodes)."""
    with ThreadPoolExecutor(_threads()) as pool:
        return list(pool.map(fn, items))


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
