"""Dataset loading: real files in their real formats (IDX, CIFAR pickles, Debian's Fashion-MNIST), no mocks."""

from __future__ import annotations

import gzip
import importlib.util
import os
import pickle
import textwrap
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from archsearch.core.errors import ConfigError
from archsearch.data.bundle import DataBundle, clear_cache, load_data
from archsearch.data.readers import DATASETS

DEBIAN_FASHION = Path("/usr/share/datasets/fashion-mnist")


def _denormalize(b: DataBundle, x: torch.Tensor) -> torch.Tensor:
    return x * torch.tensor(b.std).view(1, -1, 1, 1) + torch.tensor(b.mean).view(1, -1, 1, 1)


def _image_keys(x: torch.Tensor, scale: float) -> Counter:
    """Multiset of images (rounded back to their integer levels) to compare splits with the source data."""
    levels = (x * scale).round().to(torch.uint8).flatten(1).numpy()
    return Counter(row.tobytes() for row in levels)


# ---------------------------------------------------------------------------------------------------------
# digits


def test_digits_shapes_splits_and_normalization():
    from sklearn.datasets import load_digits

    b = load_data("digits")
    assert (b.in_chs, b.resolution, b.num_classes) == (1, 8, 10)
    assert b.x_train.dtype == torch.uint8 and b.y_train.dtype == torch.int64  # stored as counts 0 to 16
    assert b.raw_divisor == 16 and b.classes == tuple("0123456789")
    assert len(b.y_train) + len(b.y_val) + len(b.y_test) == 1797
    assert len(b.y_test) == 360  # the fixed 20% test split
    # the three splits together are exactly the source images: a partition, nothing duplicated or lost
    parts = torch.cat([x.float() / 16 for x in (b.x_train, b.x_val, b.x_test)])
    source = torch.from_numpy(load_digits().images).unsqueeze(1) / 16.0
    assert _image_keys(parts, 16) == _image_keys(source, 16)
    # what the network sees: normalized with the training part's statistics
    x = b.inputs("train")
    assert x.dtype == torch.float32
    torch.testing.assert_close(_denormalize(b, x), b.x_train.float() / 16, atol=1e-5, rtol=0)
    mean, std = x.mean(dim=(0, 2, 3)), x.std(dim=(0, 2, 3), correction=0)
    torch.testing.assert_close(mean, torch.zeros(1), atol=1e-4, rtol=0)
    torch.testing.assert_close(std, torch.ones(1), atol=1e-3, rtol=0)


def test_digits_cached_deterministic_and_seeded():
    first = load_data("digits", seed=0)
    assert load_data("digits", seed=0) is first  # cached: free second call
    clear_cache()
    again = load_data("digits", seed=0)
    assert again is not first
    for name in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test"):
        assert torch.equal(getattr(first, name), getattr(again, name)), name
    other = load_data("digits", seed=1)
    assert not torch.equal(first.y_val, other.y_val) or not torch.equal(first.x_val, other.x_val)
    # the test split does not move with the seed (only its normalization statistics do)
    assert torch.equal(first.y_test, other.y_test)
    assert torch.equal(first.x_test, other.x_test)
    torch.testing.assert_close(_denormalize(first, first.inputs("test")), _denormalize(other, other.inputs("test")))


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"val_fraction": 0.0}, ValueError, r"val_fraction must be in \(0, 1\), got 0.0"),
        ({"val_fraction": 1.0}, ValueError, r"val_fraction must be in \(0, 1\), got 1.0"),
        ({"val_fraction": -0.2}, ValueError, "val_fraction"),
        ({"val_fraction": "0.1"}, TypeError, "val_fraction must be a float"),
        ({"seed": 1.5}, TypeError, "seed must be an int"),
        ({"foo": 1}, ConfigError, r"takes no options, got \['foo'\]"),
        ({"bad_files": "skip"}, ConfigError, r"dataset 'digits' takes no bad_files \(it is the folder dataset's\)"),
    ],
)
def test_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        load_data("digits", **kwargs)


def test_unknown_dataset_lists_valid_names():
    with pytest.raises(ConfigError, match="unknown dataset 'imagenet'") as info:
        load_data("imagenet")
    for name in (*DATASETS, "module:function"):
        assert name in str(info.value)


# ---------------------------------------------------------------------------------------------------------
# IDX files (Fashion-MNIST, MNIST)


