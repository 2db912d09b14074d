"""``archsearch export CONFIG --out DIR``: retrain a trial and write its model folder
(:mod:`archsearch.export.folder`)."""

from __future__ import annotations

import argparse
import errno
import shlex
import shutil
import sys
from pathlib import Path

from archsearch.config.study_config import load_study_config
from archsearch.core import interrupt
from archsearch.core.threads import default_threads, set_threads
from archsearch.export.folder import export

__all__ = ["add_parser", "cmd_export", "disk_full", "positive_int"]

_FULL_BYTES = 1 << 20  # less free space than this after a failed write: the disk is full


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add ``archsearch export`` to the CLI's subparsers."""
    s = subparsers.add_parser(
        "export",
        help="retrain the best trial (or --trial N, or the --pareto front) and write a self-contained model folder",
        description="Retrain a trial's architecture and write arch.json, weights.pt, model.py, model.pt2, "
                    "model.onnx (if onnx is installed), metrics.json and card.md; with --int8 also model.int8.onnx.",
    )
    s.add_argument("config", help="study YAML file")
    s.add_argument("--out", default=None, help="output folder (default: runs/<study name>); with --pareto, "
                                               "one trial-<N> folder per member inside it")
    which = s.add_mutually_exclusive_group()
    which.add_argument("--trial", type=int, default=None, metavar="N", help="export trial N (default: the best)")
    which.add_argument("--pareto", action="store_true", help="export every member of the Pareto front")
    s.add_argument("--epochs", type=positive_int, default=None, metavar="E",
                   help="retrain from scratch on train+val for E epochs (default: the search's recipe on train)")
    s.add_argument("--force", action="store_true", help="replace an existing export folder")
    s.add_argument("--no-onnx", action="store_true", help="do not write model.onnx")
    s.add_argument("--int8", nargs="?", const="ptq", choices=("ptq", "qat"), default=None,
                   help="also write model.int8.onnx, measured beside model.onnx: ptq (the default) quantizes the "
                        "retrained network; qat fine-tunes it with int8 rounding first (default: the study's "
                        "export.int8)")
    s.add_argument("--calibration-images", type=positive_int, default=None, metavar="N",
                   help="training images that set the int8 activation ranges (default: export.calibration_images)")
    s.add_argument("--qat-epochs", type=positive_int, default=None, metavar="E",
                   help="epochs of quantization-aware fine-tuning (default: export.qat_epochs)")
    s.add_argument("--threads", type=positive_int, default=None, metavar="T",
                   help="torch threads of the retrain (default: 1, which never collapses beside another job: "
                        "docs/parallelism.md)")
    s.add_argument("--no-progress", action="store_true", help="no line per epoch of the retrain (none either when "
                                                              "the output is not a terminal)")
    s.set_defaults(func=cmd_export)


def cmd_export(args: argparse.Namespace) -> int:
    config = load_study_config(args.config)
    out = args.out if args.out is not None else Path("runs") / config.name
    command = ["archsearch", "export", str(args.config), "--out", str(out)]
    if args.trial is not None:
        command += ["--trial", str(args.trial)]
    if args.pareto:
        command.append("--pareto")
    if args.epochs is not None:
        command += ["--epochs", str(args.epochs)]
    if args.force:
        command.append("--force")
    if args.no_onnx:
        command.append("--no-onnx")
    if args.int8 is not None:
        command += ["--int8", args.int8]
    for flag, value in (("--calibration-images", args.calibration_images), ("--qat-epochs", args.qat_epochs)):
        if value is not None:
            command += [flag, str(value)]
    set_threads(default_threads() if args.threads is None else args.threads)
    written = False
    try:
        # a Ctrl-C stops the retrain at its next batch, never inside a checkpoint or a file of the folder
        with interrupt.deferred():
            export(config, out, trial=args.trial, pareto=args.pareto, epochs=args.epochs, force=args.force,
                   onnx=not args.no_onnx, command=shlex.join(command),
                   progress=not args.no_progress and sys.stdout.isatty(), int8=args.int8,
                   calibration_images=args.calibration_images, qat_epochs=args.qat_epochs)
            written = True
    except KeyboardInterrupt:
        if written:  # the Ctrl-C came after the last file: the export is whole
            return 0
        print(f"\ninterrupted: nothing is written to {out} yet; the retrain's state after its last finished epoch "
              f"is kept beside it; run the same command to resume", file=sys.stderr)
        return 130
    except (OSError, RuntimeError) as e:  # ONNX's writer reports a full disk as a RuntimeError
        if not disk_full(e, Path(out).absolute().parent):
            raise
        print(f"archsearch: no space left on the device of {Path(out).absolute().parent}: nothing is written to {out} "
              f"(a half-written folder is removed); the retrain's state after its last finished epoch is kept "
              f"where it fitted; free space and run the same command to resume", file=sys.stderr)
        return 1
    return 0


def disk_full(error: BaseException, folder: Path) -> bool:
    """Whether ``error`` is a write that failed because ``folder``'s file system is full."""
    if isinstance(error, OSError) and error.errno == errno.ENOSPC:
        return True
    if "No space left on device" in str(error):
        return True
    try:  # a C++ writer's "file write failed" names no cause: ask the file system
        return shutil.disk_usage(folder).free < _FULL_BYTES
    except OSError:
        return False
