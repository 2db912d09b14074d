"""Issue #34's acceptance figures: the main command at the old default against the new default, quiet and beside
one CPU-bound process, and ``export --epochs 10`` the same way.

- old default: one process at torch's default threads (one per usable core): ``search --workers 1 --threads C``,
  ``export --threads C``;
- new default: ``archsearch search STUDY`` and ``archsearch export ...`` with no options (one worker per usable
  core, one thread each; export on one thread; archsearch/search/parallel.py).

Each search runs the study (default studies/quickstart.yaml) on a fresh temporary storage, as its own
``archsearch`` process, ``--runs`` times per setting, old and new alternating; the wall time of the whole command
(start-up, imports, data) is what a user waits. "Loaded" runs beside one CPU-bound process that this script
starts (a Python busy loop, one core) and stops. The export retrains trial 0 of the first new-default study.
Prints each run, the medians, the speed-up new/old (target: at least 1.3x quiet) and loaded/quiet of the new
default (target: at most 2.5x); asserts nothing.

    python -m benchmarks.speed.defaults [--runs 3] [--n-trials 24] [--export-epochs 10] [--config STUDY] [--old-loaded]
    python -m benchmarks.speed.defaults --runs 1 --n-trials 2 --epochs 1 --export-epochs 1   # a smoke run
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from archsearch.core.threads import usable_cores
from benchmarks.common import ROOT

BUSY = "while True: pass"  # one core, busy, as long as it runs


def _study(config: Path, folder: Path, name: str, n_trials: int, epochs: int | None) -> Path:
    """A copy of the study YAML in ``folder`` with its own SQLite storage; the space path made absolute."""
    data = yaml.safe_load(config.read_text(encoding="utf-8"))
    data["name"] = name
    data["storage"] = f"sqlite:///{folder / (name + '.db')}"
    data["n_trials"] = n_trials
    data["space"] = str((config.parent / data["space"]).resolve())
    if epochs is not None:
        data.setdefault("training", {})["epochs"] = epochs
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def _timed(args: list[str], log: Path) -> float:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    t0 = time.perf_counter()
    with log.open("a") as out:
        rc = subprocess.run([sys.executable, "-m", "archsearch.cli", *args], cwd=ROOT, env=env, stdout=out,
                            stderr=subprocess.STDOUT).returncode
    seconds = time.perf_counter() - t0
    if rc != 0:
        raise SystemExit(f"{' '.join(args)} failed (rc {rc}); see {log}")
    return seconds


def _example(log: Path) -> float:
    """Wall time of README's "In Python" block, run as written from the repository root."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## In Python"):]
    code = section[section.index("```python\n") + 10: section.index("```", section.index("```python\n") + 10)]
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    t0 = time.perf_counter()
    with log.open("a") as out:
        rc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    if rc.returncode != 0:
        raise SystemExit(f"README's Python example failed (rc {rc.returncode}); see {log}")
    return time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", type=Path, default=ROOT / "studies" / "quickstart.yaml")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--n-trials", type=int, default=24)
    p.add_argument("--epochs", type=int, default=None, help="override the study's epochs (smoke runs)")
    p.add_argument("--export-epochs", type=int, default=10)
    p.add_argument("--skip-loaded", action="store_true", help="quiet runs only")
    p.add_argument("--old-loaded", action="store_true",
                   help="also the old default beside the busy process (10-20x slower: long)")
    args = p.parse_args()
    # a SIGTERM (timeout, kill) ends the script through its finally blocks: the busy process is stopped too
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    cores = usable_cores()
    old_search, old_export = ["--workers", "1", "--threads", str(cores)], ["--threads", str(cores)]
    print(f"usable cores {cores}; study {args.config} ({args.n_trials} trials); {args.runs} run(s) per setting; "
          f"old default = one process, {cores} thread(s); new default = no options")
    results: dict[tuple[str, str, str], list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        log = folder / "runs.log"
        first_new: Path | None = None
        for load in ("quiet",) if args.skip_loaded else ("quiet", "loaded"):
            busy = subprocess.Popen([sys.executable, "-c", BUSY]) if load == "loaded" else None
            try:
                settings = [("old", old_search), ("new", [])]
                if load == "loaded" and not args.old_loaded:
                    settings = settings[1:]
                for run in range(args.runs):
                    for which, extra in settings:
                        path = _study(args.config, folder, f"{which}-{load}-{run}", args.n_trials, args.epochs)
                        s = _timed(["search", str(path), "--no-progress", *extra], log)
                        results.setdefault(("search", load, which), []).append(s)
                        first_new = first_new or (path if which == "new" else None)
                        print(f"  search {load:<6} {which}: {s:7.1f} s", flush=True)
                for run in range(args.runs):
                    for which, extra in [("old", old_export), ("new", [])][2 - len(settings):]:
                        out = folder / f"export-{which}-{load}-{run}"
                        s = _timed(["export", str(first_new), "--trial", "0", "--epochs", str(args.export_epochs),
                                    "--out", str(out), "--no-onnx", *extra], log)
                        results.setdefault(("export", load, which), []).append(s)
                        print(f"  export {load:<6} {which}: {s:7.1f} s", flush=True)
                for _ in range(args.runs):
                    s = _example(log)
                    results.setdefault(("example", load, "new"), []).append(s)
                    print(f"  README's Python example {load:<6}: {s:7.1f} s", flush=True)
            finally:
                if busy is not None:
                    busy.kill()
                    busy.wait()

    def med(key: tuple[str, str, str]) -> float:
        return statistics.median(results[key])

    print("\nmedian wall time (s):")
    print(f"{'command':<24} {'load':<7} {'old':>8} {'new':>8} {'new speed-up':>13}")
    for command in ("search", "export"):
        for load in ("quiet", "loaded"):
            name = command + (' --epochs ' + str(args.export_epochs) if command == 'export' else '')
            if (command, load, "old") in results:
                old, new = med((command, load, "old")), med((command, load, "new"))
                print(f"{name:<24} {load:<7} {old:8.1f} {new:8.1f} {old / new:12.2f}x")
            elif (command, load, "new") in results:
                print(f"{name:<24} {load:<7} {'-':>8} {med((command, load, 'new')):8.1f}")
    for load in ("quiet", "loaded"):
        if ("example", load, "new") in results:
            times = results[("example", load, "new")]
            print(f"README's Python example, {load}: {min(times):.1f} - {max(times):.1f} s (target < 60 s loaded)")
    if not args.skip_loaded:
        for command in ("search", "export"):
            ratio = med((command, "loaded", "new")) / med((command, "quiet", "new"))
            print(f"{command}: new default loaded / quiet = {ratio:.2f}x (target <= 2.5x)")
    print(f"search: new / old speed-up quiet = "
          f"{med(('search', 'quiet', 'old')) / med(('search', 'quiet', 'new')):.2f}x (target >= 1.3x)")


if __name__ == "__main__":
    main()
