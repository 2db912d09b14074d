"""Latency on ONNX Runtime: the timed session, the table keyed by runtime, and a study and export on it.

Every measurement is real (tiny networks on 8x8 inputs in a real ONNX Runtime session); nothing asserts a
time. How close the table's predictions come is measured by ``archsearch latency check --runtime onnxruntime``.
"""

from __future__ import annotations

import argparse
import io
import json
import shutil

import numpy as np
import pytest
import torch
import yaml
from optuna.trial import TrialState

pytest.importorskip("onnxruntime")

from conftest import TINY_SPACE  # noqa: E402
from latency_tables import FAST, OTHER, make_table, tiny  # noqa: E402

from archsearch.cli import latency as latency_cli
from archsearch.config.study_config import load_study_config
from archsearch.config.study_schema import (
    LATENCY_RUNTIMES,  # noqa: E402
    LatencyTarget,
)
from archsearch.core.errors import ConfigError  # noqa: E402
from archsearch.latency import table as lat
from archsearch.latency.key import METHOD, ONNXRUNTIME_METHOD, table_key
from archsearch.latency.measure import RUNTIMES, forward_pass, measure_latency, onnxruntime_pass  # noqa: E402
from archsearch.latency.parts import parts_of
from archsearch.network.build import build  # noqa: E402
from archsearch.search.study import run  # noqa: E402

ORT1 = LatencyTarget("cpu", 1, 1, runtime="onnxruntime")


def test_the_session_computes_what_the_network_computes():
    model = build(tiny()).eval()
    forward = onnxruntime_pass(model, (1, 8, 8), threads=1, batch=2)
    forward()
    _, x, y = forward.keep
    with torch.no_grad():
        expected = model(torch.from_numpy(x.numpy())).numpy()
    assert y.numpy().shape == (2, 4)
    np.testing.assert_allclose(y.numpy(), expected, rtol=1e-4, atol=1e-5)


def test_measure_latency_on_onnxruntime_restores_the_mode_and_refuses_what_it_cannot_time():
    model = build(tiny()).train()
    lat = measure_latency(model, (1, 8, 8), runtime="onnxruntime", **FAST)
    assert 0 < lat.median_ms <= lat.p90_ms and lat.repeats == FAST["repeats"] and model.training
    assert RUNTIMES == LATENCY_RUNTIMES  # what the schema accepts is what measure can run
    with pytest.raises(ValueError, match="runtime must be one of"):
        forward_pass(model, (1, 8, 8), runtime="tflite")
    with pytest.raises(ValueError, match="on the CPU"):
        forward_pass(model, (1, 8, 8), runtime="onnxruntime", device="cuda")


def test_the_table_is_keyed_by_runtime_and_a_torch_tables_key_is_as_before():
    torch_key = table_key(LatencyTarget(), torch_version="2.13.0+cpu", hardware="AMD EPYC")
    ort_key = table_key(ORT1, torch_version="2.13.0+cpu", hardware="AMD EPYC")
    assert ort_key.file_name() != torch_key.file_name()
    assert ort_key.file_name().startswith(f"cpu-t1-b1-onnxruntime{ort_key.onnxruntime}_torch2.13.0+cpu-amd-epyc-")
    # a torch table's stored key has no runtime fields: tables written before the runtime existed still load
    assert set(torch_key.to_dict()) == {"device", "threads", "batch", "torch", "hardware"}
    assert ort_key.to_dict()["runtime"] == "onnxruntime" and ort_key.to_dict()["onnxruntime"]
    assert (torch_key.method, ort_key.method) == (METHOD, ONNXRUNTIME_METHOD)
    with pytest.raises(ValueError, match="on the CPU"):
        table_key(LatencyTarget("cuda", 1, 1, runtime="onnxruntime"))


@pytest.mark.slow  # measures tables: seconds
def test_an_onnxruntime_table_predicts_from_its_own_entries_and_refuses_a_torch_table(tmp_path, capsys):
    table = make_table(tmp_path, ORT1)
    predicted = table.predict(tiny())
    saved = json.loads(table.path.read_text())
    assert saved["method"] == ONNXRUNTIME_METHOD and saved["key"]["runtime"] == "onnxruntime"
    # every part, and the session call that each part timed alone paid
    assert {p.key for p in parts_of(tiny())} | {"call:relu:c1:1x1"} == set(saved["entries"])
    assert predicted > 0 and table.overhead is not None
    # each entry in ENTRY_ROUNDS rounds over the parts, then the constant's calibration rounds
    assert saved["settings"]["rounds"] == lat.ENTRY_ROUNDS > 1
    assert table.measurements == lat.ENTRY_ROUNDS * len(saved["entries"]) + lat.CALIBRATION_ROUNDS
    scaled, timed = table.measure(build(OTHER), (1, 8, 8))
    assert scaled.median_ms > 0 and timed.reference_ms > 0

    torch_table = make_table(tmp_path)
    torch_table.fill([tiny()])
    assert torch_table.path != table.path
    shutil.copy(torch_table.path, table.path)  # a torch table under the ONNX Runtime table's name
    capsys.readouterr()
    refused = make_table(tmp_path, ORT1)
    assert len(refused) == 0 and "measured by method" in capsys.readouterr().err


