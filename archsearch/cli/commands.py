"""The ``archsearch`` command line: ``space``, ``search``, ``export``, ``report``, ``latency``, ``schema``."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from archsearch.cli import export as export_cli
from archsearch.cli import latency as latency_cli
from archsearch.core.errors import ConfigError, StorageFailed, storage_failure
from archsearch.core.text import input_shape, table
from archsearch.network.arch import Arch
from archsearch.network.cost import FLOAT32_BYTES, arch_cost
from archsearch.network.metrics import METRICS, metric
from archsearch.report import study_report as report
from archsearch.space import baselines
from archsearch.space.search_space import Space

if TYPE_CHECKING:
    from archsearch.config.study_config import StudyConfig
    from archsearch.config.study_schema import Budget

__all__ = ["main"]


_BUDGET_METRICS = tuple(m.name for m in METRICS if not m.measured)  # model_kb, peak_kb: float32 unless a study


def _budget(text: str) -> dict[str, float]:
    """``macs=3e6,params=5e4`` -> {"macs": 3e6, "params": 5e4}."""
    out = {}
    for item in text.split(","):
        name, _, value = item.partition("=")
        name = name.strip()
        if name not in _BUDGET_METRICS or name in out:
            raise argparse.ArgumentTypeError(
                f"expected METRIC=LIMIT pairs with METRIC from {list(_BUDGET_METRICS)}, each once, got {text!r}")
        try:
            out[name] = float(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name}: expected a number, got {value!r}") from None
        if not out[name] > 0:
            raise argparse.ArgumentTypeError(f"{name}: expected a limit > 0, got {value!r}")
    return out


def _limits_text(limits: dict[str, float]) -> str:
    """``macs <= 300,000, latency <= 2 ms``: each limit with its unit."""
    return ", ".join(f"{m} <= {v:,.0f}" if not (unit := metric(m).unit) else f"{m} <= {v:,g}{unit}"
                     for m, v in limits.items())


def _print_fits(space: Space, limits: dict[str, float], in_chs: int, res: int, classes: int, samples: int,
                seed: int, budget: Budget, latency: Callable[[Arch], float] | None = None) -> None:
    import time

    from archsearch.space.fit import fit_shape, summarize
    from archsearch.space.search_space import sample_shapes

    low, high = min(space.width_mult), max(space.width_mult)
    shapes = sample_shapes(space, samples, in_chs=in_chs, resolution=res, num_classes=classes, seed=seed)
    fits, seconds = [], []
    for shape in shapes:
        t0 = time.perf_counter()
        fits.append(fit_shape(shape, limits, low=low, high=high, latency=latency,
                              bytes_per_param=budget.bytes_per_param, bytes_per_activation=budget.bytes_per_activation))
        seconds.append(time.perf_counter() - t0)
    s = summarize(fits)
    print(f"budget fitting to {_limits_text(limits)}, multiplier {low:g}-{high:g}x, over {len(fits)} sampled shapes:")
    print(f"  fitted {s['fitted']}, capped {s['capped']} (within budget at {high:g}x, trained as they are), "
          f"infeasible {s['infeasible']} (over budget at {low:g}x, never built)")
    if "use_median" in s:
        print(f"  budget_use (largest cost/limit): min {s['use_min']:.3f}, 5th percentile {s['use_p5']:.3f}, "
              f"median {s['use_median']:.3f}, max {s['use_max']:.3f}; >= 0.95: {s['at_threshold']} of "
              f"{len(fits)}")
    seconds.sort()
    print(f"  fitting time per shape: median {1000 * seconds[len(seconds) // 2]:.1f} ms")
    print()


def _print_fitted_baselines(limits: dict[str, float], in_chs: int, res: int, classes: int, budget: Budget,
                            latency: Callable[[Arch], float] | None) -> None:
    """The seed baselines as a search with this budget enqueues them (:func:`baselines.fit_baseline`)."""
    rows = []
    for family in baselines.FAMILIES:
        fit = baselines.fit_baseline(family, in_chs=in_chs, resolution=res, num_classes=classes, limits=limits,
                                     latency=latency, bytes_per_param=budget.bytes_per_param,
                                     bytes_per_activation=budget.bytes_per_activation)
        if fit.arch is None:
            why = baselines.over_words(fit.width, fit.over, limits)
            rows.append([family, "-", "-", "-", "-", "-", f"not queued: {why}"])
            continue
        c = arch_cost(fit.arch)
        ms = fit.values.get("latency")
        use = fit.budget_use
        rows.append([family, f"x{fit.width:.3g}", f"{c.macs:,}", f"{c.params:,}",
                     "-" if ms is None else f"{ms:.3g}", "-" if use is None else f"{use:.3f}", fit.arch.id])
    print(f"seed baselines fitted to {_limits_text(limits)} (what a search enqueues):")
    print(table(rows, ["baseline", "width", "MACs", "params", "latency ms", "budget use", "architecture id"]))
    print()


def _study_space(path: str) -> tuple[Space, tuple[int, int, int], dict[str, float], StudyConfig] | None:
    """For a study YAML: its space (``space_overrides`` applied), its data's input and classes, its budget's limits
    and its config; None for a space file."""
    from archsearch.core.errors import load_yaml

    data = load_yaml(path)
    if "stages" in data or not isinstance(data.get("space"), str):
        return None
    from archsearch.config.assemble import load_config_data
    from archsearch.config.study_config import load_study_config

    config = load_study_config(path)
    space, d = load_config_data(config)
    return space, (d.in_chs, d.resolution, d.num_classes), config.budget.limits(), config


_LATENCY_FIT_SAMPLES = 50  # shapes `archsearch space` fits to a latency limit unless --fit-samples says otherwise


def _latency_predictor(config: StudyConfig) -> tuple[Callable[[Arch], float], Callable[[], None]]:
    """The study's latency table (``latency/`` beside its YAML, as its search reads it): its ``predict``, which
    measures the parts it lacks on this machine and saves them, and what to say after (how many it measured)."""
    from archsearch.search.reachable import latency_table_of

    table = latency_table_of(config)
    target = config.budget.latency.describe()
    print(f"latency: predicted from the study's table {table.path} ({len(table)} entries, {target}); parts it "
          "lacks are measured now on this machine and saved to it", flush=True)

    def done() -> None:
        if table.measurements:
            print(f"latency: {table.measurements} parts measured on this machine and saved to {table.path}")
            print()

    return table.predict, done


def cmd_space(args: argparse.Namespace) -> int:
    from archsearch.config.study_schema import Budget
    from archsearch.space.search_space import describe, load_space, sample_architectures

    study = _study_space(args.space)
    limits: dict[str, float]
    if study is None:  # a space file: weights and activations at float32
        space, (in_chs, res), classes, limits, budget = load_space(args.space), (1, 28), 10, {}, Budget()
    else:
        space, (in_chs, res, classes), limits, config = study
        budget = config.budget
    in_chs, res = args.input or (in_chs, res)
    classes = args.classes or classes
    limits = args.budget or limits
    archs = sample_architectures(space, args.samples, in_chs=in_chs, resolution=res,
                                 num_classes=classes, seed=args.seed)
    costs = [arch_cost(a) for a in archs]
    of = "" if study is None else f" as study {args.space} searches it"
    print(f"space {space.name} ({space.source}{of}): {space.size:,} candidates; input {in_chs}x{res}x{res}, "
          f"{classes} classes; statistics over {len(archs)} sampled candidates")
    rows = []
    for label, values in (("MACs", [c.macs for c in costs]), ("params", [c.params for c in costs]),
                          (f"peak activations (bytes at {budget.activation_precision})",
                           [c.peak_activation_bytes // FLOAT32_BYTES * budget.bytes_per_activation for c in costs])):
        lo, med, hi = describe(values)
        rows.append([label, f"{lo:,.0f}", f"{med:,.0f}", f"{hi:,.0f}"])
    print(table(rows, ["cost", "min", "median", "max"]))
    print()
    if limits:
        latency, measured, fitted = None, None, args.fit_samples or args.samples
        if "latency" in limits and study is not None:  # only a study's budget limits latency (not --budget)
            latency, measured = _latency_predictor(study[-1])
            fitted = args.fit_samples or min(args.samples, _LATENCY_FIT_SAMPLES)
            if fitted < args.samples:
                print(f"latency: the first {fitted} of the {args.samples} sampled shapes are fitted (--fit-samples N "
                      "for more: each fit predicts a few latencies)", flush=True)
        _print_fits(space, limits, in_chs, res, classes, fitted, args.seed, budget, latency)
        _print_fitted_baselines(limits, in_chs, res, classes, budget, latency)
        if measured is not None:
            measured()
    rows = []
    for family, make in baselines.FAMILIES.items():
        for width in (1.0, 0.5, 0.25):
            a = make(width, in_chs=in_chs, resolution=res, num_classes=classes)
            c = arch_cost(a)
            rows.append([f"{family} x{width:g}", f"{c.macs:,}", f"{c.params:,}", a.id])
    if (in_chs, res) == (3, 32):
        for name, a in baselines.EFFNET_PAPER.items():
            c = arch_cost(a.replace(num_classes=classes))
            rows.append([name, f"{c.macs:,}", f"{c.params:,}", a.id])
    print(table(rows, ["baseline", "MACs", "params", "architecture id"]))
    print("xW: the family's seed architecture with every width times W (MobileNet's width multiplier alpha), "
          "unfitted; a search fits the baselines to its budget. Ids: docs/guide.md, 'Architecture ids'")
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    from archsearch.config.study_config import load_study_config
    from archsearch.search.parallel import WorkersFailed, default_workers
    from archsearch.search.study import run, run_workers
    from archsearch.search.summary import no_feasible_reason
    from archsearch.training.train import resolve_device

    config = load_study_config(args.config)
    workers = args.workers
    if workers is None:  # one per usable core on the CPU, no more than the trials to run
        try:
            device = resolve_device(config.device).type
        except ValueError:
            device = "unavailable"  # the search says why, in its own words
        workers = max(1, min(default_workers(device), config.n_trials if args.n_trials is None else args.n_trials))
    options = {"n_trials": args.n_trials, "timeout": args.timeout, "threads": args.threads,
               "max_infeasible": args.max_infeasible, "progress": not args.no_progress,
               "accept_data_change": args.accept_data_change}
    try:
        if workers == 1:
            study = run(config, **options)
        else:
            study = run_workers(config, workers, **options)
    except KeyboardInterrupt:
        print("\ninterrupted: finished trials are stored (the interrupted ones run again); run the same command "
              "to resume", file=sys.stderr)
        return 130
    except WorkersFailed as e:
        print(f"archsearch: {e}", file=sys.stderr)
        return 1
    except BaseException as e:
        if (failure := storage_failure(e)) is None:
            raise
        print(f"archsearch: {failure}", file=sys.stderr)
        return 1
    reason = no_feasible_reason(study, config)
    if reason is not None:  # nothing to export or report: a script must not go on as if the search had worked
        print(f"archsearch: {reason}", file=sys.stderr)
        return 1
    return 0


def _schemas() -> dict:
    from archsearch.config.study_config import study_schema
    from archsearch.space.search_space import space_schema

    return {"study": study_schema, "space": space_schema}


def cmd_schema(args: argparse.Namespace) -> int:
    """Print a file kind's JSON Schema, or check YAML files against the shipped one as an editor does."""
    from archsearch.core.errors import load_yaml
    from archsearch.core.schema import SCHEMA_DIR, schema_text

    if not args.check:
        sys.stdout.write(schema_text(_schemas()[args.kind]()))
        return 0
    import json

    import jsonschema

    shipped = SCHEMA_DIR / f"{args.kind}.schema.json"
    validator = jsonschema.Draft202012Validator(json.loads(shipped.read_text(encoding="utf-8")))
    bad = 0
    for file in args.check:
        # an error inside a section that may also be null is reported by its deepest cause, as editors do
        errors = [jsonschema.exceptions.best_match([e]) for e in validator.iter_errors(load_yaml(file))]
        errors.sort(key=lambda e: [str(p) for p in e.absolute_path])
        for e in errors:
            where = ".".join(str(p) for p in e.absolute_path)
            print(f"{file}: {where + ': ' if where else ''}{e.message}")
        if not errors:
            print(f"{file}: valid against {shipped.name}")
        bad += bool(errors)
    return 1 if bad else 0


