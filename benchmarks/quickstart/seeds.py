"""The quickstart over sampler seeds: infeasible trials, and the best searched network against the best baseline.

Runs the real quickstart study (its YAML as shipped, 60 trials on scikit-learn's digits) once per sampler
seed, each on a fresh temporary SQLite storage, and prints one row per seed and a closing count; asserts
nothing. ``--checkout DIR`` imports archsearch and reads ``studies/quickstart.yaml`` from another checkout
(``git worktree add /tmp/before <commit>``), so two versions can be measured side by side, each in its own
process (``--threads 1`` each on a 2-core machine).

    python -m benchmarks.quickstart.seeds [--seeds 0 1 2 3 4 5] [--threads 2] [--checkout DIR] [--rerank 5,12]

``--rerank TOP,EPOCHS[,FOLDS]`` adds a re-rank to the study (its top searched candidates and the baselines
trained again at EPOCHS, scored by FOLDS-fold cross-validation if given) and prints, per seed, the best
searched against the best baseline by the re-rank score too.

``--keep DIR`` keeps each seed's study in ``DIR/seed<N>.db`` instead of a temporary file, so that a second
run with another ``--rerank`` re-ranks the same searches (the search itself is not run again): two re-rank
recipes compared on the same candidates.

``--test EPOCHS`` checks the picks on the test split, which no choice saw: the best searched network and the
best baseline, each as the search score picks them (and, with ``--rerank``, as the re-rank score picks them),
are trained again from scratch on the training split for EPOCHS epochs with ``--test-seeds`` initial seeds,
and their mean test accuracy (360 digits; one image is 0.28 points) is printed beside the validation scores.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import tempfile
import time
from pathlib import Path

# the checkout this file is in; not benchmarks.common.ROOT, whose import would import archsearch before --checkout
# chose which one
ROOT = Path(__file__).resolve().parents[2]


def print_rerank(study, cfg, trials) -> None:
    """The best searched against the best baseline by the re-rank score; where the search's own best ranks."""
    from archsearch.search import rerank
    from archsearch.study import rerank_results

    done = rerank_results.results(study, cfg)
    by = {t.number: t for t in trials}

    def best(baseline: bool) -> tuple[float, int]:
        return max((v["value"], n) for n, v in done.items() if ("baseline" in by[n].user_attrs) == baseline)

    (s_val, s_n), (b_val, b_n) = best(False), best(True)
    top = rerank.candidates(study, 1)[0]  # the search's own best searched candidate
    print(f"  re-rank ({len(done)} trained again): best searched trial {s_n} {s_val:.4f} vs best baseline trial "
          f"{b_n} {b_val:.4f}: {s_val - b_val:+.4f}; the search's best searched, trial {top.number}, re-ranked "
          f"{done[top.number]['value']:.4f}", flush=True)


