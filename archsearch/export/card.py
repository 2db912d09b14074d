"""``card.md`` of an export: what the network is, what it cost, how well it did and how to feed it."""

from __future__ import annotations

from typing import Any

from archsearch.core.class_metrics import ClassMetrics
from archsearch.network.arch import Arch

__all__ = ["exact", "model_card", "pct"]


def exact(v: float) -> str:
    """A limit as the YAML gave it: ``300000`` -> ``300,000``, ``1.5`` -> ``1.5`` (never rounded)."""
    return f"{int(v):,}" if float(v).is_integer() else repr(float(v))


def pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.2f}%"


def _runtime_rows(by_runtime: dict[str, Any] | None) -> list[tuple[str, str]]:
    """One row per runtime: the bare network's latency measured at export."""
    if not by_runtime:
        return []
    where = (f"{by_runtime.get('device', '?')}, {by_runtime.get('threads', '?')} thread(s), batch "
             f"{by_runtime.get('batch', '?')}, measured at export")
    names = {"torch": "PyTorch eager", "onnxruntime": "ONNX Runtime (model.onnx's network)"}
    return [(f"latency, {names[k]}",
             "- (not installed: pip install 'archsearch[onnx]')" if v is None else f"{v:.3f} ms ({where})")
            for k, v in by_runtime.items() if k in names]


def model_card(arch: Arch, m: dict[str, Any]) -> str:
    """The card's markdown from the architecture and ``metrics.json``'s contents."""
    lat = m.get("latency") or {}
    lat_where = f" ({lat.get('source', '?')}: {lat.get('device', '?')}, {lat.get('threads', '?')} thread(s), " \
                f"batch {lat.get('batch', '?')}, {lat.get('runtime', 'torch')}, the bare network)" if lat else ""
    budget = m.get("budget") or {}
    limits = ", ".join(f"{k} {exact(v)}" for k, v in budget.items() if k.startswith("max_") and v is not None)
    trained = {
        "train": "retrained on the training split with the study's recipe (as in the search)",
        "train+val": "retrained from scratch on training + validation data",
    }.get(m.get("retrained", ""), "as given to archsearch.export.save")
    rows = [
        ("architecture", f"`{arch.id}`"),
        ("network input", f"{arch.in_chs}x{arch.resolution}x{arch.resolution}, {arch.num_classes} classes"),
        *([("classes", ", ".join(m["classes"]))] if m.get("classes") else []),
        ("MACs (batch 1)", f"{m['macs']:,}"),
        ("parameters", f"{m['params']:,}"),
        ("peak activations", f"{m['peak_activation_bytes']:,} bytes ({m['peak_activation_bytes'] / 1024:,.1f} KiB, "
                             f"float32, batch 1)"),
        ("weights", f"{4 * m['params'] / 1024:,.1f} KiB as float32, {m['params'] / 1024:,.1f} KiB as int8"),
        # the trial's own measurement on the study's target; measured at export, it is the eager row below
        *([] if lat.get("source") == "export" and m.get("latency_by_runtime") else
          [("latency", "-" if m.get("latency_ms") is None else f"{m['latency_ms']:.3f} ms{lat_where}")]),
        *_runtime_rows(m.get("latency_by_runtime")),
        ("validation accuracy", pct(m.get("val_accuracy"))),
        ("test accuracy", pct(m.get("test_accuracy"))),
        *_balanced_rows(m),
    ]
    if "search_val_accuracy" in m:
        rows.append(("validation accuracy in the search", pct(m.get("search_val_accuracy"))))
    if m.get("rerank"):
        r = m["rerank"]
        rows.append(("re-rank", f"validation accuracy {pct(r.get('value'))} after {r.get('epochs', '?')} epoch(s) "
                                f"(the best trial is the best by it)"))
    if "study" in m:
        rows += [
            ("study", f"{m['study']} ({m.get('storage', '?')})"),
            ("trial", f"{m.get('trial')}" + (f" (seed baseline: {m['baseline']})" if m.get("baseline") else "")),
            ("budget", limits or "-"),
        ]
    if m.get("epochs") is not None:
        steps = (m.get("training") or {}).get("steps")
        length = f"{steps} optimizer steps ({m['epochs']} epoch(s))" if steps else f"{m['epochs']} epoch(s)"
        rows.append(("training", f"{trained}, {length}"))
    skipped = (m.get("dataset") or {}).get("skipped_files")
    if skipped:
        rows.append(("images left out", f"{len(skipped)} unreadable file(s) skipped (`dataset.bad_files: skip`), "
                                        f"e.g. `{skipped[0]}`; all of them: `dataset.skipped_files` in metrics.json"))
    table = "\n".join(f"| {k} | {v} |" for k, v in rows)
    command = m.get("command")
    made = f"\nMade by:\n\n```\n{command}\n```\n" if command else ""
    made += _per_class_section(m)
    return f"""# {arch.id}

{trained.capitalize()}.

| | |
|---|---|
{table}
{made}
## Input

{_input_text(arch, m.get("preprocessing"))}

## Use

```python
import archsearch
net = archsearch.load("path/to/this/folder")        # with archsearch installed

import sys; sys.path.insert(0, "path/to/this/folder")
import model; net = model.load()                     # PyTorch only

import torch
net = torch.export.load("model.pt2").module()        # the exported program (dynamic batch)

logits = net(images)                                 # {_takes(arch, m.get("preprocessing"))}
bare = model.load(bare=True)                         # the network alone (also archsearch.load(..., bare=True))
```

Files: {', '.join(f'`{f}`' for f in m.get('files', []))}. `weights.pt` (the bare network's weights) loads with
`torch.load(..., weights_only=True)`.
"""


