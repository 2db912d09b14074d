"""A user's own imbalanced folder end to end: one class is 5% of the images, the study is scored by balanced
accuracy; the export's metrics.json and card show the confusion matrix and per-class recall, equal to what the
exported model.py predicts for the raw test files (computed here by scikit-learn), and the report draws it."""

from __future__ import annotations

import gzip
import importlib.util
import io
import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image
from sklearn.metrics import confusion_matrix, recall_score

from archsearch.config.study_config import load_study_config
from archsearch.export import export
from archsearch.report.study_report import report
from archsearch.search.study import run
from archsearch.study.trial_record import TrialRecord

ROOT = Path(__file__).resolve().parents[2]
FASHION = Path("/usr/share/datasets/fashion-mnist")
CLASSES = {"ankle-boot": 9, "bag": 8, "sneaker": 7, "trouser": 1}  # folder name: Fashion-MNIST label
COUNTS = {"ankle-boot": (100, 20), "bag": (40, 8), "sneaker": (20, 4), "trouser": (8, 4)}  # train, test: 5% trouser

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not FASHION.is_dir(),
                                                   reason=f"{FASHION} absent (apt-get install dataset-fashion-mnist)")]


def _idx(name: str) -> np.ndarray:
    raw = gzip.open(FASHION / f"{name}.gz").read()
    dims = np.frombuffer(raw, ">u4", raw[3], 4)
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * raw[3]).reshape(dims)


def _make_folder(root: Path) -> None:
    for part, prefix, which in (("train", "train", 0), ("test", "t10k", 1)):
        x, y = _idx(f"{prefix}-images-idx3-ubyte"), _idx(f"{prefix}-labels-idx1-ubyte")
        for name, label in CLASSES.items():
            folder = root / part / name
            folder.mkdir(parents=True)
            for i, j in enumerate(np.flatnonzero(y == label)[: COUNTS[name][which]]):
                Image.fromarray(x[j]).save(folder / f"{i:04d}.png")


def test_an_imbalanced_folder_scored_by_balanced_accuracy_exports_per_class_results(tmp_path: Path) -> None:
    _make_folder(tmp_path / "images")
    (tmp_path / "images" / "train" / "bag" / "broken.jpg").write_bytes(b"")  # skipped, and said so
    study = {
        "name": "rare", "space": str(ROOT / "search_spaces" / "mixed.yaml"),
        "dataset": {"name": "folder", "root": "images", "bad_files": "skip"},
        "budget": {"max_macs": 300000},
        "training": {"steps": 40, "batch_size": 16, "class_weight": "balanced"},
        "objective": {"score": "balanced_accuracy"},
        "n_trials": 2, "enqueue_baselines": False, "device": "cpu", "pruner": {"type": "none"},
    }
    path = tmp_path / "rare.yaml"
    path.write_text(yaml.safe_dump(study))
    os.environ.setdefault("ARCHSEARCH_CACHE_DIR", str(tmp_path / "cache"))
    config = load_study_config(path)
    printed = io.StringIO()
    searched = run(config, stream=printed, progress=False)
    said = printed.getvalue()
    assert "note: 1 bad image file(s) left out (bad_files: skip): 1 empty (0 bytes): " in said
    assert said.rstrip().endswith("1 unreadable image file(s) left out (dataset.bad_files: skip; named when the "
                                  "search started)")
    assert "(the pick) on the validation split, per class" in said
    for t in searched.trials:  # the search's value is the validation split's balanced accuracy
        record = TrialRecord.of(t)
        metrics = record.class_metrics()
        assert metrics is not None and metrics.classes == tuple(sorted(CLASSES))
        assert t.values == [pytest.approx(metrics.balanced_accuracy)]

    (folder,) = export(config, tmp_path / "out", stream=None, onnx=False)  # the ONNX file: tests/export/test_export.py
    m = json.loads((folder / "metrics.json").read_text())
    test = m["test"]
    assert test["classes"] == sorted(CLASSES) and m["objective"]["score"] == "balanced_accuracy"

    # the exported model.py on the raw test files (that it runs without archsearch: tests/export/test_export_input.py)
    spec = importlib.util.spec_from_file_location("exported_model", folder / "model.py")
    assert spec is not None and spec.loader is not None
    model = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = model  # its dataclasses look their module up there
    spec.loader.exec_module(model)
    net = model.load(folder)
    files = sorted((tmp_path / "images" / "test").glob("*/*.png"))
    predicted = [model.CLASSES[net(model.read_image(f)).argmax(1).item()] for f in files]
    truth = [f.parent.name for f in files]
    names = sorted(CLASSES)
    assert test["confusion_matrix"] == confusion_matrix(truth, predicted, labels=names).tolist()
    recall = recall_score(truth, predicted, labels=names, average=None, zero_division=0)
    assert [test["per_class"][n]["recall"] for n in names] == pytest.approx(list(recall))
    assert test["per_class"]["trouser"]["support"] == 4
    assert test["majority_class"] == "ankle-boot" and test["majority_rate"] == pytest.approx(20 / 36)

    card = (folder / "card.md").read_text()
    assert "## Per class (test split)" in card
    assert "the study's recipe (as in the search), 40 optimizer steps (" in card
    assert "| true \\ predicted | ankle-boot | bag | sneaker | trouser |" in card
    assert f"| trouser | {test['per_class']['trouser']['precision']:.3f} | {recall[3]:.3f} |" in card
    assert "always predicting `ankle-boot` scores 55.56%" in card
    assert m["dataset"]["skipped_files"] == [str(tmp_path / "images" / "train" / "bag" / "broken.jpg")]
    assert "| images left out | 1 unreadable file(s) skipped (`dataset.bad_files: skip`)" in card

    shown = report(config, out=tmp_path / "report", html=False)
    assert shown.confusion_png is not None and shown.confusion_png.stat().st_size > 10_000
    assert "on the validation split, per class" in shown.text and "always predicting 'ankle-boot'" in shown.text
