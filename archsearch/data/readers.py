"""The built-in datasets' readers: each returns the unsplit, unnormalized train and test parts as tensors.

- ``digits``: scikit-learn's bundled 8x8 digits; a stratified 20% test split, carved with a fixed seed.
- ``fashion-mnist`` / ``mnist``: the four IDX files (gzipped or raw), parsed with numpy.
- ``cifar10``: the ``cifar-10-batches-py`` pickles, read with a numpy-only unpickler.
- ``synthetic``: a deterministic, learnable toy dataset (class prototypes plus noise) for tests.
- ``module:function``: any importable function returning ``(train, test)``, read by
  :mod:`archsearch.data.custom_reader`; ``folder`` and ``arrays`` have modules of their own.

Images come back as stored (uint8 where the files hold uint8) in a :class:`RawSplits`, with the divisor that
brings them to [0, 1] and the class names; :mod:`archsearch.data.bundle` splits off validation and caches them.
"""

from __future__ import annotations

import codecs
import gzip
import os
import pickle
import zlib
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from archsearch.core.errors import ConfigError

DATASETS = ("digits", "fashion-mnist", "mnist", "cifar10", "folder", "arrays", "synthetic")


class RawSplits(NamedTuple):
    """What a reader returns: the unsplit train and test parts as stored, and what they are."""

    x_train: torch.Tensor  # N x C x H x W, uint8 or float32
    y_train: torch.Tensor  # int64, N
    x_test: torch.Tensor
    y_test: torch.Tensor
    divisor: float  # x / divisor is in [0, 1] (1.0: float images used as given)
    format: str  # what the stored pixels are, for the export's card
    classes: tuple[str, ...] = ()  # a name per label; (): "0".."N-1"
    notes: tuple[str, ...] = ()  # one line each, for the user: what the reader left out, and why
    skipped_files: tuple[tuple[str, str], ...] = ()  # (path, reason) of each image file left out as bad


FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                         "Ankle boot")
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


_DIGITS_TEST_FRACTION = 0.2


_DIGITS_TEST_SEED = 0  # fixed: the digits test split must not move with the search seed


DIGITS_MAX = 16.0  # load_digits().images are counts of set pixels in 4x4 cells, 0 to 16


_SYNTHETIC_SEED = 20240611


_SYNTHETIC_DEFAULTS = {"n_train": 512, "n_test": 128, "channels": 1, "resolution": 8, "classes": 4}


_SYNTHETIC_NOISE = 0.3  # per-pixel noise std against prototypes uniform in [0, 1]: learnable, not trivial


_IDX_FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}


_IDX_UBYTE = 0x08


# per dataset: (torchvision class, its folder under root, system-wide directory or None)
_IDX_SOURCES = {
    "fashion-mnist": ("FashionMNIST", "FashionMNIST", Path("/usr/share/datasets/fashion-mnist")),
    "mnist": ("MNIST", "MNIST", None),
}


_CIFAR_DIR = "cifar-10-batches-py"


_CIFAR_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))


_CIFAR_TEST = "test_batch"


def read_digits() -> RawSplits:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()  # bundled with scikit-learn: no download
    x = torch.from_numpy(digits.images.astype(np.uint8)).unsqueeze(1)  # N x 1 x 8 x 8, whole counts 0 to 16
    y = torch.from_numpy(digits.target.astype(np.int64))
    train_idx, test_idx = train_test_split(
        np.arange(len(y)), test_size=_DIGITS_TEST_FRACTION, stratify=digits.target, random_state=_DIGITS_TEST_SEED
    )
    train_idx, test_idx = torch.from_numpy(np.sort(train_idx)), torch.from_numpy(np.sort(test_idx))
    return RawSplits(x[train_idx], y[train_idx], x[test_idx], y[test_idx], DIGITS_MAX,
                     "sklearn.datasets.load_digits().images: 0 to 16, N x 8 x 8", tuple(map(str, range(10))))