@pytest.mark.slow  # decodes 70,000 images
@pytest.mark.skipif(
    not DEBIAN_FASHION.is_dir(), reason=f"{DEBIAN_FASHION} absent (apt-get install dataset-fashion-mnist)"
)
def test_fashion_mnist_from_debian_package():
    b = load_data("fashion-mnist")  # no root: the Debian package's directory is the first place searched
    assert len(b.y_train) + len(b.y_val) == 60000 and len(b.y_val) == 6000
    assert len(b.y_test) == 10000
    assert (b.in_chs, b.resolution, b.num_classes) == (1, 28, 10)
    assert set(b.y_test.tolist()) == set(range(10))
    assert load_data("fashion-mnist") is b


def _idx_bytes(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + np.array(array.shape, dtype=">u4").tobytes()
    return header + array.astype(np.uint8).tobytes()


def _write_idx_dataset(directory: Path, *, gz: bool, n_train: int = 30, n_test: int = 12) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 6, 6), dtype=np.uint8),
        "train-labels-idx1-ubyte": np.arange(n_train, dtype=np.uint8) % 3,
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 6, 6), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": np.arange(n_test, dtype=np.uint8) % 3,
    }
    directory.mkdir(parents=True, exist_ok=True)
    for name, array in arrays.items():
        data = _idx_bytes(array)
        if gz:
            (directory / f"{name}.gz").write_bytes(gzip.compress(data))
        else:
            (directory / name).write_bytes(data)
    return arrays


@pytest.mark.parametrize("gz", [True, False], ids=["gz", "raw"])
def test_idx_files_round_trip(tmp_path, gz):
    arrays = _write_idx_dataset(tmp_path, gz=gz)
    b = load_data("fashion-mnist", root=tmp_path, val_fraction=0.2)
    assert (len(b.y_train), len(b.y_val), len(b.y_test)) == (24, 6, 12)
    assert (b.in_chs, b.resolution, b.num_classes) == (1, 6, 3)
    test_images = torch.from_numpy(arrays["t10k-images-idx3-ubyte"]).unsqueeze(1).float() / 255
    assert b.x_test.dtype == torch.uint8  # as stored: a quarter of float32's memory
    torch.testing.assert_close(_denormalize(b, b.inputs("test")), test_images, atol=1e-5, rtol=0)
    assert torch.equal(b.y_test, torch.from_numpy(arrays["t10k-labels-idx1-ubyte"]).long())
    train_images = torch.from_numpy(arrays["train-images-idx3-ubyte"]).unsqueeze(1).float() / 255
    parts = torch.cat([b.x_train, b.x_val]).float() / 255
    assert _image_keys(parts, 255) == _image_keys(train_images, 255)


def test_idx_torchvision_layout(tmp_path):
    _write_idx_dataset(tmp_path / "MNIST" / "raw", gz=False)
    b = load_data("mnist", root=tmp_path)
    assert len(b.y_train) + len(b.y_val) == 30 and b.name == "mnist"


def _corrupt_truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:-5])


