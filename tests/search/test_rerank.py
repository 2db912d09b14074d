"""Budget-fitted searches end to end, and the re-rank of their top candidates: real SQLite studies, real training."""

from __future__ import annotations

import pytest
import torch
from conftest import TINY_SPACE
from optuna.trial import TrialState

from archsearch.config.study_config import load_study_config
from archsearch.export.selection import select_trials
from archsearch.search import rerank
from archsearch.search.study import open_study, run
from archsearch.search.summary import summary
from archsearch.space.fit import CAPPED, FITTED
from archsearch.study import rerank_results, worker_identity
from archsearch.study.best import best_trials
from archsearch.training.train import TrainResult, train

pytestmark = pytest.mark.slow  # real searches

# TINY_SPACE at 8x8 with a width range of 0.5-2: a 20,000-MAC budget binds most shapes
FIT_SPACE = {**TINY_SPACE, "width_mult": [0.5, 2.0]}


class CountingTrainer:
    def __init__(self) -> None:
        self.epochs: list[int] = []

    def __call__(self, *args, **kwargs) -> TrainResult:
        self.epochs.append(args[5].epochs)
        return train(*args, **kwargs)


def test_a_fitted_search_records_the_fitted_record_its_multiplier_and_budget_use(write_study):
    path = write_study(space=FIT_SPACE, budget={"max_macs": 20000}, n_trials=8,
                       sampler={"type": "random", "seed": 0})
    study = run(load_study_config(path), stream=None, progress=False)
    trials = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert sum(t.user_attrs["feasible"] for t in trials) == 8  # n_trials counts the networks trained
    for t in trials:
        assert "width_mult" not in t.params  # the multiplier is computed, not sampled
        fit = t.user_attrs["fit"]
        assert fit["status"] in (FITTED, CAPPED, "infeasible")
        assert 0.5 <= fit["width_mult"] <= 2.0 * (1 + 1e-9)
        assert t.user_attrs["budget_use"] == pytest.approx(t.user_attrs["macs"] / 20000)
        if fit["status"] != "infeasible":
            assert t.user_attrs["feasible"] and t.user_attrs["macs"] <= 20000
    assert sum(t.user_attrs["fit"]["status"] == FITTED for t in trials) >= 4
    fitted = [t.user_attrs["budget_use"] for t in trials if t.user_attrs["fit"]["status"] == FITTED]
    # the tiny space's widths step coarsely at 8x8; tests/space/test_fit.py holds the shipped spaces to 0.95
    assert min(fitted) > 0.5 and max(fitted) <= 1.0


def test_an_unfitted_search_samples_the_multiplier(write_study):
    path = write_study(space=FIT_SPACE, budget={"max_macs": 20000, "fit": False}, n_trials=4)
    study = run(load_study_config(path), stream=None, progress=False)
    for t in study.trials:
        assert "width_mult" in t.params and "fit" not in t.user_attrs
        assert t.user_attrs["budget_use"] == pytest.approx(t.user_attrs["macs"] / 20000)


def test_rerank_trains_the_top_candidates_and_the_baselines_again_once(write_study):
    path = write_study(space=FIT_SPACE, budget={"max_macs": 20000}, n_trials=7, enqueue_baselines=True,
                       training={"epochs": 1}, rerank={"top": 2, "epochs": 3})
    config = load_study_config(path)
    trainer = CountingTrainer()
    study = run(config, stream=None, progress=False, trainer=trainer)
    baselines = [t for t in study.trials if "baseline" in t.user_attrs and t.user_attrs["feasible"]]
    done = rerank_results.results(study, config)
    top = rerank.candidates(study, 2)
    assert sorted(done) == sorted(t.number for t in top)
    assert len(top) == 2 + len(baselines) and len(baselines) >= 1
    assert trainer.epochs.count(3) == len(top)  # each trained once at the re-rank's recipe
    for result in done.values():
        assert result["epochs"] == 3 and 0 <= result["val_accuracy"] <= 1
        assert result["recipe"]["epochs"] == 3 and result["recipe"]["train_subset"] is None

    # the summary and export choose by the re-rank score
    best = max(done, key=lambda n: (done[n]["value"], -n))
    assert [t.number for t in best_trials(study, config)] == [best]
    assert select_trials(study, config)[0].number == best
    text = summary(study, config)
    assert "best feasible trial (by re-rank):" in text and "by re-rank score (3 epochs)" in text
    numbers = ", ".join(str(t.number) for t in sorted(baselines, key=lambda t: t.number))
    assert (f"archsearch export STUDY --trial N --epochs E --out DIR for the pick (trial {best}) and each baseline "
            f"(trials {numbers})") in text  # the comparison that a short recipe cannot make

    # run again: the study is complete and every result is there, so nothing is trained
    again = CountingTrainer()
    run(config, stream=None, progress=False, trainer=again)
    assert again.epochs == []

    # another re-rank recipe re-ranks again; the old results no longer count
    path = write_study(space=FIT_SPACE, budget={"max_macs": 20000}, n_trials=7, enqueue_baselines=True,
                       training={"epochs": 1}, rerank={"top": 1, "epochs": 2})
    config = load_study_config(path)
    third = CountingTrainer()
    study = run(config, stream=None, progress=False, trainer=third)
    assert third.epochs == [2] * (1 + len(baselines))
    assert len(rerank_results.results(study, config)) == 1 + len(baselines)


