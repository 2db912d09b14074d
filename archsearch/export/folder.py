"""Export a trial's architecture as a trained, self-contained model folder.

Trials store no weights, so an export retrains the architecture with the study's recipe: on the training
split as in the search (``retrained: "train"``, validation accuracy reported), or, with ``epochs``, from
scratch on training + validation (``"train+val"``). Test accuracy is measured in both cases. The folder:

- ``arch.json``: the architecture record (``Arch.to_dict()``), the single source of truth;
- ``weights.pt``: the bare network's weights, a plain dict of tensors (``torch.load(..., weights_only=True)``);
- ``model.py``: one standalone file, PyTorch only (:mod:`archsearch.export.codegen`); ``model.load()`` gives the
  network in eval mode, ``python model.py`` runs it on zeros;
- ``model.pt2``: ``torch.export`` program (dynamic batch), for ``torch.export.load``;
- ``model.onnx``: where onnx and onnxscript are installed (the ``onnx`` extra);
- ``metrics.json`` (:class:`~archsearch.export.metrics.ExportMetrics`) and ``card.md`` (:mod:`archsearch.export.card`):
  costs, accuracies, budget, study, trial, the input preprocessing and the command that made it.

An export of a study records how raw images became the training tensors (:mod:`archsearch.data.preprocess`), and
``model.py``'s ``load()``, ``model.pt2``, ``model.onnx`` and :func:`load` apply it: they take raw images in
the dataset's own range. ``load(..., bare=True)`` is the network alone.

Every exported format is run on one batch against the in-memory network before the folder is moved into
place; a difference above the tolerance is an error, not a warning.

    archsearch export studies/quickstart.yaml --out runs/best [--trial N | --pareto] [--epochs E]
    net = archsearch.export.load("runs/best")   # preprocessing + build(Arch.from_dict(arch.json)) + weights

The command line is :mod:`archsearch.cli.export`.
"""

from __future__ import annotations

import dataclasses
import datetime
import importlib.util
import json
import os
import shutil
import sys
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import optuna
import torch

from archsearch.config.assemble import load_config_data, print_notes
from archsearch.config.storage_url import redact
from archsearch.config.study_config import StudyConfig, load_study_config
from archsearch.core.errors import ConfigError
from archsearch.core.text import fmt_count
from archsearch.data.preprocess import Preprocessing, WithPreprocessing
from archsearch.export._formats import (
    ARCH_FILE,
    CARD_FILE,
    METRICS_FILE,
    ONNX_FILE,
    WEIGHTS_FILE,
    write_formats,
)
from archsearch.export._source import ExportError
from archsearch.export.card import int8_budget_line, int8_line, model_card, pct
from archsearch.export.codegen import class_names, model_source
from archsearch.export.metrics import (
    ExportMetrics,
    LatencyWhere,
    PreprocessingRecord,
    RerankResult,
    RuntimeLatencies,
)
from archsearch.export.quantized import INT8_FILE, Int8Job, int8_job, write_int8
from archsearch.export.selection import retrain_record, select_trials
from archsearch.latency.measure import measure_latency
from archsearch.network.arch import Arch
from archsearch.network.build import Net, build
from archsearch.network.cost import arch_cost
from archsearch.study import rerank_results
from archsearch.study.open import open_study
from archsearch.study.trial_record import TrialRecord
from archsearch.training.train import resolve_device

__all__ = [
    "ExportError",
    "export",
    "save",
    "load",
    "model_source",
    "select_trials",
]

_EXPORT_MARKERS = (ARCH_FILE, METRICS_FILE)  # a folder holding one of these is an earlier export


# ---------------------------------------------------------------------------------------------------------
# the folder: save and load


def load(folder: str | os.PathLike, *, bare: bool = False) -> torch.nn.Module:
    """The exported network in ``folder``, in eval mode: ``build(Arch.from_dict(arch.json))`` + ``weights.pt``.

    Where the export recorded its input preprocessing (``metrics.json``: ``preprocessing``) the network takes
    raw images and applies it first (a :class:`~archsearch.data.preprocess.WithPreprocessing`), as ``model.py``'s
    ``load()`` does; ``bare=True`` gives the :class:`~archsearch.network.build.Net` alone.
    """
    folder = Path(folder)
    for name in (ARCH_FILE, WEIGHTS_FILE):
        if not (folder / name).is_file():
            raise ConfigError(f"not an exported model folder: {name} is missing", path=folder)
    arch = Arch.from_dict(json.loads((folder / ARCH_FILE).read_text(encoding="utf-8")))
    net = build(arch)
    net.load_state_dict(torch.load(folder / WEIGHTS_FILE, map_location="cpu", weights_only=True))
    preprocessing = None if bare else _recorded_preprocessing(folder)
    if preprocessing is None:
        return net.eval()
    return WithPreprocessing(preprocessing.module(), net).eval()


