"""The declared schemas: shipped JSON Schema files, editors' view of the YAML files, and the package's import graph."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml

from archsearch.config.study_config import study_schema
from archsearch.core.schema import SCHEMA_DIR, SCHEMAS, schema_text
from archsearch.space.search_space import space_schema

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "archsearch"
SHIPPED = {"study": sorted((REPO / "studies").glob("*.yaml")), "space": sorted((REPO / "search_spaces").glob("*.yaml"))}
GENERATE = {"study": study_schema, "space": space_schema}


def _validator(kind: str) -> jsonschema.Draft202012Validator:
    schema = json.loads((SCHEMA_DIR / f"{kind}.schema.json").read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


@pytest.mark.parametrize("kind", SCHEMAS)
def test_shipped_schema_files_are_what_the_models_generate(kind: str) -> None:
    # regenerate with: archsearch schema <kind> > archsearch/schemas/<kind>.schema.json
    assert (SCHEMA_DIR / f"{kind}.schema.json").read_text(encoding="utf-8") == schema_text(GENERATE[kind]())


@pytest.mark.parametrize("kind,path", [(k, p) for k, paths in SHIPPED.items() for p in paths],
                         ids=lambda v: v.name if isinstance(v, Path) else v)
def test_every_shipped_yaml_names_and_passes_its_schema(kind: str, path: Path) -> None:
    first = path.read_text(encoding="utf-8").splitlines()[0]
    assert first == f"# yaml-language-server: $schema=../archsearch/schemas/{kind}.schema.json", first
    assert (path.parent / first.split("=", 1)[1]).resolve() == (SCHEMA_DIR / f"{kind}.schema.json").resolve()
    errors = [e.message for e in _validator(kind).iter_errors(yaml.safe_load(path.read_text(encoding="utf-8")))]
    assert errors == []


def _quickstart() -> dict:
    return yaml.safe_load((REPO / "studies" / "quickstart.yaml").read_text(encoding="utf-8"))


def _mixed() -> dict:
    return yaml.safe_load((REPO / "search_spaces" / "mixed.yaml").read_text(encoding="utf-8"))


def _edit(data: dict, path: str, value) -> dict:
    """A copy of ``data`` with ``value`` at the dotted ``path`` (a trailing ``+name`` adds a key)."""
    out = json.loads(json.dumps(data))
    *parents, last = path.split(".")
    node = out
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    if last.startswith("+"):
        node[last[1:]] = value
    elif last.startswith("-"):
        node.pop(last[1:])
    else:
        node[int(last) if isinstance(node, list) else last] = value
    return out


MALFORMED = [
    ("study", "n_trail", lambda: _edit(_edit(_quickstart(), "-n_trials", None), "+n_trail", 60), "n_trail"),
    ("study", "max-macs-3e6-string", lambda: _edit(_quickstart(), "budget.max_macs", "3e6"), "3e6"),
    ("study", "unknown-optimizer", lambda: _edit(_quickstart(), "training.optimizer", "lion"), "lion"),
    ("study", "no-space", lambda: _edit(_quickstart(), "-space", None), "space"),
    ("study", "negative-epochs", lambda: _edit(_quickstart(), "training.epochs", -1), "-1"),
    ("space", "stride-3", lambda: _edit(_mixed(), "stages.0.stride", 3), "3"),
    ("space", "unknown-block", lambda: _edit(_mixed(), "stages.0.block", ["resnet"]), "resnet"),
    ("space", "empty-channels", lambda: _edit(_mixed(), "stem.channels", []), "[]"),
    ("space", "stage-typo", lambda: _edit(_mixed(), "stages.1.+width", 3), "width"),
]


@pytest.mark.parametrize("kind,make,needle", [pytest.param(k, m, n, id=i) for k, i, m, n in MALFORMED])
def test_malformed_files_fail_the_schema_and_the_loader(kind: str, make, needle: str, tmp_path: Path) -> None:
    from archsearch.config.study_config import study_config_from_dict
    from archsearch.core.errors import ConfigError
    from archsearch.space.search_space import space_from_dict

    data = make()
    messages = [e.message for e in _validator(kind).iter_errors(data)]
    assert messages and any(needle in m for m in messages), messages
    with pytest.raises(ConfigError):  # what the editor flags, archsearch refuses too
        if kind == "study":
            study_config_from_dict(data, base_dir=REPO / "studies")
        else:
            space_from_dict(data)


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "archsearch.cli", *args], capture_output=True, text=True,
                          cwd=REPO, timeout=900)


@pytest.mark.slow  # subprocesses
def test_cli_prints_the_schema_and_checks_a_typo(tmp_path: Path) -> None:
    out = _run("schema", "study")
    assert out.returncode == 0 and out.stdout == (SCHEMA_DIR / "study.schema.json").read_text(encoding="utf-8")
    typo = tmp_path / "study.yaml"
    typo.write_text((REPO / "studies" / "quickstart.yaml").read_text().replace("\nn_trials:", "\nn_trail:"))
    out = _run("schema", "study", "--check", str(typo), str(REPO / "studies" / "quickstart.yaml"))
    assert out.returncode == 1, out
    assert f"{typo}: Additional properties are not allowed ('n_trail' was unexpected)" in out.stdout
    assert "quickstart.yaml: valid against study.schema.json" in out.stdout
