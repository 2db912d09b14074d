"""``card.md`` of an export: what the network is, what it cost, how well it did and how to feed it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from archsearch.core.class_metrics import ClassMetrics
from archsearch.export.metrics import (
    ExportMetrics,
    Int8Metrics,
    LatencyWhere,
    PreprocessingRecord,
    RerankResult,
    RuntimeLatencies,
)
from archsearch.network.arch import Arch

__all__ = ["DROP_WARNING_POINTS", "exact", "int8_budget_line", "int8_line", "model_card", "pct"]

#: a drop in test accuracy from model.onnx to model.int8.onnx over this many points is named, with what to try
DROP_WARNING_POINTS = 1.0

R = TypeVar("R", LatencyWhere, RuntimeLatencies, RerankResult)


def exact(v: float) -> str:
    """A limit as the YAML gave it: ``300000`` -> ``300,000``, ``1.5`` -> ``1.5`` (never rounded)."""
    return f"{int(v):,}" if float(v).is_integer() else repr(float(v))


def pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.2f}%"


def _runtime_rows(by_runtime: RuntimeLatencies | None) -> list[tuple[str, str]]:
    """One row per runtime: the bare network's latency measured at export."""
    if by_runtime is None:
        return []
    where = (f"{_known(by_runtime.device)}, {_known(by_runtime.threads)} thread(s), batch "
             f"{_known(by_runtime.batch)}, measured at export")
    names = {"torch": "PyTorch eager", "onnxruntime": "ONNX Runtime (model.onnx's network)"}
    return [(f"latency, {names[k]}",
             "- (not installed: pip install 'archsearch[onnx]')" if v is None else f"{v:.3f} ms ({where})")
            for k, v in by_runtime.runtimes().items() if k in names]


def _known(v: object) -> str:
    return "?" if v is None else str(v)


def _given(record: R | None) -> R | None:
    """``record`` where it holds anything (an empty object in the file, like none, shows nothing)."""
    return record if record is not None and record.given() else None


def model_card(arch: Arch, m: ExportMetrics | Mapping[str, Any]) -> str:
    """The card's markdown from the architecture and ``metrics.json``'s contents (the record, or the JSON object
    as :meth:`ExportMetrics.from_json` reads it)."""
    if not isinstance(m, ExportMetrics):
        m = ExportMetrics.from_json(m)
    lat = _given(m.latency)
    lat_where = f" ({_known(lat.source)}: {_known(lat.device)}, {_known(lat.threads)} thread(s), " \
                f"batch {_known(lat.batch)}, {lat.runtime or 'torch'}, the bare network)" if lat else ""
    by_runtime = _given(m.latency_by_runtime)
    limits = ", ".join(f"{k} {exact(v)}" for k, v in m.budget_limits().items())
    trained = {
        "train": "retrained on the training split with the study's recipe (as in the search)",
        "train+val": "retrained from scratch on training + validation data",
    }.get(m.retrained or "", "as given to archsearch.export.save")
    params = _count(m.params)
    peak = _count(m.peak_activation_bytes)
    rows = [
        ("architecture", f"`{arch.id}`"),
        ("network input", f"{arch.in_chs}x{arch.resolution}x{arch.resolution}, {arch.num_classes} classes"),
        *([("classes", ", ".join(m.classes))] if m.classes else []),
        ("MACs (batch 1)", f"{_count(m.macs):,}"),
        ("parameters", f"{params:,}"),
        ("peak activations", f"{peak:,} bytes at float32 ({peak / 1024:,.1f} KiB; {peak / 4096:,.1f} KiB at int8), "
                             "batch 1"),
        ("weights", f"{4 * params / 1024:,.1f} KiB as float32, {params / 1024:,.1f} KiB as int8"),
        # the trial's own measurement on the study's target; measured at export, it is the eager row below
        *([] if lat and lat.source == "export" and by_runtime else
          [("latency", "-" if m.latency_ms is None else f"{m.latency_ms:.3f} ms{lat_where}")]),
        *_runtime_rows(by_runtime),
        ("validation accuracy", pct(m.val_accuracy)),
        ("test accuracy", pct(m.test_accuracy)),
        *_balanced_rows(m),
    ]
    if m.records_search_accuracy:
        rows.append(("validation accuracy in the search", pct(m.search_val_accuracy)))
    r = _given(m.rerank)
    if r:
        rows.append(("re-rank", f"validation accuracy {pct(r.value)} after {_known(r.epochs)} epoch(s) "
                                f"(the best trial is the best by it)"))
    if m.of_study:
        rows += [
            ("study", f"{m.study} ({_known(m.storage)})"),
            ("trial", f"{m.trial}" + (f" (seed baseline: {m.baseline})" if m.baseline else "")),
            ("budget", limits or "-"),
        ]
    if m.epochs is not None:
        steps = m.training_steps
        length = f"{steps} optimizer steps ({m.epochs} epoch(s))" if steps else f"{m.epochs} epoch(s)"
        rows.append(("training", f"{trained}, {length}"))
    skipped = None if m.dataset is None else m.dataset.skipped_files
    if skipped:
        rows.append(("images left out", f"{len(skipped)} unreadable file(s) skipped (`dataset.bad_files: skip`), "
                                        f"e.g. `{skipped[0]}`; all of them: `dataset.skipped_files` in metrics.json"))
    table = "\n".join(f"| {k} | {v} |" for k, v in rows)
    command = m.command
    made = f"\nMade by:\n\n```\n{command}\n```\n" if command else ""
    made += _per_class_section(m) + _int8_section(m.int8)
    preprocessing = m.preprocessing
    return f"""# {arch.id}

{trained.capitalize()}.

| | |
|---|---|
{table}
{made}
## Input

{_input_text(arch, preprocessing)}

## Use

```python
import archsearch
net = archsearch.load("path/to/this/folder")        # with archsearch installed

import sys; sys.path.insert(0, "path/to/this/folder")
import model; net = model.load()                     # PyTorch only

import torch
net = torch.export.load("model.pt2").module()        # the exported program (dynamic batch)

logits = net(images)                                 # {_takes(arch, preprocessing)}
bare = model.load(bare=True)                         # the network alone (also archsearch.load(..., bare=True))
```

Files: {', '.join(f'`{f}`' for f in m.files or [])}. `weights.pt` (the bare network's weights) loads with
`torch.load(..., weights_only=True)`.
"""


