"""Latency on ONNX Runtime at int8: the quantized session, ONNX bytes timed as given, and the int8 table's key.

Every measurement is real (tiny networks on 8x8 inputs, quantized by ONNX Runtime's tools and run in a real
session); nothing asserts a time. How close the int8 table's predictions come is measured by
``archsearch latency check --runtime onnxruntime-int8`` (docs/budgets.md).
"""

from __future__ import annotations

import argparse
import io
import json
import math
import warnings

import numpy as np
import pytest
import torch
import yaml

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

import onnx  # noqa: E402
from conftest import TINY_SPACE  # noqa: E402
from latency_tables import FAST, OTHER, make_table, tiny  # noqa: E402

from archsearch.cli import latency as latency_cli  # noqa: E402
from archsearch.config.study_config import load_study_config  # noqa: E402
from archsearch.config.study_schema import LATENCY_RUNTIMES, LatencyTarget  # noqa: E402
from archsearch.latency import table as lat  # noqa: E402
from archsearch.latency.key import INT8_METHOD, ONNXRUNTIME_METHOD, table_key  # noqa: E402
from archsearch.latency.measure import (  # noqa: E402
    ONNXRUNTIME_RUNTIMES,
    RUNTIMES,
    forward_pass,
    int8_model,
    measure_latency,
    onnx_model,
    onnxruntime_pass,
)
from archsearch.latency.parts import parts_of  # noqa: E402
from archsearch.network.build import build  # noqa: E402
from archsearch.space.search_space import load_space, sample_architectures  # noqa: E402

INT8 = LatencyTarget("cpu", 1, 1, runtime="onnxruntime-int8")
SHAPE = (1, 8, 8)


def _dynamic_batch_onnx(model: torch.nn.Module) -> bytes:
    """``model`` exported as ``model.onnx`` is: the batch dimension left open."""
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(model.eval(), (torch.zeros(1, *SHAPE),), buffer,  # type: ignore[arg-type]
                          dynamo=False, input_names=["x"], output_names=["y"],
                          dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}})
    return buffer.getvalue()


def test_the_int8_runtime_is_a_study_runtime_with_a_table_key_of_its_own(write_study):
    assert RUNTIMES == LATENCY_RUNTIMES and set(ONNXRUNTIME_RUNTIMES) <= set(RUNTIMES)
    keys = {rt: table_key(LatencyTarget("cpu", 1, 1, runtime=rt), torch_version="2.13.0+cpu", hardware="AMD EPYC")
            for rt in RUNTIMES}
    float_key, int8_key = keys["onnxruntime"], keys["onnxruntime-int8"]
    assert len({k.file_name() for k in keys.values()}) == len(RUNTIMES)  # one file per runtime
    assert int8_key.file_name().startswith(f"cpu-t1-b1-onnxruntime{int8_key.onnxruntime}-int8_torch2.13.0+cpu-")
    assert int8_key.to_dict() == {**float_key.to_dict(), "runtime": "onnxruntime-int8"}
    assert int8_key.onnxruntime and int8_key.onnxruntime == float_key.onnxruntime  # the version is in both keys
    assert (float_key.method, int8_key.method) == (ONNXRUNTIME_METHOD, INT8_METHOD)
    assert INT8_METHOD != ONNXRUNTIME_METHOD  # a float table is never read as an int8 one
    with pytest.raises(ValueError, match="onnxruntime-int8 is timed on the CPU"):
        table_key(LatencyTarget("cuda", 1, 1, runtime="onnxruntime-int8"))

    config = load_study_config(write_study(budget={"max_latency_ms": 10.0, "latency": {"runtime": "onnxruntime-int8"}}))
    assert config.budget.latency == INT8
    assert config.fingerprint()["budget"]["latency"]["runtime"] == "onnxruntime-int8"


