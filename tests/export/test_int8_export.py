"""The int8 export (``--int8``): model.int8.onnx made from the retrained network, measured beside model.onnx,
and run where only onnxruntime, numpy and Pillow are installed, on the raw test images."""

from __future__ import annotations

import gzip
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
from PIL import Image

from archsearch.config.recipe import TrainConfig
from archsearch.config.study_config import load_study_config, study_config_from_dict
from archsearch.data.bundle import load_data
from archsearch.data.preprocess import Preprocessing
from archsearch.export import export, save
from archsearch.export.card import int8_advice, int8_budget_line, model_card
from archsearch.export.metrics import ExportMetrics, Int8Metrics
from archsearch.export.quantized import INT8_FILE, Int8Job, int8_budget
from archsearch.network.build import build
from archsearch.search.study import run
from archsearch.space.baselines import fit_to_budget
from archsearch.training.qat import WEIGHT_MAX, fold_batch_norms, qat_finetune
from archsearch.training.train import train

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

ROOT = Path(__file__).resolve().parents[2]
FASHION = Path("/usr/share/datasets/fashion-mnist")
CLASSES = {"ankle-boot": 9, "bag": 8, "sneaker": 7, "trouser": 1}  # folder name: Fashion-MNIST label
ONLY = ("onnxruntime", "numpy", "numpy.libs", "PIL", "pillow.libs")  # what the user's venv holds


def _idx(name: str) -> np.ndarray:
    raw = gzip.open(FASHION / f"{name}.gz").read()
    dims = np.frombuffer(raw, ">u4", raw[3], 4)
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * raw[3]).reshape(dims)


def _make_folder(root: Path, n_train: int, n_test: int) -> None:
    for part, prefix, n in (("train", "train", n_train), ("test", "t10k", n_test)):
        x, y = _idx(f"{prefix}-images-idx3-ubyte"), _idx(f"{prefix}-labels-idx1-ubyte")
        for name, label in CLASSES.items():
            folder = root / part / name
            folder.mkdir(parents=True)
            for i, j in enumerate(np.flatnonzero(y == label)[:n]):
                Image.fromarray(x[j]).save(folder / f"{i:04d}.png")


def _user_env(tmp: Path) -> Path:
    """A folder holding only onnxruntime, numpy and Pillow (links into this venv), for ``python -S``."""
    import numpy

    site = Path(numpy.__file__).resolve().parents[1]
    lib = tmp / "user-lib"
    lib.mkdir()
    for name in ONLY:
        if (site / name).exists():
            (lib / name).symlink_to(site / name)
    return lib


USER_SCRIPT = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    sys.path.insert(0, sys.argv[1])
    for absent in ("torch", "archsearch"):
        try:
            __import__(absent)
        except ImportError:
            pass
        else:
            raise SystemExit(f"{absent} is importable: not a user's onnxruntime-only environment")
    import numpy as np, onnxruntime as ort
    from PIL import Image

    session = ort.InferenceSession(sys.argv[2], providers=["CPUExecutionProvider"])
    classes = json.loads(session.get_modelmeta().custom_metadata_map["classes"])
    right = total = 0
    for label, name in enumerate(classes):
        for file in sorted(Path(sys.argv[3], name).iterdir()):
            x = np.asarray(Image.open(file), dtype=np.float32)[None, None]  # raw pixels, as model.onnx takes them
            right += int(session.run(None, {"x": x})[0].argmax() == label)
            total += 1
    print(json.dumps({"accuracy": right / total, "images": total}))
