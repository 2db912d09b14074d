"""Issue #36's score table: for every search-time recipe of the proxy-fidelity run, each score that one training
gives (its final validation accuracy, and from the learning curve a row records: validation loss, training-speed
estimates), ranked against the reference: Kendall tau with a bootstrap interval over the architectures,
Spearman's rho, and how many of the reference's top 5 the score's top 5 hold. Plus the 2-seed mean of the
search's own recipe, and the reference against its own second seed: the ceiling any score can reach.

Reads the row files of ``run.py``; trains nothing.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from pathlib import Path

import numpy as np

from benchmarks.common import read_json

BOOTSTRAP = 2000  # resamples of the architectures for the tau interval
TOP = 5

# score name -> (what it reads from a row, higher is better); a curve holds one value an epoch
SCORES: dict[str, Callable[[dict], float | None]] = {
    "val accuracy (final)": lambda r: r["accuracy"],
    "val loss (final), lower first": lambda r: _neg(_last(r, "val_loss")),
    "val accuracy, mean over epochs": lambda r: _mean(r, "val_accuracy"),
    "train loss, sum over epochs (TSE), lower first": lambda r: _neg(_sum(r, "train_loss")),
    "train loss, last epoch's last quarter (TSE-E), lower first": lambda r: _neg(_last(r, "train_loss_tail")),
}


def _curve(row: dict, key: str) -> list[float] | None:
    values = (row.get("curve") or {}).get(key)
    return None if not values or any(v is None for v in values) else values


def _last(row: dict, key: str) -> float | None:
    values = _curve(row, key)
    return None if values is None else values[-1]


def _sum(row: dict, key: str) -> float | None:
    values = _curve(row, key)
    return None if values is None else sum(values)


def _mean(row: dict, key: str) -> float | None:
    values = _curve(row, key)
    return None if values is None else statistics.fmean(values)


def _neg(value: float | None) -> float | None:
    return None if value is None else -value


def rank_stats(score: list[float], reference: list[float], seed: int = 0) -> dict[str, float]:
    """Kendall tau (with a 90% bootstrap interval over the items), Spearman rho, and the top-5 overlap."""
    from scipy.stats import kendalltau, spearmanr

    s, r = np.asarray(score), np.asarray(reference)
    rng = np.random.default_rng(seed)
    boot = []
    for _ in range(BOOTSTRAP):
        idx = rng.integers(0, len(s), len(s))
        if len(set(idx.tolist())) >= 3:
            t = kendalltau(s[idx], r[idx]).statistic
            if not np.isnan(t):
                boot.append(t)
    top = min(TOP, len(s))
    overlap = len(set(np.argsort(-s)[:top].tolist()) & set(np.argsort(-r)[:top].tolist()))
    return {"tau": float(kendalltau(s, r).statistic), "lo": float(np.percentile(boot, 5)),
            "hi": float(np.percentile(boot, 95)), "rho": float(spearmanr(s, r).statistic), "top": overlap,
            "of": top, "n": len(s)}


def _line(name: str, score: str, cost: str, st: dict[str, float]) -> str:
    return (f"| {name} | {score} | {st['tau']:.3f} [{st['lo']:.2f}, {st['hi']:.2f}] | {st['rho']:.3f} | "
            f"{st['top']} of {st['of']} | {st['n']} | {cost} |")


def score_table(out: Path, recipes: list[str], seed_pair: tuple[str, str], noise: str, ref_epochs: int) -> list[str]:
    """The table's lines: one per (recipe, score) with enough rows, the 2-seed mean, and the ceiling."""
    rows: dict[tuple[int, str], dict] = {}
    for path in out.glob("a*.json"):
        row = read_json(path)
        if row:
            rows[(row["arch"], row["recipe"])] = row
    ref = {i: r["accuracy"] for (i, n), r in rows.items() if n == "reference"}
    lines = [f"Scores against the reference (test accuracy after {ref_epochs} epochs on all images): Kendall tau [90% "
             f"bootstrap "
             f"interval over the architectures, {BOOTSTRAP} resamples], Spearman rho, the reference's top {TOP} "
             f"found in the score's top {TOP}:", "",
             "| recipe | score | Kendall tau [90%] | Spearman | top 5 | archs | cost per candidate |",
             "|---|---|---|---|---|---|---|"]
    lines += _recipe_lines(rows, recipes, ref)
    first, second = seed_pair
    pair = sorted(i for i in ref if (i, first) in rows and (i, second) in rows)
    if len(pair) >= 5:
        mean = [(rows[(i, first)]["accuracy"] + rows[(i, second)]["accuracy"]) / 2 for i in pair]
        cost = statistics.fmean(rows[(i, first)]["seconds"] + rows[(i, second)]["seconds"] for i in pair)
        lines.append(_line(f"{first} + {second}", "val accuracy, mean of 2 initial seeds", f"{cost:.1f} s",
                           rank_stats(mean, [ref[i] for i in pair])))
    again = sorted(i for i in ref if (i, noise) in rows)
    if len(again) >= 5:
        lines += ["", "The ceiling: the reference against itself from another initial seed.", "",
                  "| recipe | score | Kendall tau [90%] | Spearman | top 5 | archs | cost per candidate |",
                  "|---|---|---|---|---|---|---|",
                  _line(noise, "test accuracy", "the reference's", rank_stats([rows[(i, noise)]["accuracy"]
                                                                               for i in again],
                                                                              [ref[i] for i in again]))]
        # the reference made less noisy: the mean of its two seeds, where both are trained
        ref2 = {i: (ref[i] + rows[(i, noise)]["accuracy"]) / 2 for i in again}
        lines += ["", f"Against the mean of the reference's 2 seeds ({len(ref2)} architectures):", "",
                  "| recipe | score | Kendall tau [90%] | Spearman | top 5 | archs | cost per candidate |",
                  "|---|---|---|---|---|---|---|", *_recipe_lines(rows, recipes, ref2)]
        lines += ["", *_noise_lines(rows, ref, ref2, noise, seed_pair)]
    return lines