def _kib(v: int | None) -> str:
    return "-" if v is None else f"{v / 1024:,.1f} KiB"


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v:.3f} ms"


def int8_line(i: Int8Metrics) -> str:
    """``int8 (ptq): test 91.20% (float 91.45%, -0.25 points), 75.2 KiB (float 297.1 KiB), 0.41 ms (float 0.23)``."""
    drop = "" if i.drop_points is None else f", {0.0 - i.drop_points + 0.0:+.2f} points"  # no "-0.00"
    return (f"{i.file or 'model.int8.onnx'} ({i.method}): test {pct(i.test_accuracy)} (float "
            f"{pct(i.float_test_accuracy)}{drop}), {_kib(i.file_bytes)} (float {_kib(i.float_file_bytes)}), "
            f"{_ms(i.latency_ms)} (float {_ms(i.float_latency_ms)}) in ONNX Runtime, {_known(i.latency_threads)} "
            f"thread(s)")


def int8_advice(i: Int8Metrics) -> str | None:
    """What to try when the int8 file loses more than ``DROP_WARNING_POINTS`` of test accuracy (None: it does not)."""
    if i.drop_points is None or i.drop_points <= DROP_WARNING_POINTS:
        return None
    tries = ["quantization-aware fine-tuning (`archsearch export ... --int8 qat`, or `export: {int8: qat}`)"
             if i.method == "ptq" else "more fine-tuning epochs (`--qat-epochs`, `export.qat_epochs`)",
             "more calibration images (`--calibration-images`, `export.calibration_images`)",
             "or ship model.onnx (float32), which keeps the accuracy"]
    return (f"the int8 model loses {i.drop_points:.2f} points of test accuracy (over "
            f"{DROP_WARNING_POINTS:g}); try " + "; ".join(tries))


def int8_budget_line(i: Int8Metrics) -> str | None:
    """``the int8 file against the budget: max_model_kb 15.7 <= 64 (KiB of int8 weights in the file)`` (None: no
    limit of the study speaks of the int8 model)."""
    if not i.budget:
        return None
    parts = [f"{key} {e.get('value', 0):,.3g} {'<=' if e.get('within') else '>'} {e.get('limit', 0):,.3g} "
             f"({e.get('what')})" + ("" if e.get("within") else ": OVER")
             for key, e in i.budget.items() if isinstance(e, dict)]
    return "the int8 file against the budget: " + "; ".join(parts)


