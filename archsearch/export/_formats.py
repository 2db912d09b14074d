"""The files of an export folder, each written and checked: every format is loaded back and must give the
network's logits on the same input (within ``TOLERANCE``), or the export fails before anything is kept."""

from __future__ import annotations

import importlib.util
import json
import logging
import sys
import tempfile
import uuid
import warnings
from pathlib import Path
from typing import IO, Any

import torch

from archsearch.data.preprocess import Preprocessing, WithPreprocessing
from archsearch.export._source import MODEL_FILE, ExportError
from archsearch.export.codegen import model_source
from archsearch.network.build import Net
from archsearch.training.checkpoint import write_bytes

__all__ = ["ARCH_FILE", "WEIGHTS_FILE", "PROGRAM_FILE", "ONNX_FILE", "METRICS_FILE", "CARD_FILE", "TOLERANCE",
           "onnx_program_bytes", "write_formats"]

ARCH_FILE = "arch.json"
WEIGHTS_FILE = "weights.pt"
PROGRAM_FILE = "model.pt2"
ONNX_FILE = "model.onnx"
METRICS_FILE = "metrics.json"
CARD_FILE = "card.md"
TOLERANCE = 1e-4  # max |logits - reference| allowed for every exported format (times max(1, |reference|))

def write_formats(model: Net, preprocessing: Preprocessing | None, tmp: Path, *, onnx: bool, info: dict[str, Any],
                   stream: IO[str] | None) -> list[str]:
    arch = model.arch
    (tmp / ARCH_FILE).write_text(json.dumps(arch.to_dict(), indent=2) + "\n", encoding="utf-8")
    state = {k: v.detach().cpu().clone().contiguous() for k, v in model.state_dict().items()}  # a plain dict
    write_bytes(tmp / WEIGHTS_FILE, lambda f: torch.save(state, f))
    (tmp / MODEL_FILE).write_text(model_source(arch, preprocessing, info["classes"]), encoding="utf-8")

    gen = torch.Generator().manual_seed(0)
    full: torch.nn.Module
    if preprocessing is None:
        full, x = model, torch.randn(2, arch.in_chs, arch.resolution, arch.resolution, generator=gen)
    else:  # what the formats take: raw images, in the raw range
        full = WithPreprocessing(preprocessing.module(), model).eval()
        x = torch.rand(2, *preprocessing.input_shape, generator=gen) * preprocessing.divisor
    with torch.no_grad():
        reference = full(x)
        bare_x = full.preprocess(x) if isinstance(full, WithPreprocessing) else x
        bare_reference = model(bare_x)
    checks: dict[str, float] = {}

    def check(name: str, got: torch.Tensor, expected: torch.Tensor = reference) -> None:
        diff = (got.detach().float() - expected).abs().max().item()
        checks[name] = diff
        limit = TOLERANCE * max(1.0, expected.abs().max().item())
        if not diff <= limit:
            raise ExportError(
                f"{name} does not reproduce the network: max |logits difference| {diff:.3g} > {limit:.3g}"
            )

    check(MODEL_FILE, _run_model_py(tmp, x))
    if preprocessing is not None:
        check(f"{MODEL_FILE} (bare)", _run_model_py(tmp, bare_x, bare=True), bare_reference)
    program = _program(full, x)
    write_bytes(tmp / PROGRAM_FILE, lambda f: torch.export.save(program, f))
    with torch.no_grad():
        check(PROGRAM_FILE, program.module()(x))
    files = [ARCH_FILE, WEIGHTS_FILE, MODEL_FILE, PROGRAM_FILE]
    if onnx:
        missing = [m for m in ("onnx", "onnxscript") if importlib.util.find_spec(m) is None]
        if missing:
            info["onnx"] = f"not written: {', '.join(missing)} not installed (pip install 'archsearch[onnx]')"
            if stream is not None:
                print(f"  {ONNX_FILE} {info['onnx']}", file=stream, flush=True)
        else:
            _write_onnx(program, x, tmp / ONNX_FILE, {"classes": json.dumps(info["classes"]),
                                                       "archsearch.arch_id": arch.id,
                                                       **({"archsearch.preprocessing": preprocessing.formula()}
                                                          if preprocessing is not None else {})})
            files.append(ONNX_FILE)
            if importlib.util.find_spec("onnxruntime") is not None:
                import onnxruntime

                session = onnxruntime.InferenceSession(str(tmp / ONNX_FILE), providers=["CPUExecutionProvider"])
                check(ONNX_FILE, torch.from_numpy(session.run(None, {"x": x.numpy()})[0]))
    info["checks"] = {"max_abs_logit_difference": checks, "batch": tuple(x.shape)}
    return files


def _program(full: torch.nn.Module, x: torch.Tensor) -> torch.export.ExportedProgram:
    batch = torch.export.Dim("batch", min=1, max=65536)
    return torch.export.export(full, (x,), dynamic_shapes={"x": {0: batch}})


def onnx_program_bytes(full: torch.nn.Module, x: torch.Tensor) -> bytes:
    """``full`` (eval mode) as ONNX, as ``model.onnx`` is written (dynamic batch, input ``x``, output ``logits``)."""
    with tempfile.TemporaryDirectory(prefix="archsearch-onnx-") as tmp:
        path = Path(tmp, "model.onnx")
        _write_onnx(_program(full, x), x, path, {})
        return path.read_bytes()


def _write_onnx(program: torch.export.ExportedProgram, x: torch.Tensor, path: Path, metadata: dict[str, str]) -> None:
    """The program as ONNX, with ``metadata`` in the model's metadata_props (what ONNX Runtime's
    ``session.get_modelmeta().custom_metadata_map`` returns)."""
    # the exporter logs one line per torchvision op it cannot register, and warns about its own internals
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(program, (x,), str(path), dynamo=True, verbose=False, external_data=False,
                              input_names=["x"], output_names=["logits"])
    finally:
        logger.setLevel(level)
    import onnx

    proto = onnx.load(str(path))
    onnx.helper.set_model_props(proto, metadata)
    onnx.save(proto, str(path))


def _run_model_py(folder: Path, x: torch.Tensor, *, bare: bool = False) -> torch.Tensor:
    """Load the generated model.py as a module of its own (not archsearch's classes) and run it on ``x``."""
    name = f"_archsearch_export_{uuid.uuid4().hex}"
    spec = importlib.util.spec_from_file_location(name, folder / MODEL_FILE)
    assert spec is not None and spec.loader is not None  # a .py file has a loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look the module up while the file runs
    try:
        spec.loader.exec_module(module)
        net = module.load(folder, bare=bare)
        with torch.no_grad():
            return net(x)
    finally:
        del sys.modules[name]
