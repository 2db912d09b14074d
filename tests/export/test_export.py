"""Export: every format round-trips (model.py, model.pt2, model.onnx loaded back in a fresh process that cannot
import archsearch), weights load with ``weights_only=True``, real Optuna clients read real studies, and the
user errors (no feasible trial, a pruned or failed ``--trial``, an existing folder) are clear.

Studies are real SQLite files: one real tiny search (4 trials, 1 epoch on synthetic 8x8 data), and studies of
trials made with ``optuna.trial.create_trial`` where the case needs no training. Torch runs on one thread.
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import inspect
import io
import json
import os
import pickletools
import shutil
import subprocess
import sys
import textwrap
import typing
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import pytest
import torch
import yaml
from conftest import TINY_SPACE, Killed, killed_after_first_epoch, study_dict
from filelock import FileLock
from optuna.trial import TrialState
from torch import nn

from archsearch import EFFNET_PAPER, Arch, Stage, Stem, build
from archsearch.cli.export import add_parser
from archsearch.config.study_config import load_study_config
from archsearch.core.errors import ConfigError
from archsearch.data.preprocess import Preprocessing
from archsearch.export.codegen import model_source
from archsearch.export.folder import export, load, save
from archsearch.export.selection import select_trials
from archsearch.search.study import open_study, run
from archsearch.study.best import best_trials

ONE_THREAD_ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
pytestmark = pytest.mark.slow  # exports, a real search, fresh processes, SQLite studies

# each block family as stage and as stem, odd map sizes, a shuffle unit without shortcut, and a flatten head
ARCHS: dict[str, Arch] = {
    "conv-stem": Arch(1, 8, 5, Stem("conv", 16, pool=3),
                      (Stage("dwsep", 24, kernel=5), Stage("shuffle", 48, repeats=2, stride=2, groups=4))),
    "dwsep-stem": Arch(3, 12, 4, Stem("dwsep", 16),  # and a hidden layer in its head
                       (Stage("shuffle", 32, stride=2, groups=2), Stage("effnet", 48, stride=1)), hidden=24),
    "effnet-stem": Arch(1, 14, 10, Stem("effnet", 16, stride=2),
                        (Stage("effnet", 32, stride=2), Stage("dwsep", 64, repeats=2, stride=2),
                         Stage("shuffle", 96, groups=8, ratio=0.5))),
    "flatten-head": EFFNET_PAPER["effnet-paper/shufflenet"],
}


def _has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def randomized(arch: Arch, seed: int) -> nn.Module:
    """A built network with random BN statistics and a classifier giving O(1) logits, so that a weight loaded
    into the wrong place shows in the outputs."""
    torch.manual_seed(seed)
    net = build(arch)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.2)
        for m in net.classifier.modules():  # one linear layer, or two around the head's hidden one
            if isinstance(m, nn.Linear):
                m.weight.normal_(0, 0.5)
                m.bias.normal_(0, 0.1)
    return net.eval()


# ---------------------------------------------------------------------------------------------------------
# round trips in a fresh process that cannot import archsearch

CHECKER = textwrap.dedent(
    """
    import contextlib, importlib, importlib.abc, io, json, runpy, sys
    from pathlib import Path

    class BlockArchsearch(importlib.abc.MetaPathFinder):
        attempts = []

        def find_spec(self, name, path=None, target=None):
            if name == "archsearch" or name.startswith("archsearch."):
                self.attempts.append(name)
                raise ImportError(f"{name} is blocked in this process")
            return None

    blocker = BlockArchsearch()
    sys.meta_path.insert(0, blocker)
    import torch
    torch.set_num_threads(1)
    try:
        import onnxruntime
    except ImportError:
        onnxruntime = None

    report = {}
    for folder in map(Path, sys.argv[1:]):
        x = torch.load(folder / "batch.pt", weights_only=True)
        out = {}
        sys.path.insert(0, str(folder))
        model = importlib.import_module("model")  # what a user does: import model; model.load()
        assert Path(model.__file__).parent == folder
        net = model.load()
        with torch.no_grad():
            out["model.py"] = net(x)
        sys.path.remove(str(folder))
        del sys.modules["model"]
        with torch.no_grad():
            out["model.pt2"] = torch.export.load(folder / "model.pt2").module()(x)
        if onnxruntime is not None:
            session = onnxruntime.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
            out["model.onnx"] = torch.from_numpy(session.run(None, {"x": x.numpy()})[0])
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            runpy.run_path(str(folder / "model.py"), run_name="__main__")  # python model.py
        torch.save(out, folder / "outputs.pt")
        report[folder.name] = {"printed": printed.getvalue()}
    report["blocked_attempts"] = list(blocker.attempts)
    report["archsearch_loaded"] = any(m == "archsearch" or m.startswith("archsearch.") for m in sys.modules)
    try:
        import archsearch  # noqa: F401
        report["import_archsearch"] = "succeeded"
    except ImportError as e:
        report["import_archsearch"] = f"failed: {e}"
    print(json.dumps(report))
    """
)


def shared_folder(factory: pytest.TempPathFactory, name: str, build: Callable[[Path], None]) -> Path:
    """A folder that ``build`` fills once per test session, also under pytest-xdist: the workers share the
    parent of their temporary folders, and a file lock lets the first one build while the others wait."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        folder = factory.mktemp(name)
        build(folder)
        return folder
    root = factory.getbasetemp().parent
    folder = root / name
    with FileLock(str(root / f"{name}.lock")):
        if not (folder / ".built").exists():
            shutil.rmtree(folder, ignore_errors=True)  # what a failed build left
            folder.mkdir()
            build(folder)
            (folder / ".built").touch()
    return folder


