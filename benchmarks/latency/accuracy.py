"""How close the latency table's predictions come to measured latencies: ``latency build`` then ``latency check``.

Runs the two commands of ``archsearch latency`` (archsearch/cli/latency.py) in one process: fill the table
of the target with the parts of ``--build-samples`` candidates (seed 0), then predict and measure
``--samples`` other candidates (seed 1) and print the share predicted within +-10%, the error
distribution and the worst predictions. The acceptance figure: at least 90% within +-10% on
search_spaces/mixed.yaml, CPU, 1 thread, batch 1, 1x28x28, 10 classes.

    python -m benchmarks.latency.accuracy                       # cpu:1:1, 200 + 100 candidates, ~4 min
    python -m benchmarks.latency.accuracy --target cpu:2:1 --dir /tmp/latency
    python -m benchmarks.latency.accuracy --runtime onnxruntime   # the ONNX Runtime table
    python -m benchmarks.latency.accuracy --runtime onnxruntime --rounds 3   # each network measured 3 times, median

Only meaningful on a quiet machine: the load average is printed along the way. The table is kept in
``--dir`` (default studies/latency), so a second run measures only the whole networks.
"""

from __future__ import annotations

import argparse
import sys

from archsearch.cli import latency as latency_cli
from archsearch.latency import table as latency
from benchmarks.common import ROOT


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--target", default="cpu:1:1")
    p.add_argument("--runtime", default="torch", choices=("torch", "onnxruntime"))
    p.add_argument("--space", default=str(ROOT / "search_spaces" / "mixed.yaml"))
    p.add_argument("--input", default="1x28x28")
    p.add_argument("--classes", default="10")
    p.add_argument("--build-samples", default="200")
    p.add_argument("--samples", default="100")
    p.add_argument("--dir", default=str(latency.DEFAULT_DIRECTORY))
    p.add_argument("--rounds", default="1", help="check: measure every network this many times, compare the median")
    args = p.parse_args()

    parser = argparse.ArgumentParser(prog="archsearch")
    latency_cli.add_parser(parser.add_subparsers(dest="command", required=True))
    common = ["--space", args.space, "--input", args.input, "--classes", args.classes, "--dir", args.dir,
              "--runtime", args.runtime]
    for command, samples in (("build", args.build_samples), ("check", args.samples)):
        rounds = ["--rounds", args.rounds] if command == "check" else []
        argv = [command, args.target, "--samples", samples, *common, *rounds]
        print(f"$ archsearch latency {' '.join(argv)}", flush=True)
        ns = parser.parse_args(["latency", *argv])
        if rc := ns.func(ns):
            return rc
    return 0


if __name__ == "__main__":
    sys.exit(main())