def _corrupt_halve(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _corrupt_magic(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[0:4] = b"\x12\x34\x08\x03"
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    ("gz", "corrupt", "match"),
    [
        (False, _corrupt_truncate, "truncated"),
        (False, _corrupt_magic, "bad magic number"),
        (True, _corrupt_halve, "cannot read IDX file"),  # a cut gzip stream
    ],
    ids=["raw-truncated", "raw-bad-magic", "gz-truncated"],
)
def test_idx_corrupt_file_names_the_file(tmp_path, gz, corrupt, match):
    _write_idx_dataset(tmp_path, gz=gz)
    bad = tmp_path / ("train-images-idx3-ubyte" + (".gz" if gz else ""))
    corrupt(bad)
    with pytest.raises(ConfigError, match=match) as info:
        load_data("fashion-mnist", root=tmp_path)
    assert info.value.path == str(bad)
    assert str(bad) in str(info.value)


def test_missing_fashion_mnist_says_how_to_get_it(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_data("fashion-mnist", root=tmp_path)
    message = str(info.value)
    assert "apt-get install dataset-fashion-mnist" in message
    assert "`root`" in message and "download: true" in message
    assert str(tmp_path) in message  # where it looked


@pytest.mark.skipif(importlib.util.find_spec("torchvision") is not None, reason="torchvision is installed")
def test_download_without_torchvision(tmp_path):
    with pytest.raises(ConfigError, match="needs torchvision, which is not installed"):
        load_data("fashion-mnist", root=tmp_path, download=True)


# ---------------------------------------------------------------------------------------------------------
# CIFAR-10


def _write_cifar(directory: Path, n_per_batch: int = 4, n_test: int = 3) -> None:
    rng = np.random.default_rng(3)
    directory.mkdir(parents=True)
    batches = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for i, name in enumerate(batches):
        n = n_test if name == "test_batch" else n_per_batch
        batch = {
            b"batch_label": f"batch {i}".encode(),
            b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
            b"labels": [int(v) for v in rng.integers(0, 10, n)],
            b"filenames": [f"img_{i}_{j}.png".encode() for j in range(n)],
        }
        with open(directory / name, "wb") as f:
            pickle.dump(batch, f, protocol=2)


@pytest.mark.parametrize("point_at", ["parent", "batches_dir"])
def test_cifar10_pickles(tmp_path, point_at):
    _write_cifar(tmp_path / "cifar-10-batches-py")
    root = tmp_path if point_at == "parent" else tmp_path / "cifar-10-batches-py"
    b = load_data("cifar10", root=root, val_fraction=0.25)
    assert (len(b.y_train), len(b.y_val), len(b.y_test)) == (15, 5, 3)
    assert b.x_train.shape[1:] == (3, 32, 32) and b.x_test.dtype == torch.uint8
    assert b.classes[:3] == ("airplane", "automobile", "bird")
    with open(tmp_path / "cifar-10-batches-py" / "test_batch", "rb") as f:
        test = pickle.load(f)
    expected = torch.from_numpy(test[b"data"].reshape(-1, 3, 32, 32)).float() / 255
    torch.testing.assert_close(_denormalize(b, b.inputs("test")), expected, atol=1e-5, rtol=0)
    assert b.y_test.tolist() == test[b"labels"]


class _Exploit:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_cifar10_refuses_code_in_pickles(tmp_path):
    _write_cifar(tmp_path / "cifar-10-batches-py")
    marker = tmp_path / "pwned"
    bad = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    bad.write_bytes(pickle.dumps({b"data": _Exploit(marker), b"labels": []}, protocol=2))
    with pytest.raises(ConfigError, match=r"refusing to load (posix|nt|os)\.system") as info:
        load_data("cifar10", root=tmp_path)
    assert info.value.path == str(bad)
    assert not marker.exists()


def test_cifar10_missing(tmp_path):
    with pytest.raises(ConfigError, match="CIFAR-10 not found") as info:
        load_data("cifar10", root=tmp_path)
    assert "download: true" in str(info.value) and "torchvision.datasets.CIFAR10" in str(info.value)


# ---------------------------------------------------------------------------------------------------------
# custom module:function

_CUSTOM_MODULE = textwrap.dedent(
    """
    import numpy as np
    import torch
    from torch.utils.data import TensorDataset

    def pairs(root=None, n=40):
        rng = np.random.default_rng(0)
        x_train = rng.integers(0, 256, (n, 5, 5), dtype=np.uint8)  # N x H x W uint8
        x_test = torch.rand(10, 1, 5, 5)  # N x C x H x W float
        return (x_train, np.arange(n) % 4), (x_test, torch.arange(10) % 4)

    def datasets():
        g = torch.Generator().manual_seed(0)
        train = TensorDataset(torch.rand(2500, 2, 4, 4, generator=g), torch.arange(2500) % 5)
        test = TensorDataset(torch.rand(7, 2, 4, 4, generator=g), torch.arange(7) % 5)
        return train, test

    def wrong_return():
        return "train and test"

    def wrong_part():
        return {"x": 1}, {"y": 2}

    NOT_A_FUNCTION = 3
    """
)


@pytest.fixture
def custom_module(tmp_path, monkeypatch):
    (tmp_path / "archsearch_test_custom_ds.py").write_text(_CUSTOM_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    return "archsearch_test_custom_ds"


def test_custom_function_returning_arrays(custom_module):
    b = load_data(f"{custom_module}:pairs", n=60, val_fraction=0.25)
    assert (len(b.y_train), len(b.y_val), len(b.y_test)) == (45, 15, 10)
    assert (b.in_chs, b.resolution, b.num_classes) == (1, 5, 4)
    # uint8 training images beside float test images in [0, 1]: both float, on the training images' scale
    assert b.x_train.dtype == torch.float32 and b.y_train.dtype == torch.int64 and b.raw_divisor == 255
    assert float(b.x_test.max()) > 1


def test_custom_function_returning_datasets(custom_module):
    b = load_data(f"{custom_module}:datasets")
    assert (len(b.y_train) + len(b.y_val), len(b.y_test)) == (2500, 7)  # more than one collate batch
    assert (b.in_chs, b.resolution, b.num_classes) == (2, 4, 5)
    torch.testing.assert_close(b.inputs("train").mean(dim=(0, 2, 3)), torch.zeros(2), atol=1e-4, rtol=0)


@pytest.mark.parametrize(
    ("spec", "options", "match"),
    [
        ("archsearch_no_such_module_xyz:load", {}, "cannot import module 'archsearch_no_such_module_xyz'"),
        ("{mod}:missing", {}, "has no function 'missing'"),
        ("{mod}:NOT_A_FUNCTION", {}, "has no function 'NOT_A_FUNCTION'"),
        ("{mod}:wrong_return", {},
         r"expected the function to return \(train, test\) or \(train, test, class_names\), got str"),
        ("{mod}:wrong_part", {}, r"expected an \(x, y\) pair of tensors/arrays or a torch Dataset, got dict"),
        ("{mod}:pairs", {"colour": "red"}, r"takes no option\(s\) \['colour'\]"),
        ("{mod}:datasets", {"n": 3}, r"takes no option\(s\) \['n'\]"),
        (":load", {}, "expected 'module:function'"),
    ],
)
def test_custom_bad_forms(custom_module, spec, options, match):
    spec = spec.format(mod=custom_module)
    with pytest.raises(ConfigError, match=match) as info:
        load_data(spec, **options)
    assert repr(spec) in str(info.value)


# ---------------------------------------------------------------------------------------------------------
# synthetic and the bundle's methods


def test_synthetic_deterministic():
    first = load_data("synthetic", classes=3)
    clear_cache()
    again = load_data("synthetic", classes=3)
    assert torch.equal(first.x_train, again.x_train) and torch.equal(first.y_test, again.y_test)
    assert (len(first.y_train) + len(first.y_val), len(first.y_test), first.num_classes) == (512, 128, 3)


def test_bundle_resized_subset_to():
    b = load_data("synthetic", channels=3)
    big = b.resized(16)
    assert big.x_train is b.x_train  # stored once; each batch is resized on its way to the network
    assert big.inputs("train").shape[1:] == (3, 16, 16) and big.inputs("test").shape[1:] == (3, 16, 16)
    assert big.inputs("val").shape[0] == b.x_val.shape[0] and big.resolution == 16 and big.raw_resolution == 8
    assert big.resized(8) is not big and big.resized(8).size is None
    assert torch.equal(big.y_train, b.y_train)
    assert b.resized(8) is b
    small = b.subset(100)
    assert len(small.y_train) == len(small.x_train) == 100
    assert small.x_val is b.x_val and small.x_test is b.x_test
    assert b.subset(None) is b and b.subset(10**6) is b
    assert torch.equal(b.subset(50).y_train, b.subset(50).y_train)  # fixed seed
    moved = b.to("cpu")
    assert moved.x_train.device.type == "cpu" and moved.num_classes == b.num_classes
    with pytest.raises(TypeError, match="resolution must be an int"):
        b.resized(16.0)
    with pytest.raises(ValueError, match="n_train must be >= 1"):
        b.subset(0)


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"colour": 1}, ConfigError, r"unknown option\(s\) \['colour'\]"),
        ({"classes": 1}, ValueError, "'classes' must be >= 2"),
        ({"resolution": "8"}, TypeError, "'resolution' must be an int"),
    ],
)
def test_synthetic_bad_options(options, error, match):
    with pytest.raises(error, match=match):
        load_data("synthetic", **options)


