"""The package's layers: every module lives in one layer's folder, imports only its own layer and those below it
(so no import circle across layers), the modules import each other without a circle, and none but the command
line's own imports the command line."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "archsearch"
# low to high: a module may import its own layer and those before it
LAYERS = ["core", "network", "space", "data", "config", "latency", "training", "study", "search", "report", "export",
          "cli"]


def _module(path: Path) -> str:
    """``archsearch/search/study.py`` -> ``search.study``; a package's ``__init__`` is the package."""
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts) or "archsearch"


def _graph() -> dict[str, set[str]]:
    """module -> the package modules it imports, at any depth of its code (function-level imports too)."""
    modules = {_module(p): p for p in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        found = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets: list[str] = []
            if isinstance(node, ast.ImportFrom):
                assert node.level == 0, f"{path}: a relative import (the package imports itself by absolute path)"
                if node.module == "archsearch":
                    targets = [a.name for a in node.names]
                elif node.module and node.module.startswith("archsearch."):
                    base = node.module.removeprefix("archsearch.")
                    targets = [f"{base}.{a.name}" for a in node.names] + [base]
            elif isinstance(node, ast.Import):
                targets = [a.name.removeprefix("archsearch.") for a in node.names if a.name.startswith("archsearch.")]
            found |= {t for t in targets if t in modules}
        graph[name] = found - {name}
    return graph


def test_every_module_is_in_a_layer_folder() -> None:
    loose = sorted(m for m in _graph() if m != "archsearch" and m.split(".")[0] not in LAYERS)
    assert loose == [], f"modules outside the layer folders {LAYERS}: {loose}"
    assert sorted(p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()) == sorted(LAYERS)


def test_no_layer_imports_a_higher_one() -> None:
    upward = []
    for module, deps in _graph().items():
        if module == "archsearch":  # the package's public names come from every layer
            continue
        mine = LAYERS.index(module.split(".")[0])
        upward += [f"{module} ({LAYERS[mine]}) imports {dep}" for dep in sorted(deps)
                   if dep != "archsearch" and LAYERS.index(dep.split(".")[0]) > mine]
    assert upward == []


def test_no_import_circle() -> None:
    graph = {m: {d for d in deps if d != "archsearch"} for m, deps in _graph().items() if m != "archsearch"}
    state: dict[str, str] = {}

    def visit(module: str, path: list[str]) -> None:
        state[module] = "open"
        for dep in sorted(graph.get(module, ())):
            if dep == module.rsplit(".", 1)[0]:  # a module may read its own package's __init__
                continue
            assert state.get(dep) != "open", "import circle: " + " -> ".join([*path, module, dep])
            if dep not in state:
                visit(dep, [*path, module])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [])


def test_only_the_command_line_imports_the_command_line() -> None:
    importers = sorted(m for m, deps in _graph().items()
                       if any(d.split(".")[0] == "cli" for d in deps) and m.split(".")[0] != "cli")
    assert importers == []


def test_report_and_export_read_the_study_not_the_engine() -> None:
    reach = sorted(f"{m} imports {d}" for m, deps in _graph().items() if m.split(".")[0] in ("report", "export")
                   for d in deps if d.split(".")[0] == "search")
    assert reach == []