def _recorded_preprocessing(folder: Path) -> Preprocessing | None:
    path = folder / METRICS_FILE
    if not path.is_file():
        return None
    record = _read_metrics(path).preprocessing
    return None if record is None else record.preprocessing(where=path)


def _read_metrics(path: Path) -> ExportMetrics:
    try:
        return ExportMetrics.from_json(json.loads(path.read_text(encoding="utf-8")))
    except (ValueError, TypeError) as e:
        raise ConfigError(f"not valid JSON ({e})", path=path) from None


def save(
    model: Net,
    folder: str | os.PathLike,
    *,
    metrics: ExportMetrics | Mapping[str, Any] | None = None,
    preprocessing: Preprocessing | None = None,
    classes: Sequence[str] | None = None,
    onnx: bool = True,
    force: bool = False,
    stream: IO[str] | None = None,
    int8: Int8Job | None = None,
) -> Path:
    """Write ``model`` (a built, trained :class:`~archsearch.network.build.Net`) as an export folder; returns it.

    With ``preprocessing`` (how raw images became the training tensors, e.g.
    ``Preprocessing.of_data(data, arch.resolution)``) ``model.py``'s ``load()``, ``model.pt2`` and
    ``model.onnx`` take raw images and apply it; without, they take the network's own input. ``metrics`` (an
    :class:`~archsearch.export.metrics.ExportMetrics`, or its JSON object: a value of another type than its field
    declares is a TypeError) adds to (and overrides) what is measured here: the analytic cost, the bare network's
    latency on the CPU in PyTorch eager mode and in ONNX Runtime where installed (``latency_by_runtime``; at the
    trial's threads and batch where ``metrics``' ``latency`` says it was timed on the CPU, else one thread, batch 1;
    the eager figure is ``latency_ms`` too when ``metrics`` has none) and the output difference of every format.
    ``classes`` (a name per output, "0".."N-1" where None) go to ``metrics.json``, ``card.md``, ``model.py``'s
    ``CLASSES`` and ``model.onnx``'s metadata (``classes``, a JSON list). The files are written to a temporary folder
    beside ``folder`` and moved into place once every format reproduces the network; an existing ``folder`` is
    replaced only with ``force`` (and only if it is empty or an earlier export). The model is moved to the CPU, in
    eval mode. ``int8``: also ``model.int8.onnx``, made and measured as the job says
    (:mod:`archsearch.export.quantized`; it needs ``model.onnx``), its figures in ``metrics.json``'s ``int8``.
    """
    if not isinstance(model, Net):
        raise TypeError(f"save() takes an archsearch Net (from build()), got {type(model).__name__}")
    folder = Path(folder)
    _check_target(folder, force)
    arch = model.arch
    # Module.to takes memory_format (torch._C._nn._parse_to), which its typed overloads leave out
    model = model.cpu().to(memory_format=torch.contiguous_format).eval()  # type: ignore[call-overload]
    cost = arch_cost(arch)
    record = ExportMetrics(arch_id=arch.id, macs=cost.macs, params=cost.params,
                           peak_activation_bytes=cost.peak_activation_bytes)
    if metrics is not None:
        record = record.merged(metrics if isinstance(metrics, ExportMetrics) else ExportMetrics.of(metrics))
    record = record.replace(classes=class_names(classes, arch.num_classes))
    if preprocessing is not None:
        record = record.replace(preprocessing=PreprocessingRecord.of_preprocessing(preprocessing))
    measured_here = record.latency_ms is None
    here = LatencyWhere(source="export", device="cpu", threads=1, batch=1, runtime="torch")
    by_runtime = _runtime_latencies(model, here if measured_here else record.latency)
    record = record.replace(latency_by_runtime=by_runtime)
    if measured_here:  # no trial's measurement: the eager one just made, not a second one
        record = record.replace(latency_ms=by_runtime.torch, latency=here)

    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.parent / f".{folder.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()  # beside the target, so that the final rename stays on one file system
    try:
        # write_formats reads the classes and adds the checks (and why model.onnx is missing, where it is)
        formats_info: dict[str, Any] = {"classes": record.classes}
        files = write_formats(model, preprocessing, tmp, onnx=onnx, info=formats_info, stream=stream)
        if int8 is not None:
            if ONNX_FILE not in files:
                raise ExportError(f"the int8 model is made from {ONNX_FILE}, which was not written: "
                                  f"{formats_info.get('onnx') or 'onnx=False'}")
            meta = {"archsearch.arch_id": arch.id,
                    **({"archsearch.preprocessing": preprocessing.formula()} if preprocessing is not None else {})}
            formats_info["int8"] = write_int8(tmp, tmp / ONNX_FILE, int8, preprocessing=preprocessing,
                                              classes=list(record.classes or []), metadata=meta,
                                              peak_activation_bytes=record.peak_activation_bytes)
            files.append(INT8_FILE)
        record = record.merged(ExportMetrics.of(formats_info)).replace(files=files + [METRICS_FILE, CARD_FILE])
        record = record.defaulted(created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                                  torch_version=torch.__version__)
        (tmp / METRICS_FILE).write_text(json.dumps(record.to_json(), indent=2) + "\n", encoding="utf-8")
        (tmp / CARD_FILE).write_text(model_card(arch, record), encoding="utf-8")
        if folder.exists():  # _check_target allowed it: force, and empty or an earlier export
            shutil.rmtree(folder)
        tmp.rename(folder)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return folder