def build_parser() -> argparse.ArgumentParser:
    from archsearch import __version__

    p = argparse.ArgumentParser(prog="archsearch", description="Hardware-aware architecture search for small CNNs.")
    p.add_argument("--version", action="version", version=f"archsearch {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    text = "size and cost range of a search space, beside the seed baselines"
    s = sub.add_parser("space", help=text, description=text + "; with a budget, how much of it fitted shapes use. "
                       "Given a study YAML: its space as it searches it (space_overrides applied), with its "
                       "dataset's input and classes and its budget, unless the options say otherwise")
    s.add_argument("space", help="search-space YAML file, or a study YAML")
    s.add_argument("--input", type=input_shape, default=None, metavar="CxHxW",
                   help="input shape (1x28x28; a study's: its dataset's)")
    s.add_argument("--classes", type=export_cli.positive_int, default=None,
                   help="classes of the head (10; a study's: its dataset's)")
    s.add_argument("--samples", type=int, default=500, help="candidates sampled for the statistics (500)")
    s.add_argument("--seed", type=int, default=0, help="sampling seed (0)")
    s.add_argument("--fit-samples", type=export_cli.positive_int, default=None, metavar="N",
                   help=f"shapes fitted to the budget (--samples; with a latency limit at most "
                        f"{_LATENCY_FIT_SAMPLES}: each fit predicts latencies from the study's table, which "
                        "measures the parts it lacks, about a second a shape on a CPU)")
    s.add_argument("--budget", type=_budget, default=None, metavar="macs=N[,params=N,peak_kb=N,model_kb=N]",
                   help="also fit the sampled shapes and the seed baselines to this budget and show how much of it "
                        "they use (a study: its budget, a latency limit predicted by its latency table)")
    s.set_defaults(func=cmd_space)

    text = "create or resume a study and run it to n_trials finished trials"
    s = sub.add_parser("search", help=text, description=text + " (counted across restarts and workers)")
    s.add_argument("config", help="study YAML file")
    s.add_argument("--n-trials", type=int, default=None, help="override the study's n_trials (a study total)")
    s.add_argument("--timeout", type=float, default=None, help="seconds for this call")
    s.add_argument("--workers", type=export_cli.positive_int, default=None,
                   help="worker processes on this machine, one study (default: one per usable core on the CPU, "
                        "one on a GPU; --workers 1 for a reproducible search: docs/parallelism.md)")
    s.add_argument("--threads", type=export_cli.positive_int, default=None,
                   help="torch threads per worker process (default: 1)")
    s.add_argument("--max-infeasible", type=export_cli.positive_int, default=None, metavar="N",
                   help="stop this run after N candidates over the budget (never trained, not counted in "
                        "n_trials; default: 10 per network to train, at least 50)")
    s.add_argument("--no-progress", action="store_true", help="no progress bar")
    s.add_argument("--accept-data-change", action="store_true",
                   help="go on with a study whose images, labels or class names changed since it was made (the "
                        "study then takes the new data as its own)")
    s.set_defaults(func=cmd_search)

    export_cli.add_parser(sub)
    report.add_parser(sub)
    latency_cli.add_parser(sub)

    text = "the JSON Schema of a study or search-space YAML, for editors (yaml-language-server)"
    s = sub.add_parser("schema", help=text, description=text + "; with --check, validate files against the "
                                                              "shipped schema as an editor does")
    s.add_argument("kind", choices=("study", "space"), help="which file kind")
    s.add_argument("--check", nargs="+", metavar="YAML", default=None,
                   help="validate these YAML files against archsearch/schemas/<kind>.schema.json")
    s.set_defaults(func=cmd_schema)
    return p


# what a Ctrl-C leaves, per command (search and export say it themselves)
_INTERRUPTED = {
    "report": "the report's files may be incomplete; run the same command to write them again",
    "latency": "the latency table keeps what it had saved (written whole, never half); run the same command to go on",
    "space": "nothing is written; run the same command to start again",
    "schema": "nothing is written; run the same command to start again",
}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:  # a command without its own word on what a Ctrl-C keeps
        print(f"\ninterrupted: {_INTERRUPTED.get(args.command, 'run the same command to start again')}",
              file=sys.stderr)
        return 130
    except ConfigError as e:
        print(f"archsearch: error: {e}", file=sys.stderr)
        return 2
    except StorageFailed as e:  # report, export: the study's database went away
        print(f"archsearch: {e}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        # the reader went away (`archsearch space ... | head`): no traceback; point stdout at devnull so that
        # Python's flush at exit does not raise again
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, as a shell reports it


if __name__ == "__main__":
    sys.exit(main())
