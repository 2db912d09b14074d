"""The package's modules import each other without a circle, and none imports the command line."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "archsearch"


def _graph() -> dict[str, set[str]]:
    """module -> the package modules it imports, at any depth of its code (function-level imports too)."""
    names = {p.stem for p in PACKAGE.glob("*.py")}
    graph = {}
    for path in PACKAGE.glob("*.py"):
        found = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                if node.level == 1 and node.module:  # from .x import ...
                    found.add(node.module.split(".")[0])
                elif node.level == 1:  # from . import x, y
                    found |= {a.name for a in node.names}
                elif node.module and node.module.startswith("archsearch."):
                    found.add(node.module.split(".")[1])
            elif isinstance(node, ast.Import):
                found |= {a.name.split(".")[1] for a in node.names if a.name.startswith("archsearch.")}
        graph[path.stem] = (found & names) - {path.stem}
    return graph


def test_no_import_circle():
    graph = _graph()
    state: dict[str, str] = {}

    def visit(module: str, path: list[str]) -> None:
        state[module] = "open"
        for dep in sorted(graph[module]):
            assert state.get(dep) != "open", "import circle: " + " -> ".join([*path, module, dep])
            if dep not in state:
                visit(dep, [*path, module])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state and module != "__init__":
            visit(module, [])


def test_no_module_imports_the_command_line():
    importers = sorted(m for m, deps in _graph().items() if "cli" in deps and m != "__init__")
    assert importers == []