def read_synthetic(options: dict[str, Any]) -> RawSplits:
    """Each class is a fixed random prototype image; samples are prototype + Gaussian noise."""
    unknown = sorted(set(options) - set(_SYNTHETIC_DEFAULTS))
    if unknown:
        raise ConfigError(
            f"dataset 'synthetic': unknown option(s) {unknown}, valid ones are {list(_SYNTHETIC_DEFAULTS)}"
        )
    opts = {**_SYNTHETIC_DEFAULTS, **options}
    for key, value in opts.items():
        check_int(value, f"synthetic option {key!r}", minimum=2 if key in ("classes", "n_train") else 1)
    classes, channels, res = opts["classes"], opts["channels"], opts["resolution"]
    protos = np.random.default_rng(_SYNTHETIC_SEED).random((classes, channels, res, res), dtype=np.float32)

    def draw(n: int, stream: int) -> tuple[torch.Tensor, torch.Tensor]:
        rng = np.random.default_rng([_SYNTHETIC_SEED, stream])
        y = rng.permutation(np.arange(n) % classes)  # balanced classes, shuffled
        noise = rng.standard_normal((n, channels, res, res), dtype=np.float32)
        x = protos[y] + np.float32(_SYNTHETIC_NOISE) * noise
        return torch.from_numpy(x), torch.from_numpy(y.astype(np.int64))

    return RawSplits(*draw(opts["n_train"], 1), *draw(opts["n_test"], 2), 1.0,
                     "float32 images (class prototypes plus noise), used as given")


def _idx_search_dirs(name: str, root: str | os.PathLike | None) -> list[Path]:
    """Where to look, in order: ``root`` if given, else the system-wide package and the user cache."""
    _, tv_folder, system_dir = _IDX_SOURCES[name]
    if root is not None:
        base = Path(root).expanduser()
        return [base, base / tv_folder / "raw"]  # torchvision writes <root>/FashionMNIST/raw
    home = _default_root(name)
    return [*([system_dir] if system_dir else []), home, home / tv_folder / "raw"]


def _find_idx_files(dirs: list[Path]) -> dict[str, Path] | None:
    """The first directory holding all four IDX files, raw preferred over gzipped (no decompression)."""
    for d in dirs:
        found = {}
        for key, base in _IDX_FILES.items():
            for candidate in (d / base, d / f"{base}.gz"):
                if candidate.is_file():
                    found[key] = candidate
                    break
        if len(found) == len(_IDX_FILES):
            return found
    return None


def read_idx_dataset(name: str, root: str | os.PathLike | None, download: bool) -> RawSplits:
    tv_class, _, _ = _IDX_SOURCES[name]
    dirs = _idx_search_dirs(name, root)
    files = _find_idx_files(dirs)
    if files is None and download:
        target = Path(root).expanduser() if root is not None else _default_root(name)
        _torchvision_download(name, tv_class, target)
        files = _find_idx_files(dirs)
    if files is None:
        apt = (
            "`apt-get install dataset-fashion-mnist` (Debian/Ubuntu, installs /usr/share/datasets/fashion-mnist); or "
            if name == "fashion-mnist"
            else ""
        )
        raise ConfigError(
            f"{name} IDX files not found: looked for {list(_IDX_FILES.values())} (raw or .gz) in "
            f"{[str(d) for d in dirs]}. To get them: {apt}put the four IDX files in a directory and set `root` "
            f"to it; or set `download: true` with torchvision installed (uses torchvision.datasets.{tv_class})",
            path=root,
        )
    x_train, y_train = _read_idx(files["x_train"], 3), _read_idx(files["y_train"], 1)
    x_test, y_test = _read_idx(files["x_test"], 3), _read_idx(files["y_test"], 1)
    for x_key, y_key, x, y in (("x_train", "y_train", x_train, y_train), ("x_test", "y_test", x_test, y_test)):
        if len(x) != len(y):
            raise ConfigError(f"{len(x)} images but {len(y)} labels in {files[y_key]}", path=files[x_key])
    return RawSplits(
        to_images(x_train, name),
        to_labels(y_train, name),
        to_images(x_test, name),
        to_labels(y_test, name),
        255.0,
        "the IDX files' uint8 pixels, 0 to 255, N x 28 x 28",
        _names(FASHION_MNIST_CLASSES if name == "fashion-mnist" else tuple(map(str, range(10))), y_train, y_test),
    )


def _names(names: tuple[str, ...], *labels: np.ndarray) -> tuple[str, ...]:
    """The dataset's class names where the files hold its labels; () for files with other labels."""
    return names if max(int(y.max()) for y in labels) == len(names) - 1 else ()


