"""Worker processes and the cores they run on: how many cores this process may use, the default split into
processes and threads, and worker processes that a Ctrl-C stops without a traceback.

Torch's default of one intra-op thread per core collapses beside another CPU-bound job: its OpenMP threads
spin-wait on each other, and on a shared 2-core machine an epoch took 10-20x as long (issue #34's
measurements, docs/parallelism.md). One thread per process never collapses, and N one-thread worker processes
use N cores without waiting on each other: the defaults below. ``--workers`` and ``--threads`` override them.

Workers start with SIGINT ignored, so a Ctrl-C reaches only the parent (during their start-up, seconds of
imports, a Ctrl-C would otherwise end them with a traceback). The parent passes the stop on through an event;
each worker stops at its next safe point (:mod:`archsearch.core.interrupt`) and ends quietly.

A line that every worker would print alike (why the search stops: its timeout, a cap) is printed by the first worker
that comes to it (:func:`first_to_say`), once for the search.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from archsearch.core import interrupt
from archsearch.core.errors import storage_failure
from archsearch.core.threads import usable_cores

__all__ = ["default_workers", "first_to_say", "Workers", "WorkersFailed"]

_SAID_BYTES = 1024  # room for the keys of the lines said once (a few short words each)
_said: Any = None  # in a worker: the keys said once by the workers of its search, shared by them (Workers)


def default_workers(device: str) -> int:
    """Worker processes of a search when ``--workers`` is not given: one per usable core on the CPU; one on an
    accelerator (its trials share the one device; issue #34 item 6 is to measure more)."""
    return usable_cores() if device == "cpu" else 1


def _watch(stop: Any, parent: int) -> None:
    """In a worker: turn the parent's stop (or the parent's death) into a Ctrl-C at the next safe point."""
    while not stop.wait(1.0):
        if os.getppid() != parent:  # the parent died (kill -9): stop rather than run on unseen
            break
    interrupt.request()


def first_to_say(key: str) -> bool:
    """Whether this process says the line ``key`` (a short word, no newline): always outside worker processes; in
    the workers of one :class:`Workers`, only the first that asks, so that a line that each would print alike is
    printed once for the search."""
    if _said is None:
        return True
    with _said.get_lock():
        keys = _said.value.decode().split("\n")
        if key in keys:
            return False
        joined = "\n".join([*keys, key]).encode()
        if len(joined) <= _SAID_BYTES:  # no room (never with the few keys there are): said by each worker again
            _said.value = joined
        return True


def _main(stop: Any, said: Any, parent: int, target: Callable[..., Any], args: tuple) -> None:
    global _said
    _said = said
    threading.Thread(target=_watch, args=(stop, parent), daemon=True).start()
    try:
        target(*args)
    except KeyboardInterrupt:
        pass  # the parent says what was kept; a worker stopped at a safe point has nothing to add
    except BaseException as e:
        failure = storage_failure(e)
        if failure is None:
            raise
        print(f"archsearch: {failure}", file=sys.stderr, flush=True)  # one line; the parent says a worker died
        sys.exit(1)


class WorkersFailed(RuntimeError):
    """Some worker processes ended with an error or were killed; the message says which and that the same command
    resumes (what they finished is stored; their running trials are a dead worker's, run again by the next start)."""


class Workers:
    """``target(*args)`` in one spawned process per ``args`` of ``arg_lists``; :meth:`join` waits for them.

    A Ctrl-C in the parent (within :func:`interrupt.deferred`) asks every worker to stop at its next safe
    point and waits up to ``grace`` seconds for them; a second Ctrl-C, or the grace running out, terminates the
    rest (their running trials are then a dead worker's, failed and queued again by the next start). The workers
    share which lines were said once (:func:`first_to_say`).
    """

    def __init__(self, target: Callable[..., Any], arg_lists: Sequence[tuple], *, grace: float = 30.0):
        import multiprocessing as mp

        ctx = mp.get_context("spawn")  # no forked torch/sqlite state
        self.grace = grace
        self.stop = ctx.Event()
        self.said = ctx.Array("c", _SAID_BYTES)  # first_to_say's keys, shared by the workers
        self.procs = [ctx.Process(target=_main, args=(self.stop, self.said, os.getpid(), target, args),
                                  daemon=False)
                      for args in arg_lists]
        # the workers inherit an ignored SIGINT across exec (Python keeps it ignored): a Ctrl-C reaches them
        # only as the parent's stop event, never as a KeyboardInterrupt in the middle of their imports
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if _main_thread() else None
        try:
            for p in self.procs:
                p.start()
        finally:
            if previous is not None:
                signal.signal(signal.SIGINT, previous)

    def alive(self) -> bool:
        return any(p.is_alive() for p in self.procs)

    def failed(self) -> list[tuple[int, int]]:
        """(index, exit code) of each worker that ended otherwise than normally: an error (1), or a signal
        (the negative signal number: -9 for SIGKILL, the kernel's out-of-memory killer's)."""
        return [(i, p.exitcode) for i, p in enumerate(self.procs) if p.exitcode not in (0, None)]

    def join(self, poll: float = 0.5, every: Callable[[], None] | None = None) -> None:
        """Wait for the workers, calling ``every()`` each ``poll`` seconds; KeyboardInterrupt after a Ctrl-C,
        once the workers have stopped."""
        try:
            while self.alive():
                first = next(p for p in self.procs if p.is_alive())
                first.join(timeout=poll)
                if interrupt.requested():
                    break
                if every is not None:
                    every()
            else:
                return
        except KeyboardInterrupt:  # SIGINT not deferred here, or the second Ctrl-C
            pass
        self._stop()
        raise KeyboardInterrupt

    def _stop(self) -> None:
        self.stop.set()
        deadline = time.monotonic() + self.grace
        try:
            for p in self.procs:
                p.join(timeout=max(0.0, deadline - time.monotonic()))
        except KeyboardInterrupt:
            pass  # a second Ctrl-C: do not wait
        for p in self.procs:
            if p.is_alive():
                p.terminate()
                p.join()


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()
