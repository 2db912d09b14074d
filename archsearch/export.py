"""Export a trial's architecture as a trained, self-contained model folder.

Trials store no weights, so an export retrains the architecture with the study's recipe: on the training
split as in the search (``retrained: "train"``, validation accuracy reported), or, with ``epochs``, from
scratch on training + validation (``"train+val"``). Test accuracy is measured in both cases. The folder:

- ``arch.json``: the architecture record (``Arch.to_dict()``), the single source of truth;
- ``weights.pt``: a plain dict of tensors (``torch.load(..., weights_only=True)``);
- ``model.py``: one standalone file, PyTorch only, generated from the source of the block classes the
  network uses; ``model.load()`` gives the network in eval mode, ``python model.py`` runs it on zeros;
- ``model.pt2``: ``torch.export`` program (dynamic batch), for ``torch.export.load``;
- ``model.onnx``: where onnx and onnxscript are installed (the ``onnx`` extra);
- ``metrics.json`` and ``card.md``: costs, accuracies, budget, study, trial and the command that made it.

Every exported format is run on one batch against the in-memory network before the folder is moved into
place; a difference above the tolerance is an error, not a warning.

    archsearch export studies/quickstart.yaml --out runs/best [--trial N | --pareto] [--epochs E]
    net = archsearch.export.load("runs/best")   # build(Arch.from_dict(arch.json)) + weights, eval mode
"""

from __future__ import annotations

import argparse
import ast
import builtins
import dataclasses
import datetime
import importlib.util
import inspect
import json
import logging
import math
import os
import shlex
import shutil
import sys
import textwrap
import uuid
import warnings
from pathlib import Path
from typing import IO, Any

import optuna
import torch
from optuna.trial import FrozenTrial, TrialState

from . import blocks
from .arch import Arch
from .build import Net, build
from .config import StudyConfig, redact, load_study_config
from .cost import arch_cost
from .data import DataBundle
from .errors import ConfigError
from .latency import measure_latency
from .objective import ARCH_ATTR, BASELINE_ATTR, budget_excess
from .study import best_trials, fmt_count, load_config_data, open_study
from .train import evaluate, resolve_device, train

__all__ = [
    "ExportError",
    "export",
    "save",
    "load",
    "model_source",
    "retrain",
    "select_trials",
    "add_parser",
    "cmd_export",
]

ARCH_FILE = "arch.json"
WEIGHTS_FILE = "weights.pt"
MODEL_FILE = "model.py"
PROGRAM_FILE = "model.pt2"
ONNX_FILE = "model.onnx"
METRICS_FILE = "metrics.json"
CARD_FILE = "card.md"
TOLERANCE = 1e-4  # max |logits - reference| allowed for every exported format (times max(1, |reference|))
_EXPORT_MARKERS = (ARCH_FILE, METRICS_FILE)  # a folder holding one of these is an earlier export


class ExportError(RuntimeError):
    """An exported format does not reproduce the network (a bug, or a block that cannot be carried)."""


# ---------------------------------------------------------------------------------------------------------
# model.py: generated from the source of the block classes


_SEARCH_ONLY_METHODS = ("validate", "cost")  # the block protocol's search-time half: not needed to run a net
_PLAN_NAMES = ("ARCH_ID", "INPUT_SHAPE", "STEM", "STEM_POOL", "STAGES", "HEAD", "FEATURES", "NUM_CLASSES")
_FIXED_IMPORTS = {  # name -> import line, for what the template around the blocks uses
    "annotations": "from __future__ import annotations",
    "Path": "from pathlib import Path",
    "torch": "import torch",
    "nn": "from torch import nn",
}

_NET_TEMPLATE = '''
class Net(nn.Module):
    """stem -> (max-pool) -> stages -> head, as ``archsearch.build.Net`` builds it from the record."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = BLOCKS[STEM.block].from_spec(STEM)
        self.stem_pool = nn.MaxPool2d(STEM_POOL, 2, (STEM_POOL - 1) // 2) if STEM_POOL else nn.Identity()
        self.stages = nn.Sequential(
            *(nn.Sequential(*(BLOCKS[spec.block].from_spec(spec) for spec in stage)) for stage in STAGES)
        )
        self.pool = nn.AdaptiveAvgPool2d(1) if HEAD == "gap" else nn.Identity()
        self.flatten = nn.Flatten(1)
        self.classifier = nn.Linear(FEATURES, NUM_CLASSES)

{forward}


def load(folder: str | Path | None = None) -> Net:
    """The network with its weights (``weights.pt`` in ``folder``, default: this file's folder), in eval mode."""
    folder = Path(__file__).resolve().parent if folder is None else Path(folder)
    net = Net()
    state = torch.load(folder / "weights.pt", map_location="cpu", weights_only=True)
    net.load_state_dict(state)
    return net.eval()


if __name__ == "__main__":
    net = load()
    with torch.no_grad():
        logits = net(torch.zeros(1, *INPUT_SHAPE))
    print(f"{{ARCH_ID}}: logits shape {{tuple(logits.shape)}}")
'''


