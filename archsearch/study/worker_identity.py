"""Which process a trial's worker is, and whether it still runs: ``host:pid:start`` names a worker so that a
dead one can be told from a live one on the same host (PIDs get reused)."""

from __future__ import annotations

import os
import socket

__all__ = ["worker_id", "worker_alive"]


def _process_start(pid: int) -> str:
    """The process's start time in clock ticks ('?' where unknown; 'dead' for a zombie)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return "?"
    if fields[0] in ("Z", "X"):  # killed but not yet reaped by its parent
        return "dead"
    return fields[19]  # field 22 of stat: start time


def worker_id() -> str:
    """``host:pid:start``, which tells a dead worker from a live one on the same host (PIDs get reused)."""
    pid = os.getpid()
    return f"{socket.gethostname()}:{pid}:{_process_start(pid)}"


def worker_alive(worker: str) -> bool | None:
    """Whether the worker that wrote ``worker`` still runs; None if it ran on another host."""
    try:
        host, pid, start = worker.rsplit(":", 2)
        pid_ = int(pid)
    except ValueError:
        return None
    if host != socket.gethostname():
        return None
    return _process_start(pid_) == start and start != "?"