def _read_idx(path: Path, ndim: int) -> np.ndarray:
    """An IDX file of unsigned bytes with ``ndim`` dimensions (http://yann.lecun.com/exdb/mnist/)."""
    try:
        if path.name.endswith(".gz"):
            with gzip.open(path, "rb") as f:
                raw = f.read()
        else:
            raw = path.read_bytes()
    except (OSError, EOFError, zlib.error) as e:  # a truncated .gz is an EOFError, a damaged one OSError
        raise ConfigError(f"cannot read IDX file ({type(e).__name__}: {e})", path=path) from None
    # header: two zero bytes, a type code, the number of dims, then each dim as big-endian uint32
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise ConfigError(f"not an IDX file: bad magic number 0x{raw[:4].hex()} (expected 0x0000080{ndim})", path=path)
    if raw[2] != _IDX_UBYTE:
        raise ConfigError(f"IDX data type is 0x{raw[2]:02x}, expected 0x08 (unsigned byte)", path=path)
    if raw[3] != ndim:
        raise ConfigError(f"IDX file has {raw[3]} dimensions, expected {ndim}", path=path)
    offset = 4 + 4 * ndim
    if len(raw) < offset:
        raise ConfigError(f"truncated IDX header: {len(raw)} bytes, expected at least {offset}", path=path)
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected = offset + int(np.prod(dims))
    if len(raw) != expected:
        what = "truncated" if len(raw) < expected else "trailing bytes after the data"
        raise ConfigError(f"{what}: {len(raw)} bytes, but dims {dims} need {expected}", path=path)
    return np.frombuffer(raw, dtype=np.uint8, offset=offset).reshape(dims)


_NDARRAY_RECONSTRUCT = np.empty(0).__reduce__()[0]  # numpy's _reconstruct, wherever this numpy keeps it


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickler that resolves only what numpy arrays need: a data file must not run code."""

    _ALLOWED: dict[tuple[str, str], Any] = {
        ("numpy.core.multiarray", "_reconstruct"): _NDARRAY_RECONSTRUCT,  # numpy < 2 and the original files
        ("numpy._core.multiarray", "_reconstruct"): _NDARRAY_RECONSTRUCT,  # numpy >= 2
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): codecs.encode,  # protocol 2 stores bytes this way
    }

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"refusing to load {module}.{name}: only numpy arrays are allowed in a CIFAR-10 batch"
            ) from None


def read_cifar10(root: str | os.PathLike | None, download: bool) -> RawSplits:
    base = Path(root).expanduser() if root is not None else _default_root("cifar10")
    dirs = [base, base / _CIFAR_DIR]
    names = (*_CIFAR_TRAIN, _CIFAR_TEST)

    def find() -> Path | None:
        return next((d for d in dirs if all((d / n).is_file() for n in names)), None)

    found = find()
    if found is None and download:
        _torchvision_download("cifar10", "CIFAR10", base)
        found = find()
    if found is None:
        raise ConfigError(
            f"CIFAR-10 not found: looked for {_CIFAR_DIR}/ ({', '.join(names)}) in {[str(d) for d in dirs]}. "
            "To get it: set `download: true` with torchvision installed (uses torchvision.datasets.CIFAR10 "
            f"into `root`), or extract cifar-10-python.tar.gz so that `root` holds {_CIFAR_DIR}/",
            path=root,
        )
    train = [_read_cifar_batch(found / n) for n in _CIFAR_TRAIN]
    x_test, y_test = _read_cifar_batch(found / _CIFAR_TEST)
    x_train = np.concatenate([x for x, _ in train])
    y_train = np.concatenate([y for _, y in train])
    where = "cifar10"
    return RawSplits(to_images(x_train, where), to_labels(y_train, where), to_images(x_test, where),
                     to_labels(y_test, where), 255.0, "the pickles' uint8 pixels, 0 to 255, N x 3 x 32 x 32",
                     _names(CIFAR10_CLASSES, y_train, y_test))


def _read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Images (N x 3 x 32 x 32 uint8) and labels of one ``cifar-10-batches-py`` pickle."""
    try:
        with open(path, "rb") as f:
            batch = _NumpyOnlyUnpickler(f, encoding="bytes").load()
    except pickle.UnpicklingError as e:
        raise ConfigError(f"not a valid CIFAR-10 batch: {e}", path=path) from None
    except Exception as e:  # a damaged pickle can fail in many ways; all mean "bad file"
        raise ConfigError(f"cannot read CIFAR-10 batch ({type(e).__name__}: {e})", path=path) from None
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        raise ConfigError("expected a dict with keys b'data' and b'labels'", path=path)
    data, labels = batch[b"data"], np.asarray(batch[b"labels"])
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        shape = getattr(data, "shape", None)
        raise ConfigError(
            f"b'data' must be a uint8 array of shape N x 3072, got {type(data).__name__} {shape}", path=path
        )
    if labels.shape != (len(data),):
        raise ConfigError(f"{len(data)} images but labels of shape {labels.shape}", path=path)
    return data.reshape(-1, 3, 32, 32), labels


