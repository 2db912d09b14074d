"""The export's metrics record and its generated network: ``ExportMetrics`` writes what metrics.json held and reads
every version's file (the committed one of an older archsearch, and real exports made here), and model.py's ``Net``
is ``archsearch.network.build.Net``'s own source, building the same network."""

from __future__ import annotations

import importlib.util
import inspect
import json
import sys
import textwrap
import types
from pathlib import Path
from typing import Any

import pytest
import torch

from archsearch import EFFNET_PAPER, Arch, Stage, Stem, build, load_space, load_study_config, run, sample_architectures
from archsearch.core.class_metrics import ClassMetrics
from archsearch.data.preprocess import Preprocessing
from archsearch.export.card import model_card
from archsearch.export.codegen import model_source
from archsearch.export.folder import export, save
from archsearch.export.metrics import ExportMetrics, PreprocessingRecord, SplitMetrics
from archsearch.network import build as build_module

BEFORE = Path(__file__).resolve().parents[1] / "data" / "before_layout" / "export_before"
SPACES = Path(__file__).resolve().parents[2] / "search_spaces"

# the keys, in order, that an export of a study without a latency budget writes (and wrote before the record)
STUDY_KEYS = ["arch_id", "macs", "params", "peak_activation_bytes", "study", "storage", "trial", "trial_state",
              "trial_values", "baseline", "feasible", "search_val_accuracy", "rerank", "retrained", "val_accuracy",
              "val", "test_accuracy", "test", "trained_on", "epochs", "train_seconds", "resumed_epochs", "training",
              "dataset", "budget", "objective", "command", "classes", "preprocessing", "latency_by_runtime",
              "latency_ms", "latency", "checks", "files", "created", "torch_version"]
# and a plain save
SAVE_KEYS = ["arch_id", "macs", "params", "peak_activation_bytes", "classes", "latency_by_runtime", "latency_ms",
             "latency", "checks", "files", "created", "torch_version"]


# ---------------------------------------------------------------------------------------------------------
# reading: an older export, and what other tools may have written


def test_an_older_metrics_json_reads_back_as_it_was_and_renders_its_card() -> None:
    text = (BEFORE / "metrics.json").read_text()
    data = json.loads(text)
    m = ExportMetrics.from_json(data)
    assert m.to_json() == data and list(m.to_json()) == list(data)
    assert json.dumps(m.to_json(), indent=2) + "\n" == text  # the file, byte for byte
    # typed fields, nested ones included; what that version did not write reads as None
    assert (m.macs, m.trial, m.study, m.retrained) == (76416, 1, "before", "train")
    assert m.rerank is not None and m.rerank.epochs == 2 and m.rerank.recipe is not None
    assert m.dataset is not None and m.dataset.n_train == 1150 and m.dataset.skipped_files is None
    assert m.val is None and m.test is None and m.classes is None and m.baseline is None
    assert m.latency is not None and m.latency.source == "export"
    assert m.latency_by_runtime is not None and m.latency_by_runtime.runtimes() == {
        "torch": data["latency_by_runtime"]["torch"], "onnxruntime": data["latency_by_runtime"]["onnxruntime"]}
    assert m.checks is not None and m.checks.batch == [2, 1, 8, 8]
    assert m.preprocessing is not None and m.preprocessing.preprocessing().divisor == 16.0
    assert m.budget_limits() == {"max_macs": 100000.0}

    arch = Arch.from_dict(json.loads((BEFORE / "arch.json").read_text()))
    card = model_card(arch, m)
    assert card == model_card(arch, data)  # a caller's dict is read as the file is
    for row in ("| MACs (batch 1) | 76,416 |", "| validation accuracy in the search | 12.20% |",
                "| re-rank | validation accuracy 73.87% after 2 epoch(s)", "| study | before (sqlite:////tmp/oldstudy/",
                "| budget | max_macs 100,000 |", "| latency, PyTorch eager | 0.410 ms (cpu, 1 thread(s), batch 1",
                "| training | retrained on the training split with the study's recipe (as in the search), 1 epoch(s) |",
                data["preprocessing"]["formula"], "Files: `arch.json`, `weights.pt`, `model.py`"):
        assert row in card, row
    assert "| latency |" not in card  # measured at export: the eager row stands for it
    assert "## Per class" not in card and "balanced" not in card  # that version recorded no per-class figures