@pytest.mark.slow  # an export, a quantization and a session: about a second
def test_a_network_on_the_int8_runtime_runs_quantized_and_gives_a_finite_positive_median():
    model = build(tiny()).train()
    lat8 = measure_latency(model, SHAPE, runtime="onnxruntime-int8", **FAST)
    assert math.isfinite(lat8.median_ms) and 0 < lat8.median_ms <= lat8.p90_ms and lat8.repeats == FAST["repeats"]
    assert model.training  # restored

    # what it times: the exported network with int8 convolutions, whose outputs stay near the float network's
    quantized = int8_model(model, SHAPE, batch=2)
    ops = {node.op_type for node in onnx.load_from_string(quantized).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    forward = onnxruntime_pass(quantized, SHAPE, batch=2)
    forward()
    _, x, y = forward.keep
    with torch.no_grad():
        expected = model.eval()(torch.from_numpy(x.numpy())).numpy()
    assert y.numpy().shape == (2, 4) and np.isfinite(y.numpy()).all()
    assert np.abs(y.numpy() - expected).max() < 0.1 * np.abs(expected).max() + 0.05

    with pytest.raises(ValueError, match="onnxruntime-int8 runs on the CPU"):
        forward_pass(model, SHAPE, runtime="onnxruntime-int8", device="cuda")


@pytest.mark.slow  # exports, quantizes and times ONNX models: about two seconds
def test_measure_latency_times_onnx_bytes_as_given_with_an_open_batch_and_refuses_what_does_not_fit():
    float_bytes = _dynamic_batch_onnx(build(tiny()))
    int8_bytes = int8_model(float_bytes, SHAPE)  # what an int8 export writes: quantized model.onnx
    for batch in (1, 3):
        timed = measure_latency(int8_bytes, SHAPE, runtime="onnxruntime", batch=batch, **FAST)
        assert 0 < timed.median_ms <= timed.p90_ms
        forward = onnxruntime_pass(int8_bytes, SHAPE, batch=batch)
        forward()
        assert forward.keep[2].numpy().shape == (batch, 4)  # the open batch dimension took the batch
    # float bytes on the int8 runtime are quantized first (as a module is, its ONNX form then being onnx_model's)
    assert measure_latency(float_bytes, SHAPE, runtime="onnxruntime-int8", **FAST).median_ms > 0
    assert measure_latency(onnx_model(build(OTHER), SHAPE), SHAPE, runtime="onnxruntime", **FAST).median_ms > 0

    with pytest.raises(ValueError, match="quantized already.*runtime onnxruntime"):
        measure_latency(int8_bytes, SHAPE, runtime="onnxruntime-int8", **FAST)
    with pytest.raises(TypeError, match="runtime torch times a torch module"):
        measure_latency(int8_bytes, SHAPE, **FAST)
    with pytest.raises(ValueError, match=r"does not fit batch 1 and input shape \(1, 16, 16\)"):
        measure_latency(int8_bytes, (1, 16, 16), runtime="onnxruntime", **FAST)


@pytest.mark.slow  # measures a table: a few seconds
def test_an_int8_table_predicts_from_its_own_quantized_entries(tmp_path):
    table = make_table(tmp_path, INT8)
    predicted = table.predict(tiny())
    saved = json.loads(table.path.read_text())
    assert saved["method"] == INT8_METHOD and saved["key"] == table.key.to_dict()
    assert saved["key"]["runtime"] == "onnxruntime-int8" and saved["key"]["onnxruntime"]
    # every part, and the session call that each part timed alone paid, each in ENTRY_ROUNDS rounds
    assert {p.key for p in parts_of(tiny())} | {lat.CALL_KEY} == set(saved["entries"])
    assert saved["settings"]["rounds"] == lat.ENTRY_ROUNDS
    assert math.isfinite(predicted) and predicted > 0 and table.overhead is not None
    scaled, timed = table.measure(build(OTHER), SHAPE, **FAST)
    assert scaled.median_ms > 0 and timed.reference_ms is not None and timed.reference_ms > 0
    assert make_table(tmp_path, INT8).predict(tiny()) == predicted  # read back from the file, nothing measured


@pytest.mark.slow  # measures a table: a few seconds
def test_latency_build_and_check_on_the_int8_runtime(tmp_path, capsys):
    # the check's measurement is the float runtime's (test_latency_onnxruntime.py); here: the int8 target and table
    space = tmp_path / "tiny_space.yaml"
    space.write_text(yaml.safe_dump(TINY_SPACE))
    # the table filled beforehand, quickly, for the candidate the commands sample (the CLI's settings take longer)
    candidates = sample_architectures(load_space(space), 1, in_chs=1, resolution=8, num_classes=4, seed=1)
    make_table(tmp_path, INT8).fill(candidates)
    parser = argparse.ArgumentParser()
    latency_cli.add_parser(parser.add_subparsers(dest="command"))
    common = ["--runtime", "onnxruntime-int8", "--samples", "1", "--seed", "1", "--space", str(space), "--input",
              "1x8x8", "--classes", "4", "--dir", str(tmp_path)]
    args = parser.parse_args(["latency", "build", "cpu:1:1", *common])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "-int8_torch" in out and "(0 new)" in out
    args = parser.parse_args(["latency", "check", "cuda:1:1", "--runtime", "onnxruntime-int8", "--dir", str(tmp_path)])
    assert args.func(args) == 2
    err = capsys.readouterr().err
    assert ("onnxruntime-int8 is timed on the CPU" if torch.cuda.is_available() else "CUDA is not available") in err