def _balanced_rows(m: dict[str, Any]) -> list[tuple[str, str]]:
    """Balanced accuracy and macro-F1 of each split scored, and what always predicting the common class scores."""
    rows = []
    for split, name in (("val", "validation"), ("test", "test")):
        c = m.get(split)
        if isinstance(c, dict) and "balanced_accuracy" in c:
            rows += [(f"{name} balanced accuracy", pct(c["balanced_accuracy"])),
                     (f"{name} macro-F1", f"{c['macro_f1']:.4f}")]
    c = _judged(m)
    if c is not None:
        rows.append(("majority-class rate", f"always predicting `{c.majority_class}` scores {pct(c.majority_rate)} "
                                            f"({'test' if isinstance(m.get('test'), dict) else 'validation'} split)"))
    return rows


def _judged(m: dict[str, Any]) -> ClassMetrics | None:
    """The per-class figures the card shows: the test split's, else the validation split's (None: neither)."""
    for split in ("test", "val"):
        c = m.get(split)
        if isinstance(c, dict) and "confusion_matrix" in c:
            return ClassMetrics.from_matrix(c["confusion_matrix"], c.get("classes"))
    return None


def _per_class_section(m: dict[str, Any]) -> str:
    c = _judged(m)
    if c is None:
        return ""
    split = "test" if isinstance(m.get("test"), dict) else "validation"
    warning = c.chance_note(f"This network ({split} split)")
    return (f"\n## Per class ({split} split)\n\n" + (f"**Warning: {warning}.**\n\n" if warning else "")
            + c.markdown() + "\n")


def _takes(arch: Arch, p: dict[str, Any] | None) -> str:
    if p is None:
        return f"float32, N x {arch.in_chs} x {arch.resolution} x {arch.resolution}, already preprocessed"
    c, h, w = p["input_shape"]
    return f"raw images, N x {c} x {h} x {w}, in the dataset's own range"


def _input_text(arch: Arch, p: dict[str, Any] | None) -> str:
    if p is None:
        return (f"No preprocessing was recorded: every format takes the network's own input, float32 "
                f"N x {arch.in_chs} x {arch.resolution} x {arch.resolution}, prepared as its training data was.")
    c, h, w = p["input_shape"]
    return (f"`model.load()`, `model.pt2`, `model.onnx` and `archsearch.load` take **raw images**: N x {c} x {h} x "
            f"{w}, {p['raw']} (`model.pt2` and `model.onnx` as float32, `model.py` any real dtype). They apply "
            f"what training did, in this order:\n\n    {p['formula']}\n\nThe bare network "
            f"(`model.load(bare=True)`) takes that result, N x {' x '.join(map(str, p['network_input_shape']))}. "
            f"The same record is `preprocessing` in `metrics.json`, and `PREPROCESSING` in `model.py`.")
