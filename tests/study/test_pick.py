"""The pick among re-ranked candidates knows the noise (issue #36): each cross-validated candidate carries the
standard error of its mean; where the best is not clear of another by that noise, the budget's next concern picks
(lower latency where measured, then fewer MACs); the summary says so, and the export takes the same pick."""

from __future__ import annotations

import math

import optuna
import pytest
from conftest import TINY_SPACE

from archsearch.config.study_config import load_study_config
from archsearch.export.selection import select_trials
from archsearch.search.study import run
from archsearch.search.summary import summary
from archsearch.study import rerank_results
from archsearch.study.best import Scored, pick, scored
from archsearch.study.rerank_results import standard_error


def _candidate(number: int, value: float, se: float | None, *, macs: int, latency_ms: float | None = None) -> Scored:
    trial = optuna.trial.create_trial(value=value)
    trial.number = number
    return Scored(trial, value, se, latency_ms, macs)


def test_the_standard_error_is_the_folds_spread_over_root_k() -> None:
    folds = [0.90, 0.92, 0.91]
    sd = math.sqrt(((0.90 - 0.91) ** 2 + (0.92 - 0.91) ** 2) / 2)
    assert standard_error(folds) == pytest.approx(sd / math.sqrt(3))
    assert standard_error([-0.31, -0.29, -0.30]) == pytest.approx(sd / math.sqrt(3))  # values of val_loss folds
    assert standard_error([0.9]) is None


def test_a_best_clear_of_the_noise_is_the_pick() -> None:
    best, other = _candidate(3, 0.920, 0.002, macs=3_000_000), _candidate(5, 0.900, 0.002, macs=1_000_000)
    chosen = pick([other, best])
    assert chosen is not None and chosen.chosen is best and chosen.by is None and chosen.tied == [best]


def test_candidates_within_the_noise_are_picked_by_fewer_macs() -> None:
    best, close = _candidate(3, 0.912, 0.002, macs=3_000_000), _candidate(5, 0.910, 0.002, macs=1_000_000)
    far = _candidate(7, 0.890, 0.002, macs=500_000)
    chosen = pick([best, close, far])
    assert chosen is not None and chosen.chosen is close and chosen.by == "MACs"
    assert chosen.tied == [best, close]  # 0.002 apart, the difference's standard error 0.0028: tied; far is not


def test_candidates_within_the_noise_are_picked_by_latency_where_every_one_is_measured() -> None:
    best = _candidate(3, 0.912, 0.002, macs=1_000_000, latency_ms=4.0)
    close = _candidate(5, 0.910, 0.002, macs=3_000_000, latency_ms=2.5)
    chosen = pick([best, close])
    assert chosen is not None and chosen.chosen is close and chosen.by == "latency"
    unmeasured = _candidate(5, 0.910, 0.002, macs=3_000_000)
    chosen = pick([best, unmeasured])
    assert chosen is not None and chosen.chosen is best and chosen.by == "MACs"


def test_one_training_has_no_standard_error_and_the_best_mean_is_the_pick() -> None:
    best, close = _candidate(3, 0.912, None, macs=3_000_000), _candidate(5, 0.911, None, macs=1_000_000)
    chosen = pick([best, close])
    assert chosen is not None and chosen.chosen is best and chosen.by is None
    assert pick([]) is None


@pytest.mark.slow  # a search
def test_a_cross_validated_study_shows_the_noise_and_exports_the_summarys_pick(write_study) -> None:
    space = {**TINY_SPACE, "width_mult": [0.25, 0.5, 0.75, 1.0]}
    path = write_study(space=space, n_trials=6, training={"epochs": 1, "seed": 3},
                       rerank={"top": 3, "epochs": 1, "folds": 3})
    config = load_study_config(path)
    study = run(config, stream=None, progress=False)
    ranked = scored(study, config)
    assert len(ranked) >= 2 and all(c.se is not None and c.se >= 0 for c in ranked)
    for c in ranked:  # each fold's value kept; the standard error is theirs
        result = rerank_results.results(study, config)[c.trial.number]
        assert len(result["fold_values"]) == 3 and c.se == pytest.approx(standard_error(result["fold_values"]))
    chosen = pick(ranked)
    assert chosen is not None
    text = summary(study, config)
    assert "(mean ± standard error over folds)" in text
    assert all(f"{c.trial.number} {c.shown()}" in text for c in ranked)
    assert ("re-rank: the best is not clear of the next by the noise" in text) == (chosen.by is not None)
    assert [t.number for t in select_trials(study, config)] == [chosen.chosen.trial.number]
