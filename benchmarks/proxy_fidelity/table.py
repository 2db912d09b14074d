"""The proxy-fidelity run's plan, its row files and its table (``run.py`` trains the rows): Kendall
tau of each search-time recipe against the reference, overall, by input resolution and with the seed baselines.
Reads the row files; trains nothing.
"""

from __future__ import annotations

import dataclasses
import statistics
from pathlib import Path

from archsearch.space import baselines
from benchmarks.common import read_json
from benchmarks.proxy_fidelity.scores import score_table


@dataclasses.dataclass(frozen=True)
class Plan:
    archs: int
    recipes: dict[str, tuple[int, int | None]]  # name -> (epochs, training images; None: all)
    schedule: tuple[int, int, int, int]  # successive halving: max epochs, images, min resource, reduction factor
    reference: tuple[int, int | None]  # epochs, images (None: all 60,000)
    limit: int | None = None  # first images of every split (quick)
    noise: int = 24  # the architectures whose reference is trained again with another seed (#36: >= 12; all 24)


FULL = Plan(
    archs=24,
    # #36: the search's recipe again with its learning curve recorded (the rows above lack it), and more images
    # per candidate: one and two epochs on the whole training split (54,000 images)
    recipes={"e2-n10k": (2, 10_000), "e4-n10k": (4, 10_000), "e2-n30k": (2, 30_000), "e2-n10k-curve": (2, 10_000),
             "e1-all": (1, None), "e2-all": (2, None)},
    schedule=(9, 10_000, 1, 3),
    reference=(8, None),
)
QUICK = Plan(archs=4, recipes={"e1-n500": (1, 500), "e2-n500": (2, 500)}, schedule=(3, 500, 1, 3),
             reference=(2, None), limit=1000, noise=3)
SCHEDULE = "sh-e9-n10k"  # the multi-fidelity row's name (its plan's values in the rows)
NOISE = "reference-seed1"  # the reference trained again from another initial seed: its own noise


def proxy_noise(plan: Plan) -> str:
    """The search's own recipe (the plan's first) again from another initial seed: the proxy's own noise."""
    return f"{next(iter(plan.recipes))}-seed1"


def row_file(out: Path, index: int, recipe: str) -> Path:
    return out / f"a{index:02d}-{recipe}.json"


def baseline_file(out: Path, family: str, recipe: str) -> Path:
    return out / f"b-{family}-{recipe}.json"


def check_rows(out: Path, archs: list) -> None:
    """Refuse rows of another architecture list: a row names its architecture by index, so a change to the
    sampling or the fitting would otherwise pair old rows with new networks (or skip training them)."""
    for path in sorted(out.glob("a*.json")):
        row = read_json(path)
        i = row.get("arch") if row else None
        if not isinstance(i, int) or i >= len(archs) or row.get("arch_id") != archs[i].id:
            now = archs[i].id if isinstance(i, int) and i < len(archs) else "not in the list"
            raise SystemExit(f"error: {path}: a row of {row.get('arch_id') if row else None!r}, but architecture "
                             f"{i} is now {now}; the sampling or the fitting changed: move the rows elsewhere")


def with_baselines(out: Path, plan: Plan, rows: dict[tuple[int, str], dict], ref: dict[int, dict],
                   archs: list) -> list[str]:
    """Each recipe's tau over the architectures at the shipped resolution and the seed baselines together, and
    the order it gives the baselines: the re-rank chooses between searched and hand-designed networks."""
    from scipy.stats import kendalltau

    found = {}
    for family in baselines.FAMILIES:
        mine = {name: read_json(baseline_file(out, family, name)) for name in [*plan.recipes, "reference"]}
        if mine["reference"] is not None:
            found[family] = mine
    if not found:
        return []
    top = max(a.resolution for a in archs)
    shipped = [i for i in ref if archs[i].resolution == top]
    lines = [f"With the seed baselines ({', '.join(found)}; scaled to the budget, as the benchmark "
             f"trains them; their reference is the benchmark's seed-0 row where it has one):", "",
             f"| recipe | tau, {top}x{top} and baselines (archs) | the baselines' scores, best first |",
             "|---|---|---|"]
    for name in [*plan.recipes, "reference"]:
        pairs = [(rows[(i, name)]["accuracy"], ref[i]["accuracy"]) for i in shipped if (i, name) in rows]
        scored = {f: m[name]["accuracy"] for f, m in found.items() if m.get(name) is not None}
        pairs += [(scored[f], found[f]["reference"]["accuracy"]) for f in scored]
        tau = kendalltau(*zip(*pairs, strict=True)).statistic if len(pairs) >= 3 else None
        order = ", ".join(f"{f} {100 * v:.2f}" for f, v in sorted(scored.items(), key=lambda kv: -kv[1]))
        lines.append(f"| {name} | {'-' if tau is None else f'{tau:.3f}'} ({len(pairs)}) | {order or '-'} |")
    return lines


