"""The docs' code cannot drift from the code: in README.md, CHANGELOG.md, docs/**/*.md and benchmarks/**/*.md every
Python block runs as written from the repository root, every shell block parses, each command in them parses with
the real command line (and names files or modules that exist), the cheap ones run, every YAML block is a valid part
of a study, and every relative link names a file (and a heading) that exists. A ``text`` block is output or a file
layout, not code."""

from __future__ import annotations

import contextlib
import io
import os
import re
import shlex
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from archsearch.cli.commands import build_parser, main
from archsearch.config.study_config import study_config_from_dict
from archsearch.core.errors import load_yaml

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DOCS = [README, ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").glob("**/*.md")),
        *sorted(p for p in (ROOT / "benchmarks").glob("**/*.md")
                if "work" not in p.relative_to(ROOT).parts)]  # work/: git-ignored
# a fence at the start of a line or indented inside a list item; its body is dedented by the fence's indent
FENCE = re.compile(r"^( *)```(\w*)\n(.*?)^\1```", re.M | re.S)
LANGUAGES = ("bash", "python", "yaml", "text")  # text: output or a folder layout, not code
ONE_THREAD_ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
CHEAP = ("space", "schema")  # archsearch subcommands that run in seconds: run them, not only parse them
# commands that set up a PostgreSQL server (docs/workers.md): they must parse as shell, not run here
SERVER_SETUP = ("apt-get", "createuser", "createdb")
# "Your own images" needs a folder of images and an export: tests/docs/test_readme_own_images.py runs that section
OWN_IMAGES = (README.read_text().index("## Your own images"), README.read_text().index("## In Python"))


