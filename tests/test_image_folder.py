"""The `folder` and `arrays` datasets on real files: PNG folders made from scikit-learn's digits, real .npz files,
real searches and exports, and a fresh process without archsearch that classifies the PNG files themselves."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from conftest import TINY_SPACE, WITHOUT_ARCHSEARCH, study_dict
from PIL import Image
from sklearn.datasets import load_digits

from archsearch.core.errors import ConfigError
from archsearch.data import image_cache
from archsearch.data.bundle import clear_cache, load_data
from archsearch.export.folder import export
from archsearch.search.study import run

NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


@pytest.fixture(autouse=True)
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test its own image cache, and a fresh in-process data cache."""
    folder = tmp_path / "cache"
    monkeypatch.setenv("ARCHSEARCH_CACHE_DIR", str(folder))
    clear_cache()
    yield folder
    clear_cache()


def make_folder(root: Path, *, n: int = 300, split: bool = True, rgb: bool = True, sizes: tuple[int, ...] = (16,),
                classes: int = 10) -> Path:
    """Digits as PNG files: class folders named after the digit, RGB (three channels that differ) or greyscale,
    in the sizes given (cycled), under train/ and test/ (a fifth) or in class folders alone."""
    d = load_digits()
    keep = np.flatnonzero(d.target < classes)[:n]
    for j, i in enumerate(keep):
        grey = (d.images[i] * 255 / 16).astype(np.uint8)
        array = np.stack([grey, grey // 2, 255 - grey], -1) if rgb else grey
        size = sizes[j % len(sizes)]
        image = Image.fromarray(array).resize((size, size), Image.NEAREST)
        part = ("test" if (j // 10) % 5 == 0 else "train") if split else ""  # blocks of 10: every class
        folder = root / part / NAMES[d.target[i]]
        folder.mkdir(parents=True, exist_ok=True)
        image.save(folder / f"{i:04d}.png")
    return root


# ---------------------------------------------------------------------------------------------------------
# loading


def test_split_layout_rgb_and_class_names(tmp_path: Path) -> None:
    b = load_data("folder", root=make_folder(tmp_path / "png"), val_fraction=0.2)
    assert b.classes == tuple(sorted(NAMES))  # folder names, sorted as ImageFolder sorts them
    assert (b.in_chs, b.resolution, b.num_classes) == (3, 16, 10)
    assert b.x_train.dtype == torch.uint8 and b.raw_divisor == 255
    assert len(b.y_train) + len(b.y_val) == 240 and len(b.y_test) == 60
    # a test image is its file's pixels, C x H x W
    name = b.classes[int(b.y_test[0])]
    first = sorted((tmp_path / "png" / "test" / name).iterdir())[0]
    expected = torch.from_numpy(np.array(Image.open(first).convert("RGB"))).permute(2, 0, 1)
    test_of_class = b.x_test[b.y_test == b.y_test[0]]
    assert any(torch.equal(x, expected) for x in test_of_class)


def test_class_folders_alone_carve_a_stratified_test_split(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "png", split=False, rgb=False, n=200)
    b = load_data("folder", root=root, test_fraction=0.25)
    assert b.in_chs == 1  # every image greyscale: one channel
    counts = torch.bincount(b.y_test, minlength=10)
    per_class = torch.bincount(torch.cat((b.y_train, b.y_val, b.y_test)), minlength=10)
    assert torch.all((counts.float() - per_class.float() * 0.25).abs() <= 1)  # stratified
    clear_cache()
    assert torch.equal(load_data("folder", root=root, test_fraction=0.25).x_test, b.x_test)  # a fixed seed


def test_channels_key_forces_one_or_three(tmp_path: Path) -> None:
    rgb = make_folder(tmp_path / "rgb", n=60)
    assert load_data("folder", root=rgb, channels=1).in_chs == 1
    grey = make_folder(tmp_path / "grey", n=60, rgb=False)
    b = load_data("folder", root=grey, channels=3)
    assert b.in_chs == 3 and torch.equal(b.x_train[:, 0], b.x_train[:, 2])


def test_several_sizes_are_resized_to_the_resolution(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "png", n=60, sizes=(16, 24, 20))
    b = load_data("folder", root=root, resolution=12)
    assert b.x_train.shape[1:] == (3, 12, 12) and b.resolution == 12
    with pytest.raises(ConfigError, match=r"images of several sizes, e\.g\. .*\.png is 16x16 and .*\.png is 24x24: "
                                          r"set the study's `resolution`"):
        load_data("folder", root=root)


def test_second_load_reads_the_cache_not_the_images(tmp_path: Path, cache_dir: Path) -> None:
    root = make_folder(tmp_path / "png", n=60)
    first = load_data("folder", root=root)
    assert len(list(cache_dir.glob("*.npz"))) == 1
    # damage an image but keep its size and time: only a decode would notice
    victim = sorted((root / "train" / "one").iterdir())[0]
    st = victim.stat()
    victim.write_bytes(b"\0" * st.st_size)
    os.utime(victim, ns=(st.st_atime_ns, st.st_mtime_ns))
    clear_cache()
    assert torch.equal(load_data("folder", root=root).x_train, first.x_train)
    # a new modification time is a changed file: decoded again, and found broken
    os.utime(victim, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    clear_cache()
    with pytest.raises(ConfigError, match="not an image Pillow can read") as info:
        load_data("folder", root=root)
    assert str(victim) in str(info.value)


def test_arrays_npz_layouts_and_classes(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (50, 10, 10, 3), dtype=np.uint8)  # N x H x W x C
    y = np.arange(50) % 5
    np.savez(tmp_path / "d.npz", x_train=x[:40], y_train=y[:40], x_test=x[40:], y_test=y[40:],
             classes=np.array(["a", "b", "c", "d", "e"]))
    b = load_data("arrays", root=tmp_path / "d.npz")
    assert (b.in_chs, b.resolution, b.num_classes, b.classes) == (3, 10, 5, ("a", "b", "c", "d", "e"))
    assert b.x_test.dtype == torch.uint8 and torch.equal(b.x_test, torch.from_numpy(x[40:]).permute(0, 3, 1, 2))
    np.savez(tmp_path / "f.npz", x_train=rng.random((30, 6, 6), dtype=np.float32), y_train=np.arange(30) % 3,
             x_test=rng.random((9, 6, 6), dtype=np.float32), y_test=np.arange(9) % 3)
    f = load_data("arrays", root=tmp_path / "f.npz")
    assert (f.in_chs, f.raw_divisor, f.classes) == (1, 1.0, ("0", "1", "2"))


# ---------------------------------------------------------------------------------------------------------
# bad input: one clear error naming the file


def _truncate(root: Path) -> Path:
    victim = sorted((root / "train" / "three").iterdir())[0]
    victim.write_bytes(victim.read_bytes()[:60])
    return victim


def _not_an_image(root: Path) -> Path:
    victim = root / "train" / "three" / "notes.png"
    victim.write_text("these are my notes, not a picture")
    return victim


def _empty_class(root: Path) -> Path:
    victim = root / "train" / "ten"
    victim.mkdir()
    (root / "test" / "ten").mkdir()
    return victim


def _missing_in_test(root: Path) -> Path:
    victim = root / "train" / "ten"
    victim.mkdir()
    Image.new("RGB", (16, 16)).save(victim / "a.png")
    return root / "test"


@pytest.mark.parametrize(("damage", "match"), [
    (_truncate, "corrupt or truncated image"),
    (_not_an_image, "not an image Pillow can read"),
    (_empty_class, "class folder 'ten' has no images"),
    (_missing_in_test, r"class folder\(s\) \['ten'\] in train/ have none in test/"),
])
def test_bad_folder_names_the_file(tmp_path: Path, damage, match: str) -> None:
    root = make_folder(tmp_path / "png", n=60)
    victim = damage(root)
    with pytest.raises(ConfigError, match=match) as info:
        load_data("folder", root=root)
    assert str(victim) in str(info.value)


def test_one_class_only_and_files_without_an_image_extension(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "png", n=60, classes=2)
    (root / "train" / "one" / "README.txt").write_text("how I took the pictures")
    with pytest.warns(UserWarning, match=r"1 file\(s\) without an image extension skipped, e\.g\. .*README\.txt"):
        b = load_data("folder", root=root)
    assert b.num_classes == 2
    one = make_folder(tmp_path / "one", n=20, classes=1)
    with pytest.raises(ConfigError, match=r"found 1 class folder\(s\) \['zero'\]: a classifier needs at least 2"):
        load_data("folder", root=one)


@pytest.mark.parametrize(("arrays", "key", "match"), [
    ({"y_train": np.array([0, 1, 7, 1])}, "y_train", r"label 7 is outside 0 to 2 \(one per name in `classes`\)"),
    ({"y_test": np.array([0, 1])}, "y_test", "2 labels but 3 images in x_test"),
    ({"x_train": np.zeros((4, 5, 6), np.uint8)}, "x_train", "images must be square, got 5x6"),
    ({"x_test": None}, None, r"missing array\(s\) \['x_test'\]"),
])
def test_bad_arrays_name_the_file_and_key(tmp_path: Path, arrays: dict, key: str | None, match: str) -> None:
    base = {"x_train": np.zeros((4, 5, 5), np.uint8), "y_train": np.array([0, 1, 2, 1]),
            "x_test": np.zeros((3, 5, 5), np.uint8), "y_test": np.array([0, 1, 2]),
            "classes": np.array(["a", "b", "c"])}
    base.update(arrays)
    np.savez(tmp_path / "bad.npz", **{k: v for k, v in base.items() if v is not None})
    with pytest.raises(ConfigError, match=match) as info:
        load_data("arrays", root=tmp_path / "bad.npz")
    assert str(info.value).startswith(f"{tmp_path / 'bad.npz'}" + (f": {key}" if key else ""))


def test_a_dataset_too_big_for_memory_is_refused_before_decoding(tmp_path: Path, monkeypatch) -> None:
    root = make_folder(tmp_path / "png", n=60)
    # this machine has GiBs to spare; say it had 10 KiB (60 RGB 16x16 images need 45 KiB as uint8)
    monkeypatch.setattr(image_cache, "available_memory", lambda: 10 * 1024)
    with pytest.raises(ConfigError, match=r"60 images of 3 x 16 x 16 need 0\.0 GiB as uint8, more than half of the "
                                          r"0\.0 GiB of memory available: set a smaller `resolution`"):
        load_data("folder", root=root)


# ---------------------------------------------------------------------------------------------------------
# a search, a changed folder, an export, and the raw files classified without archsearch

CLASSIFY = WITHOUT_ARCHSEARCH + textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    import torch

    torch.set_num_threads(1)
    folder, test = Path(sys.argv[1]), Path(sys.argv[2])
    sys.path.insert(0, str(folder))
    import model
    net = model.load()
    right = total = 0
    for path in sorted(test.glob("*/*.png")):
        with torch.no_grad():
            name = model.CLASSES[net(model.read_image(path)).argmax(1).item()]
        right += name == path.parent.name
        total += 1
    print(f"{path.name}: {name}")
    print(json.dumps({"right": right, "total": total}))
    """
)


@pytest.mark.slow
def test_own_images_search_export_classify(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "my_images", n=400, sizes=(16, 24))  # RGB, two sizes
    (tmp_path / "tiny_space.yaml").write_text(yaml.safe_dump(TINY_SPACE, sort_keys=False))
    study = study_dict(name="mine", dataset={"name": "folder", "root": "my_images"}, resolution=16, n_trials=2,
                       training={"epochs": 4, "batch_size": 32, "lr": 0.1, "seed": 0}, budget={"max_macs": 400000})
    del study["dataset"]["options"]
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump(study, sort_keys=False))
    n = len(run(path, stream=None, progress=False).trials)
    printed = io.StringIO()
    [folder] = export(path, tmp_path / "out", stream=printed, progress=True)
    epochs = [line for line in printed.getvalue().splitlines() if line.startswith("  epoch ")]
    assert len(epochs) == 4 and epochs[-1].startswith("  epoch 4/4: val ") and epochs[-1].endswith("ETA 0 s")
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["classes"] == sorted(NAMES)
    assert "CLASSES = " in (folder / "model.py").read_text() and "eight, five, four" in (folder / "card.md").read_text()
    import onnx

    props = {p.key: p.value for p in onnx.load(str(folder / "model.onnx")).metadata_props}
    assert json.loads(props["classes"]) == sorted(NAMES)

    (tmp_path / "classify.py").write_text(CLASSIFY)
    proc = subprocess.run([sys.executable, str(tmp_path / "classify.py"), str(folder), str(root / "test")],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": ""})
    assert proc.returncode == 0, proc.stderr
    *lines, counts = proc.stdout.strip().splitlines()
    assert lines[-1].split(": ")[1] in NAMES  # a class name, not a number
    counts = json.loads(counts)
    assert counts["total"] == 80 and counts["right"] / counts["total"] == pytest.approx(metrics["test_accuracy"])

    # the folder changes on disk: the study refuses it, unless the user says to go on
    victim = sorted((root / "train" / "two").iterdir())[0]
    Image.new("RGB", (16, 16), (255, 0, 0)).save(victim)
    clear_cache()
    with pytest.raises(ConfigError, match=r"the data of study 'mine' changed since the study was made"):
        run(path, stream=None, progress=False)
    os.environ["ARCHSEARCH_ACCEPT_DATA_CHANGE"] = "1"
    try:
        assert len(run(path, stream=None, progress=False).trials) == n  # finished: nothing lost, nothing re-run
    finally:
        del os.environ["ARCHSEARCH_ACCEPT_DATA_CHANGE"]
    clear_cache()
    assert len(run(path, stream=None, progress=False).trials) == n  # the new data is the study's now


def test_custom_loader_beside_the_study_file_needs_no_pythonpath(tmp_path: Path) -> None:
    (tmp_path / "my_loader_beside.py").write_text(textwrap.dedent(
        """
        import numpy as np

        def load(root=None):
            rng = np.random.default_rng(0)
            x = rng.integers(0, 256, (40, 6, 6), dtype=np.uint8)
            y = np.arange(40) % 2
            return (x[:30], y[:30]), (x[30:], y[30:]), ["cat", "dog"]
        """))
    b = load_data("my_loader_beside:load", base_dir=tmp_path)
    assert b.classes == ("cat", "dog") and b.x_train.dtype == torch.uint8
    with pytest.raises(ConfigError, match=r"cannot import module 'no_such_loader_here'.*looked for on sys.path and "
                                          r"in the study file's folder"):
        load_data("no_such_loader_here:load", base_dir=tmp_path)
    assert "my_loader_beside" in sys.modules


def test_the_loader_example_in_docs_runs(tmp_path: Path) -> None:
    docs = (Path(__file__).resolve().parents[1] / "docs" / "data.md").read_text()
    section = docs[docs.index("## Your own loader"):]
    code = section[section.index("```python\n") + 10: section.index("```", section.index("```python\n") + 10)]
    (tmp_path / "my_loader_docs.py").write_text(code)
    b = load_data("my_loader_docs:load", base_dir=tmp_path, size=16)
    assert b.classes == ("cat", "dog") and (b.in_chs, b.resolution) == (3, 16) and len(b.y_test) == 20