class _Names(ast.NodeVisitor):
    """Names a piece of code reads and binds; annotations are skipped (they stay strings in model.py)."""

    def __init__(self) -> None:
        self.loads: set[str] = set()
        self.bound: set[str] = set()

    def visit_Name(self, node: ast.Name) -> None:
        (self.loads if isinstance(node.ctx, ast.Load) else self.bound).add(node.id)

    def visit_arg(self, node: ast.arg) -> None:
        self.bound.add(node.arg)

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        self.bound.add(node.name)
        for child in (*node.decorator_list, node.args, *node.body):
            self.visit(child)

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        self.visit(node.target)
        if node.value is not None:
            self.visit(node.value)

    def visit_Import(self, node: ast.Import | ast.ImportFrom) -> None:
        module = node.module if isinstance(node, ast.ImportFrom) else None
        for alias in node.names:
            full = module or alias.name
            if getattr(node, "level", 0) or not _allowed_module(full):
                raise ExportError(f"a block imports {full!r} (line {node.lineno} of its source); {MODEL_FILE} may "
                                  f"only import torch and the standard library")
            self.bound.add((alias.asname or alias.name).split(".")[0])

    visit_ImportFrom = visit_Import


def _is_register_decorator(node: ast.expr) -> bool:
    target = node.func if isinstance(node, ast.Call) else node
    name = target.attr if isinstance(target, ast.Attribute) else getattr(target, "id", None)
    return name == "register_block"


def _stripped_source(obj: Any) -> str:
    """``obj``'s source without ``@register_block`` and without the search-time methods of a block class."""
    try:
        text = textwrap.dedent(inspect.getsource(obj))
    except (OSError, TypeError) as e:
        raise ExportError(
            f"cannot read the source of {obj.__module__}.{obj.__qualname__} ({e}); blocks to be exported must "
            f"be defined in a .py file"
        ) from None
    tree = ast.parse(text)
    node = tree.body[0]
    drop: list[tuple[int, int]] = []  # 1-based inclusive line ranges
    for dec in getattr(node, "decorator_list", []):
        if _is_register_decorator(dec):
            drop.append((dec.lineno, dec.end_lineno))
    if isinstance(node, ast.ClassDef) and isinstance(obj, type) and issubclass(obj, blocks.Block):
        for item in node.body:
            if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)) and item.name in _SEARCH_ONLY_METHODS:
                start = min([item.lineno] + [d.lineno for d in item.decorator_list])
                drop.append((start, item.end_lineno))
    lines = text.splitlines()
    keep = [line for i, line in enumerate(lines, 1) if not any(a <= i <= b for a, b in drop)]
    out: list[str] = []
    for line in keep:  # no runs of blank lines where methods were cut out
        if not line.strip() and out and not out[-1].strip():
            continue
        out.append(line)
    while out and not out[-1].strip():
        out.pop()
    return "\n".join(out) + "\n"


def _allowed_module(name: str) -> bool:
    root = name.split(".")[0]
    return root == "torch" or root in sys.stdlib_module_names


def _import_line(name: str, value: Any) -> str:
    if inspect.ismodule(value):
        full = value.__name__
        if full == name:
            return f"import {name}"
        parent, _, leaf = full.rpartition(".")
        return f"from {parent} import {leaf}" if leaf == name else f"import {full} as {name}"
    module, qual = value.__module__, value.__qualname__
    return f"from {module} import {qual}" + ("" if qual == name else f" as {name}")