def to_images(x: np.ndarray | torch.Tensor, where: str) -> torch.Tensor:
    """N x C x H x W (a fresh, contiguous tensor) from that, N x H x W or N x H x W x C (C of 1 or 3): uint8 kept
    as uint8, any float as float32."""
    t = torch.from_numpy(np.array(x)) if isinstance(x, np.ndarray) else x  # np.array: writable copy
    if t.dim() == 3:
        t = t.unsqueeze(1)  # N x H x W -> N x 1 x H x W
    elif t.dim() == 4 and t.shape[3] in (1, 3) and t.shape[1] not in (1, 3):
        t = t.permute(0, 3, 1, 2)  # N x H x W x C (what image libraries give) -> N x C x H x W
    if t.dim() != 4:
        raise ConfigError(f"{where}: images must be N x C x H x W, N x H x W x C or N x H x W, got shape "
                          f"{tuple(t.shape)}")
    if t.dtype == torch.uint8:
        return t.clone(memory_format=torch.contiguous_format) if isinstance(x, torch.Tensor) else t.contiguous()
    if t.is_floating_point():
        return t.to(torch.float32, copy=True).contiguous()
    raise ConfigError(f"{where}: images must be uint8 or float, got {t.dtype}")


def check_images(x: torch.Tensor, where: str) -> torch.Tensor:
    """``x`` (from :func:`to_images`) if a network can take it: square images, finite values."""
    if x.shape[2] != x.shape[3]:
        raise ConfigError(f"{where}: images must be square, got {x.shape[2]}x{x.shape[3]}")
    if x.is_floating_point() and not torch.isfinite(x).all():
        raise ConfigError(f"{where}: images contain NaN or infinite values")
    return x


def to_labels(y: np.ndarray | torch.Tensor, where: str) -> torch.Tensor:
    t = torch.from_numpy(np.array(y)) if isinstance(y, np.ndarray) else y
    if t.dim() != 1 or t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
        raise ConfigError(f"{where}: labels must be a 1-D integer array, got {t.dtype} of shape {tuple(t.shape)}")
    t = t.to(torch.int64)
    if len(t) and int(t.min()) < 0:
        raise ConfigError(f"{where}: labels must be >= 0, got {int(t.min())}")
    return t


def _default_root(name: str) -> Path:
    return Path("~/.cache/archsearch").expanduser() / name


def _torchvision_download(name: str, tv_class: str, target: Path) -> None:
    """Let torchvision fetch ``name`` into ``target`` (its own layout under it)."""
    try:
        import torchvision.datasets as tv_datasets
    except ImportError:
        raise ConfigError(
            f"`download: true` for {name!r} needs torchvision, which is not installed "
            f"(pip install torchvision); or put the files in a directory and set `root`",
            path=target,
        ) from None
    target.mkdir(parents=True, exist_ok=True)
    try:
        getattr(tv_datasets, tv_class)(str(target), train=True, download=True)
    except Exception as e:  # network, disk, checksum: all mean the data is still missing
        raise ConfigError(
            f"downloading {name} through torchvision.datasets.{tv_class} failed ({type(e).__name__}: {e})",
            path=target,
        ) from e


def check_int(value: Any, what: str, *, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{what} must be an int, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"{what} must be >= {minimum}, got {value}")

