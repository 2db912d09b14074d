"""An export carries its input preprocessing: fed raw test images as a user loads them (scikit-learn's digits as
floats 0-16, Fashion-MNIST's IDX bytes), ``model.py``, ``model.pt2`` and ``model.onnx`` reach the test accuracy
that ``metrics.json`` records, in a fresh process that cannot import archsearch. Both studies pick a resolution
multiplier, so the resize travels too. Real one-trial searches in real SQLite files; torch on one thread. And
``model.py`` on image files: read as the ``folder`` dataset reads them, and ``python model.py FILE ...`` going on
past a file it cannot read.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import os
import runpy
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from conftest import TINY_SPACE, WITHOUT_ARCHSEARCH, study_dict
from PIL import Image

from archsearch import Arch, Stage, Stem, build
from archsearch.core.errors import ConfigError
from archsearch.data.bundle import load_data
from archsearch.data.image_file import IMAGE_BACKGROUND, read_image
from archsearch.data.preprocess import Preprocess, Preprocessing, WithPreprocessing
from archsearch.export.codegen import model_source
from archsearch.export.folder import export, load, save
from archsearch.search.study import run

ONE_THREAD_ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONPATH": ""}
FASHION = Path("/usr/share/datasets/fashion-mnist")

# what a user writes to get the raw test images, in a process without archsearch
USER = WITHOUT_ARCHSEARCH + textwrap.dedent(
    """
    import gzip, importlib, json, sys
    from pathlib import Path
    import numpy as np
    import torch

    torch.set_num_threads(1)
    folder, dataset = Path(sys.argv[1]), sys.argv[2]
    if dataset == "digits":  # the 20% stratified test split of archsearch's digits (README)
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split
        digits = load_digits()
        _, test = train_test_split(np.arange(len(digits.target)), test_size=0.2, stratify=digits.target,
                                   random_state=0)
        test = np.sort(test)
        images, labels = digits.images[test][:, None], digits.target[test]  # float64, 0 to 16
    else:  # the IDX files' bytes, as they are stored
        def idx(name):
            path = Path(sys.argv[3]) / name
            raw = gzip.open(path).read() if path.suffix == ".gz" else path.read_bytes()
            ndim = raw[3]
            dims = np.frombuffer(raw, ">u4", ndim, 4)
            return np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim).reshape(dims)
        images, labels = idx(sys.argv[4])[:, None], idx(sys.argv[5])
    x, y = torch.from_numpy(np.array(images)), torch.from_numpy(np.array(labels, dtype=np.int64))

    sys.path.insert(0, str(folder))
    import model
    correct = {}
    with torch.no_grad():
        correct["model.py"] = int((model.load()(x).argmax(1) == y).sum())  # any real dtype: uint8 as stored
        program = torch.export.load(folder / "model.pt2").module()
        correct["model.pt2"] = int((program(x.float()).argmax(1) == y).sum())
    try:
        import onnxruntime
    except ImportError:
        onnxruntime = None
    if onnxruntime is not None and (folder / "model.onnx").exists():
        session = onnxruntime.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
        logits = torch.from_numpy(session.run(None, {"x": x.float().numpy()})[0])
        correct["model.onnx"] = int((logits.argmax(1) == y).sum())
    print(json.dumps({"n": len(y), "correct": correct, "archsearch": "archsearch" in sys.modules}))
    """
)


def _idx_names() -> list[str] | None:
    names = []
    for base in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        found = [n for n in (base, f"{base}.gz") if (FASHION / n).is_file()]
        if not found:
            return None
        names.append(found[0])
    return names


CASES = {
    # digits 8x8 at resolution_mult 1.5: raw floats 0-16 resized up to 12x12
    "digits": {"dataset": {"name": "digits", "options": {}}, "resolution_mult": [1.5], "subset": None, "epochs": 2},
    # Fashion-MNIST at 0.5: uint8 0-255 resized down to 14x14, two epochs on 2,000 images
    "fashion-mnist": {"dataset": {"name": "fashion-mnist", "options": {}}, "resolution_mult": [0.5],
                      "subset": 2000, "epochs": 2},
}


@pytest.mark.slow  # a search, an export and a subprocess
@pytest.mark.parametrize("name", list(CASES))
def test_raw_test_images_reach_the_recorded_test_accuracy(tmp_path: Path, name: str) -> None:
    torch.set_num_threads(1)
    case = CASES[name]
    idx = _idx_names()
    if name == "fashion-mnist" and idx is None:
        pytest.skip(f"Fashion-MNIST IDX files not in {FASHION} (apt-get install dataset-fashion-mnist)")
    space = {**TINY_SPACE, "resolution_mult": case["resolution_mult"]}
    study = study_dict(name=name, dataset=case["dataset"], n_trials=1,
                       training={"epochs": case["epochs"], "train_subset": case["subset"]}, budget={"max_macs": 10**7})
    (tmp_path / "tiny_space.yaml").write_text(yaml.safe_dump(space, sort_keys=False))
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(study, sort_keys=False))
    run(tmp_path / "s.yaml", stream=None, progress=False)
    out = tmp_path / "export"
    export(tmp_path / "s.yaml", out, stream=None)

    m = json.loads((out / "metrics.json").read_text())
    p = m["preprocessing"]
    source = 8 if name == "digits" else 28
    assert p["input_shape"] == [1, source, source]
    assert p["resize"]["from"] == source and p["resize"]["to"] == round(source * case["resolution_mult"][0])
    assert p["divisor"] == (16.0 if name == "digits" else 255.0)
    assert len(p["mean"]) == len(p["std"]) == 1 and 0 < p["mean"][0] < 1 and 0 < p["std"][0] < 1
    card = (out / "card.md").read_text()
    assert p["formula"] in card and "raw images" in card

    args = [str(out), name] + ([str(FASHION), *idx] if name == "fashion-mnist" else [])
    (tmp_path / "user.py").write_text(USER)
    proc = subprocess.run([sys.executable, str(tmp_path / "user.py"), *args], cwd=tmp_path, env=ONE_THREAD_ENV,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["archsearch"] is False
    assert got["n"] == m["dataset"]["n_test"]
    recorded = round(m["test_accuracy"] * got["n"])
    assert recorded > got["n"] / 10  # better than chance: a wrong preprocessing shows
    formats = {"model.py", "model.pt2"} | ({"model.onnx"} if "model.onnx" in m["files"] else set())
    assert set(got["correct"]) == formats
    for fmt, correct in got["correct"].items():
        assert correct == recorded, (fmt, correct, recorded)


@pytest.mark.slow  # an export (save)
def test_load_gives_the_raw_image_network_and_the_bare_one(tmp_path: Path) -> None:
    data = load_data("digits")
    arch = Arch(1, 12, 10, Stem("conv", 8), (Stage("dwsep", 16, stride=2),))
    torch.manual_seed(0)
    net = build(arch).eval()
    folder = save(net, tmp_path / "e", preprocessing=Preprocessing.of_data(data, 12), onnx=False)
    full, bare = load(folder), load(folder, bare=True)
    assert isinstance(full, WithPreprocessing) and type(bare) is type(net)
    assert set(torch.load(folder / "weights.pt", weights_only=True)) == set(net.state_dict())  # the bare weights
    # the raw digits of the first test images, as archsearch's data made the test tensors from them
    raw = data.x_test[:5]  # stored as they came: the digits' counts, 0 to 16
    with torch.no_grad():
        expected = net(data.resized(12).inputs("test")[:5])
        assert (full(raw) - expected).abs().max() < 1e-4
        assert (bare(data.resized(12).inputs("test")[:5]) - expected).abs().max() == 0
    sys.path.insert(0, str(folder))
    try:
        import model  # noqa: PLC0415  (the generated file, as a user imports it)

        assert model.INPUT_SHAPE == (1, 8, 8) and model.NET_INPUT_SHAPE == (1, 12, 12)
        assert model.PREPROCESSING == {"divisor": 16.0, "mean": data.mean, "std": data.std, "size": 12}
        with torch.no_grad():
            assert torch.equal(model.load()(raw), full(raw))
            assert torch.equal(model.load(bare=True)(expected.new_zeros(1, 1, 12, 12)),
                               bare(expected.new_zeros(1, 1, 12, 12)))
    finally:
        sys.path.remove(str(folder))
        sys.modules.pop("model", None)


@pytest.mark.slow  # an export (save)
def test_a_plain_save_has_no_preprocessing(tmp_path: Path) -> None:
    arch = Arch(1, 8, 4, Stem("conv", 8), (Stage("dwsep", 16),))
    folder = save(build(arch).eval(), tmp_path / "e", onnx=False)
    m = json.loads((folder / "metrics.json").read_text())
    assert "preprocessing" not in m and "No preprocessing was recorded" in (folder / "card.md").read_text()
    assert type(load(folder)) is type(load(folder, bare=True))


def test_raw_formats_of_each_dataset(tmp_path: Path) -> None:
    digits = load_data("digits")
    assert (digits.raw_divisor, digits.raw_resolution) == (16.0, 8) and "0 to 16" in digits.raw_format
    assert digits.resized(12).raw_resolution == 8  # the dataset's own resolution survives a resize
    synthetic = load_data("synthetic")
    assert synthetic.raw_divisor == 1.0

    module = tmp_path / "rawdata.py"
    module.write_text(textwrap.dedent(
        """
        import numpy as np

        def as_bytes():
            x = np.arange(20 * 16, dtype=np.uint8).reshape(20, 1, 4, 4)
            return (x, np.arange(20) % 2), (x[:4], np.arange(4) % 2)

        def as_floats():
            x = np.linspace(-1, 1, 20 * 16).reshape(20, 1, 4, 4)
            return (x, np.arange(20) % 2), (x[:4], np.arange(4) % 2)

        def mixed():
            x = np.arange(20 * 16, dtype=np.uint8).reshape(20, 1, 4, 4)
            return (x, np.arange(20) % 2), (x[:4].astype(np.float32), np.arange(4) % 2)
        """
    ))
    sys.path.insert(0, str(tmp_path))
    try:
        as_bytes = load_data("rawdata:as_bytes")
        assert as_bytes.raw_divisor == 255.0 and "uint8, 0 to 255" in as_bytes.raw_format
        as_floats = load_data("rawdata:as_floats")
        assert as_floats.raw_divisor == 1.0 and "float64, used as given" in as_floats.raw_format
        mixed = load_data("rawdata:mixed")  # the training images' format is the one an export expects
        assert mixed.raw_divisor == 255.0 and mixed.raw_format.endswith("(its test images: float32)")
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("rawdata", None)


def test_preprocess_matches_the_data_pipeline() -> None:
    data = load_data("digits")
    pre = Preprocess(data.raw_divisor, data.mean, data.std, size=12)
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    _, test = train_test_split(np.arange(len(digits.target)), test_size=0.2, stratify=digits.target, random_state=0)
    raw = torch.from_numpy(digits.images[np.sort(test)][:, None])
    assert (pre(raw) - data.resized(12).inputs("test")).abs().max() < 1e-5


@pytest.mark.slow  # an export (save)
def test_a_damaged_preprocessing_record_names_the_file(tmp_path: Path) -> None:
    arch = Arch(1, 8, 4, Stem("conv", 8), (Stage("dwsep", 16),))
    folder = save(build(arch).eval(), tmp_path / "e", onnx=False,
                  preprocessing=Preprocessing("floats", 1.0, (0.0,), (1.0,), 8, 8))
    m = json.loads((folder / "metrics.json").read_text())
    del m["preprocessing"]["divisor"]
    (folder / "metrics.json").write_text(json.dumps(m))
    with pytest.raises(ConfigError, match=r"metrics\.json: preprocessing: bad preprocessing record \(KeyError"):
        load(folder)
    assert type(load(folder, bare=True)).__name__ == "Net"


# ---------------------------------------------------------------------------------------------------------
# model.py and image files: read as the training images were, and `python model.py FILE ...`

IMAGES = Preprocessing(raw="8-bit pixels", divisor=255.0, mean=(0.5,) * 3, std=(0.25,) * 3, source_resolution=8,
                       resolution=8)


def _model_folder(folder: Path) -> Path:
    """model.py (taking 8-bit RGB images of 8x8) and the weights of a network with random weights: what an
    export writes for them, without the retrain and the other formats."""
    arch = Arch(3, 8, 3, Stem("conv", 8), (Stage("dwsep", 16),))
    torch.manual_seed(0)
    folder.mkdir()
    (folder / "model.py").write_text(model_source(arch, IMAGES, ["sneaker", "sandal", "boot"]))
    torch.save(build(arch).state_dict(), folder / "weights.pt")
    return folder


def _import_model(folder: Path) -> Any:
    spec = importlib.util.spec_from_file_location("model_under_test", folder / "model.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the file runs
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[spec.name]
    return module


def test_model_py_reads_an_image_file_as_the_folder_dataset_does(tmp_path: Path) -> None:
    # a photo a camera stored on its side (EXIF orientation 6), with a transparent corner
    upright = Image.new("RGBA", (8, 12), (30, 60, 90, 255))
    upright.putpixel((0, 0), (0, 0, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6
    upright.transpose(Image.Transpose.ROTATE_90).save(tmp_path / "photo.png", exif=exif.tobytes())
    model = _import_model(_model_folder(tmp_path / "export"))
    x = model.read_image(tmp_path / "photo.png")
    assert model.IMAGE_BACKGROUND == IMAGE_BACKGROUND
    assert torch.equal(x[0], read_image(tmp_path / "photo.png", "RGB", 8))  # the folder dataset's reading
    # upright (8 wide, 12 high, centre 8x8 kept) and the transparent corner white, on the top row's first pixel
    expected = read_image(tmp_path / "photo.png", "RGB", None)
    assert expected.shape == (3, 12, 8) and expected[:, 0, 0].tolist() == [255, 255, 255]
    assert torch.equal(x[0], expected[:, 2:10, :])


def _run_model_py(folder: Path, argv: list[str]) -> tuple[int, str]:
    """``python model.py ARGV...`` in this process: its exit status and what it printed."""
    printed = io.StringIO()
    old_argv = sys.argv
    sys.argv = [str(folder / "model.py"), *argv]
    try:
        with contextlib.redirect_stdout(printed):
            runpy.run_path(str(folder / "model.py"), run_name="__main__")
        status = 0
    except SystemExit as e:
        status = int(e.code or 0)
    finally:
        sys.argv = old_argv
    return status, printed.getvalue()


def _good_and_bad_files(folder: Path) -> list[str]:
    folder.mkdir()
    Image.new("RGB", (8, 8), (200, 10, 10)).save(folder / "a.png")
    (folder / "b.png").write_text("not a picture")
    (folder / "c.jpg").write_bytes(b"")
    Image.new("L", (20, 10), 40).save(folder / "d.png")  # greyscale, another size: converted and resized
    return [str(folder / n) for n in ("a.png", "b.png", "c.jpg", "d.png", "missing.png")]


def test_model_py_command_goes_on_past_a_bad_file_and_exits_1(tmp_path: Path) -> None:
    folder = _model_folder(tmp_path / "export")
    files = _good_and_bad_files(tmp_path / "images")
    status, printed = _run_model_py(folder, files)
    lines = printed.splitlines()
    assert status == 1 and len(lines) == 5, printed
    model = _import_model(folder)
    net = model.load()
    for line, path in zip(lines, files, strict=True):
        assert line.startswith(f"{path}: ")
    name, probs = model.classify(files[0], net)
    assert set(probs) == {"sneaker", "sandal", "boot"} and abs(sum(probs.values()) - 1) < 1e-5
    assert name == max(probs, key=probs.get)
    top = sorted(probs.items(), key=lambda item: -item[1])
    assert lines[0] == f"{files[0]}: " + ", ".join(f"{n} {p:.2f}" for n, p in top)
    assert lines[1] == f"{files[1]}: cannot read: not an image Pillow can read"
    assert lines[2] == f"{files[2]}: cannot read: empty (0 bytes)"
    assert lines[3].startswith(f"{files[3]}: ") and "cannot read" not in lines[3]
    assert lines[4] == f"{files[4]}: cannot read: No such file or directory"
    assert _run_model_py(folder, files[:1]) == (0, lines[0] + "\n")
    status, printed = _run_model_py(folder, [])  # no files: one pass on zeros, as before
    assert status == 0 and printed.endswith(": logits shape (1, 3)\n")


@pytest.mark.slow
def test_python_model_py_prints_no_traceback(tmp_path: Path) -> None:
    folder = _model_folder(tmp_path / "export")
    files = _good_and_bad_files(tmp_path / "images")
    proc = subprocess.run([sys.executable, str(folder / "model.py"), *files], cwd=tmp_path, env=ONE_THREAD_ENV,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 1 and proc.stderr == "", proc.stderr
    assert [line.split(": ")[1] for line in proc.stdout.splitlines()] == [
        line.split(": ")[1] for line in _run_model_py(folder, files)[1].splitlines()]
