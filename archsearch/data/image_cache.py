"""Decoded images on disk, so that a folder of images is decoded once: by a resumed study, a second worker or
an export, the cache file is read instead.

The cache lives in ``$ARCHSEARCH_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/archsearch/images``, else
``~/.cache/archsearch/images``; deleting the folder (or a file in it) clears it. A file is named by a key over
the folder's path, each image's path, label, size in bytes and modification time, the class names and the
decoding settings, so a changed image, an added one or another ``resolution`` is decoded anew. Files are
written to a temporary name and renamed, so a reader sees a whole file or none.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

_VERSION = 1  # bump when the decoding changes: older cache files are then ignored


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


def load(cache_key: str) -> tuple[np.ndarray, np.ndarray] | None:
    """The images (N x C x H x W uint8) and labels cached under ``cache_key``, or None (a damaged file: None)."""
    path = directory() / f"{cache_key}.npz"
    try:
        with np.load(path, allow_pickle=False) as f:
            x, y = f["x"], f["y"]
    except FileNotFoundError:
        return None
    except Exception:  # truncated or damaged: decode again and overwrite it
        return None
    if x.dtype != np.uint8 or x.ndim != 4 or y.shape != (len(x),):
        return None
    return x, y


def save(cache_key: str, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cache ``x`` and ``y`` under ``cache_key`` (best effort: an unwritable cache only costs a decode next time)."""
    folder = directory()
    tmp = folder / f"{cache_key}.{os.getpid()}.tmp.npz"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        np.savez(tmp, x=x, y=y)  # uncompressed: reading it back is a copy, not a decode
        os.replace(tmp, folder / f"{cache_key}.npz")
    except OSError:
        tmp.unlink(missing_ok=True)
    return x, y


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