def _export_archs(root: Path) -> None:
    """Save the four ARCHS with random weights, and run CHECKER on them in a fresh process."""
    for i, (name, arch) in enumerate(ARCHS.items()):
        folder = save(randomized(arch, seed=i), root / name)
        x = torch.randn(3, arch.in_chs, arch.resolution, arch.resolution, generator=torch.Generator().manual_seed(i))
        torch.save(x, folder / "batch.pt")
    (root / "check.py").write_text(CHECKER)
    cwd = root / "elsewhere"  # not the repository: nothing of archsearch on the path by accident
    cwd.mkdir()
    proc = subprocess.run(
        [sys.executable, str(root / "check.py"), *(str(root / name) for name in ARCHS)],
        cwd=cwd, env={**ONE_THREAD_ENV, "PYTHONPATH": ""}, capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode == 0, proc.stderr
    (root / "report.json").write_text(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The four ARCHS saved with random weights, and what a fresh, archsearch-less process computed from them."""
    torch.set_num_threads(1)
    root = shared_folder(tmp_path_factory, "exports", _export_archs)
    return {
        "nets": {name: randomized(arch, seed=i) for i, (name, arch) in enumerate(ARCHS.items())},  # the same again
        "batches": {name: torch.load(root / name / "batch.pt", weights_only=True) for name in ARCHS},
        "folders": {name: root / name for name in ARCHS},
        "report": json.loads((root / "report.json").read_text()),
    }


def test_the_fresh_process_never_imported_archsearch(exported: dict[str, Any]) -> None:
    report = exported["report"]
    assert report["blocked_attempts"] == []  # model.py never tried to import it
    assert report["archsearch_loaded"] is False
    assert report["import_archsearch"].startswith("failed: archsearch is blocked")


@pytest.mark.parametrize("name", list(ARCHS))
def test_every_format_gives_the_same_logits(exported: dict[str, Any], name: str) -> None:
    folder, x = exported["folders"][name], exported["batches"][name]
    with torch.no_grad():
        reference = exported["nets"][name](x)
        loaded = load(folder)
        assert not loaded.training
        outputs = {"archsearch.export.folder.load": loaded(x)}
    outputs.update(torch.load(folder / "outputs.pt", weights_only=True))
    expected = {"archsearch.export.folder.load", "model.py", "model.pt2"}
    if _has("onnx") and _has("onnxscript") and _has("onnxruntime"):
        expected.add("model.onnx")
    assert set(outputs) == expected
    assert reference.abs().max() > 0.5  # O(1) logits: the tolerance below means something
    for fmt, got in outputs.items():
        assert got.shape == reference.shape, fmt
        assert (got - reference).abs().max().item() <= 1e-4, fmt
    printed = exported["report"][name]["printed"]
    assert f"logits shape (1, {ARCHS[name].num_classes})" in printed




def test_onnx_is_written_and_matches(exported: dict[str, Any]) -> None:
    pytest.importorskip("onnx")
    pytest.importorskip("onnxscript")
    ort = pytest.importorskip("onnxruntime")
    folder, x = exported["folders"]["effnet-stem"], exported["batches"]["effnet-stem"]
    assert not (folder / "model.onnx.data").exists()  # one self-contained file
    session = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    for batch in (x[:1], x):  # the batch dimension is dynamic
        got = torch.from_numpy(session.run(None, {"x": batch.numpy()})[0])
        with torch.no_grad():
            assert (got - exported["nets"]["effnet-stem"](batch)).abs().max().item() <= 1e-4


@pytest.mark.parametrize("name", list(ARCHS))
def test_weights_are_a_plain_dict_of_tensors(exported: dict[str, Any], name: str) -> None:
    path = exported["folders"][name] / "weights.pt"
    state = torch.load(path, weights_only=True)
    assert type(state) is dict
    assert state and all(type(v) is torch.Tensor for v in state.values())
    assert set(state) == set(exported["nets"][name].state_dict())
    # the pickle inside names only torch's tensor rebuilding and storages (the OrderedDict is each tensor's
    # empty hook table): nothing else to unpickle
    with zipfile.ZipFile(path) as z:
        pkl = z.read(next(n for n in z.namelist() if n.endswith("data.pkl")))
    found = {arg for op, arg, _ in pickletools.genops(pkl) if op.name == "GLOBAL"}
    assert "torch._utils _rebuild_tensor_v2" in found
    assert found <= {"torch._utils _rebuild_tensor_v2", "torch FloatStorage", "torch LongStorage",
                     "collections OrderedDict"}, found
    assert not any(op.name == "STACK_GLOBAL" for op, _, _ in pickletools.genops(pkl))


@pytest.mark.parametrize("name", list(ARCHS))
def test_model_py_names_nothing_it_does_not_define(exported: dict[str, Any], name: str, tmp_path: Path) -> None:
    """A linter in the user's project finds no undefined name in model.py, annotations included, and
    ``typing.get_type_hints`` resolves every class's; so too where it takes 8-bit images (``read_image``)."""
    path = exported["folders"][name] / "model.py"
    arch = ARCHS[name]
    images = Preprocessing(raw="8-bit pixels", divisor=255.0, mean=(0.5,) * arch.in_chs, std=(0.25,) * arch.in_chs,
                           source_resolution=arch.resolution, resolution=arch.resolution)
    (tmp_path / "model.py").write_text(model_source(arch, images))
    assert "def read_image(" in (tmp_path / "model.py").read_text()
    proc = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "--isolated", "--select", "F",
                           str(path), str(tmp_path / "model.py")], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout
    spec = importlib.util.spec_from_file_location(f"exported_{name}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the file runs
    try:
        spec.loader.exec_module(module)
        classes = [c for c in vars(module).values() if inspect.isclass(c) and c.__module__ == spec.name]
        assert {"BlockSpec", "Block", "Net"} <= {c.__name__ for c in classes}
        for cls in classes:
            typing.get_type_hints(cls)
    finally:
        del sys.modules[spec.name]


@pytest.mark.parametrize("name", list(ARCHS))
def test_model_py_imports_only_torch_and_the_standard_library(exported: dict[str, Any], name: str) -> None:
    source = (exported["folders"][name] / "model.py").read_text()
    assert source == model_source(ARCHS[name])
    imported = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            imported |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add(node.module)
    # sys: `python model.py IMAGE`; typing: ClassVar, which the block classes annotate with
    assert imported == {"__future__", "dataclasses", "pathlib", "sys", "torch", "typing"}
    assert "archsearch" not in {m.split(".")[0] for m in imported}
    # generated from the block classes: their search-time half (validate, cost) and the registry are left out
    assert "def cost(" not in source and "def validate(" not in source and "register_block" not in source
    assert "def channel_shuffle(" in source or "shuffle" not in ARCHS[name].id


def test_metrics_and_card_of_a_plain_save(exported: dict[str, Any]) -> None:
    folder = exported["folders"]["conv-stem"]
    m = json.loads((folder / "metrics.json").read_text())
    arch = Arch.from_dict(json.loads((folder / "arch.json").read_text()))
    assert arch == ARCHS["conv-stem"]
    assert m["arch_id"] == arch.id and m["macs"] > 0 and m["params"] > 0 and m["peak_activation_bytes"] > 0
    assert m["latency_ms"] > 0 and m["latency"] == {"source": "export", "device": "cpu", "threads": 1, "batch": 1,
                                                "runtime": "torch"}
    formats = {"model.py", "model.pt2"} | ({"model.onnx"} if _has("onnx") and _has("onnxscript") else set())
    assert set(m["checks"]["max_abs_logit_difference"]) == formats | ({"model.onnx"} & formats)
    assert formats <= set(m["files"])
    assert set(m["files"]) <= {p.name for p in folder.iterdir()}
    card = (folder / "card.md").read_text()
    assert arch.id in card and f"{m['macs']:,}" in card


# ---------------------------------------------------------------------------------------------------------
# studies


def _cli(*argv: str) -> int:
    """``archsearch export ...`` through the parser this module adds (as cli.py wires it)."""
    parser = argparse.ArgumentParser(prog="archsearch")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["export", *map(str, argv)])
    return args.func(args)


def _search(folder: Path) -> None:
    (folder / "tiny_space.yaml").write_text(yaml.safe_dump(TINY_SPACE, sort_keys=False))
    (folder / "tiny.yaml").write_text(yaml.safe_dump(study_dict(), sort_keys=False))
    run(folder / "tiny.yaml", stream=None, progress=False)


@pytest.fixture(scope="module")
def searched(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real search: 4 trials of the tiny space, one epoch each, in a real SQLite file (tests only read it)."""
    torch.set_num_threads(1)
    return shared_folder(tmp_path_factory, "search", _search) / "tiny.yaml"


def test_optuna_command_line_and_load_study_read_the_study(searched: Path) -> None:
    config = load_study_config(searched)
    best = best_trials(open_study(config, create=False))[0]
    proc = subprocess.run(
        # the environment's own optuna command, whether or not it is activated (on PATH)
        [str(Path(sys.executable).with_name("optuna")), "best-trials", "--study-name", config.name,
         "--storage", config.storage, "-f", "json"],
        capture_output=True, text=True, env=ONE_THREAD_ENV, timeout=900,
    )
    assert proc.returncode == 0, proc.stderr
    listed = {t["number"]: t for t in json.loads(proc.stdout)}  # every trial with the best value (ties)
    # the study names its metric, so the CLI lists "value": {"val_accuracy": v} where an unnamed study has a number
    assert best.number in listed and {t["value"]["val_accuracy"] for t in listed.values()} == {best.value}

    study = optuna.load_study(study_name=config.name, storage=config.storage)
    trials = {t.number: t for t in study.get_trials(states=(TrialState.COMPLETE,))}
    assert len(trials) == 4
    for number, t in trials.items():
        assert Arch.from_dict(t.user_attrs["arch"]).id == t.user_attrs["arch_id"]
        if number in listed:
            attrs = listed[number]["user_attrs"]
            assert attrs["arch_id"] == t.user_attrs["arch_id"] and attrs["arch"] == t.user_attrs["arch"]
            assert {"macs", "params", "peak_activation_bytes", "val_accuracy", "feasible", "epochs_done"} <= set(attrs)


def test_export_the_best_trial(searched: Path, tmp_path: Path) -> None:
    config = load_study_config(searched)
    best = best_trials(open_study(config, create=False))[0]
    out = tmp_path / "runs" / "best"
    assert _cli(searched, "--out", out, "--no-onnx") == 0  # ONNX: see the round trips above
    m = json.loads((out / "metrics.json").read_text())
    assert m["trial"] == best.number and m["arch_id"] == best.user_attrs["arch_id"]
    assert m["retrained"] == "train" and m["trained_on"] == m["dataset"]["n_train"]
    # the same recipe, seed, data and thread count as the search: the trial's accuracy, exactly
    assert m["val_accuracy"] == best.user_attrs["val_accuracy"]
    assert 0.0 <= m["test_accuracy"] <= 1.0
    assert m["study"] == "tiny" and m["storage"] == config.storage and m["budget"]["max_macs"] == 100000
    assert m["command"] == f"archsearch export {searched} --out {out} --no-onnx"
    card = (out / "card.md").read_text()
    assert m["command"] in card and best.user_attrs["arch_id"] in card
    assert {"arch.json", "weights.pt", "model.py", "model.pt2", "metrics.json", "card.md"} <= set(m["files"])
    assert "model.onnx" not in m["files"] and not (out / "model.onnx").exists()
    x = torch.zeros(2, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(load(out)(x), torch.export.load(out / "model.pt2").module()(x))

    # the folder exists now: refused without --force, before anything trains
    with pytest.raises(ConfigError, match="exists and is not empty; pass --force"):
        _cli(searched, "--out", out)


def test_two_exports_of_a_trial_have_the_same_weights(searched: Path, tmp_path: Path) -> None:
    config = load_study_config(searched)
    torch.manual_seed(12345)  # whatever the process drew before does not reach the network's initial weights
    export(config, tmp_path / "a", onnx=False, stream=None)
    torch.rand(1000)
    export(config, tmp_path / "b", onnx=False, stream=None)
    a = torch.load(tmp_path / "a" / "weights.pt", weights_only=True)
    b = torch.load(tmp_path / "b" / "weights.pt", weights_only=True)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_export_with_epochs_retrains_on_train_and_val(searched: Path, tmp_path: Path) -> None:
    out = tmp_path / "final"
    out.mkdir()
    (out / "arch.json").write_text("{}")  # an earlier export: --force may replace it
    assert _cli(searched, "--out", out, "--trial", 2, "--epochs", 2, "--no-onnx", "--force") == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["trial"] == 2 and m["retrained"] == "train+val" and m["epochs"] == 2
    assert m["trained_on"] == m["dataset"]["n_train"] + m["dataset"]["n_val"]
    assert m["val_accuracy"] is None and 0.0 <= m["test_accuracy"] <= 1.0
    assert m["training"]["epochs"] == 2


def test_a_killed_export_resumes_its_retrain(searched: Path, tmp_path: Path, monkeypatch) -> None:
    import archsearch.training.evaluate as evaluator

    config = load_study_config(searched)
    export(config, tmp_path / "whole", epochs=3, onnx=False, stream=None)
    monkeypatch.setattr(evaluator, "train", killed_after_first_epoch(evaluator.train))
    with pytest.raises(Killed):
        export(config, tmp_path / "final", epochs=3, onnx=False, stream=None)
    monkeypatch.undo()
    best = best_trials(open_study(config, create=False))[0]
    ckpt = tmp_path / f".final.trial-{best.number}.train.pt"
    assert ckpt.exists() and not (tmp_path / "final").exists()
    said = io.StringIO()
    export(config, tmp_path / "final", epochs=3, onnx=False, stream=said)
    assert f"resuming the retrain from {ckpt}" in said.getvalue()
    assert not ckpt.exists()
    m = json.loads((tmp_path / "final" / "metrics.json").read_text())
    assert m["resumed_epochs"] == 1 and m["epochs"] == 3
    whole = json.loads((tmp_path / "whole" / "metrics.json").read_text())
    assert whole["resumed_epochs"] == 0 and m["test_accuracy"] == whole["test_accuracy"]
    a = torch.load(tmp_path / "whole" / "weights.pt", weights_only=True)
    b = torch.load(tmp_path / "final" / "weights.pt", weights_only=True)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)  # as if never killed


def test_force_never_deletes_a_folder_that_is_not_an_export(searched: Path, tmp_path: Path) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(ConfigError, match="not an earlier export"):
        _cli(searched, "--out", out, "--force")
    assert (out / "notes.txt").read_text() == "keep me"


# studies of made-up trials: the error cases need no training


@pytest.fixture
def fake_study(tmp_path: Path) -> Callable[..., Path]:
    """``fake_study(trials) -> study YAML``: the tiny study's config, holding ``trials`` (create_trial kwargs)."""

    def make(trials: list[dict[str, Any]], **overrides: Any) -> Path:
        (tmp_path / "tiny_space.yaml").write_text(yaml.safe_dump(TINY_SPACE, sort_keys=False))
        path = tmp_path / "fake.yaml"
        path.write_text(yaml.safe_dump(study_dict(name="fake", storage="sqlite:///fake.db", **overrides)))
        study = open_study(load_study_config(path))
        study.add_trials([optuna.trial.create_trial(**kw) for kw in trials])
        return path

    return make


def _trial(arch: Arch, state: TrialState = TrialState.COMPLETE, acc: float | None = 0.5,
           budget: float = 100000, **attrs: Any) -> dict[str, Any]:
    from archsearch.network.cost import arch_cost

    cost = arch_cost(arch)
    excess = cost.macs / budget - 1
    user = {"arch": arch.to_dict(), "arch_id": arch.id, "macs": cost.macs, "params": cost.params,
            "feasible": excess <= 0, **attrs}
    if acc is not None and excess <= 0:
        user["val_accuracy"] = acc
    value = (acc if excess <= 0 else 0.0) if state == TrialState.COMPLETE else None
    return {"state": state, "value": value, "user_attrs": user, "constraints": {"macs": excess}}


SMALL = Arch(1, 8, 4, Stem("conv", 8), (Stage("dwsep", 16, stride=2),))
MEDIUM = Arch(1, 8, 4, Stem("conv", 16), (Stage("dwsep", 32, stride=2), Stage("dwsep", 64, stride=2)))
LARGE = Arch(1, 8, 4, Stem("conv", 32), (Stage("dwsep", 64), Stage("dwsep", 128, stride=2)))


def test_no_feasible_trial_names_the_budget_and_the_nearest_trial(fake_study: Callable[..., Path]) -> None:
    from archsearch.network.cost import arch_cost

    budget = arch_cost(SMALL).macs - 1  # every trial over it; SMALL the least
    path = fake_study([_trial(LARGE, budget=budget), _trial(SMALL, budget=budget), _trial(MEDIUM, budget=budget)],
                      budget={"max_macs": budget})
    with pytest.raises(ConfigError) as e:
        export(path, path.parent / "out", stream=None)
    text = str(e.value)
    assert "no feasible trial" in text and f"max_macs={budget:,g}" in text
    assert f"the nearest is trial 1 ({SMALL.id})" in text and "--trial 1" in text
    assert not (path.parent / "out").exists()
    config = load_study_config(path)  # and asked for by number, the over-budget trial is exported anyway
    assert [t.number for t in select_trials(open_study(config, create=False), config, trial=1)] == [1]


@pytest.mark.parametrize(
    ("state", "attrs", "match"),
    [
        (TrialState.PRUNED, {"epochs_done": 1}, "trial 1 was pruned after 1 epoch"),
        (TrialState.FAIL, {"error": "TrainingDiverged: loss is nan"},
         r"trial 1 failed \(TrainingDiverged: loss is nan\)"),
    ],
)
def test_a_pruned_or_failed_trial_is_refused(fake_study: Callable[..., Path], state: TrialState,
                                             attrs: dict[str, Any], match: str) -> None:
    path = fake_study([_trial(SMALL), _trial(MEDIUM, state=state, acc=None, **attrs)])
    with pytest.raises(ConfigError, match=match):
        _cli(path, "--out", path.parent / "out", "--trial", 1)
    with pytest.raises(ConfigError, match="has no trial 7; its trials are numbered 0 to 1"):
        _cli(path, "--out", path.parent / "out", "--trial", 7)


def test_pareto_selects_the_accuracy_vs_macs_front(fake_study: Callable[..., Path]) -> None:
    # SMALL 0.6, MEDIUM 0.7, LARGE 0.65 (beaten by MEDIUM), a second SMALL 0.55 (beaten), a pruned one
    path = fake_study([_trial(SMALL, acc=0.6), _trial(MEDIUM, acc=0.7), _trial(LARGE, acc=0.65),
                       _trial(SMALL, acc=0.55), _trial(LARGE, state=TrialState.PRUNED, acc=0.9)],
                      budget={"max_macs": 10**7})
    config = load_study_config(path)
    study = open_study(config, create=False)
    assert [t.number for t in select_trials(study, config, pareto=True)] == [0, 1]
    assert [t.number for t in select_trials(study, config)] == [1]
    assert [t.number for t in select_trials(study, config, trial=2)] == [2]