@pytest.mark.slow  # a search and an export
def test_a_study_on_onnxruntime_runs_end_to_end_and_its_export_carries_both_latencies(write_study, tmp_path):
    from archsearch.export.folder import export

    latency = {"device": "cpu", "threads": 1, "batch": 1, "runtime": "onnxruntime"}
    # unfitted: fitting predicts a dozen widths a trial, each new part timed for 0.05 s (test_latency.py runs the
    # fitting path with a latency limit)
    path = write_study(budget={"max_latency_ms": 1000.0, "latency": latency, "fit": False}, n_trials=2)
    make_table(path.parent / "latency", ORT1).fill([])
    study = run(load_study_config(path), stream=io.StringIO(), progress=False)
    done = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert len(done) == 2
    for t in done:
        a = t.user_attrs
        assert a["latency_runtime"] == "onnxruntime" and a["latency_ms"] > 0 and a["latency_pred_ms"] > 0
    assert list((path.parent / "latency").glob("cpu-t1-b1-onnxruntime*.json"))

    out = tmp_path / "export"
    export(load_study_config(path), out, stream=None, onnx=False)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["latency"]["runtime"] == "onnxruntime" and metrics["latency"]["source"] == "trial"
    both = metrics["latency_by_runtime"]
    assert both["torch"] > 0 and both["onnxruntime"] > 0 and (both["threads"], both["batch"]) == (1, 1)
    card = (out / "card.md").read_text()
    assert "onnxruntime, the bare network" in card
    assert f"latency, PyTorch eager | {both['torch']:.3f} ms" in card
    assert f"latency, ONNX Runtime (model.onnx's network) | {both['onnxruntime']:.3f} ms" in card


def test_runtime_onnxruntime_on_cuda_is_a_located_config_error(write_study):
    path = write_study(budget={"max_latency_ms": 10.0, "latency": {"device": "cuda", "runtime": "onnxruntime"}})
    with pytest.raises(ConfigError, match="budget.latency.device.*on the CPU"):
        load_study_config(path)
    path = write_study(budget={"max_latency_ms": 10.0, "latency": {"runtime": "tensorrt"}})
    with pytest.raises(ConfigError, match="budget.latency.runtime"):
        load_study_config(path)


def test_the_runtime_is_in_the_fingerprint_only_when_it_is_not_torch(write_study):
    torch_fp = load_study_config(write_study(budget={"max_latency_ms": 10.0})).fingerprint()
    assert "runtime" not in torch_fp["budget"]["latency"]  # studies made before the runtime resume unchanged
    ort = load_study_config(write_study(budget={"max_latency_ms": 10.0, "latency": {"runtime": "onnxruntime"}}))
    assert ort.fingerprint()["budget"]["latency"]["runtime"] == "onnxruntime"


@pytest.mark.slow  # measures tables: seconds
def test_latency_check_on_onnxruntime(tmp_path, capsys):
    space = tmp_path / "tiny_space.yaml"
    space.write_text(yaml.safe_dump(TINY_SPACE))
    make_table(tmp_path, ORT1).fill([tiny()])
    parser = argparse.ArgumentParser()
    latency_cli.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["latency", "check", "cpu:1:1", "--runtime", "onnxruntime", "--samples", "2",
                              "--space", str(space), "--input", "1x8x8", "--classes", "4", "--dir", str(tmp_path),
                              "--rounds", "2"])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "(runtime onnxruntime)" in out and "onnxruntime" in out.splitlines()[0] and "within +-10%" in out
    assert "of 2 networks had rounds more than 10% apart" in out
    args = parser.parse_args(["latency", "check", "cuda:1:1", "--runtime", "onnxruntime", "--dir", str(tmp_path)])
    assert args.func(args) == 2
    assert ("on the CPU" if torch.cuda.is_available() else "CUDA is not available") in capsys.readouterr().err