def table(out: Path, plan: Plan, archs: list) -> str:
    from scipy.stats import kendalltau

    rows: dict[tuple[int, str], dict] = {}
    for path in out.glob("a*.json"):
        row = read_json(path)
        rows[(row["arch"], row["recipe"])] = row
    ref = {i: r for (i, name), r in rows.items() if name == "reference"}
    ref_cost = statistics.fmean(r["seconds"] for r in ref.values()) if ref else None
    lines = [f"{len(archs)} budget-fitted `mixed.yaml` architectures at 3M MACs, Fashion-MNIST; reference: "
             f"{plan.reference[0]} epochs on all training images, test accuracy ({len(ref)} of {len(archs)} done)",
             "", "| recipe | epochs x images | Kendall tau vs reference (p) | archs | cost per candidate | "
             "share of the reference's cost | share of its training images |", "|---|---|---|---|---|---|---|"]
    # images the reference trains on (epochs x all training images), as its rows record it
    ref_images = statistics.fmean(r["epochs"] * r["images"] for r in ref.values()) if ref else None
    names = [*plan.recipes, SCHEDULE]
    for name in names:
        mine = {i: r for (i, n), r in rows.items() if n == name}
        both = sorted(set(mine) & set(ref))
        if name == SCHEDULE:
            # rank by how far a candidate got, then by its last accuracy: what the search would pick by
            score = [(mine[i]["epochs"], mine[i]["accuracy"]) for i in both]
            order = sorted(range(len(score)), key=lambda k: score[k])
            proxy = [order.index(k) for k in range(len(score))]
            spec = f"successive halving, up to {plan.schedule[0]} x {plan.schedule[1]:,}"
        else:
            proxy = [mine[i]["accuracy"] for i in both]
            epochs, images = plan.recipes[name]
            spec = f"{epochs} x {'all' if images is None else f'{images:,}'}"
        cost = statistics.fmean(r["seconds"] for r in mine.values()) if mine else None
        if len(both) >= 3:
            t = kendalltau(proxy, [ref[i]["accuracy"] for i in both])
            tau = f"{t.statistic:.3f} ({t.pvalue:.2g})"
        else:
            tau = "-"
        share = f"{cost / ref_cost:.3f}" if cost is not None and ref_cost else "-"
        # the load-free measure of cost: the rows' seconds vary with what else ran on the machine
        images = statistics.fmean(r["epochs"] * r["images"] for r in mine.values()) if mine else None
        nominal = "-" if images is None or not ref_images else f"{images / ref_images:.3f}"
        lines.append(f"| {name} | {spec} | {tau} | {len(both)} | "
                     f"{'-' if cost is None else f'{cost:.1f} s'} | {share} | {nominal} |")
    noise = {i: r for (i, n), r in rows.items() if n == NOISE and i in ref}
    noise_text = []
    if len(noise) >= 3:
        both = sorted(noise)
        t = kendalltau([noise[i]["accuracy"] for i in both], [ref[i]["accuracy"] for i in both])
        moved = [100 * abs(noise[i]["accuracy"] - ref[i]["accuracy"]) for i in both]
        noise_text = [f"| {NOISE} | the reference, initial seed + 1 | {t.statistic:.3f} ({t.pvalue:.2g}) | "
                      f"{len(both)} | - | 1 | 1 |",
                      "", f"the reference against itself from another initial seed ({len(both)} architectures): "
                      f"test accuracy moved {min(moved):.2f} to {max(moved):.2f} points (median "
                      f"{statistics.median(moved):.2f}), which bounds any proxy's tau over this spread"]
    first = next(iter(plan.recipes))
    again = {i: r for (i, n), r in rows.items() if n == proxy_noise(plan) and (i, first) in rows}
    if len(again) >= 3:
        both = sorted(again)
        self_tau = kendalltau([again[i]["accuracy"] for i in both], [rows[(i, first)]["accuracy"] for i in both])
        moved = [100 * abs(again[i]["accuracy"] - rows[(i, first)]["accuracy"]) for i in both]
        with_ref = [i for i in both if i in ref]
        t = kendalltau([again[i]["accuracy"] for i in with_ref], [ref[i]["accuracy"] for i in with_ref]) \
            if len(with_ref) >= 3 else None
        lines.append(f"| {proxy_noise(plan)} | {first}, initial seed + 1 | "
                     f"{'-' if t is None else f'{t.statistic:.3f} ({t.pvalue:.2g})'} | {len(with_ref)} | - | - | - |")
        noise_text += ["", f"{first} against itself from another initial seed ({len(both)} architectures): Kendall "
                       f"tau {self_tau.statistic:.3f}; validation accuracy moved {min(moved):.2f} to "
                       f"{max(moved):.2f} points (median {statistics.median(moved):.2f})"]
    if ref:
        accs = [r["accuracy"] for r in ref.values()]
        lines.append(f"| reference | {plan.reference[0]} x all | 1 | {len(ref)} | {ref_cost:.1f} s | 1 | 1 |")
        lines += noise_text
        spread = sorted(r["seconds"] for r in ref.values())
        lines += ["", f"reference seconds per architecture: {spread[0]:.0f} to {spread[-1]:.0f} (one process on one "
                  f"core; slower while other jobs shared the machine)"]
        lines += ["", f"reference test accuracy: {min(accs):.4f} to {max(accs):.4f} "
                  f"(median {statistics.median(accs):.4f})"]
        lines += ["", *by_resolution(rows, ref, plan, archs)]
        extra = with_baselines(out, plan, rows, ref, archs)
        lines += ["", *extra] if extra else []
        first = next(iter(plan.recipes))
        lines += ["", *score_table(out, list(plan.recipes), (first, proxy_noise(plan)), NOISE, plan.reference[0])]
    return "\n".join(lines)