def _runtime_latencies(model: Net, where: LatencyWhere | None) -> RuntimeLatencies:
    """The bare network's latency in each runtime, measured here on the CPU (the trial's threads and batch if
    it was timed on the CPU, else 1 and 1): PyTorch eager mode, and ONNX Runtime where it is installed."""
    arch = model.arch
    threads, batch = 1, 1
    if where is not None and where.device == "cpu":
        threads = 1 if where.threads is None else where.threads
        batch = 1 if where.batch is None else where.batch
    out: dict[str, Any] = {"device": "cpu", "threads": threads, "batch": batch}
    for runtime in ("torch", "onnxruntime"):  # the int8 file's latency: the int8 export's own (metrics.json: int8)
        if runtime == "onnxruntime" and importlib.util.find_spec("onnxruntime") is None:
            out[runtime] = None
            continue
        lat = measure_latency(model, (arch.in_chs, arch.resolution, arch.resolution), runtime=runtime,
                              device="cpu", threads=threads, batch=batch)
        out[runtime] = lat.median_ms
    return RuntimeLatencies.of(out)


def _check_target(folder: Path, force: bool) -> None:
    if not folder.exists():
        return
    if not folder.is_dir():
        raise ConfigError("the output path exists and is not a folder", path=folder)
    contents = list(folder.iterdir())
    if not contents:
        return
    if not force:
        raise ConfigError("the output folder exists and is not empty; pass --force to replace it", path=folder)
    if not any((folder / m).is_file() for m in _EXPORT_MARKERS):
        raise ConfigError(
            f"refusing to replace a folder that is not an earlier export (no {' or '.join(_EXPORT_MARKERS)} in it)",
            path=folder,
        )


# ---------------------------------------------------------------------------------------------------------
# from a study: the chosen trials (archsearch.export.selection), retrained, written


