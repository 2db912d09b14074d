"""Ctrl-C at a safe point: inside a search, SIGINT sets a flag, and the search stops where no storage write is open.

Python raises ``KeyboardInterrupt`` wherever the main thread is when the signal comes. Inside a storage write
(Optuna's SQL session, SQLite holding its write lock) that left the lock held, Optuna could not record the trial
as FAIL, and the command ended with a traceback. Within :func:`deferred`, the first Ctrl-C only asks to stop;
:func:`check` raises ``KeyboardInterrupt`` at the next safe point: a training batch, the start of a trial, the
end of a trial (a study callback), a wait for other workers. From there the interrupted trial is marked and
queued again as before (:mod:`archsearch.search.recovery`). A second Ctrl-C raises at once, for a user who will not
wait.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["check", "deferred", "request", "requested"]

_requested = threading.Event()


def requested() -> bool:
    """Whether a Ctrl-C waits for the next safe point."""
    return _requested.is_set()


def request() -> None:
    """Ask to stop at the next safe point, as a Ctrl-C does (a worker process, on its parent's word)."""
    _requested.set()


def check(*_: Any) -> None:
    """Raise ``KeyboardInterrupt`` if a Ctrl-C came since :func:`deferred` began (usable as a study callback)."""
    if _requested.is_set():
        raise KeyboardInterrupt


def _handler(signum: int, frame: Any) -> None:
    if _requested.is_set():
        raise KeyboardInterrupt  # the second Ctrl-C: now
    _requested.set()


@contextmanager
def deferred() -> Iterator[None]:
    """Within the block, SIGINT asks :func:`check` to stop; outside it, and off the main thread, nothing changes.

    A process that ignores SIGINT (started so, e.g. a background job of a script, ``nohup``) goes on ignoring it.
    """
    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGINT) in (_handler, signal.SIG_IGN)):
        yield  # signals reach the main thread only; nested: the outer block holds the handler
        return
    previous = signal.signal(signal.SIGINT, _handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        asked = _requested.is_set()
        _requested.clear()
    if asked:  # the block ended before a safe point saw the Ctrl-C (e.g. in its last writes): it still counts
        raise KeyboardInterrupt