@pytest.mark.slow  # trains 5 epochs: most of a second
def test_synthetic_is_learnable():
    b = load_data("synthetic")
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(b.in_chs, 16, 3, padding=1), nn.ReLU(),
        nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, b.num_classes),
    )  # fmt: skip
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(5):
        for idx in torch.randperm(len(b.y_train)).split(64):
            loss = nn.functional.cross_entropy(model(b.x_train[idx]), b.y_train[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    with torch.no_grad():
        accuracy = (model(b.x_test).argmax(1) == b.y_test).float().mean().item()
    assert accuracy > 0.6  # chance is 0.25


def test_a_users_validation_split_is_stratified_and_a_thin_class_is_named(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(4), [300, 125, 50, 25]).astype(np.int64)  # 60/25/10/5%
    x = rng.integers(0, 256, size=(len(y), 1, 6, 6), dtype=np.uint8)
    np.savez(tmp_path / "d.npz", x_train=x, y_train=y, x_test=x[:40], y_test=y[:40])
    for seed in (0, 1):
        b = load_data("arrays", root=tmp_path / "d.npz", val_fraction=0.2, seed=seed)
        assert torch.bincount(b.y_val).tolist() == [60, 25, 10, 5]  # each class in its share
        assert torch.bincount(b.y_train).tolist() == [240, 100, 40, 20]
        (note,) = b.notes
        assert note.startswith("1 class(es) with fewer than 10 validation images ('3' 5)")