def _name(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def _blocks_of(path: Path) -> list[tuple[str, str, int]]:
    """(language, text, line of the opening fence) of each fenced block in ``path``."""
    text = path.read_text()
    return [(m.group(2), textwrap.dedent(m.group(3)) if m.group(1) else m.group(3), text[: m.start()].count("\n") + 1)
            for m in FENCE.finditer(text)]


BLOCKS = {_name(p): _blocks_of(p) for p in DOCS}


def in_own_images(line: int, doc: str = "README.md") -> bool:
    if doc != "README.md":
        return False
    start, end = (README.read_text()[:i].count("\n") + 1 for i in OWN_IMAGES)
    return start <= line < end


def _blocks(lang: str) -> list[tuple[str, str, int]]:
    """(file, text, line) of every block of one language, over all the docs."""
    return [(doc, text, line) for doc, blocks in BLOCKS.items() for kind, text, line in blocks if kind == lang]


def _commands(doc: str | None = None) -> list[tuple[str, list[str], int]]:
    """Each command of the shell blocks (``a && b`` is two), as argv, with its file and the line it is on."""
    out = []
    for name, text, start in _blocks("bash"):
        if doc is not None and name != doc:
            continue
        for i, line in enumerate(text.splitlines()):
            argv = shlex.split(line, comments=True)
            while argv:
                cut = argv.index("&&") if "&&" in argv else len(argv)
                out.append((name, argv[:cut], start + 1 + i))
                argv = argv[cut + 1:]
    return out


def _ids(value: object) -> str:
    """Test ids such as ``docs/guide.md-line-42``: the file and the line, not the block's text."""
    if isinstance(value, int):
        return f"line-{value}"
    return value if isinstance(value, str) and value.endswith(".md") else ""


@pytest.mark.parametrize("doc", list(BLOCKS))
def test_every_block_names_a_language_this_test_checks(doc: str) -> None:
    assert BLOCKS["README.md"], "no code blocks found in README.md"
    unchecked = [(kind or "(none)", line) for kind, _, line in BLOCKS[doc] if kind not in LANGUAGES]
    assert not unchecked, f"{doc} blocks this test cannot check (language, line): {unchecked}"


@pytest.mark.slow  # subprocesses, some running a search
@pytest.mark.parametrize("doc,text,line", [(d, t, n) for d, t, n in _blocks("python") if not in_own_images(n, d)],
                         ids=_ids)
def test_python_blocks_run_as_written(doc: str, text: str, line: int) -> None:
    proc = subprocess.run([sys.executable, "-c", text], cwd=ROOT, env=ONE_THREAD_ENV, capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, f"{doc} line {line}:\n{proc.stderr[-3000:]}"


@pytest.mark.slow  # subprocesses (bash -n)
@pytest.mark.parametrize("doc", list(BLOCKS))
def test_shell_blocks_parse(doc: str) -> None:
    for name, text, line in _blocks("bash"):
        if name == doc:
            proc = subprocess.run(["bash", "-n"], input=text, capture_output=True, text=True, timeout=900)
            assert proc.returncode == 0, f"{doc} line {line}: {proc.stderr}"


@pytest.mark.parametrize("doc", list(BLOCKS))
def test_every_command_parses_and_names_files_that_exist(doc: str) -> None:
    commands = _commands(doc)
    if doc == "README.md":
        assert any(argv[0].endswith("archsearch") for _, argv, _ in commands)
    parser = build_parser()
    for _, argv, line in commands:
        if argv[0] == "sudo":  # sudo [-u USER] COMMAND ...: check the command
            argv = argv[3:] if argv[1] == "-u" else argv[1:]
        program = Path(argv[0]).name
        if program == "archsearch":
            try:
                parser.parse_args(argv[1:])
            except SystemExit as e:
                pytest.fail(f"{doc} line {line}: `{shlex.join(argv)}` does not parse (exit {e.code})")
        elif program == "bash":
            assert (ROOT / argv[1]).is_file(), f"{doc} line {line}: {argv[1]} does not exist"
            if argv[1] == ".ci/setup":  # the options .ci/setup takes
                assert set(argv[2:]) <= {"--tests", "--cpu"}, f"{doc} line {line}: {argv}"
        elif program in ("python", "python3") and argv[1].endswith(".py"):
            assert (ROOT / argv[1]).is_file(), f"{doc} line {line}: {argv[1]} does not exist"
        elif program in ("python", "python3") and argv[1] == "-m" and argv[2].startswith("benchmarks."):
            module = ROOT / (argv[2].replace(".", "/") + ".py")  # run from the repository root
            assert module.is_file(), f"{doc} line {line}: no module {argv[2]} ({_name(module)})"
        else:
            assert program in ("python", "python3", "optuna", "optuna-dashboard", "source", *SERVER_SETUP), \
                f"{doc} line {line}: a command this test does not know: {shlex.join(argv)}"
        for arg in argv[1:]:
            if arg.endswith((".yaml", ".py")) and "/" in arg and not arg.startswith("-"):
                assert (ROOT / arg).is_file(), f"{doc} line {line}: {arg} does not exist"


# `archsearch space` samples and fits the space: seconds; `archsearch schema`: milliseconds
@pytest.mark.parametrize("doc,argv,line",
                         [pytest.param(d, a, n, marks=[pytest.mark.slow] if a[1] == "space" else [])
                          for d, a, n in _commands() if a[0] == "archsearch" and a[1] in CHEAP], ids=_ids)
def test_cheap_commands_run(doc: str, argv: list[str], line: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = main(argv[1:])
    assert code == 0, f"{doc} line {line}: `{shlex.join(argv)}` exited {code}"
    assert printed.getvalue().strip(), f"{doc} line {line}: `{shlex.join(argv)}` printed nothing"


@pytest.mark.parametrize("doc,text,line", _blocks("yaml"), ids=_ids)
def test_yaml_blocks_are_valid_parts_of_a_study(doc: str, text: str, line: int) -> None:
    part = yaml.safe_load(text)
    assert isinstance(part, dict), f"{doc} line {line}: not a mapping"
    study = load_yaml(ROOT / "studies" / "quickstart.yaml")
    for key, value in part.items():  # a section given in the docs updates the quickstart's, key by key
        study[key] = {**study[key], **value} if isinstance(value, dict) and isinstance(study.get(key), dict) else value
    study_config_from_dict(study, path=f"{doc} line {line}", base_dir=ROOT / "studies")


LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def _anchors(path: Path) -> set[str]:
    """GitHub's anchors of a Markdown file's headings: lower case, punctuation dropped, spaces as hyphens."""
    text = FENCE.sub("", path.read_text())
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-")
            for h in re.findall(r"^#+ (.*)$", text, re.M)}


@pytest.mark.parametrize("doc", list(BLOCKS))
def test_relative_links_name_files_and_headings_that_exist(doc: str) -> None:
    path = ROOT / doc
    text = FENCE.sub("", path.read_text())
    for target in LINK.findall(text):
        if re.match(r"[a-z]+:", target):  # https:, mailto:
            continue
        file, _, anchor = target.partition("#")
        dest = (path.parent / file).resolve() if file else path
        assert dest.exists(), f"{doc}: link {target}: {dest} does not exist"
        if anchor and dest.suffix == ".md":
            assert anchor in _anchors(dest), f"{doc}: link {target}: no heading #{anchor} in {_name(dest)}"
