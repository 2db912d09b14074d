"""The Fashion-MNIST benchmark's report: the table, the targets and the plots, made from the results file
alone (``python -m benchmarks.fashion_mnist.run --readme`` writes them into docs/results.md); trains nothing.
"""

from __future__ import annotations

import math
import os
import statistics
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.common import ROOT
from benchmarks.fashion_mnist.store import LEVELS, SAMPLERS, Results, Settings

README_PLOT = Path(__file__).resolve().parent / "accuracy_vs_macs.png"
README_ANYTIME = Path(__file__).resolve().parent / "anytime.png"
MARK_START = "<!-- fashion-mnist-benchmark:start -->"
MARK_END = "<!-- fashion-mnist-benchmark:end -->"
IMPROVE_TARGET = 0.010  # archsearch beats the best baseline by 1.0 point at every level
ACC_TARGET_3M = 0.925  # ... and reaches 92.5% at 3 M MACs (the long rows)


def mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def summarise(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry per (level, kind, model, epochs), seeds pooled."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for r in rows:
        if r["kind"] in ("baseline", "searched", "long"):
            groups.setdefault((r["level"], r["kind"], r["family"], r["epochs"]), []).append(r)
    out = []
    for (level, kind, family, epochs), rs in groups.items():
        acc, std = mean_std([r["test_accuracy"] for r in rs])
        out.append({"level": level, "kind": kind, "family": family, "epochs": epochs, "arch_id": rs[0]["arch_id"],
                    "n": len(rs), "acc": acc, "std": std, "accs": [r["test_accuracy"] for r in rs],
                    "by_seed": {r["seed"]: r["test_accuracy"] for r in rs},
                    "macs": rs[0]["macs"], "params": rs[0]["params"], "trial": rs[0].get("trial"),
                    "latency_ms": statistics.median(r["latency_ms"] for r in rs), "n_test": rs[0]["n_test"],
                    "seconds": statistics.fmean(r["train_seconds"] for r in rs),
                    # rows trained on a GPU (mixed precision; --device cuda): the table says which
                    "gpu": sorted({r.get("machine", {}).get("cuda", "a GPU") for r in rs if r.get("device") == "cuda"}),
                    "gpu_rows": sum(r.get("device") == "cuda" for r in rs)})
    order = list(LEVELS)
    kinds = ["baseline", "searched", "long"]
    return sorted(out, key=lambda e: (order.index(e["level"]), kinds.index(e["kind"]), e["family"]))


def _gap(a: dict[str, Any], b: dict[str, Any]) -> tuple[float, float]:
    """Difference of two entries' means and its standard error over seeds (independent runs)."""
    se = math.sqrt(a["std"] ** 2 / a["n"] + b["std"] ** 2 / b["n"])
    return a["acc"] - b["acc"], se


def _by_seed(a: dict[str, Any], b: dict[str, Any]) -> str:
    """The difference seed by seed (each side trained from the same seed number), as a range: its spread."""
    diffs = [a["by_seed"][k] - b["by_seed"][k] for k in sorted(set(a["by_seed"]) & set(b["by_seed"]))]
    if len(diffs) < 2:
        return ""
    return f", seed by seed {100 * min(diffs):+.2f} to {100 * max(diffs):+.2f}"


def markdown(entries: list[dict[str, Any]], searches: dict[str, dict[str, Any]], anytime_rows: list[dict],
             settings: Settings, superseded: Sequence[dict[str, Any]] = ()) -> str:
    lines = [
        "| budget | model | epochs | test accuracy (mean ± std) | seeds | MACs | params | CPU latency "
        "| architecture |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for e in entries:
        model = {"archsearch": f"**archsearch** (trial {e['trial']})",
                 "random": f"random search (trial {e['trial']})"}.get(e["family"], e["family"])
        lines.append(
            f"| {e['level'].upper()} | {model} | {e['epochs']} | {100 * e['acc']:.2f} ± {100 * e['std']:.2f} % | "
            f"{e['n']} | {e['macs'] / 1e6:.2f} M | {e['params'] / 1e3:.1f} K | {e['latency_ms']:.2f} ms | "
            f"`{e['arch_id']}` |"
        )
    lines.append("")
    for level in LEVELS:
        at = [e for e in entries if e["level"] == level and e["epochs"] == settings.epochs and e["kind"] != "long"]
        base = [e for e in at if e["kind"] == "baseline"]
        found = [e for e in at if e["family"] == "archsearch"]
        rand = [e for e in at if e["family"] == "random"]
        parts = []
        if base and found:
            top = max(base, key=lambda e: e["acc"])
            gap, se = _gap(found[0], top)
            verdict = "meets" if gap >= IMPROVE_TARGET else "misses"
            parts.append(f"archsearch {100 * found[0]['acc']:.2f}% vs best baseline {top['family']} "
                         f"{100 * top['acc']:.2f}%: {100 * gap:+.2f} ± {100 * se:.2f} points{_by_seed(found[0], top)} "
                         f"({verdict} the +1.0 target)")
        if found and rand:
            gap, se = _gap(found[0], rand[0])
            parts.append(f"vs random search {100 * rand[0]['acc']:.2f}%: {100 * gap:+.2f} ± {100 * se:.2f} points"
                         f"{_by_seed(found[0], rand[0])} ({'beats' if gap > 0 else 'does not beat'} it)")
        for sampler in SAMPLERS:
            s = searches.get(f"{level}/{sampler}")
            if s is not None:
                parts.append(f"{sampler} search: {s['spent_seconds']:.0f} s of trial time + "
                             f"{s['rerank_seconds']:.0f} s re-rank, {s['trials']} trials ({s['trained']} trained, "
                             f"{s['infeasible']} infeasible)")
        if parts:
            lines.append(f"- {level.upper()}: " + "; ".join(parts) + ".")
    for level in LEVELS:  # searched rows another search of the level replaced (supersede.py): kept, named
        old = [e for e in superseded if e["level"] == level]
        if old:
            lines.append(f"- {level.upper()}, superseded ({old[0]['why']}): " + ", ".join(
                f"{'archsearch' if e['family'] == 'archsearch' else 'random search'} (trial {e['trial']}) "
                f"{100 * e['acc']:.2f} ± {100 * e['std']:.2f}%" for e in old) + ".")
    long = [e for e in entries if e["kind"] == "long"]
    for e in long:
        verdict = "" if e["level"] != "3m" else \
            f" ({'>=' if e['acc'] >= ACC_TARGET_3M else '<'} the {100 * ACC_TARGET_3M:.1f}% target)"
        lines.append(f"- {e['level'].upper()}, {e['epochs']} epochs: {e['family']} {100 * e['acc']:.2f} ± "
                     f"{100 * e['std']:.2f}%{verdict}.")
    if anytime_rows:
        lines.append(f"- Anytime at {settings.anytime_level.upper()} (test accuracy, seed 0, of the best searched "
                     f"candidate by the search score after a share of the search's trials; at 1: the row above): "
                     + "; ".join(f"{r['family']} at {r['tag'][1:]}: {100 * r['test_accuracy']:.2f}%"
                                 for r in sorted(anytime_rows, key=lambda r: (r["family"], r["tag"]))) + ".")
    # the time each part took: one core per process, summed over what is in the file (runs cut short by a
    # session's end record no wall time of their own, so the sums of their trainings are the measure)
    spent = []
    for level in LEVELS:
        search_s = sum(v.get("spent_seconds", 0) + v.get("rerank_seconds", 0) for k, v in searches.items()
                       if k.startswith(f"{level}/"))
        rows_s = sum(e["seconds"] * e["n"] for e in entries if e["level"] == level)
        rows_s += sum(r["train_seconds"] for r in anytime_rows if r["level"] == level and not r.get("reused_from"))
        if search_s or rows_s:
            spent.append(f"{level.upper()} {search_s / 3600:.1f} h searching and re-ranking + {rows_s / 3600:.1f} h "
                         f"of rows")
    if spent:
        lines.append("- Compute so far, core-hours of training (one thread a process, beside another job): "
                     + "; ".join(spent) + ".")
    n_test = f"{entries[0]['n_test']:,}" if entries else "?"
    lines.append(f"- Final recipe for every row: the study's SGD/cosine/shift recipe, {settings.epochs} epochs "
                 f"(long rows: {settings.long_epochs}) on {settings.train_subset or 'all 60,000'} training images "
                 f"(training and validation splits); test accuracy on {n_test} test images; ± is the std over "
                 f"seeds, a difference's ± its standard error (and its range seed by seed); latency: median of "
                 f"batch-1 forward passes, 1 thread, CPU.")
    # where the rows trained: a GPU row ran in mixed precision, so the table says which did
    on_gpu = [e for e in entries if e["gpu_rows"]]
    n_rows = sum(e["n"] for e in entries)
    if on_gpu:
        gpus = ", ".join(sorted({g for e in on_gpu for g in e["gpu"]}))
        lines.append(f"- Trained on {gpus} in mixed precision: {sum(e['gpu_rows'] for e in on_gpu)} of {n_rows} rows ("
                     + ", ".join(f"{e['level'].upper()} {e['family']} {e['epochs']} epochs: {e['gpu_rows']} of "
                                 f"{e['n']}" for e in on_gpu) + "); the others on one CPU core each.")
    else:
        lines.append(f"- Every row trained on the CPU, one thread each ({n_rows} rows).")
    return "\n".join(lines) + "\n"


def plot(entries: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, LogLocator

    markers = {"mobilenet": "o", "shufflenet": "s", "effnet": "^", "random": "x", "archsearch": "*"}
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for family, marker in markers.items():
        for long in (False, True):
            es = [e for e in entries if e["family"] == family and (e["kind"] == "long") == long]
            if not es:
                continue
            ax.errorbar([e["macs"] / 1e6 for e in es], [100 * e["acc"] for e in es],
                        yerr=[100 * e["std"] for e in es], fmt=marker, capsize=3,
                        markersize=12 if family == "archsearch" else 7, mfc="none" if long else None,
                        label=f"{family}, {es[0]['epochs']} epochs")
    for level, macs in LEVELS.items():
        if any(e["level"] == level for e in entries):
            ax.axvline(macs / 1e6, color="grey", linestyle=":", linewidth=1)
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 3.0, 5.0)))  # plain numbers on the log axis
    ax.xaxis.set_minor_formatter(FuncFormatter(lambda v, _: ""))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.set_xlabel("MACs per 28x28 image (millions, log scale)")
    ax.set_ylabel("test accuracy (%), mean ± std over seeds")
    ax.set_title("Fashion-MNIST: archsearch, random search, scaled baselines (dotted: budgets)", fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    _save(fig, path)


def plot_anytime(searches: dict[str, dict[str, Any]], anytime_rows: list[dict], final_rows: list[dict],
                 level: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    colors = {"tpe": "C0", "random": "C1"}
    for sampler, style in (("tpe", "-"), ("random", "--")):
        s = searches.get(f"{level}/{sampler}")
        if not s or not s["curve"]:
            continue
        xs, ys = zip(*s["curve"], strict=True)
        ax.step(xs, [100 * y for y in ys], style, where="post", color=colors[sampler],
                label=f"{sampler}: best-so-far validation accuracy")
    # the final test accuracy (seed 0) of each search's pick so far: its checkpoints, then its network's row
    for sampler, family, marker in (("tpe", "archsearch", "o"), ("random", "random", "s")):
        s = searches.get(f"{level}/{sampler}")
        points = []
        for r in anytime_rows:
            point = next((c for c in (s or {}).get("checkpoints", []) if f"f{c['fraction']:g}" == r["tag"]), None)
            if r["family"] == family and point is not None:
                points.append((point["seconds"], 100 * r["test_accuracy"]))
        final = next((r for r in final_rows if r["family"] == family and r["seed"] == 0), None)
        if s and final is not None:
            points.append((s["spent_seconds"], 100 * final["test_accuracy"]))
        if points:
            xs, ys = zip(*sorted(points), strict=True)
            ax.plot(xs, ys, marker, color=colors[sampler], linestyle=":",
                    label=f"{sampler}: final test accuracy of its pick so far (seed 0)")
    ax.set_xlabel("search time (summed trial seconds, one core)")
    ax.set_ylabel("accuracy (%)")
    ax.set_title(f"Anytime at {level.upper()}: lines, search score; markers, final test accuracy")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    _save(fig, path)


def _save(fig: Any, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    os.replace(tmp, path)


def write_readme(readme: Path, block: str) -> None:
    text = readme.read_text(encoding="utf-8")
    section = f"{MARK_START}\n{block}{MARK_END}"
    if MARK_START in text and MARK_END in text:
        head, rest = text.split(MARK_START, 1)
        text = head + section + rest.split(MARK_END, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n## Search quality on Fashion-MNIST\n\n" + section + "\n"
    tmp = readme.with_name(f".{readme.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, readme)


def report(results: Results, settings: Settings, out: Path, readme: Path | None = None) -> str:
    """The table and plots from the results file alone (into ``out``; with ``readme``, into README too)."""
    done = results.read()
    rows = [e for e in done.values() if e.get("kind") in ("baseline", "searched", "long")]
    anytime_rows = [e for e in done.values() if e.get("kind") == "anytime"]
    searches = {f"{e['level']}/{e['sampler']}": e for e in done.values() if e.get("kind") == "search"}
    entries = summarise(rows)
    # searched rows kept as superseded-searched, each group with the reason it was replaced
    old_rows = [{**e, "kind": "searched"} for e in done.values() if e.get("kind") == "superseded-searched"]
    why = {e["level"]: e.get("superseded", "") for e in old_rows}
    superseded = [{**e, "why": why[e["level"]]} for e in summarise(old_rows)]
    table = markdown(entries, searches, anytime_rows, settings, superseded)
    out.mkdir(parents=True, exist_ok=True)
    png, anytime_png = out / "accuracy_vs_macs.png", out / "anytime.png"
    if entries:
        plot(entries, png)
    if any(k.startswith(settings.anytime_level + "/") for k in searches):
        final_rows = [e for e in rows if e["kind"] == "searched" and e["level"] == settings.anytime_level
                      and e["epochs"] == settings.epochs]
        plot_anytime(searches, anytime_rows, final_rows, settings.anytime_level, anytime_png)
    (out / "results.md").write_text(table, encoding="utf-8")
    if readme is not None:
        if not readme.is_file():
            raise SystemExit(f"error: --readme-file: {readme} is not a file (the document whose results section "
                             f"is replaced)")
        if not entries:
            raise SystemExit(f"error: --readme: no finished rows in {results.path}")
        # the plots go to the checkout's benchmarks/fashion_mnist/ (a copy's own in tests), linked from the document
        base = next((d for d in readme.resolve().parents if (d / "benchmarks").is_dir()), readme.parent)
        plots = [(png, base / README_PLOT.relative_to(ROOT), "test accuracy against MACs"),
                 (anytime_png, base / README_ANYTIME.relative_to(ROOT), "anytime curve")]
        links = []
        for src, dst, alt in plots:
            if src.exists():
                dst.parent.mkdir(parents=True, exist_ok=True)
                dst.write_bytes(src.read_bytes())
                links.append(f"![{alt}]({os.path.relpath(dst, readme.parent)})")
        rel = os.path.relpath(results.path, readme.parent)
        block = (f"Made by `python -m benchmarks.fashion_mnist.run --readme` from `{rel}` "
                 f"({len(rows) + len(anytime_rows)} rows, {len(searches)} searches):\n\n{table}\n"
                 + "\n".join(links) + "\n\n")
        write_readme(readme, block)
    return table
