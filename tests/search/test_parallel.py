"""archsearch/search/parallel.py: the cores a process may use (affinity, cgroup quota), and the defaults drawn
from them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from archsearch.core import threads
from archsearch.search import parallel


@pytest.mark.parametrize("files, cores", [
    ({"cpu.max": "max 100000\n"}, None),  # cgroup v2, no quota
    ({"cpu.max": "150000 100000\n"}, 1.5),  # docker --cpus 1.5
    ({"cpu/cpu.cfs_quota_us": "200000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 2.0),  # cgroup v1
    ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None),  # v1, no quota
    ({}, None),  # no cgroup files
])
def test_the_cgroup_quota_is_read_in_cores(tmp_path: Path, files: dict[str, str], cores: float | None) -> None:
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert threads._cgroup_cpus(tmp_path) == cores


def test_usable_cores_is_this_process_affinity_at_most() -> None:
    assert 1 <= threads.usable_cores() <= len(os.sched_getaffinity(0))


def test_the_defaults() -> None:
    assert parallel.default_workers("cpu") == threads.usable_cores()
    assert parallel.default_workers("cuda") == 1
    assert threads.default_threads() == 1