class _Closure:
    """Collects the definitions (in dependency order) and imports that a set of objects needs."""

    def __init__(self, home_modules: set[str]):
        self.home = home_modules  # modules whose functions and classes are copied (not imported)
        self.imports: dict[str, str] = dict(_FIXED_IMPORTS)
        self.constants: dict[str, str] = {}
        self.sources: list[str] = []
        self._done: set[int] = set()
        self._active: set[int] = set()

    def add(self, obj: Any) -> None:
        if id(obj) in self._done or id(obj) in self._active:
            return
        self._active.add(id(obj))
        source = _stripped_source(obj)
        names = _Names()
        names.visit(ast.parse(source))
        module_globals = vars(sys.modules[obj.__module__])
        for name in sorted(names.loads - names.bound - {obj.__name__}):
            if name not in module_globals:
                if not hasattr(builtins, name):
                    raise ExportError(f"{obj.__qualname__} reads {name!r}, which its module does not define")
                continue
            self._need(name, module_globals[name], obj)
        self._active.discard(id(obj))
        self._done.add(id(obj))
        self.sources.append(source)

    def _need(self, name: str, value: Any, user: Any) -> None:
        where = f"{user.__module__}.{user.__qualname__}"
        if inspect.ismodule(value):
            if not _allowed_module(value.__name__):
                raise ExportError(f"{where} uses module {value.__name__}; {MODEL_FILE} may only import torch and the "
                                  f"standard library")
            self._import(name, _import_line(name, value))
        elif inspect.isclass(value) or inspect.isfunction(value) or inspect.isbuiltin(value):
            module = getattr(value, "__module__", "") or ""
            if module in self.home and not inspect.isbuiltin(value):
                self.add(value)
            elif _allowed_module(module) and hasattr(value, "__qualname__"):
                self._import(name, _import_line(name, value))
            else:
                raise ExportError(f"{where} uses {name} from {module}; {MODEL_FILE} may only depend on torch and "
                                  f"the standard library (or code defined beside the block)")
        elif value is None or isinstance(value, (bool, int, float, str)) or (
            isinstance(value, tuple) and all(isinstance(v, (bool, int, float, str)) for v in value)
        ):
            self.constants[name] = f"{name} = {value!r}"
        else:
            raise ExportError(f"{where} uses {name} = {type(value).__name__}, which cannot be written into "
                              f"{MODEL_FILE}")

    def _import(self, name: str, line: str) -> None:
        if self.imports.get(name, line) != line:
            raise ExportError(f"{name!r} means two things in the exported code: {self.imports[name]!r} and {line!r}")
        self.imports[name] = line


def model_source(arch: Arch) -> str:
    """The text of a standalone ``model.py`` for ``arch``: only torch and the standard library.

    The block classes, ``BlockSpec`` and the helpers they call (``channel_shuffle``) are copied from their
    installed source, less ``@register_block`` and the search-time ``validate``/``cost`` methods; the network
    is a small ``Net`` over the record's expanded plan whose ``forward`` is ``archsearch.build.Net.forward``.
    """
    stem_spec, stages = arch.plan()
    used = list(dict.fromkeys([stem_spec.block] + [s.block for stage in stages for s in stage]))
    classes = [blocks.get_block(name) for name in used]
    home = {blocks.__name__} | {cls.__module__ for cls in classes}
    closure = _Closure(home)
    closure.add(blocks.BlockSpec)
    for cls in classes:
        closure.add(cls)
    for name in _PLAN_NAMES + ("Net", "load", "BLOCKS"):
        if name in closure.constants or name in closure.imports:
            raise ExportError(f"a block's module defines {name!r}, which {MODEL_FILE} uses for its own")

    forward = textwrap.indent(textwrap.dedent(inspect.getsource(Net.forward)), "    ").rstrip()
    feat = arch.out_chs if arch.head == "gap" else _flat_features(arch)
    plan = [
        f"ARCH_ID = {arch.id!r}",
        f"INPUT_SHAPE = {(arch.in_chs, arch.resolution, arch.resolution)!r}  # C, H, W",
        f"STEM = {stem_spec!r}",
        f"STEM_POOL = {arch.stem.pool!r}  # max-pool kernel after the stem (stride 2); 0: none",
        "STAGES = (",
        *(
            "    (\n" + "".join(f"        {spec!r},\n" for spec in stage) + "    ),"
            for stage in stages
        ),
        ")",
        f"HEAD = {arch.head!r}",
        f"FEATURES = {feat!r}  # classifier inputs",
        f"NUM_CLASSES = {arch.num_classes!r}",
    ]
    block_map = "BLOCKS = {\n" + "".join(f"    {n!r}: {blocks.get_block(n).__name__},\n" for n in used) + "}"
    future = closure.imports.pop("annotations")
    lines = set(closure.imports.values())
    stdlib_then_torch = [
        sorted(group, key=lambda s: (not s.startswith("import "), s))
        for group in ([s for s in lines if not _is_torch_import(s)], [s for s in lines if _is_torch_import(s)])
    ]
    imports = "\n\n".join("\n".join(group) for group in stdlib_then_torch if group)
    header = f'''"""A standalone image classifier (PyTorch only), exported by archsearch.

Architecture {arch.id}.
Generated from the source of archsearch's block classes; re-export rather than edit.

    import model                 # with this folder on sys.path
    net = model.load()           # eval mode, weights from weights.pt beside this file
    logits = net(torch.zeros(1, *model.INPUT_SHAPE))

    python model.py              # one forward pass on zeros; prints the logits' shape
"""'''
    parts = [
        header,
        future + "\n\n" + imports,
        *(["\n".join(closure.constants.values())] if closure.constants else []),
        *closure.sources,
        block_map,
        "# the record's plan (archsearch.arch.Arch.plan): one BlockSpec per block\n" + "\n".join(plan),
        _NET_TEMPLATE.format(forward=forward).strip() + "\n",
    ]
    text = "\n\n\n".join(p.strip("\n") for p in parts[:-1]) + "\n\n\n" + parts[-1]
    compile(text, MODEL_FILE, "exec")
    return text


