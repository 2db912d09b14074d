"""What several benchmarks share: the repository root, ``flock`` claims, atomic JSON files, and the sampling loop
that draws budget-fitted architectures as a search fits them."""

from __future__ import annotations

import fcntl
import json
import os
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from archsearch.network.arch import Arch
from archsearch.space.fit import fit_shape
from archsearch.space.search_space import Space, sample_shapes

ROOT = Path(__file__).resolve().parents[1]  # the checkout: studies/, search_spaces/ and docs/ are read from it


@contextmanager
def claim(lock: Path) -> Iterator[bool]:
    """An exclusive, non-blocking ``flock`` on ``lock``: True if this process holds it (released on exit or death)."""
    lock.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)  # closing releases the lock


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write atomically: a temporary file beside ``path``, then ``os.replace``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None


def fitted_archs(space: Space, limits: Mapping[str, float], n: int, *, in_chs: int, resolution: int, num_classes: int,
                 seed: int = 0, draws: int = 10) -> list[Arch]:
    """The first ``n`` distinct feasible architectures of ``space``: up to ``draws * n`` shapes drawn uniformly
    with ``seed``, each fitted to ``limits`` as a search fits it (its width multiplier within the space's range).
    The shapes come one by one from a seeded sampler, so the first ``n`` do not depend on ``draws``."""
    low, high = min(space.width_mult), max(space.width_mult)
    out, seen = [], set()
    for shape in sample_shapes(space, draws * n, in_chs=in_chs, resolution=resolution, num_classes=num_classes,
                               seed=seed):
        fit = fit_shape(shape, limits, low=low, high=high)
        if fit.feasible and fit.arch.id not in seen:
            seen.add(fit.arch.id)
            out.append(fit.arch)
        if len(out) == n:
            break
    return out
