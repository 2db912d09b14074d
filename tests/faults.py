"""What the fault tests share: a small study whose trials take a second or two (so that a fault lands in one), the
command that runs it as a user would, and a real small disk (tmpfs) to fill."""

from __future__ import annotations

import contextlib
import copy
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import TINY_SPACE, TINY_STUDY

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}

__all__ = ["ENV", "Preloaded", "fault_study", "search_argv", "tmpfs"]


def fault_study(folder: Path, *, n_trials: int, n_train: int = 2000, epochs: int = 2, **keys: Any) -> Path:
    """``folder/study.yaml`` (and its space): the tiny space at 16x16 with the seed baselines, every candidate
    within the budget, ``n_trials`` trials of ``epochs`` on ``n_train`` synthetic images; ``keys`` replace the
    study's top-level keys (``storage``, ``recovery``...).

    2,000 images (1,600 trained on): with two workers a searched trial trains for about a second and the
    ShuffleNet baseline for several, long enough for a fault to land inside one; what a command costs beyond
    that is starting its processes."""
    study = copy.deepcopy(TINY_STUDY)
    study.update(n_trials=n_trials, enqueue_baselines=True, budget={"max_macs": 400000})  # 16x16: all fit
    study["dataset"]["options"].update(n_train=n_train, n_test=500, resolution=16)
    study["training"]["epochs"] = epochs
    study.update(keys)
    (folder / "tiny_space.yaml").write_text(yaml.safe_dump(TINY_SPACE))
    path = folder / "study.yaml"
    path.write_text(yaml.safe_dump(study))
    return path


def search_argv(path: Path | str, workers: int) -> list[str]:
    """``archsearch search`` on ``path`` as a user runs it, without the progress bar."""
    return [sys.executable, "-m", "archsearch.cli", "search", str(path), "--workers", str(workers), "--no-progress"]


@contextlib.contextmanager
def tmpfs(folder: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` (such as "16m") mounted at ``folder`` (created), unmounted after; the test is skipped
    where this process may not mount one."""
    folder.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root")
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True,
                          text=True)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {made.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


# the server of :class:`Preloaded`: imports the modules named in its arguments, then for each request (a JSON line on
# stdin) forks a child that runs the request's script as ``__main__`` with its own argv, folder and output files,
# and answers with the child's pid, then with its exit code as ``subprocess`` gives it (-9: killed by SIGKILL)
_SERVER = """
import atexit, importlib, json, os, runpy, signal, sys, threading, traceback
for name in sys.argv[1:]:
    try:
        importlib.import_module(name)
    except ImportError:  # only slower: the child imports what it needs
        pass
if threading.active_count() != 1 or os.path.isdir("/proc/self/task") and len(os.listdir("/proc/self/task")) != 1:
    sys.exit("the imports started a thread: a forked child would lack it")
requests, answers = sys.stdin, os.fdopen(os.dup(1), "w")
answers.write("ready\\n"); answers.flush()


def child(request):
    os.chdir(request["cwd"])
    for fd, path, flags in ((0, os.devnull, os.O_RDONLY), (1, request["stdout"], os.O_WRONLY | os.O_CREAT),
                            (2, request["stderr"], os.O_WRONLY | os.O_CREAT)):
        opened = os.open(path, flags, 0o600)
        os.dup2(opened, fd)
        os.close(opened)
    answers.close()
    sys.argv = request["argv"]
    code = 0
    try:
        runpy.run_path(sys.argv[0], run_name="__main__")
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 0 if e.code is None else 1
        if isinstance(e.code, str):
            print(e.code, file=sys.stderr)
    except KeyboardInterrupt:  # as the interpreter ends on one: a traceback, then killed by SIGINT
        traceback.print_exc()
        code = -signal.SIGINT
    except BaseException:
        traceback.print_exc()
        code = 1
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    if code == -signal.SIGINT:
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
    os._exit(code)


for line in requests:
    pid = os.fork()
    if pid == 0:
        try:
            child(json.loads(line))
        finally:
            os._exit(70)
    answers.write(json.dumps(pid) + "\\n"); answers.flush()
    answers.write(json.dumps(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])) + "\\n"); answers.flush()
"""


class Preloaded:
    """Runs Python scripts as ``python script args...`` would, in a child forked from a server process that has
    imported ``modules`` once: what each such run costs is its own work, not importing torch again.

    A child is a real process of its own (its pid, its exit code, a SIGKILL kills it alone), with ``env`` and
    SIGINT at its default (as from a terminal); only the imports are done before it starts. The server holds no
    thread, file or connection of a run when it forks: it only imports (checked: a single thread)."""

    def __init__(self, modules: Sequence[str], env: dict[str, str]) -> None:
        self._folder = Path(tempfile.mkdtemp(prefix="preloaded-"))
        self._log = open(self._folder / "server.log", "w")  # noqa: SIM115 (closed by close())
        # SIGINT at its default, as from a terminal: a caller that ignores it (a pytest-xdist worker) would pass
        # that on, and the children would ignore a Ctrl-C
        self._proc = subprocess.Popen([sys.executable, "-c", _SERVER, *modules], env=env, stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, stderr=self._log, text=True,
                                      preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        if self._answer(900) != "ready":
            self.close()
            raise RuntimeError(f"the preloading server did not start: {(self._folder / 'server.log').read_text()}")
        self._runs = 0

    def _answer(self, timeout: float) -> Any:
        assert self._proc.stdout is not None
        if not select.select([self._proc.stdout], [], [], timeout)[0]:
            raise subprocess.TimeoutExpired(self._proc.args, timeout)
        line = self._proc.stdout.readline()
        return json.loads(line) if line.strip() != "ready" else "ready"

    def run(self, argv: Sequence[str], *, cwd: Path, timeout: float) -> subprocess.CompletedProcess[str]:
        """``argv`` (a script and its arguments) as ``subprocess.run([python, *argv], cwd=cwd,
        capture_output=True, text=True, timeout=timeout)`` would run it."""
        assert self._proc.stdin is not None
        self._runs += 1
        out, err = self._folder / f"{self._runs}.out", self._folder / f"{self._runs}.err"
        request = {"argv": [str(a) for a in argv], "cwd": str(cwd), "stdout": str(out), "stderr": str(err)}
        self._proc.stdin.write(json.dumps(request) + "\n")
        self._proc.stdin.flush()
        pid = self._answer(60)
        try:
            code = self._answer(timeout)
        except subprocess.TimeoutExpired:
            os.kill(pid, signal.SIGKILL)
            self._answer(60)
            raise
        result = subprocess.CompletedProcess([sys.executable, *argv], code, out.read_text(), err.read_text())
        out.unlink()
        err.unlink()
        return result

    def close(self) -> None:
        if self._proc.stdin is not None:
            self._proc.stdin.close()
        try:
            self._proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        if self._proc.stdout is not None:
            self._proc.stdout.close()
        self._log.close()
        shutil.rmtree(self._folder, ignore_errors=True)