""")


@pytest.mark.slow
@pytest.mark.skipif(not FASHION.is_dir(), reason=f"{FASHION} absent (apt-get install dataset-fashion-mnist)")
def test_an_int8_export_classifies_raw_images_with_onnxruntime_alone(tmp_path: Path) -> None:
    _make_folder(tmp_path / "images", n_train=150, n_test=100)
    study = {
        "name": "int8", "space": str(ROOT / "search_spaces" / "mixed.yaml"),
        "dataset": {"name": "folder", "root": "images"},
        "budget": {"max_macs": 1000000},  # a MobileNet of 4 to 64 channels: a thinner one moves 2 points either way
        "resolution": 14, "training": {"epochs": 12, "batch_size": 32, "lr": 0.05, "augment": "none"},
        "n_trials": 1, "enqueue_baselines": True, "device": "cpu", "pruner": {"type": "none"},
        "export": {"int8": "ptq", "calibration_images": 64},
    }
    path = tmp_path / "int8.yaml"
    path.write_text(yaml.safe_dump(study))
    os.environ.setdefault("ARCHSEARCH_CACHE_DIR", str(tmp_path / "cache"))
    config = load_study_config(path)
    run(config, stream=None, progress=False)
    (folder,) = export(config, tmp_path / "out", stream=None)  # int8 from the study's export section

    metrics = ExportMetrics.from_json(json.loads((folder / "metrics.json").read_text()))
    int8 = metrics.int8
    assert int8 is not None and int8.method == "ptq" and int8.calibration_images == 64
    assert INT8_FILE in (metrics.files or []) and (folder / INT8_FILE).stat().st_size == int8.file_bytes
    assert int8.float_test_accuracy == pytest.approx(metrics.test_accuracy)  # model.onnx as the network scored
    lib = _user_env(tmp_path)
    script = tmp_path / "classify.py"
    script.write_text(USER_SCRIPT)
    got = {}
    for name in ("model.onnx", INT8_FILE):
        done = subprocess.run([sys.executable, "-S", str(script), str(lib), str(folder / name),
                               str(tmp_path / "images" / "test")], capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        got[name] = json.loads(done.stdout)
    assert got[INT8_FILE]["images"] == 400
    assert got[INT8_FILE]["accuracy"] == pytest.approx(int8.test_accuracy)  # what metrics.json claims
    assert got["model.onnx"]["accuracy"] == pytest.approx(int8.float_test_accuracy)
    assert abs(got[INT8_FILE]["accuracy"] - got["model.onnx"]["accuracy"]) <= 0.01  # within 1 point
    card = (folder / "card.md").read_text()
    assert f"## Int8 model (`{INT8_FILE}`)" in card and f"{100 * int8.test_accuracy:.2f}%" in card

    # --int8 qat: the fine-tuned network's file, calibrated by the min and max its fine-tune simulated
    (tuned,) = export(config, tmp_path / "qat", stream=None, int8="qat", qat_epochs=1)
    qat = ExportMetrics.from_json(json.loads((tuned / "metrics.json").read_text())).int8
    assert qat is not None and (qat.method, qat.qat_epochs, qat.calibration) == ("qat", 1, "min and max")
    assert qat.qat_val_accuracy is not None and qat.float_test_accuracy == pytest.approx(int8.float_test_accuracy)
    assert abs(qat.test_accuracy - qat.float_test_accuracy) <= 0.01


def _trained_digits(family: str) -> tuple[torch.nn.Module, object]:
    data = load_data("digits", seed=0)
    arch = fit_to_budget(family, in_chs=1, resolution=8, num_classes=10, max_macs=2e5)
    torch.manual_seed(0)
    net = build(arch)
    train(net, data.x_train, data.y_train, data.x_val, data.y_val, TrainConfig(epochs=3, batch_size=32, seed=0),
          device=torch.device("cpu"), preprocess=data.preprocess())
    return net.eval(), data


@pytest.mark.slow
def test_save_measures_the_int8_file_and_its_weight_bytes_match_the_int8_model_size(tmp_path: Path) -> None:
    net, data = _trained_digits("mobilenet")
    job = Int8Job(data.x_train[:100], data.x_test, data.y_test)
    folder = save(net, tmp_path / "out", preprocessing=Preprocessing.of_data(data, 8), classes=data.classes,
                  int8=job)
    int8 = ExportMetrics.from_json(json.loads((folder / "metrics.json").read_text())).int8
    assert int8 is not None and int8.test_accuracy is not None and int8.float_test_accuracy is not None
    assert int8.drop_points == pytest.approx(100 * (int8.float_test_accuracy - int8.test_accuracy))
    assert 0 < int8.latency_ms and 0 < int8.float_latency_ms
    # each convolution's and linear layer's weight is held as int8, one byte an element: the model size at int8
    weights = sum(m.weight.numel() for m in net.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)))
    assert int8.weight_bytes is not None and int8.weight_bytes["int8"] == weights
    assert int8.file_bytes == (folder / INT8_FILE).stat().st_size < int8.float_file_bytes

    import onnxruntime

    session = onnxruntime.InferenceSession(str(folder / INT8_FILE), providers=["CPUExecutionProvider"])
    meta = session.get_modelmeta().custom_metadata_map
    figures = json.loads(meta["archsearch.int8"])
    assert figures["test_accuracy"] == pytest.approx(int8.test_accuracy)
    assert figures["float_test_accuracy"] == pytest.approx(int8.float_test_accuracy)
    assert figures["latency_ms"] == pytest.approx(int8.latency_ms)
    assert int(meta["archsearch.int8_file_bytes"]) == int8.file_bytes
    assert json.loads(meta["classes"]) == list(data.classes)


@pytest.mark.slow
def test_folding_batch_norms_keeps_the_output_and_qat_leaves_weights_on_the_int8_grid() -> None:
    net, data = _trained_digits("shufflenet")
    x = data.preprocess()(data.x_val[:64])
    with torch.no_grad():
        folded = fold_batch_norms(net)
        torch.testing.assert_close(folded(x), net(x), atol=1e-4, rtol=1e-4)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())  # ShuffleNet: conv then BN
    tuned, result = qat_finetune(net, data.x_train, data.y_train, data.x_val, data.y_val,
                                 TrainConfig(epochs=3, batch_size=32, seed=0), epochs=1, device=torch.device("cpu"),
                                 preprocess=data.preprocess())
    assert result.val_accuracy is not None and result.epochs_done == 1
    for m in tuned.modules():
        if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
            w = m.weight.detach().flatten(1)
            steps = w / (w.abs().amax(1, keepdim=True) / WEIGHT_MAX)
            torch.testing.assert_close(steps, steps.round(), atol=1e-3, rtol=0)


def test_the_card_names_a_drop_over_one_point_with_what_to_try() -> None:
    small = Int8Metrics.of({"method": "ptq", "drop_points": 0.4, "test_accuracy": 0.9, "float_test_accuracy": 0.904})
    assert int8_advice(small) is None
    big = small.replace(drop_points=2.5, test_accuracy=0.879)
    assert "--int8 qat" in (int8_advice(big) or "")
    assert "more fine-tuning epochs" in (int8_advice(big.replace(method="qat")) or "")
    arch = fit_to_budget("effnet", in_chs=1, resolution=8, num_classes=10, max_macs=2e5)
    card = model_card(arch, ExportMetrics.of({"macs": 1000, "params": 100, "peak_activation_bytes": 400,
                                              "int8": big}))
    assert "**Warning: the int8 model loses 2.50 points of test accuracy" in card


def test_an_int8_job_says_what_it_needs() -> None:
    with pytest.raises(ValueError, match="'ptq' or 'qat'"):
        Int8Job(torch.zeros(1, 1, 8, 8), method="int4")
    with pytest.raises(ValueError, match="fine-tuned network"):
        Int8Job(torch.zeros(1, 1, 8, 8), method="qat")
    with pytest.raises(ValueError, match="at least one image"):
        Int8Job(torch.zeros(0, 1, 8, 8))


def test_the_int8_limits_are_checked_against_the_file_as_measured() -> None:
    config = study_config_from_dict({
        "name": "mcu", "space": str(ROOT / "search_spaces" / "mixed.yaml"),
        "budget": {"max_model_kb": 16, "model_precision": "int8", "max_peak_activation_kb": 8,
                   "activation_precision": "int8", "max_latency_ms": 0.5,
                   "latency": {"runtime": "onnxruntime-int8", "threads": 1, "batch": 1}},
    })
    measured = Int8Metrics.of({"weight_bytes": {"int8": 20 * 1024, "total": 23 * 1024}, "latency_ms": 0.25,
                               "latency_threads": 1, "latency_batch": 1})
    checked = int8_budget(config, measured, peak_activation_bytes=4 * 6 * 1024)  # float32 bytes: 6 KiB at int8
    assert checked["max_model_kb"] == pytest.approx({"limit": 16, "value": 20.0, "within": False,
                                                     "what": "KiB of int8 weights in the file"})
    assert checked["max_latency_ms"]["within"] and checked["max_latency_ms"]["value"] == 0.25
    assert checked["max_peak_activation_kb"]["value"] == 6.0 and checked["max_peak_activation_kb"]["within"]
    line = int8_budget_line(measured.replace(budget=checked)) or ""
    assert "max_model_kb 20 > 16 (KiB of int8 weights in the file): OVER" in line
    float_only = study_config_from_dict({"name": "srv", "space": str(ROOT / "search_spaces" / "mixed.yaml"),
                                         "budget": {"max_model_kb": 16, "max_latency_ms": 0.5}})
    assert int8_budget(float_only, measured, 4096) == {}  # float32 limits: the float files speak for them