def _is_torch_import(line: str) -> bool:
    return line.split()[1].split(".")[0] == "torch"


def _flat_features(arch: Arch) -> int:
    return arch.walk(blocks.Tally(arch.in_chs, arch.resolution, arch.resolution), head=False).numel


# ---------------------------------------------------------------------------------------------------------
# the folder: save and load


def load(folder: str | os.PathLike) -> Net:
    """The exported network in ``folder``: ``build(Arch.from_dict(arch.json))`` + ``weights.pt``, in eval mode."""
    folder = Path(folder)
    for name in (ARCH_FILE, WEIGHTS_FILE):
        if not (folder / name).is_file():
            raise ConfigError(f"not an exported model folder: {name} is missing", path=folder)
    arch = Arch.from_dict(json.loads((folder / ARCH_FILE).read_text(encoding="utf-8")))
    net = build(arch)
    net.load_state_dict(torch.load(folder / WEIGHTS_FILE, map_location="cpu", weights_only=True))
    return net.eval()


def save(
    model: Net,
    folder: str | os.PathLike,
    *,
    metrics: dict[str, Any] | None = None,
    onnx: bool = True,
    force: bool = False,
    stream: IO[str] | None = None,
) -> Path:
    """Write ``model`` (a built, trained :class:`~archsearch.build.Net`) as an export folder; returns it.

    ``metrics`` adds to (and overrides) what is measured here: the analytic cost, the latency (CPU, one
    thread, batch 1, when ``metrics`` has no ``latency_ms``) and the output difference of every format.
    The files are written to a temporary folder beside ``folder`` and moved into place once every format
    reproduces the network; an existing ``folder`` is replaced only with ``force`` (and only if it is
    empty or an earlier export). The model is moved to the CPU, in eval mode.
    """
    if not isinstance(model, Net):
        raise TypeError(f"save() takes an archsearch Net (from build()), got {type(model).__name__}")
    folder = Path(folder)
    _check_target(folder, force)
    arch = model.arch
    model = model.cpu().to(memory_format=torch.contiguous_format).eval()
    cost = arch_cost(arch)
    info: dict[str, Any] = {
        "arch_id": arch.id,
        "macs": cost.macs,
        "params": cost.params,
        "peak_activation_bytes": cost.peak_activation_bytes,
    }
    info.update(metrics or {})
    if info.get("latency_ms") is None:
        lat = measure_latency(model, (arch.in_chs, arch.resolution, arch.resolution), device="cpu", threads=1, batch=1)
        info["latency_ms"] = lat.median_ms
        info["latency"] = {"source": "export", "device": "cpu", "threads": 1, "batch": 1}

    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.parent / f".{folder.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()  # beside the target, so that the final rename stays on one file system
    try:
        files = _write_formats(model, arch, tmp, onnx=onnx, info=info, stream=stream)
        info["files"] = files + [METRICS_FILE, CARD_FILE]
        info.setdefault("created", datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"))
        info.setdefault("torch_version", torch.__version__)
        (tmp / METRICS_FILE).write_text(json.dumps(_jsonable(info), indent=2) + "\n", encoding="utf-8")
        (tmp / CARD_FILE).write_text(_card(arch, info), encoding="utf-8")
        if folder.exists():  # _check_target allowed it: force, and empty or an earlier export
            shutil.rmtree(folder)
        tmp.rename(folder)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return folder


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


def _write_formats(model: Net, arch: Arch, tmp: Path, *, onnx: bool, info: dict[str, Any],
                   stream: IO[str] | None) -> list[str]:
    (tmp / ARCH_FILE).write_text(json.dumps(arch.to_dict(), indent=2) + "\n", encoding="utf-8")
    state = {k: v.detach().cpu().clone().contiguous() for k, v in model.state_dict().items()}  # a plain dict
    torch.save(state, tmp / WEIGHTS_FILE)
    (tmp / MODEL_FILE).write_text(model_source(arch), encoding="utf-8")

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, arch.in_chs, arch.resolution, arch.resolution, generator=gen)
    with torch.no_grad():
        reference = model(x)
    checks: dict[str, float] = {}

    def check(name: str, got: torch.Tensor) -> None:
        diff = (got.detach().float() - reference).abs().max().item()
        checks[name] = diff
        limit = TOLERANCE * max(1.0, reference.abs().max().item())
        if not diff <= limit:
            raise ExportError(
                f"{name} does not reproduce the network: max |logits difference| {diff:.3g} > {limit:.3g}"
            )

    check(MODEL_FILE, _run_model_py(tmp, x))
    batch = torch.export.Dim("batch", min=1, max=65536)
    program = torch.export.export(model, (x,), dynamic_shapes={"x": {0: batch}})
    torch.export.save(program, tmp / PROGRAM_FILE)
    with torch.no_grad():
        check(PROGRAM_FILE, program.module()(x))
    files = [ARCH_FILE, WEIGHTS_FILE, MODEL_FILE, PROGRAM_FILE]
    if onnx:
        missing = [m for m in ("onnx", "onnxscript") if importlib.util.find_spec(m) is None]
        if missing:
            info["onnx"] = f"not written: {', '.join(missing)} not installed (pip install 'archsearch[onnx]')"
            _say(stream, f"  {ONNX_FILE} {info['onnx']}")
        else:
            _write_onnx(program, x, tmp / ONNX_FILE)
            files.append(ONNX_FILE)
            if importlib.util.find_spec("onnxruntime") is not None:
                import onnxruntime

                session = onnxruntime.InferenceSession(str(tmp / ONNX_FILE), providers=["CPUExecutionProvider"])
                check(ONNX_FILE, torch.from_numpy(session.run(None, {"x": x.numpy()})[0]))
    info["checks"] = {"max_abs_logit_difference": checks, "batch": tuple(x.shape)}
    return files