def test_reading_is_tolerant_and_keeps_what_it_does_not_know() -> None:
    data = {"arch_id": "x", "macs": 1000.0, "params": "many", "baseline": None, "a_later_key": {"kept": [1, 2]},
            "dataset": {"name": "d", "n_train": True, "later": 3}, "test": [1, 2], "trial_values": [0.5, 1]}
    m = ExportMetrics.from_json(data)
    assert m.macs == 1000 and isinstance(m.macs, int)  # a whole float for an int: that int
    assert m.params is None and m.test is None  # another type: None
    assert m.dataset is not None and m.dataset.name == "d" and m.dataset.n_train is None  # a bool is no number
    assert m.trial_values == [0.5, 1] and isinstance(m.trial_values[1], int)  # an int stays an int
    assert m.study is None and not m.of_study and not m.records_search_accuracy
    out = m.to_json()
    assert list(out) == ["arch_id", "macs", "params", "trial_values", "baseline", "test", "dataset", "a_later_key"]
    assert out["a_later_key"] == {"kept": [1, 2]} and out["dataset"] == {"name": "d", "n_train": None, "later": 3}
    assert "study" not in out  # absent stays absent; given as null stays null
    assert ExportMetrics.from_json({}).to_json() == {}
    with pytest.raises(TypeError, match="reads a JSON object, got list"):
        ExportMetrics.from_json([1, 2])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("given", "match"),
    [
        ({"macs": 1.5}, r"ExportMetrics\.macs: input should be a valid integer, got 1\.5"),
        ({"feasible": 1}, r"ExportMetrics\.feasible: input should be a valid boolean, got 1"),
        ({"classes": "ab"}, r"ExportMetrics\.classes: input should be a valid list, got 'ab'"),
        ({"latency": {"threads": "2"}}, r"ExportMetrics\.latency: input should be a valid integer"),
    ],
)
def test_building_a_record_refuses_another_type(given: dict[str, Any], match: str) -> None:
    with pytest.raises(TypeError, match=match):
        ExportMetrics.of(given)


def test_replace_merged_and_defaulted_keep_what_was_given() -> None:
    m = ExportMetrics(arch_id="x", baseline=None)
    assert m.to_json() == {"arch_id": "x", "baseline": None}
    m = m.merged(ExportMetrics.of({"study": "s", "note": "a caller's key"})).defaulted(created="now", baseline="b")
    assert m.to_json() == {"arch_id": "x", "study": "s", "baseline": None, "created": "now", "note": "a caller's key"}
    assert m.of_study and m.baseline is None  # defaulted: dict.setdefault, a given null stays


def test_the_nested_records_write_what_their_writers_write() -> None:
    """SplitMetrics and PreprocessingRecord declare what ClassMetrics.to_dict and Preprocessing.to_dict write."""
    metrics = ClassMetrics.from_matrix([[5, 1, 0], [2, 3, 1], [0, 0, 4]], ("cat", "dog", "owl"))
    split = SplitMetrics.of_metrics(metrics)
    assert split.to_json() == metrics.to_dict() and list(split.to_json()) == list(metrics.to_dict())
    assert not split.model_extra and split.class_metrics() == metrics
    for p in (Preprocessing("8-bit pixels", 255.0, (0.5, 0.4, 0.3), (0.2, 0.2, 0.2), 32, 24),
              Preprocessing("floats", 1.0, (0.0,), (1.0,), 8, 8)):
        record = PreprocessingRecord.of_preprocessing(p)
        assert record.to_json() == p.to_dict() and not record.model_extra and record.preprocessing() == p


# ---------------------------------------------------------------------------------------------------------
# real exports: the record round-trips what was written


def _assert_round_trips(folder: Path) -> dict[str, Any]:
    text = (folder / "metrics.json").read_text()
    data = json.loads(text)
    m = ExportMetrics.from_json(data)
    assert m.to_json() == data and json.dumps(m.to_json(), indent=2) + "\n" == text
    assert ExportMetrics.of(data) == m  # what was written is of the declared types
    arch = Arch.from_dict(json.loads((folder / "arch.json").read_text()))
    assert (folder / "card.md").read_text() == model_card(arch, m) == model_card(arch, data)
    return data


@pytest.mark.slow  # an export (save)
def test_a_plain_save_round_trips(tmp_path: Path) -> None:
    arch = Arch(1, 8, 4, Stem("conv", 8), (Stage("dwsep", 16),))
    folder = save(build(arch).eval(), tmp_path / "e", onnx=False)
    data = _assert_round_trips(folder)
    assert list(data) == SAVE_KEYS
    assert data["latency"] == {"source": "export", "device": "cpu", "threads": 1, "batch": 1, "runtime": "torch"}


