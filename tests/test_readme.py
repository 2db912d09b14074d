"""README's code cannot drift from the code: every Python block runs as written, every shell block parses, each
command in them parses with the real command line (and names files that exist), the cheap ones run, and every
YAML block is a valid part of a study."""

from __future__ import annotations

import contextlib
import io
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from archsearch.cli import build_parser, main
from archsearch.config import study_config_from_dict
from archsearch.errors import load_yaml

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.M | re.S)
BLOCKS = [(m.group(1), m.group(2), README.read_text()[: m.start()].count("\n") + 1)
          for m in FENCE.finditer(README.read_text())]
ONE_THREAD_ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
CHEAP = ("space", "schema")  # archsearch subcommands that run in seconds: run them, not only parse them
# "Your own images" needs a folder of images and an export: tests/test_readme_own_images.py runs that section
OWN_IMAGES = (README.read_text().index("## Your own images"), README.read_text().index("## In Python"))


def in_own_images(line: int) -> bool:
    start, end = (README.read_text()[:i].count("\n") + 1 for i in OWN_IMAGES)
    return start <= line < end


def _blocks(lang: str) -> list[tuple[str, int]]:
    return [(text, line) for kind, text, line in BLOCKS if kind == lang]


def _commands() -> list[tuple[list[str], int]]:
    """Each command of the shell blocks (``a && b`` is two), as argv, with the README line it is on."""
    out = []
    for text, start in _blocks("bash"):
        for i, line in enumerate(text.splitlines()):
            argv = shlex.split(line, comments=True)
            while argv:
                cut = argv.index("&&") if "&&" in argv else len(argv)
                out.append((argv[:cut], start + 1 + i))
                argv = argv[cut + 1:]
    return out


def test_every_block_names_a_language_this_test_checks() -> None:
    assert BLOCKS, "no code blocks found in README.md"
    unchecked = [(kind or "(none)", line) for kind, _, line in BLOCKS
                 if kind not in ("bash", "python", "yaml") and not (kind == "text" and in_own_images(line))]
    assert not unchecked, f"README.md blocks this test cannot check (language, line): {unchecked}"


@pytest.mark.parametrize("text,line", [(t, n) for t, n in _blocks("python") if not in_own_images(n)],
                         ids=lambda v: f"line-{v}" if isinstance(v, int) else "")
def test_python_blocks_run_as_written(text: str, line: int) -> None:
    proc = subprocess.run([sys.executable, "-c", text], cwd=ROOT, env=ONE_THREAD_ENV, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, f"README.md line {line}:\n{proc.stderr[-3000:]}"


def test_shell_blocks_parse() -> None:
    for text, line in _blocks("bash"):
        proc = subprocess.run(["bash", "-n"], input=text, capture_output=True, text=True, timeout=30)
        assert proc.returncode == 0, f"README.md line {line}: {proc.stderr}"


def test_every_command_parses_and_names_files_that_exist() -> None:
    commands = _commands()
    assert any(argv[0].endswith("archsearch") for argv, _ in commands)
    parser = build_parser()
    for argv, line in commands:
        program = Path(argv[0]).name
        if program == "archsearch":
            try:
                parser.parse_args(argv[1:])
            except SystemExit as e:
                pytest.fail(f"README.md line {line}: `{shlex.join(argv)}` does not parse (exit {e.code})")
        elif program == "bash":
            assert (ROOT / argv[1]).is_file(), f"README.md line {line}: {argv[1]} does not exist"
            if argv[1] == ".ci/setup":  # the options .ci/setup takes
                assert set(argv[2:]) <= {"--tests", "--cpu"}, f"README.md line {line}: {argv}"
        elif program in ("python", "python3") and argv[1].endswith(".py"):
            assert (ROOT / argv[1]).is_file(), f"README.md line {line}: {argv[1]} does not exist"
        else:
            assert program in ("python", "python3", "optuna", "optuna-dashboard", "source"), \
                f"README.md line {line}: a command this test does not know: {shlex.join(argv)}"
        for arg in argv[1:]:
            if arg.endswith((".yaml", ".py")) and "/" in arg and not arg.startswith("-"):
                assert (ROOT / arg).is_file(), f"README.md line {line}: {arg} does not exist"


@pytest.mark.parametrize("argv,line", [(a, n) for a, n in _commands() if a[0] == "archsearch" and a[1] in CHEAP],
                         ids=lambda v: f"line-{v}" if isinstance(v, int) else "")
def test_cheap_commands_run(argv: list[str], line: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = main(argv[1:])
    assert code == 0, f"README.md line {line}: `{shlex.join(argv)}` exited {code}"
    assert printed.getvalue().strip(), f"README.md line {line}: `{shlex.join(argv)}` printed nothing"


@pytest.mark.parametrize("text,line", _blocks("yaml"), ids=lambda v: f"line-{v}" if isinstance(v, int) else "")
def test_yaml_blocks_are_valid_parts_of_a_study(text: str, line: int) -> None:
    part = yaml.safe_load(text)
    assert isinstance(part, dict), f"README.md line {line}: not a mapping"
    study = load_yaml(ROOT / "studies" / "quickstart.yaml")
    for key, value in part.items():  # a section given in README updates the quickstart's, key by key
        study[key] = {**study[key], **value} if isinstance(value, dict) and isinstance(study.get(key), dict) else value
    study_config_from_dict(study, path=f"README.md line {line}", base_dir=ROOT / "studies")