def _write_onnx(program: torch.export.ExportedProgram, x: torch.Tensor, path: Path) -> None:
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


def _run_model_py(folder: Path, x: torch.Tensor) -> torch.Tensor:
    """Load the generated model.py as a module of its own (not archsearch's classes) and run it on ``x``."""
    name = f"_archsearch_export_{uuid.uuid4().hex}"
    spec = importlib.util.spec_from_file_location(name, folder / MODEL_FILE)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look the module up while the file runs
    try:
        spec.loader.exec_module(module)
        net = module.load(folder)
        with torch.no_grad():
            return net(x)
    finally:
        del sys.modules[name]


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.2f}%"


def _card(arch: Arch, m: dict[str, Any]) -> str:
    lat = m.get("latency") or {}
    lat_where = f" ({lat.get('source', '?')}: {lat.get('device', '?')}, {lat.get('threads', '?')} thread(s), " \
                f"batch {lat.get('batch', '?')})" if lat else ""
    budget = m.get("budget") or {}
    limits = ", ".join(f"{k} {fmt_count(v)}" for k, v in budget.items() if k.startswith("max_") and v is not None)
    trained = {
        "train": "retrained on the training split with the study's recipe (as in the search)",
        "train+val": "retrained from scratch on training + validation data",
    }.get(m.get("retrained"), "as given to archsearch.export.save")
    rows = [
        ("architecture", f"`{arch.id}`"),
        ("input", f"{arch.in_chs}x{arch.resolution}x{arch.resolution}, {arch.num_classes} classes"),
        ("MACs (batch 1)", f"{m['macs']:,}"),
        ("parameters", f"{m['params']:,}"),
        ("peak activations", f"{m['peak_activation_bytes']:,} bytes"),
        ("latency", "-" if m.get("latency_ms") is None else f"{m['latency_ms']:.3f} ms{lat_where}"),
        ("validation accuracy", _pct(m.get("val_accuracy"))),
        ("test accuracy", _pct(m.get("test_accuracy"))),
    ]
    if "search_val_accuracy" in m:
        rows.append(("validation accuracy in the search", _pct(m.get("search_val_accuracy"))))
    if "study" in m:
        rows += [
            ("study", f"{m['study']} ({m.get('storage', '?')})"),
            ("trial", f"{m.get('trial')}" + (f" (seed baseline: {m['baseline']})" if m.get("baseline") else "")),
            ("budget", limits or "-"),
        ]
    if m.get("epochs") is not None:
        rows.append(("training", f"{trained}, {m['epochs']} epoch(s)"))
    table = "\n".join(f"| {k} | {v} |" for k, v in rows)
    command = m.get("command")
    made = f"\nMade by:\n\n```\n{command}\n```\n" if command else ""
    return f"""# {arch.id}

{trained.capitalize()}.

| | |
|---|---|
{table}
{made}
## Use

```python
import archsearch
net = archsearch.load("path/to/this/folder")        # with archsearch installed

import sys; sys.path.insert(0, "path/to/this/folder")
import model; net = model.load()                     # PyTorch only

import torch
net = torch.export.load("model.pt2").module()        # the exported program (dynamic batch)
```

Files: {', '.join(f'`{f}`' for f in m.get('files', []))}. `weights.pt` loads with
`torch.load(..., weights_only=True)`; inputs are normalized like the training data
(`{m.get('dataset', {}).get('name', 'the dataset')}`).
"""