def export(
    config: StudyConfig | str | os.PathLike,
    out: str | os.PathLike,
    *,
    trial: int | None = None,
    pareto: bool = False,
    epochs: int | None = None,
    force: bool = False,
    onnx: bool = True,
    command: str | None = None,
    stream: IO[str] | None = sys.stdout,
    progress: bool = False,
    int8: str | None = None,
    calibration_images: int | None = None,
    qat_epochs: int | None = None,
) -> list[Path]:
    """Retrain and export the best feasible trial (or ``trial``, or every Pareto-front member) of a study.

    One trial goes to ``out``; with ``pareto`` each member goes to ``out/trial-<number>``. Every target
    folder is checked before anything trains. Returns the folders written. ``progress``: a line to ``stream``
    after each epoch of the retrain (accuracy, time, ETA). ``int8`` (``"ptq"`` or ``"qat"``), ``calibration_images``
    and ``qat_epochs`` override the study's ``export`` section: an int8 model beside the float files.
    """
    if not isinstance(config, StudyConfig):
        config = load_study_config(config)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = open_study(config, create=False)
    chosen = select_trials(study, config, trial=trial, pareto=pareto)
    out = Path(out)
    targets = [out / f"trial-{t.number}" for t in chosen] if pareto else [out]
    for folder in targets:
        _check_target(folder, force)
    method = config.export.int8 if int8 is None else int8
    if method not in (None, "ptq", "qat"):
        raise ConfigError(f"int8 must be 'ptq' or 'qat', got {method!r}")
    if method is not None and not onnx:
        raise ConfigError("an int8 export is made from model.onnx: it cannot go with --no-onnx")
    n_calibration = calibration_images or config.export.calibration_images
    tune_epochs = qat_epochs or config.export.qat_epochs
    _, data = load_config_data(config)
    print_notes(data, stream)
    device = resolve_device(config.device)
    written = []
    for t, folder in zip(chosen, targets, strict=True):
        record = TrialRecord.of(t)
        arch = record.architecture()
        feasible = not record.infeasible
        how = "train split, the search's recipe" if epochs is None else f"train+val, {epochs} epoch(s)"
        _say(stream, f"trial {t.number}: retraining {arch.id} ({how})"
                     + ("" if feasible else " [over budget: infeasible in the search]"))
        # the retrain's state after each epoch, beside the folder: a killed export resumes it when run again
        ckpt = folder.parent / f".{folder.name}.trial-{t.number}.train.pt"
        if ckpt.exists():
            _say(stream, f"  resuming the retrain from {ckpt}")
        total = epochs or config.training.epochs
        epoch_line = _epoch_line(stream, total, "test" if epochs else "val") if progress else None
        model, measured = retrain_record(arch, config, data, epochs=epochs, device=device, checkpoint=ckpt,
                                         on_epoch=epoch_line)
        reranked = rerank_results.results(study, config).get(t.number)
        metrics = ExportMetrics(
            study=config.name,
            storage=redact(config.storage),
            trial=t.number,
            trial_state=t.state.name,
            trial_values=t.values,
            baseline=record.baseline,
            feasible=feasible,
            search_val_accuracy=record.val_accuracy,
            # as the study holds it, written by this or an earlier archsearch
            rerank=None if reranked is None else RerankResult.from_json(reranked),
        ).merged(measured).replace(
            budget=dataclasses.asdict(config.budget),
            objective=dataclasses.asdict(config.objective),
            command=command,
        )
        if record.latency_ms is not None:
            lt = config.budget.latency
            metrics = metrics.replace(latency_ms=record.latency_ms, latency=LatencyWhere(
                source="trial", device=lt.device, threads=lt.threads, batch=lt.batch,
                runtime="torch" if record.latency_runtime is None else record.latency_runtime))
        if method == "qat":
            _say(stream, f"  int8: quantization-aware fine-tuning, {tune_epochs} epoch(s)")
        job = None if method is None else int8_job(model, data, config, method, arch.resolution,
                                                   images=n_calibration, epochs=tune_epochs, device=device)
        save(model, folder, metrics=metrics, preprocessing=Preprocessing.of_data(data, arch.resolution),
             classes=data.classes, onnx=onnx, force=force, stream=stream, int8=job)
        ckpt.unlink(missing_ok=True)  # the folder holds the result now
        m = _read_metrics(folder / METRICS_FILE)
        acc = f"val {pct(m.val_accuracy)}, " if m.val_accuracy is not None else ""
        balanced = f" (balanced {pct(m.test.balanced_accuracy)})" if m.test is not None and m.test.given() else ""
        _say(stream, f"  wrote {folder}: {acc}test {pct(m.test_accuracy)}{balanced}, {fmt_count(m.macs or 0)} "
                     f"MACs, {m.latency_ms or 0:.3f} ms ({', '.join(m.files or [])})")
        if m.int8 is not None:
            _say(stream, "  " + int8_line(m.int8))
            budget_line = int8_budget_line(m.int8)
            if budget_line:
                _say(stream, "  " + budget_line)
        judged = next((split for split in (m.test, m.val) if split is not None and split.given()), None)
        figures = None if judged is None else judged.class_metrics()
        if figures is not None:
            note = figures.chance_note(f"trial {t.number}'s network")
            if note:
                _say(stream, f"  warning: {note} (card.md: Per class)")
        written.append(folder)
    return written


def _epoch_line(stream: IO[str] | None, total: int, split: str) -> Callable[[int, float], None]:
    """``on_epoch`` that prints ``epoch 3/10: test 91.20%, 12.3 s, ETA 86 s`` (the ETA from this run's epochs)."""
    start, first = time.perf_counter(), None

    def on_epoch(epoch: int, accuracy: float) -> None:
        nonlocal first
        first = epoch if first is None else first  # epochs before it came from a checkpoint
        spent = time.perf_counter() - start
        per_epoch = spent / (epoch - first + 1)
        _say(stream, f"  epoch {epoch + 1}/{total}: {split} {pct(accuracy)}, {per_epoch:.1f} s an epoch, "
                     f"ETA {per_epoch * (total - epoch - 1):.0f} s")

    return on_epoch


def _say(stream: IO[str] | None, text: str) -> None:
    if stream is not None:
        print(text, file=stream, flush=True)
