"""The `folder` and `arrays` datasets on real files: PNG folders made from scikit-learn's digits, real .npz files,
real searches and exports, and a fresh process without archsearch that classifies the PNG files themselves."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from conftest import TINY_SPACE, WITHOUT_ARCHSEARCH, study_dict
from PIL import Image
from sklearn.datasets import load_digits

from archsearch.config.assemble import load_config_data, print_notes
from archsearch.config.study_config import load_study_config
from archsearch.core.errors import ConfigError
from archsearch.data import image_cache
from archsearch.data.bundle import clear_cache, load_data
from archsearch.data.image_file import IMAGE_BACKGROUND, read_image
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
    (_truncate, r"1 of 60 image files cannot be read:\n  1 truncated or corrupt: "),
    (_not_an_image, r"1 of 61 image files cannot be read:\n  1 not an image Pillow can read: "),
    (_empty_class, "class folder 'ten' has no images"),
    (_missing_in_test, r"class folder\(s\) \['ten'\] in train/ have none in test/"),
])
def test_bad_folder_names_the_file(tmp_path: Path, damage, match: str) -> None:
    root = make_folder(tmp_path / "png", n=60)
    victim = damage(root)
    with pytest.raises(ConfigError, match=match) as info:
        load_data("folder", root=root)
    assert str(victim) in str(info.value)


def _damage_three_ways(root: Path) -> dict[str, list[Path]]:
    """Seven empty .jpg files, a text file named .png and a PNG cut in half (its header intact: only a decode sees
    it), in class folders of train/ and test/."""
    empty = [root / "train" / "one" / f"empty{i}.jpg" for i in range(7)]
    for path in empty:
        path.write_bytes(b"")
    text = root / "test" / "two" / "notes.png"
    text.write_text("these are my notes, not a picture")
    cut = sorted((root / "train" / "three").iterdir())[0]
    cut.write_bytes(cut.read_bytes()[: cut.stat().st_size // 2])
    return {"empty": empty, "text": [text], "cut": [cut]}


def test_every_bad_file_is_named_in_one_error(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "png", n=60)
    bad = _damage_three_ways(root)
    with pytest.raises(ConfigError) as info:
        load_data("folder", root=root)
    message = str(info.value)
    assert message.startswith(f"{root}: 9 of 68 image files cannot be read:\n")
    lines = message.splitlines()
    assert lines[1] == ("  7 empty (0 bytes): " + ", ".join(str(p) for p in sorted(bad["empty"])[:5])
                        + " and 2 more")
    assert lines[2] == f"  1 not an image Pillow can read: {bad['text'][0]}"
    assert lines[3].startswith(f"  1 truncated or corrupt: {bad['cut'][0]} (")
    assert "set `bad_files: skip` under `dataset:`" in lines[4] and len(lines) == 5


def test_bad_files_and_mixed_sizes_are_said_in_one_error(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "png", n=60, sizes=(16, 24))
    cut = _truncate(root)
    with pytest.raises(ConfigError, match=r"1 of 60 image files cannot be read:\n  1 truncated or corrupt: ") as info:
        load_data("folder", root=root)  # no resolution: the sizes are a second problem, said in the same error
    assert str(cut) in str(info.value)
    assert "\nAlso: images of several sizes, e.g. " in str(info.value)


def test_bad_files_skip_leaves_them_out_and_says_so(tmp_path: Path, cache_dir: Path) -> None:
    root = make_folder(tmp_path / "png", n=60)
    bad = _damage_three_ways(root)
    b = load_data("folder", root=root, bad_files="skip")
    assert len(b.y_train) + len(b.y_val) + len(b.y_test) == 59  # 60 digits, one of them cut
    assert sorted(path for path, _ in b.skipped_files) == sorted(map(str, [*bad["empty"], *bad["cut"], *bad["text"]]))
    reasons = dict(b.skipped_files)
    assert reasons[str(bad["text"][0])] == "not an image Pillow can read"
    assert reasons[str(bad["cut"][0])].startswith("truncated or corrupt (")
    note, few = b.notes  # the second: classes with few validation images (tests/datasets/test_data.py)
    assert "fewer than 10 validation images" in few
    assert note.startswith("9 bad image file(s) left out (bad_files: skip): 7 empty (0 bytes): ")
    assert "; 1 not an image Pillow can read: " in note and "; 1 truncated or corrupt: " in note
    # read back from the cache: the same images, the same files named
    clear_cache()
    again = load_data("folder", root=root, bad_files="skip")
    assert again.skipped_files == b.skipped_files and torch.equal(again.x_test, b.x_test)
    # a fixed file is decoded again; and `stop` does not read what `skip` cached
    Image.new("RGB", (16, 16), (9, 9, 9)).save(bad["text"][0], format="PNG")
    clear_cache()
    fixed = load_data("folder", root=root, bad_files="skip")
    assert len(fixed.skipped_files) == 8 and len(fixed.y_test) == len(b.y_test) + 1
    with pytest.raises(ConfigError, match="8 of 68 image files cannot be read"):
        load_data("folder", root=root)


def test_a_study_with_bad_files_skip_prints_its_notes(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "my_images", n=40)
    (root / "train" / "one" / "empty.png").write_bytes(b"")
    (tmp_path / "tiny_space.yaml").write_text(yaml.safe_dump(TINY_SPACE, sort_keys=False))
    study = study_dict(name="mine", dataset={"name": "folder", "root": "my_images", "bad_files": "skip"})
    del study["dataset"]["options"]
    (tmp_path / "mine.yaml").write_text(yaml.safe_dump(study, sort_keys=False))
    config = load_study_config(tmp_path / "mine.yaml")
    assert config.dataset.bad_files == "skip"
    _, data = load_config_data(config)
    assert data.skipped_files == ((str(root / "train" / "one" / "empty.png"), "empty (0 bytes)"),)
    printed = io.StringIO()
    print_notes(data, printed)
    assert printed.getvalue().startswith(f"note: 1 bad image file(s) left out (bad_files: skip): 1 empty (0 bytes): "
                                         f"{root / 'train' / 'one' / 'empty.png'}\nnote: ")


def _upright_and_stored() -> tuple[Image.Image, Image.Image, bytes]:
    """A 16x12 image that no turn or flip maps onto itself (a bright top-left pixel, a ramp), the same turned a
    quarter anticlockwise as a camera on its side stores it, and EXIF that says so (Orientation 6: turn it back)."""
    upright = Image.new("RGB", (16, 12), (0, 0, 0))
    for x in range(16):
        for y in range(12):
            upright.putpixel((x, y), (10 * x, 15 * y, 100))
    upright.putpixel((0, 0), (255, 255, 255))
    exif = Image.Exif()
    exif[0x0112] = 6
    return upright, upright.transpose(Image.Transpose.ROTATE_90), exif.tobytes()


def _chw(img: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.array(img)).permute(2, 0, 1)


def test_exif_orientation_is_applied_in_the_folder_and_its_size_is_the_upright_one(tmp_path: Path) -> None:
    upright, stored, exif = _upright_and_stored()
    root = tmp_path / "png"
    for name in ("a", "b"):
        (root / name).mkdir(parents=True)
        for i in range(3):
            upright.save(root / name / f"{i}.png")
    stored.save(root / "a" / "0.png", exif=exif)  # stored 12x16, upright 16x12: like the others
    assert read_image(root / "a" / "0.png").shape == (3, 12, 16)
    assert torch.equal(read_image(root / "a" / "0.png"), _chw(upright))
    # the header's size is the upright one: all images are 16x12 (not square), none of another size
    with pytest.raises(ConfigError, match=r"images of 16x12, not square: set the study's `resolution`"):
        load_data("folder", root=root, test_fraction=0.4)
    b = load_data("folder", root=root, test_fraction=0.4, resolution=12)
    expected = read_image(root / "a" / "1.png", "RGB", 12)  # an upright copy, centre-cropped the same way
    everything = torch.cat((b.x_train, b.x_val, b.x_test))
    assert all(torch.equal(x, expected) for x in everything)  # the turned one too


def test_transparent_pixels_are_laid_on_white(tmp_path: Path) -> None:
    rgba = Image.new("RGBA", (4, 4), (10, 20, 30, 255))
    rgba.putpixel((0, 0), (10, 20, 30, 0))  # transparent: white
    rgba.putpixel((1, 0), (0, 0, 0, 128))  # half: halfway to white
    rgba.save(tmp_path / "rgba.png")
    x = read_image(tmp_path / "rgba.png")
    assert IMAGE_BACKGROUND == 255
    assert x[:, 0, 0].tolist() == [255, 255, 255] and x[:, 1, 1].tolist() == [10, 20, 30]
    assert all(abs(v - 127) <= 1 for v in x[:, 0, 1].tolist())
    la = Image.new("LA", (4, 4), (40, 255))
    la.putpixel((0, 0), (40, 0))
    la.save(tmp_path / "la.png")
    assert read_image(tmp_path / "la.png", "L")[0, 0].tolist() == [255, 40, 40, 40]
    palette = Image.new("P", (4, 4), 1)
    palette.putpalette([0, 0, 0, 200, 0, 0] + [0] * 762)
    palette.putpixel((0, 0), 0)
    palette.save(tmp_path / "p.gif", transparency=0)  # colour 0 marked transparent, as a GIF does it
    assert read_image(tmp_path / "p.gif")[:, 0, :2].tolist() == [[255, 200], [255, 0], [255, 0]]
    # a folder of LA images stays greyscale: one channel, the transparent pixel white
    for name in ("a", "b"):
        (tmp_path / "la" / name).mkdir(parents=True)
        for i in range(2):
            la.save(tmp_path / "la" / name / f"{i}.png")
    b = load_data("folder", root=tmp_path / "la", test_fraction=0.5)
    assert b.in_chs == 1 and b.x_test[0, 0, 0].tolist() == [255, 40, 40, 40]


def test_one_class_only_and_files_without_an_image_extension(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "png", n=60, classes=2)
    (root / "train" / "one" / "README.txt").write_text("how I took the pictures")
    (root / "test" / "one" / "notes.txt").write_text("more")
    (root / "train" / "list.csv").write_text("beside the class folders")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # said in the data's notes, not as a Python warning
        b = load_data("folder", root=root)
    assert b.num_classes == 2 and b.skipped_files == ()
    assert b.notes[:2] == (f"1 file(s) outside the class folders left out, e.g. {root / 'train' / 'list.csv'}",
                           f"2 file(s) without an image extension left out, e.g. "
                           f"{root / 'train' / 'one' / 'README.txt'}")
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
                          cwd=tmp_path, capture_output=True, text=True, timeout=900,
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
    # finished: nothing lost, nothing re-run
    assert len(run(path, stream=None, progress=False, accept_data_change=True).trials) == n
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
    docs = (Path(__file__).resolve().parents[2] / "docs" / "data.md").read_text()
    section = docs[docs.index("## Your own loader"):]
    code = section[section.index("```python\n") + 10: section.index("```", section.index("```python\n") + 10)]
    (tmp_path / "my_loader_docs.py").write_text(code)
    b = load_data("my_loader_docs:load", base_dir=tmp_path, size=16)
    assert b.classes == ("cat", "dog") and (b.in_chs, b.resolution) == (3, 16) and len(b.y_test) == 20