# ---------------------------------------------------------------------------------------------------------
# from a study: choose trials, retrain, export


def _relative_excess(t: FrozenTrial, config: StudyConfig) -> dict[str, float]:
    """Per budgeted metric, value / limit - 1 (the trial's stored constraints, else from its attributes)."""
    if t.constraints:
        return dict(t.constraints)
    a = t.user_attrs
    return budget_excess(config, {"macs": a.get("macs"), "params": a.get("params"), "latency": a.get("latency_ms")})


def _budget_text(config: StudyConfig) -> str:
    b = config.budget
    parts = [f"{key}={getattr(b, key):,g}" for key in ("max_macs", "max_params", "max_latency_ms")
             if getattr(b, key) is not None]
    return ", ".join(parts) or "no limits"


def _no_feasible(study: optuna.Study, config: StudyConfig) -> ConfigError:
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    where = f"study {study.study_name!r} ({redact(config.storage)})"
    if not complete:
        return ConfigError(f"{where} has no complete trial yet; run `archsearch search {config.source or ''}` first",
                           path=config.source)
    scored = []
    for t in complete:
        excess = _relative_excess(t, config)
        if excess:
            metric = max(excess, key=excess.get)
            scored.append((excess[metric], t.number, metric, t))
    text = f"no feasible trial in {where}: none of its {len(complete)} complete trial(s) fits the budget " \
           f"({_budget_text(config)})"
    if scored:
        worst, number, metric, t = min(scored, key=lambda s: (s[0], s[1]))
        limit = config.budget.limit(metric)
        value = t.user_attrs.get({"latency": "latency_ms"}.get(metric, metric))
        unit = {"macs": "MACs", "params": "params", "latency": "ms"}.get(metric, metric)
        shown = f"{value:,g} {unit}" if value is not None else metric
        text += (f"; the nearest is trial {number} ({t.user_attrs.get('arch_id', '?')}) with {shown}, "
                 f"{100 * worst:.3g}% over the limit of {limit:,g}. Raise the budget or run more trials; "
                 f"`--trial {number}` exports it anyway")
    return ConfigError(text, path=config.source, key="budget")