@pytest.mark.slow  # a search, a retrain and an export
def test_an_export_of_a_study_round_trips(write_study) -> None:
    path = write_study(n_trials=2, rerank={"top": 1, "epochs": 1})
    run(path, stream=None, progress=False)
    config = load_study_config(path)
    (folder,) = export(config, path.parent / "out", onnx=False, stream=None, command="archsearch export tiny.yaml")
    data = _assert_round_trips(folder)
    assert list(data) == STUDY_KEYS
    m = ExportMetrics.from_json(data)
    assert m.of_study and m.records_search_accuracy and m.study == "tiny" and m.retrained == "train"
    assert m.rerank is not None and m.rerank.epochs == 1 and m.rerank.value is not None
    assert m.test is not None and m.test.class_metrics() is not None and m.test.accuracy == m.test_accuracy
    assert m.val is not None and m.val.per_class is not None and m.val.balanced_accuracy is not None
    assert m.dataset is not None and m.dataset.skipped_files == [] and m.trained_on == m.dataset.n_train
    assert m.budget_limits() == {"max_macs": 100000} and m.command == "archsearch export tiny.yaml"


# ---------------------------------------------------------------------------------------------------------
# model.py's network: build.Net's source, over a stand-in for the record


def _load_model_py(source: str, tmp_path: Path, name: str) -> types.ModuleType:
    path = tmp_path / f"{name}.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the file runs
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[name]
    return module


def _archs() -> dict[str, Arch]:
    """Each block family as stem and as stage, a stem pool, a hidden head, a flatten head, and a few networks
    sampled from each shipped space."""
    archs = {
        "conv-stem-pool": Arch(1, 8, 5, Stem("conv", 16, pool=3),
                               (Stage("dwsep", 24, kernel=5), Stage("shuffle", 48, repeats=2, stride=2, groups=4))),
        "dwsep-stem-hidden": Arch(3, 12, 4, Stem("dwsep", 16),
                                  (Stage("shuffle", 32, stride=2, groups=2), Stage("effnet", 48)), hidden=24),
        "effnet-stem": Arch(1, 14, 10, Stem("effnet", 16, stride=2),
                            (Stage("effnet", 32, stride=2), Stage("dwsep", 64, repeats=2, stride=2))),
        "shuffle-stem": Arch(3, 10, 3, Stem("shuffle", 24, stride=2, pool=2), (Stage("conv", 32, stride=2),)),
        "flatten-head": EFFNET_PAPER["effnet-paper/shufflenet"],
    }
    for name in ("mobilenet", "shufflenet", "effnet", "mixed"):
        space = load_space(SPACES / f"{name}.yaml")
        for i, arch in enumerate(sample_architectures(space, 2, in_chs=1, resolution=16, num_classes=5, seed=1)):
            archs[f"{name}-{i}"] = arch
    return archs


ARCHS = _archs()


@pytest.mark.parametrize("name", list(ARCHS))
def test_the_generated_constructor_builds_build_net(name: str, tmp_path: Path) -> None:
    arch = ARCHS[name]
    module = _load_model_py(model_source(arch), tmp_path, f"generated_{name.replace('-', '_')}")
    torch.manual_seed(0)
    expected = build(arch)
    torch.manual_seed(0)
    got = module.Net(module.Arch())
    want, have = expected.state_dict(), got.state_dict()
    assert list(have) == list(want)
    assert {k: v.shape for k, v in have.items()} == {k: v.shape for k, v in want.items()}
    assert all(torch.equal(have[k], want[k]) for k in want)  # its initialisation too (build's _init_weights)
    x = torch.randn(2, arch.in_chs, arch.resolution, arch.resolution)
    with torch.no_grad():
        assert torch.equal(got.eval()(x), expected.eval()(x))


def test_model_py_carries_build_net_and_its_helpers_as_written() -> None:
    source = model_source(ARCHS["flatten-head"])
    assert textwrap.dedent(inspect.getsource(build_module.Net)) in source  # constructor and forward, as written
    assert "def _init_weights(" in source and "def get_block(" in source  # what it calls, copied beside it
    assert source.count("def _flat_features(") == 1 and "return FEATURES" in source  # a number: no record to walk
