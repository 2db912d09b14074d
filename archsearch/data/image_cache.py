"""Decoded images on disk, so that a folder of images is decoded once: by a resumed study, a second worker or
an export, the cache file is read instead.

The cache lives in ``$ARCHSEARCH_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/archsearch/images``, else
``~/.cache/archsearch/images``; deleting the folder (or a file in it) clears it. A file is named by a key over
the folder's path, each image's path, label, size in bytes and modification time, the class names and the
decoding settings, so a changed image, an added one or another ``resolution`` is decoded anew. Image files left out
as bad (``bad_files: skip``) are in the key too, so a fixed one is decoded; the cache file names them. Files are
written to a temporary name and renamed, so a reader sees a whole file or none.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

_VERSION = 2  # bump when the decoding changes: older cache files are then ignored (2: EXIF orientation, alpha)


class Cached(NamedTuple):
    """What a cache file holds: the decoded images, their labels, and the files left out as bad."""

    x: np.ndarray  # N x C x H x W uint8
    y: np.ndarray  # int64, N
    skipped: tuple[tuple[str, str], ...] = ()  # (relative path, reason) of each image file left out


def directory() -> Path:
    """Where decoded images are cached."""
    if os.environ.get("ARCHSEARCH_CACHE_DIR"):
        return Path(os.environ["ARCHSEARCH_CACHE_DIR"]).expanduser()
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "archsearch" / "images"


def key(root: Path, files: list[tuple[str, int, int, int]], **settings: Any) -> str:
    """A digest of ``files`` ((relative path, label, bytes, mtime_ns) each) and the decoding ``settings``."""
    h = hashlib.sha256(json.dumps({"version": _VERSION, "root": str(root), **settings}, sort_keys=True).encode())
    for entry in files:
        h.update(json.dumps(entry).encode())
    return h.hexdigest()[:32]


def load(cache_key: str) -> Cached | None:
    """What is cached under ``cache_key``, or None (a damaged file: None)."""
    path = directory() / f"{cache_key}.npz"
    try:
        with np.load(path, allow_pickle=False) as f:
            x, y = f["x"], f["y"]
            skipped = tuple((str(rel), str(why)) for rel, why in json.loads(str(f["skipped"])))
    except FileNotFoundError:
        return None
    except Exception:  # truncated or damaged: decode again and overwrite it
        return None
    if x.dtype != np.uint8 or x.ndim != 4 or y.shape != (len(x),):
        return None
    return Cached(x, y, skipped)


def save(cache_key: str, x: np.ndarray, y: np.ndarray, skipped: tuple[tuple[str, str], ...] = ()) -> Cached:
    """Cache ``x``, ``y`` and the ``skipped`` files ((relative path, reason) each) under ``cache_key`` (best effort:
    an unwritable cache only costs a decode next time)."""
    folder = directory()
    tmp = folder / f"{cache_key}.{os.getpid()}.tmp.npz"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        # uncompressed: reading it back is a copy, not a decode; the skipped files as JSON text (no pickle)
        np.savez(tmp, x=x, y=y, skipped=np.array(json.dumps([list(s) for s in skipped])))
        os.replace(tmp, folder / f"{cache_key}.npz")
    except OSError:
        tmp.unlink(missing_ok=True)
    return Cached(x, y, tuple(skipped))


def available_memory() -> int | None:
    """Bytes of memory this process may still use: the system's available memory, or less under a cgroup limit."""
    found: list[int] = []
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    found.append(int(line.split()[1]) * 1024)
    except OSError:
        pass
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit != "max":
            used = int(Path("/sys/fs/cgroup/memory.current").read_text())
            found.append(int(limit) - used)
    except (OSError, ValueError):
        pass
    return min(found) if found else None
