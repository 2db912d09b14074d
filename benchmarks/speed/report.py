"""How long `archsearch report` takes on a 200-trial study (the target: under 5 seconds).

Builds the study once in a temporary SQLite file: the quickstart config (studies/quickstart.yaml, its space
and budget, 8x8 digits) with 200 finished trials carrying the user attributes a real search writes:
architectures sampled from the space with their real analytic cost, accuracies growing with MACs, some
pruned, failed and over budget, the three seed baselines, and, with --latency, a real CPU latency for each
trained candidate. Nothing is trained. Then times, in this process and as the `archsearch report` command a user
types (a fresh process: imports included), the whole report: loading the study, the text, the PNG and the HTML page.
Prints figures; asserts nothing.

    python -m benchmarks.speed.report [--trials 200] [--repeats 3] [--latency] [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from archsearch.config.study_config import load_study_config
from archsearch.report.study_report import report
from archsearch.search.study import open_study
from benchmarks.common import ROOT
from tests.synthetic_trials import add_synthetic_trials


def build_study(folder: Path, n_trials: int, *, latency: bool) -> Path:
    data = yaml.safe_load((ROOT / "studies" / "quickstart.yaml").read_text())
    data.update(name="report_speed", storage="sqlite:///report_speed.db",
                space=str((ROOT / "studies" / data["space"]).resolve()))
    path = folder / "report_speed.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    config = load_study_config(path)
    study = open_study(config)
    # digits: 1 channel, 8x8, 10 classes
    add_synthetic_trials(study, config, n_trials, in_chs=1, resolution=8, num_classes=10, latency=latency)
    return path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=200)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--latency", action="store_true", help="measure each candidate's latency (slower to build)")
    p.add_argument("--keep", type=Path, default=None, help="copy the study, PNG and HTML here")
    args = p.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        path = build_study(Path(tmp), args.trials, latency=args.latency)
        print(f"built a {args.trials}-trial study in {time.perf_counter() - t0:.2f} s ({path.parent})")

        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            result = report(path)
            times.append(time.perf_counter() - t0)
        print(f"report() in this process: first {times[0]:.2f} s (imports included), "
              f"median of {len(times)} {statistics.median(times):.2f} s")

        def fresh(command: list[str]) -> float:
            t0 = time.perf_counter()
            subprocess.run(command, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
            return time.perf_counter() - t0

        # the command a user types: the installed console script, or the same entry point from this checkout
        script = shutil.which("archsearch")
        entry = "import sys; from archsearch.cli.commands import main; sys.exit(main(sys.argv[1:]))"
        command = [script] if script else [sys.executable, "-c", entry]
        cold = [fresh([*command, "report", str(path)]) for _ in range(args.repeats)]
        bare = [fresh([sys.executable, "-c", "import archsearch"]) for _ in range(args.repeats)]
        name = "archsearch" if script else "archsearch.cli.commands.main"
        print(f"`{name} report` as a fresh command (python start, "
              f"imports, study, PNG, HTML): median of {len(cold)} {statistics.median(cold):.2f} s, max "
              f"{max(cold):.2f} s; of which `import archsearch` alone (torch, optuna): median "
              f"{statistics.median(bare):.2f} s ({os.getloadavg()[0]:.2f} load average)")
        print(f"PNG {result.png.stat().st_size / 1e3:.0f} kB, HTML {result.html.stat().st_size / 1e6:.1f} MB")
        print(result.text.splitlines()[0])
        if args.keep is not None:
            args.keep.mkdir(parents=True, exist_ok=True)
            for f in Path(tmp).iterdir():
                shutil.copy2(f, args.keep / f.name)
            print(f"kept the study and its report in {args.keep}")


if __name__ == "__main__":
    main()
