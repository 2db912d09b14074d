"""The cores this process may use and torch's intra-op threads: the one place archsearch sets them.

Torch's default of one intra-op thread per core collapses beside another CPU-bound job: its OpenMP threads
spin-wait on each other, and on a shared 2-core machine an epoch took 10-20x as long (issue #34's
measurements, docs/parallelism.md). One thread per process never collapses, and N one-thread worker processes
use N cores without waiting on each other: the defaults. ``--workers`` and ``--threads`` override them.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterator
from pathlib import Path

__all__ = ["usable_cores", "default_threads", "set_threads", "torch_threads"]


_CGROUP = Path("/sys/fs/cgroup")


def _cgroup_cpus(root: Path = _CGROUP) -> float | None:
    """The CPU quota of this process's cgroup in cores (cgroup v2 ``cpu.max``, v1 ``cpu.cfs_quota_us``); None
    where there is none."""
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota_us = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period_us = int((root / "cpu" / "cpu.cfs_period_us").read_text())
        return None if quota_us <= 0 else quota_us / period_us
    except (OSError, ValueError):
        return None


def usable_cores() -> int:
    """The cores this process may run on: its CPU affinity (``taskset``, a container's cpuset), lowered to its
    cgroup's CPU quota (a container's ``--cpus``), at least 1. Not ``os.cpu_count()``, the machine's cores."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        cores = os.cpu_count() or 1
    quota = _cgroup_cpus()
    if quota is not None:
        cores = min(cores, math.floor(quota))
    return max(1, cores)


def default_threads() -> int:
    """Torch threads per process when ``--threads`` is not given: one, with any number of workers. Two threads
    in one process gained little on these small networks on a quiet machine and collapsed beside another job;
    more cores are used by more workers (docs/parallelism.md)."""
    return 1


def set_threads(threads: int) -> int:
    """Set torch's intra-op threads of this process; the previous number."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    return before


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the block with ``n`` intra-op threads, isolated from the threads around it."""
    old = set_threads(n)
    try:
        yield
    finally:
        set_threads(old)