def test_a_dead_workers_rerank_claim_is_taken_over(write_study):
    path = write_study(space=FIT_SPACE, budget={"max_macs": 40000}, n_trials=3, rerank={"top": 1, "epochs": 2})
    config = load_study_config(path)
    run(config, n_trials=3, stream=None, progress=False)
    study = open_study(config, create=False)
    (number,) = rerank_results.results(study, config)
    # replace the result by a claim of a process that is gone (pid 1's start time never matches this one)
    key = f"{rerank_results.PREFIX}{number}"
    import socket
    study.set_user_attr(key, {"worker": f"{socket.gethostname()}:999999:1", "recipe": study.user_attrs[key]["recipe"]})
    assert rerank_results.results(study, config) == {}
    assert not rerank.pending(study, config)  # a dead worker's claim: nobody trains it, no one waits for it
    # a claim left by a dead worker on a trial that is no longer a candidate keeps nothing waiting either
    study.set_user_attr(f"{rerank_results.PREFIX}999", {"worker": f"{socket.gethostname()}:999999:1",
                                                 "recipe": study.user_attrs[key]["recipe"]})
    assert not rerank.pending(study, config)
    study.set_user_attr(f"{rerank_results.PREFIX}998", {"worker": worker_identity.worker_id(),
                                                "recipe": study.user_attrs[key]["recipe"]})
    assert rerank.pending(study, config)  # this process's own claim: live
    study.set_user_attr(f"{rerank_results.PREFIX}998", None)
    trainer = CountingTrainer()
    run(config, stream=None, progress=False, trainer=trainer)
    assert trainer.epochs == [2]
    assert list(rerank_results.results(open_study(config, create=False), config)) == [number]


def test_fold_indices_are_a_stratified_partition_drawn_from_the_seed():
    y = torch.tensor([0] * 10 + [1] * 7 + [2] * 4)
    folds = rerank.fold_indices(y, 3, seed=0)
    everything = torch.cat(folds)
    assert sorted(everything.tolist()) == list(range(len(y)))  # disjoint, and every image in one fold
    assert max(map(len, folds)) - min(map(len, folds)) <= 1
    for c in range(3):
        counts = [int((y[f] == c).sum()) for f in folds]
        assert max(counts) - min(counts) <= 1, (c, counts)
    assert all(torch.equal(a, b) for a, b in zip(folds, rerank.fold_indices(y, 3, seed=0), strict=True))
    assert any(not torch.equal(a, b) for a, b in zip(folds, rerank.fold_indices(y, 3, seed=1), strict=True))


class FoldTrainer(CountingTrainer):
    """Counts trainings and keeps the sizes of the training and held-out images and each training's seed."""

    def __init__(self) -> None:
        super().__init__()
        self.sizes: list[tuple[int, int, int]] = []

    def __call__(self, *args, **kwargs) -> TrainResult:
        self.sizes.append((len(args[2]), len(args[4]), args[5].seed))
        return super().__call__(*args, **kwargs)


def test_a_cross_validated_rerank_scores_the_mean_of_its_folds_and_resumes_a_candidate_fold_by_fold(write_study):
    path = write_study(space=FIT_SPACE, budget={"max_macs": 40000}, n_trials=6, enqueue_baselines=True,
                       training={"epochs": 1, "seed": 7}, rerank={"top": 1, "epochs": 2, "folds": 3})
    config = load_study_config(path)
    trainer = FoldTrainer()
    study = run(config, stream=None, progress=False, trainer=trainer)
    done = rerank_results.results(study, config)
    top = rerank.candidates(study, 1)
    assert sorted(done) == sorted(t.number for t in top)
    assert any("baseline" in t.user_attrs for t in top) and "baseline" not in top[0].user_attrs
    reranked = [s for s, e in zip(trainer.sizes, trainer.epochs, strict=True) if e == 2]
    assert len(reranked) == 3 * len(top)
    pool = reranked[0][0] + reranked[0][1]  # training + held-out images of a fold
    for i, (n_train, n_held, seed) in enumerate(reranked[:3]):
        assert n_train + n_held == pool and abs(n_held - pool / 3) <= 1 and seed == 7 + i
    for result in done.values():
        assert len(result["folds"]) == 3 and result["recipe"]["folds"] == 3
        assert result["val_accuracy"] == pytest.approx(sum(result["folds"]) / 3)
    assert "3-fold" in summary(study, config)

    # a worker killed after two folds of a candidate: the next run trains only the third
    number = top[0].number
    key = f"{rerank_results.PREFIX}{number}"
    kept = study.user_attrs[key]
    import socket
    partial = [{"val_accuracy": a, "epochs": 2, "seconds": 1.0} for a in kept["folds"][:2]]
    study.set_user_attr(key, {"worker": f"{socket.gethostname()}:999999:1", "recipe": kept["recipe"],
                              "done": partial})
    assert number not in rerank_results.results(study, config)
    again = FoldTrainer()
    run(config, stream=None, progress=False, trainer=again)
    assert again.epochs == [2] and again.sizes[0][2] == 7 + 2  # the third fold, from its own seed
    result = rerank_results.results(open_study(config, create=False), config)[number]
    assert result["folds"][:2] == kept["folds"][:2]
    assert result["folds"][2] == pytest.approx(kept["folds"][2])  # the same fold, seed and data: the same result