def _int8_section(i: Int8Metrics | None) -> str:
    if i is None or not i.given():
        return ""
    weights = i.weight_bytes or {}
    int8_bytes = weights.get("int8")
    rows = [
        ("test accuracy", pct(i.float_test_accuracy), pct(i.test_accuracy)),
        ("file", _kib(i.float_file_bytes), _kib(i.file_bytes)),
        ("weights in the file", _kib(i.float_weight_bytes),
         f"{_kib(weights.get('total'))} ({_kib(int8_bytes)} int8 weights, the rest biases, scales and zero points)"),
        (f"latency (ONNX Runtime, {_known(i.latency_threads)} thread(s), batch {_known(i.latency_batch)})",
         _ms(i.float_latency_ms), _ms(i.latency_ms)),
    ]
    how = {"ptq": "post-training static quantization", "qat": f"quantization-aware fine-tuning "
           f"({_known(i.qat_epochs)} epoch(s)), then static quantization"}.get(i.method or "", _known(i.method))
    advice = int8_advice(i)
    slower_here = (i.latency_ms or 0) > (i.float_latency_ms or float("inf"))
    slower = ("\nOn the CPU it was measured on, the int8 file ran slower than the float one: it saves memory and "
              "suits int8 hardware, not this CPU's speed.\n" if slower_here else "")
    table = "\n".join(f"| {k} | {a} | {b} |" for k, a, b in rows)
    budget = int8_budget_line(i)
    slower += f"\n{budget[0].upper()}{budget[1:]}.\n" if budget else ""
    return (f"\n## Int8 model (`{i.file}`)\n\n" + (f"**Warning: {advice}.**\n\n" if advice else "")
            + f"{how.capitalize()}, activation ranges from {_known(i.calibration_images)} training images "
            f"({_known(i.calibration)}); "
            f"{_known(i.format)}. It takes what `model.onnx` takes and runs with onnxruntime alone.\n\n"
            f"| | model.onnx (float32) | {i.file} |\n|---|---|---|\n{table}\n" + slower)


def _count(v: int | None) -> int:
    """A count the card needs (macs, params, peak activations): a record without it is no export's."""
    if v is None:
        raise ValueError("metrics.json has no macs, params or peak_activation_bytes: not an export's")
    return v


def _balanced_rows(m: ExportMetrics) -> list[tuple[str, str]]:
    """Balanced accuracy and macro-F1 of each split scored, and what always predicting the common class scores."""
    rows = []
    for c, name in ((m.val, "validation"), (m.test, "test")):
        if c is not None and c.balanced_accuracy is not None:
            rows += [(f"{name} balanced accuracy", pct(c.balanced_accuracy)),
                     (f"{name} macro-F1", "-" if c.macro_f1 is None else f"{c.macro_f1:.4f}")]
    judged = _judged(m)
    if judged is not None:
        rows.append(("majority-class rate", f"always predicting `{judged.majority_class}` scores "
                                            f"{pct(judged.majority_rate)} "
                                            f"({_judged_split(m)} split)"))
    return rows


def _judged(m: ExportMetrics) -> ClassMetrics | None:
    """The per-class figures the card shows: the test split's, else the validation split's (None: neither)."""
    for c in (m.test, m.val):
        if c is not None and c.confusion_matrix is not None:
            return ClassMetrics.from_matrix(c.confusion_matrix, c.classes)
    return None


def _judged_split(m: ExportMetrics) -> str:
    return "test" if m.test is not None else "validation"


def _per_class_section(m: ExportMetrics) -> str:
    c = _judged(m)
    if c is None:
        return ""
    split = _judged_split(m)
    warning = c.chance_note(f"This network ({split} split)")
    return (f"\n## Per class ({split} split)\n\n" + (f"**Warning: {warning}.**\n\n" if warning else "")
            + c.markdown() + "\n")


def _takes(arch: Arch, p: PreprocessingRecord | None) -> str:
    if p is None:
        return f"float32, N x {arch.in_chs} x {arch.resolution} x {arch.resolution}, already preprocessed"
    c, h, w = _shape(p.input_shape)
    return f"raw images, N x {c} x {h} x {w}, in the dataset's own range"


def _input_text(arch: Arch, p: PreprocessingRecord | None) -> str:
    if p is None:
        return (f"No preprocessing was recorded: every format takes the network's own input, float32 "
                f"N x {arch.in_chs} x {arch.resolution} x {arch.resolution}, prepared as its training data was.")
    c, h, w = _shape(p.input_shape)
    return (f"`model.load()`, `model.pt2`, `model.onnx` and `archsearch.load` take **raw images**: N x {c} x {h} x "
            f"{w}, {p.raw} (`model.pt2` and `model.onnx` as float32, `model.py` any real dtype). They apply "
            f"what training did, in this order:\n\n    {p.formula}\n\nThe bare network "
            f"(`model.load(bare=True)`) takes that result, N x {' x '.join(map(str, p.network_input_shape or []))}. "
            f"The same record is `preprocessing` in `metrics.json`, and `PREPROCESSING` in `model.py`.")


def _shape(shape: list[int] | None) -> tuple[int, int, int]:
    if shape is None or len(shape) != 3:
        raise ValueError(f"metrics.json's preprocessing.input_shape is C, H, W, got {shape!r}")
    c, h, w = shape
    return c, h, w
