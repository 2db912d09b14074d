"""The command line as a user meets it: --version, help for every flag, a closed pipe."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

import archsearch
from archsearch.cli.commands import build_parser

ROOT = Path(__file__).resolve().parents[2]


def _parsers(parser: argparse.ArgumentParser, name: str = "archsearch"):
    yield name, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub_name, sub in action.choices.items():
                yield from _parsers(sub, f"{name} {sub_name}")


def test_every_subcommand_has_a_description_and_every_flag_help():
    for name, parser in _parsers(build_parser()):
        assert parser.description, name
        for action in parser._actions:
            if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
                continue
            assert action.help, f"{name} {action.option_strings or action.dest}"


@pytest.mark.slow  # a subprocess
def test_version():
    out = subprocess.run([sys.executable, "-m", "archsearch.cli", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == f"archsearch {archsearch.__version__}"


@pytest.mark.slow  # a subprocess
def test_a_closed_pipe_ends_quietly():
    # `archsearch space ... | head -1`: the reader has gone when the command writes (closed before the
    # command has imported torch, so that its first write meets a pipe without a reader)
    command = [sys.executable, "-m", "archsearch.cli", "space", str(ROOT / "search_spaces" / "mixed.yaml"),
               "--samples", "20"]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=900) == 141, err
    assert "Traceback" not in err and "BrokenPipeError" not in err
