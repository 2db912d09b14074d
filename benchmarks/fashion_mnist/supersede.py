"""Bring an experiment's searches into the main results file, keeping the rows they replace as superseded.

An experiment beside the main file (its own ``--results`` and ``--studies``, e.g. ``folds_pick/``) may search or
re-rank a level again. Once the study YAML says what the experiment ran with, this moves the experiment's search
records and searched rows at the named levels into the main file, and the main file's own search records and
searched rows there become superseded entries, as the first 3M searches did: renamed
(``superseded/<date>/<key>``, kind ``superseded-<kind>``, the reason in ``superseded``), still in the file, listed
under the README table, never read as rows again. The experiment's journals replace the main ones, which must be
their prefixes (a copy the experiment appended to), so no trial is lost. The baselines' rows stay as they are: the
experiment's are the main file's own.

    python -m benchmarks.fashion_mnist.supersede --from benchmarks/fashion_mnist/folds_pick/results.jsonl \\
        --from-studies benchmarks/fashion_mnist/folds_pick/studies --levels 1m,10m --why "..."

Run it while no benchmark writes either file. Nothing is written unless every check passes: the two files'
settings agree on everything the rows depend on, each moved search was searched with what its study YAML says now
(so the main file resumes with it), and each main journal is a prefix of the experiment's.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
from datetime import date
from pathlib import Path
from typing import Any

from benchmarks.fashion_mnist.level import Level
from benchmarks.fashion_mnist.search import study_digest
from benchmarks.fashion_mnist.store import LEVELS, RESULTS, SAMPLERS, STUDIES_DIR, Results, Settings

# settings that change how a search picks its network, not what a row is: an experiment may differ in them
PICK_SETTINGS = ("rerank_folds",)
MOVED_KINDS = ("search", "searched")  # what a search decides; baselines and long rows do not depend on it


def _lines(path: Path) -> list[dict[str, Any]]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SystemExit(f"error: {path}: no such results file") from None
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            if n < len(text.splitlines()):  # a torn last line is what a full disk leaves; anything else is damage
                raise SystemExit(f"error: {path}:{n}: not a JSON object") from None
    return out


def _settings(entries: list[dict[str, Any]], path: Path) -> dict[str, Any]:
    found = next((e for e in entries if e.get("key") == "settings"), None)
    if found is None:
        raise SystemExit(f"error: {path}: no settings line (not a benchmark results file)")
    return {k: v for k, v in found.items() if k != "key"}


def _moves(entry: dict[str, Any], levels: list[str]) -> bool:
    return entry.get("kind") in MOVED_KINDS and entry.get("level") in levels


def plan(main: Path, other: Path, levels: list[str], why: str, *, studies: Path, other_studies: Path,
         today: str) -> tuple[list[dict[str, Any]], list[tuple[Path, Path]]]:
    """The main file's new entries and the journals to copy (source, destination); SystemExit if a check fails."""
    mine, theirs = _lines(main), _lines(other)
    ours_set, their_set = _settings(mine, main), _settings(theirs, other)
    differ = sorted(k for k in set(ours_set) | set(their_set)
                    if k not in PICK_SETTINGS and ours_set.get(k) != their_set.get(k))
    if differ:
        raise SystemExit(f"error: {other} was made with other settings than {main} ({', '.join(differ)}): its rows "
                         f"are not comparable")
    incoming = [e for e in theirs if _moves(e, levels)]
    searches = {e["key"] for e in incoming if e["kind"] == "search"}
    settings = Settings(**ours_set)
    for level in levels:
        obj = Level(level, main.parent / "work", studies, Results(main), settings)  # reads the YAML; trains nothing
        for sampler in SAMPLERS:
            key = f"search/{level}/{sampler}"
            if key not in searches:
                raise SystemExit(f"error: {other} has no {key}: the experiment has not finished that search")
            record = next(e for e in incoming if e["key"] == key)
            if record.get("study") != study_digest(obj.config(sampler)):
                raise SystemExit(f"error: {key} in {other} was not searched with what studies/fmnist_{level}.yaml "
                                 f"says now (with {main}'s settings); make the YAML say what the experiment ran "
                                 f"with (e.g. its re-rank's folds) first")
    copies = []
    for level in levels:
        for sampler in SAMPLERS:
            src, dst = other_studies / level / f"{sampler}.journal", studies / level / f"{sampler}.journal"
            if not src.is_file():
                raise SystemExit(f"error: {src}: no such journal (--from-studies names the experiment's --studies)")
            new = src.read_bytes()
            old = dst.read_bytes() if dst.exists() else b""
            if not new.startswith(old):
                raise SystemExit(f"error: {dst} is not a prefix of {src}: replacing it would lose trials")
            if new != old:
                copies.append((src, dst))
    rel = os.path.relpath(other, main.parent)
    again = sorted({e["level"] for e in mine if _moves(e, levels) and e.get("moved_from") == rel})
    if again:
        raise SystemExit(f"error: {main} already holds {other}'s searches at {', '.join(again)}: a level is "
                         f"superseded once")
    taken = {e["key"] for e in mine}
    out = []
    for e in mine:
        if _moves(e, levels):
            e = {**e, "key": f"superseded/{today}/{e['key']}", "kind": f"superseded-{e['kind']}",
                 "superseded": why, "superseded_by": rel}
            if e["key"] in taken:
                raise SystemExit(f"error: {main} already holds {e['key']}: a level is superseded once a day")
        out.append(e)
    out += [{**e, "moved_from": rel} for e in incoming]
    return out, copies


def write(path: Path, entries: list[dict[str, Any]]) -> None:
    """Replace the results file at once: a temporary file beside it, flushed, then ``os.replace``."""
    tmp = path.with_name(f".{path.name}.supersede.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.writelines(json.dumps(e, sort_keys=True) + "\n" for e in entries)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.fashion_mnist.supersede", description=__doc__.split("\n")[0])
    p.add_argument("--from", dest="other", type=Path, required=True, help="the experiment's results file")
    p.add_argument("--from-studies", type=Path, required=True, help="the experiment's journals (its --studies)")
    p.add_argument("--levels", required=True, help="comma-separated, of " + ",".join(LEVELS))
    p.add_argument("--why", required=True, help="one line kept with each superseded entry and under the table")
    p.add_argument("--results", type=Path, default=RESULTS, help="the main results file (default: %(default)s)")
    p.add_argument("--studies", type=Path, default=STUDIES_DIR, help="the main journals (default: %(default)s)")
    args = p.parse_args(argv)
    levels = [x for x in args.levels.split(",") if x]
    if not levels or any(x not in LEVELS for x in levels):
        p.error(f"--levels: expected names from {', '.join(LEVELS)}, got {args.levels!r}")
    entries, copies = plan(args.results.resolve(), args.other.resolve(), levels, args.why,
                           studies=args.studies.resolve(), other_studies=args.from_studies.resolve(),
                           today=date.today().isoformat())
    for src, dst in copies:  # the journals first: a results file must never name a trial its journal lacks
        tmp = dst.with_name(f".{dst.name}.supersede.tmp")
        shutil.copyfile(src, tmp)
        os.replace(tmp, dst)
    write(args.results.resolve(), entries)
    moved = sum(1 for e in entries if "moved_from" in e and e.get("level") in levels)
    gone = sum(1 for e in entries if e["key"].startswith(f"superseded/{date.today().isoformat()}/")
               and e.get("superseded_by") and e.get("level") in levels)
    print(f"{args.results}: {gone} entries superseded, {moved} moved in from {args.other}; {len(copies)} journals "
          f"replaced by their longer copies")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