def test_picks(study, cfg, trials, epochs: int, seeds: int) -> dict[str, float]:
    """Mean test accuracy of each pick, retrained from scratch ``seeds`` times for ``epochs`` epochs."""
    import dataclasses as dc

    from archsearch import Arch
    from archsearch.config.assemble import load_config_data
    from archsearch.export.selection import retrain
    from archsearch.study import rerank_results

    _, data = load_config_data(cfg)
    feasible = [t for t in trials if t.values and t.user_attrs.get("feasible", True) and "arch" in t.user_attrs]
    picks = {
        "search: searched": max((t for t in feasible if "baseline" not in t.user_attrs), key=lambda t: t.values[0]),
        "search: baseline": max((t for t in feasible if "baseline" in t.user_attrs), key=lambda t: t.values[0]),
    }
    done = rerank_results.results(study, cfg)
    if done:
        by = {t.number: t for t in trials}
        for name, baseline in (("re-rank: searched", False), ("re-rank: baseline", True)):
            number = max((v["value"], -n, n) for n, v in done.items()
                         if ("baseline" in by[n].user_attrs) == baseline)[2]
            picks[name] = by[number]
    out, cache = {}, {}
    for name, t in picks.items():
        if t.number not in cache:
            accs = []
            for seed in range(seeds):
                c = dc.replace(cfg, training=dc.replace(cfg.training, epochs=epochs, seed=seed))
                accs.append(retrain(Arch.from_dict(t.user_attrs["arch"]), c, data)[1]["test_accuracy"])
            cache[t.number] = statistics.mean(accs)
        out[name] = cache[t.number]
    print("  test (" + f"{epochs} epochs, mean of {seeds} seeds): "
          + ", ".join(f"{name} trial {picks[name].number} {100 * acc:.2f}%" for name, acc in out.items()), flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4, 5])
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--checkout", type=Path, default=ROOT, help="the archsearch checkout to measure")
    parser.add_argument("--config", default="studies/quickstart.yaml", help="relative to the checkout")
    parser.add_argument("--rerank", default=None, metavar="TOP,EPOCHS[,FOLDS]", help="add a re-rank to the study")
    parser.add_argument("--keep", type=Path, default=None, metavar="DIR",
                        help="keep the studies in DIR (a rerun re-ranks the same searches)")
    parser.add_argument("--test", type=int, default=None, metavar="EPOCHS",
                        help="retrain the picks for EPOCHS epochs and score them on the test split")
    parser.add_argument("--test-seeds", type=int, default=3, help="initial seeds per pick for --test (3)")
    args = parser.parse_args()
    # the one path edit among the benchmarks, and the point of --checkout: that checkout's archsearch, not this one's
    sys.path.insert(0, str(args.checkout.resolve()))

    import torch
    from optuna.trial import TrialState

    import archsearch
    from archsearch.config.study_config import load_study_config
    from archsearch.search.study import run

    torch.set_num_threads(args.threads)
    print(f"archsearch from {Path(archsearch.__file__).parent}; {args.config}; {args.threads} torch thread(s)")
    base = load_study_config(args.checkout / args.config)
    if args.rerank:
        from archsearch.config.study_schema import RerankConfig

        top, epochs, *folds = (int(v) for v in args.rerank.split(","))
        base = dataclasses.replace(base, rerank=RerankConfig(top=top, epochs=epochs, folds=folds[0] if folds else None))
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
    rows, tests = [], []
    for seed in args.seeds:
        with tempfile.TemporaryDirectory() as tmp:
            folder = args.keep.resolve() if args.keep else Path(tmp)
            cfg = dataclasses.replace(base, storage=f"sqlite:///{folder}/seed{seed}.db",
                                      sampler=dataclasses.replace(base.sampler, seed=seed))
            t0 = time.perf_counter()
            study = run(cfg, stream=None, progress=False, summarize=False)
            seconds = time.perf_counter() - t0
            trials = study.get_trials(deepcopy=False)
            if args.rerank:
                print_rerank(study, cfg, trials)
            if args.test:
                tests.append(test_picks(study, cfg, trials, args.test, args.test_seeds))
        complete = [t for t in trials if t.state == TrialState.COMPLETE]
        infeasible = sum(t.user_attrs.get("feasible") is False for t in complete)
        feasible = [t for t in complete if t.user_attrs.get("feasible", True) and t.values]
        base_best = max((t.values[0] for t in feasible if "baseline" in t.user_attrs), default=None)
        searched = max((t.values[0] for t in feasible if "baseline" not in t.user_attrs), default=None)
        uses = [t.user_attrs["budget_use"] for t in complete if "budget_use" in t.user_attrs
                and "baseline" not in t.user_attrs and t.user_attrs.get("feasible", True)]
        rows.append((seed, infeasible, searched, base_best, uses, seconds))
        for t in trials:
            if t.state == TrialState.FAIL:
                print(f"  trial {t.number} failed: {t.user_attrs.get('error', 'no error recorded')}")
        diff = "-" if searched is None or base_best is None else f"{searched - base_best:+.4f}"
        use = f"{statistics.median(uses):.3f}" if uses else "-"
        print(f"seed {seed}: {len(trials)} trials, {infeasible} infeasible; best searched "
              f"{searched if searched is None else f'{searched:.4f}'} vs best baseline "
              f"{base_best if base_best is None else f'{base_best:.4f}'}: {diff}; median budget_use of the "
              f"searched feasible trials {use}; {seconds:.1f} s", flush=True)
    above = sum(1 for _, _, s, b, _, _ in rows if s is not None and b is not None and s > b)
    ties = sum(1 for _, _, s, b, _, _ in rows if s is not None and b is not None and s == b)
    print(f"best searched above the best baseline with {above} of {len(rows)} seeds ({ties} equal); "
          f"infeasible trials per run: {', '.join(str(r[1]) for r in rows)}")
    for by in ("search", "re-rank"):
        pairs = [(t[f"{by}: searched"], t[f"{by}: baseline"]) for t in tests if f"{by}: searched" in t]
        if pairs:
            diffs = [100 * (s - b) for s, b in pairs]
            print(f"on the test split, picked by the {by} score: searched above baseline with "
                  f"{sum(d > 0 for d in diffs)} of {len(diffs)} seeds ({sum(d == 0 for d in diffs)} equal); "
                  f"differences {', '.join(f'{d:+.2f}' for d in diffs)} points; searched pick's mean test accuracy "
                  f"{100 * statistics.mean(s for s, _ in pairs):.2f}%")


if __name__ == "__main__":
    main()