def select_trials(
    study: optuna.Study, config: StudyConfig, *, trial: int | None = None, pareto: bool = False
) -> list[FrozenTrial]:
    """The trials to export: ``trial``, the Pareto front (``pareto``) or the best feasible trial.

    The front is the study's own for a two-objective study, else validation accuracy against MACs over the
    feasible complete trials. A pruned, failed or unfinished ``trial`` is an error (it has no final
    accuracy); an infeasible one is exported when asked for by number.
    """
    if trial is not None and pareto:
        raise ConfigError("give either a trial number or pareto, not both")
    if trial is not None:
        trials = study.get_trials(deepcopy=False)
        found = [t for t in trials if t.number == trial]
        if not found:
            last = max((t.number for t in trials), default=None)
            span = "it has no trials" if last is None else f"its trials are numbered 0 to {last}"
            raise ConfigError(f"study {study.study_name!r} has no trial {trial}; {span}", path=config.source)
        t = found[0]
        if t.state != TrialState.COMPLETE:
            why = {
                TrialState.PRUNED: f"was pruned after {t.user_attrs.get('epochs_done', '?')} epoch(s): the search "
                                   f"stopped it as unpromising, so it has no final accuracy",
                TrialState.FAIL: f"failed ({t.user_attrs.get('error', 'no error recorded')})",
            }.get(t.state, f"is {t.state.name} (not finished)")
            raise ConfigError(f"trial {trial} {why}; only complete trials can be exported", path=config.source)
        if ARCH_ATTR not in t.user_attrs:
            raise ConfigError(f"trial {trial} has no {ARCH_ATTR!r} user attribute: not an archsearch trial",
                              path=config.source)
        return [t]
    front = best_trials(study, config)
    if not front:
        raise _no_feasible(study, config)
    if pareto:
        if len(study.directions) == 1:
            from .report import pareto_front

            done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                    if t.user_attrs.get("feasible", True) and t.user_attrs.get("val_accuracy") is not None]
            front = pareto_front(done, "macs")
        return sorted(front, key=lambda t: t.number)
    return [max(front, key=lambda t: (t.values[0], -t.number))]