def _noise_lines(rows: dict[tuple[int, str], dict], ref: dict[int, float], ref2: dict[int, float], noise: str,
                 seed_pair: tuple[str, str]) -> list[str]:
    """How far apart the top of the 2-seed reference is, against how far one training moves with its seed."""
    top = sorted(ref2.values(), reverse=True)
    moves_ref = [abs(ref[i] - rows[(i, noise)]["accuracy"]) * 100 for i in ref2]
    first, second = seed_pair
    pair = [i for i in ref2 if (i, first) in rows and (i, second) in rows]
    moves_proxy = [abs(rows[(i, first)]["accuracy"] - rows[(i, second)]["accuracy"]) * 100 for i in pair]
    out = [f"The top {TOP} of the 2-seed reference span {(top[0] - top[TOP - 1]) * 100:.2f} points (all "
           f"{len(top)}: {(top[0] - top[-1]) * 100:.2f}); one reference training moves "
           f"{statistics.median(moves_ref):.2f} points with its seed (median, max {max(moves_ref):.2f})"]
    if len(pair) >= 5:
        mean = [(rows[(i, first)]["accuracy"] + rows[(i, second)]["accuracy"]) / 2 for i in pair]
        st = rank_stats(mean, [ref2[i] for i in pair])
        out[0] += (f", one {first} training {statistics.median(moves_proxy):.2f} (max {max(moves_proxy):.2f}); the "
                   f"mean of {first}'s 2 seeds ranks them at tau {st['tau']:.3f} against the 2-seed reference "
                   f"({len(pair)} architectures)")
    return out


def _recipe_lines(rows: dict[tuple[int, str], dict], recipes: list[str], ref: dict[int, float]) -> list[str]:
    """One table line per recipe and score with at least 5 architectures ranked against ``ref``."""
    lines = []
    for name in recipes:
        mine = {i: r for (i, n), r in rows.items() if n == name and i in ref}
        cost = statistics.fmean(r["seconds"] for r in mine.values()) if mine else None
        for score, read in SCORES.items():
            values = {i: read(r) for i, r in mine.items()}
            both = sorted(i for i, v in values.items() if v is not None)
            if len(both) >= 5:
                lines.append(_line(name, score, f"{cost:.1f} s", rank_stats([values[i] for i in both],
                                                                            [ref[i] for i in both])))
    return lines
