"""The results files of this folder: one JSON row a line, each with a unique ``row`` key, appended as it is
measured, so that a run killed part-way loses one row at most and a re-run skips the rows already there."""

from __future__ import annotations

import datetime
import json
import os
import platform
import statistics
from collections.abc import Iterable
from pathlib import Path
from typing import Any


def read_rows(path: Path) -> dict[str, dict[str, Any]]:
    """The rows of ``path`` by key (the last of a key wins); a line cut short by a kill is left out."""
    out: dict[str, dict[str, Any]] = {}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return out
    for line in lines:
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        out[row["row"]] = row
    return out


def append_row(path: Path, row: dict[str, Any]) -> None:
    """Append ``row`` as one line, stamped with the date and the machine, flushed to disk."""
    path.parent.mkdir(parents=True, exist_ok=True)
    row = {**row, "date": datetime.date.today().isoformat(), "machine": machine(),
           "load1": round(os.getloadavg()[0], 2)}
    text = json.dumps(row, sort_keys=False) + "\n"
    with open(path, "a", encoding="utf-8") as f:
        # a line a previous kill left unfinished would swallow this one: start on a fresh line
        if f.tell() and path.read_bytes()[-1:] != b"\n":
            f.write("\n")
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def machine() -> str:
    """The CPU's model name and the number of cores, e.g. "AMD EPYC, 2 cores"."""
    name = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{name}, {os.cpu_count()} cores"


def mean_sd(values: Iterable[float | None], scale: float = 100.0, digits: int = 2) -> str:
    """"m ± sd" of ``values`` times ``scale`` (sd over the values, n-1), "m" for one value, "-" for none."""
    xs = [scale * v for v in values if v is not None]
    if not xs:
        return "-"
    if len(xs) == 1:
        return f"{xs[0]:.{digits}f}"
    return f"{statistics.mean(xs):.{digits}f} ± {statistics.stdev(xs):.{digits}f}"