def retrain(
    arch: Arch, config: StudyConfig, data: DataBundle, *, epochs: int | None = None, device: torch.device | None = None
) -> tuple[Net, dict[str, Any]]:
    """Train ``arch`` from scratch with the study's recipe; returns the model (eval mode) and what was measured.

    Without ``epochs``: the search's recipe on the training split, scored on the validation split. With
    ``epochs``: that many epochs on training + validation (the whole training data, no subset, no time cap).
    The test split is measured in both cases; nothing during training depends on it.
    """
    device = resolve_device(config.device) if device is None else device
    data = data.resized(arch.resolution).to(device)
    # the initial weights from the recipe's seed, as the search drew them (Objective.build), whatever this
    # process drew before: with the search's recipe and thread count the trial's accuracy comes back
    torch.manual_seed(config.training.seed)
    model = build(arch)
    recipe = config.training
    has_test = len(data.y_test) > 0
    if epochs is None:
        x, y = data.x_train, data.y_train
        result = train(model, x, y, data.x_val, data.y_val, recipe, device=device)
        measured = {"retrained": "train", "val_accuracy": result.val_accuracy}
    else:
        if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
            raise ConfigError(f"epochs must be an int >= 1, got {epochs!r}")
        recipe = dataclasses.replace(recipe, epochs=epochs, train_subset=None, seconds=None)
        x, y = torch.cat((data.x_train, data.x_val)), torch.cat((data.y_train, data.y_val))
        # train() scores an eval set after each epoch: the test split, which only reports (nothing is chosen on it)
        x_eval, y_eval = (data.x_test, data.y_test) if has_test else (data.x_val, data.y_val)
        result = train(model, x, y, x_eval, y_eval, recipe, device=device)
        measured = {"retrained": "train+val", "val_accuracy": None}
    test = None
    if has_test:
        test = evaluate(model, data.x_test, data.y_test, batch_size=recipe.eval_batch_size, device=device)
    measured.update(
        test_accuracy=test,
        trained_on=min(len(y), recipe.train_subset or len(y)),  # images trained on (train() takes a subset)
        epochs=result.epochs_done,
        train_seconds=result.train_seconds,
        training=dataclasses.asdict(recipe),
        dataset={"name": data.name, "resolution": data.resolution, "in_chs": data.in_chs,
                 "n_train": len(data.y_train), "n_val": len(data.y_val), "n_test": len(data.y_test)},
    )
    return model.cpu().eval(), measured


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
) -> list[Path]:
    """Retrain and export the best feasible trial (or ``trial``, or every Pareto-front member) of a study.

    One trial goes to ``out``; with ``pareto`` each member goes to ``out/trial-<number>``. Every target
    folder is checked before anything trains. Returns the folders written.
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
    _, data = load_config_data(config)
    device = resolve_device(config.device)
    written = []
    for t, folder in zip(chosen, targets):
        arch = Arch.from_dict(t.user_attrs[ARCH_ATTR])
        feasible = t.user_attrs.get("feasible", True)
        how = "train split, the search's recipe" if epochs is None else f"train+val, {epochs} epoch(s)"
        _say(stream, f"trial {t.number}: retraining {arch.id} ({how})"
                     + ("" if feasible else " [over budget: infeasible in the search]"))
        model, measured = retrain(arch, config, data, epochs=epochs, device=device)
        metrics = {
            "study": config.name,
            "storage": redact(config.storage),
            "trial": t.number,
            "trial_state": t.state.name,
            "trial_values": t.values,
            "baseline": t.user_attrs.get(BASELINE_ATTR),
            "feasible": feasible,
            "search_val_accuracy": t.user_attrs.get("val_accuracy"),
            **measured,
            "budget": dataclasses.asdict(config.budget),
            "objective": dataclasses.asdict(config.objective),
            "command": command,
        }
        if t.user_attrs.get("latency_ms") is not None:
            lt = config.budget.latency
            metrics["latency_ms"] = t.user_attrs["latency_ms"]
            metrics["latency"] = {"source": "trial", "device": lt.device, "threads": lt.threads, "batch": lt.batch}
        save(model, folder, metrics=metrics, onnx=onnx, force=force, stream=stream)
        m = json.loads((folder / METRICS_FILE).read_text(encoding="utf-8"))
        acc = f"val {_pct(m['val_accuracy'])}, " if m["val_accuracy"] is not None else ""
        _say(stream, f"  wrote {folder}: {acc}test {_pct(m['test_accuracy'])}, {fmt_count(m['macs'])} MACs, "
                     f"{m['latency_ms']:.3f} ms ({', '.join(m['files'])})")
        written.append(folder)
    return written


def _say(stream: IO[str] | None, text: str) -> None:
    if stream is not None:
        print(text, file=stream, flush=True)


# ---------------------------------------------------------------------------------------------------------
# command line


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add ``archsearch export`` to the CLI's subparsers."""
    s = subparsers.add_parser(
        "export",
        help="retrain the best trial (or --trial N, or the --pareto front) and write a self-contained model folder",
        description="Retrain a trial's architecture and write arch.json, weights.pt, model.py, model.pt2, "
                    "model.onnx (if onnx is installed), metrics.json and card.md.",
    )
    s.add_argument("config", help="study YAML file")
    s.add_argument("--out", default=None, help="output folder (default: runs/<study name>); with --pareto, "
                                               "one trial-<N> folder per member inside it")
    which = s.add_mutually_exclusive_group()
    which.add_argument("--trial", type=int, default=None, metavar="N", help="export trial N (default: the best)")
    which.add_argument("--pareto", action="store_true", help="export every member of the Pareto front")
    s.add_argument("--epochs", type=_positive_int, default=None, metavar="E",
                   help="retrain from scratch on train+val for E epochs (default: the search's recipe on train)")
    s.add_argument("--force", action="store_true", help="replace an existing export folder")
    s.add_argument("--no-onnx", action="store_true", help="do not write model.onnx")
    s.set_defaults(func=cmd_export)


def cmd_export(args: argparse.Namespace) -> int:
    config = load_study_config(args.config)
    out = args.out if args.out is not None else Path("runs") / config.name
    command = ["archsearch", "export", str(args.config), "--out", str(out)]
    if args.trial is not None:
        command += ["--trial", str(args.trial)]
    if args.pareto:
        command.append("--pareto")
    if args.epochs is not None:
        command += ["--epochs", str(args.epochs)]
    if args.force:
        command.append("--force")
    if args.no_onnx:
        command.append("--no-onnx")
    export(config, out, trial=args.trial, pareto=args.pareto, epochs=args.epochs, force=args.force,
           onnx=not args.no_onnx, command=shlex.join(command))
    return 0
