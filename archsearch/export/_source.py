"""Copying archsearch's own definitions into a standalone file: a definition's source (less ``@register_block`` and a
block's search-time methods), and the closure of what it reads, copied where archsearch defines it, imported where
torch or the standard library does, written as a constant where it is one. Anything else is an
:class:`ExportError`. :mod:`archsearch.export.codegen` writes ``model.py`` with it."""

from __future__ import annotations

import ast
import builtins
import inspect
import sys
import textwrap
import typing
from collections.abc import Sequence
from typing import Any

from archsearch.network import blocks

__all__ = ["MODEL_FILE", "ExportError", "Closure", "allowed_module"]


MODEL_FILE = "model.py"


class ExportError(RuntimeError):
    """An exported format does not reproduce the network (a bug, or a block that cannot be carried)."""


_SEARCH_ONLY_METHODS = ("validate", "cost")  # the block protocol's search-time half: not needed to run a net
_FIXED_IMPORTS = {  # name -> import line, for what the template around the blocks uses
    "annotations": "from __future__ import annotations",
    "Path": "from pathlib import Path",
    "torch": "import torch",
    "nn": "from torch import nn",
}


class _Names(ast.NodeVisitor):
    """Names a piece of code reads and binds, and the names its annotations read apart (annotations stay
    strings in model.py: what they name is imported where the standard library or torch has it, so that linters
    and ``typing.get_type_hints`` find it, and otherwise left as written)."""

    def __init__(self) -> None:
        self.loads: set[str] = set()
        self.bound: set[str] = set()
        self.annotated: set[str] = set()

    def visit_Name(self, node: ast.Name) -> None:
        (self.loads if isinstance(node.ctx, ast.Load) else self.bound).add(node.id)

    def _annotation(self, node: ast.expr | None) -> None:
        if node is not None:
            self.annotated.update(n.id for n in ast.walk(node) if isinstance(n, ast.Name))

    def visit_arg(self, node: ast.arg) -> None:
        self.bound.add(node.arg)
        self._annotation(node.annotation)

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        self.bound.add(node.name)
        self._annotation(node.returns)
        for child in (*node.decorator_list, node.args, *node.body):
            self.visit(child)

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        self.visit(node.target)
        self._annotation(node.annotation)
        if node.value is not None:
            self.visit(node.value)

    def visit_Import(self, node: ast.Import | ast.ImportFrom) -> None:
        module = node.module if isinstance(node, ast.ImportFrom) else None
        for alias in node.names:
            full = module or alias.name
            if getattr(node, "level", 0) or not allowed_module(full):
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
                assert item.end_lineno is not None  # ast.parse gives every node its position
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


def allowed_module(name: str) -> bool:
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


class Closure:
    """Collects the definitions (in dependency order) and imports that a set of objects needs."""

    def __init__(self, home_modules: set[str], provided: Sequence[str] = ()):
        self.home = home_modules  # modules whose functions and classes are copied (not imported)
        self.provided = set(provided)  # names the generated file defines itself
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
        for name in sorted(names.loads - names.bound - self.provided - {obj.__name__}):
            if name not in module_globals:
                if not hasattr(builtins, name):
                    raise ExportError(f"{obj.__qualname__} reads {name!r}, which its module does not define")
                continue
            self._need(name, module_globals[name], obj)
        for name in sorted(names.annotated - names.loads - names.bound - self.provided - {obj.__name__}):
            value = module_globals.get(name)
            if value is not None and getattr(typing, name, None) is value:  # ClassVar, Any, ...
                self._import(name, f"from typing import {name}")
            elif (inspect.ismodule(value) and allowed_module(value.__name__)) or (inspect.isclass(value) and (
                    allowed_module(value.__module__) or value.__module__ in self.home)):
                self._need(name, value, obj)  # anything else an annotation names stays as written
        self._active.discard(id(obj))
        self._done.add(id(obj))
        self.sources.append(source)

    def _need(self, name: str, value: Any, user: Any) -> None:
        where = f"{user.__module__}.{user.__qualname__}"
        if inspect.ismodule(value):
            if not allowed_module(value.__name__):
                raise ExportError(f"{where} uses module {value.__name__}; {MODEL_FILE} may only import torch and the "
                                  f"standard library")
            self._import(name, _import_line(name, value))
        elif inspect.isclass(value) or inspect.isfunction(value) or inspect.isbuiltin(value):
            module = getattr(value, "__module__", "") or ""
            if module in self.home and not inspect.isbuiltin(value):
                self.add(value)
            elif allowed_module(module) and hasattr(value, "__qualname__"):
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