def by_resolution(rows: dict[tuple[int, str], dict], ref: dict[int, dict], plan: Plan, archs: list) -> list[str]:
    """Each recipe's tau within each input resolution, and how it scores one resolution against the other."""
    from scipy.stats import kendalltau

    sizes = sorted({archs[i].resolution for i in ref})
    if len(sizes) < 2:
        return []
    low, high = sizes[0], sizes[-1]
    lines = [f"By input resolution (the architectures with a reference; the shipped studies search {high}x{high} "
             f"only):", "", "| recipe | " + " | ".join(f"tau, {s}x{s} only (archs)" for s in sizes)
             + f" | mean accuracy, {low}x{low} - {high}x{high} (points) |", "|---|" + "---|" * (len(sizes) + 1)]
    for name in [*plan.recipes, "reference"]:
        mine = {i: rows[(i, name)]["accuracy"] for i in ref if (i, name) in rows}
        cells = []
        for s in sizes:
            both = [i for i in mine if archs[i].resolution == s]
            tau = kendalltau([mine[i] for i in both], [ref[i]["accuracy"] for i in both]).statistic \
                if len(both) >= 3 else None
            cells.append(f"{'-' if tau is None else f'{tau:.3f}'} ({len(both)})")
        means = {s: [mine[i] for i in mine if archs[i].resolution == s] for s in (low, high)}
        gap = (f"{100 * (statistics.fmean(means[low]) - statistics.fmean(means[high])):+.2f}"
               if means[low] and means[high] else "-")
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {gap} |")
    return lines
