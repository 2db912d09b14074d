"""``objective.score: val_loss``: a study whose value is minus the final validation loss, end to end on real
(synthetic) training: the trials, the pruner's reports, the re-rank, with and without folds."""

from __future__ import annotations

import math

import optuna
import pytest
import torch
from optuna.trial import TrialState

from archsearch.config.assemble import load_config_data
from archsearch.config.study_config import load_study_config
from archsearch.search.objective import Objective
from archsearch.search.study import run
from archsearch.study import rerank_results
from archsearch.study.trial_record import TrialRecord
from archsearch.training.train import TrainResult, train

pytestmark = pytest.mark.slow  # real searches

BY_LOSS = {"type": "constrained", "score": "val_loss"}


class KeepingTrainer:
    """The real trainer; keeps each training's epochs and result (its learning curve)."""

    def __init__(self) -> None:
        self.results: list[tuple[int, TrainResult]] = []

    def __call__(self, *args, **kwargs) -> TrainResult:
        result = train(*args, **kwargs)
        self.results.append((args[5].epochs, result))
        return result


def test_a_study_scored_by_val_loss_reports_and_values_minus_the_loss(write_study):
    # fit off and a tight budget: about half of TINY_SPACE is over it (scored, never trained)
    path = write_study(objective=BY_LOSS, budget={"max_macs": 20000, "fit": False}, training={"epochs": 3},
                       pruner={"type": "median"}, n_trials=12, rerank={"top": 2, "epochs": 2})
    config = load_study_config(path)
    trainer = KeepingTrainer()
    study = run(config, stream=None, progress=False, trainer=trainer)

    trained = [t for t in study.trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)
               and TrialRecord.of(t).curve is not None]
    assert len([t for t in trained if t.state == TrialState.COMPLETE]) >= 2
    for t in trained:
        record = TrialRecord.of(t)
        losses = record.curve["val_loss"]
        # the pruner compared what the value is built from, epoch by epoch
        assert t.intermediate_values == {e: -loss for e, loss in enumerate(losses)}
        assert all(v < 0 for v in t.intermediate_values.values())
        assert 0.0 <= record.val_accuracy <= 1.0  # the accuracy is still recorded
        if t.state == TrialState.COMPLETE:
            assert t.values == [-losses[-1]]
    over = [t for t in study.trials if t.state == TrialState.COMPLETE and TrialRecord.of(t).infeasible]
    assert over and all(t.values == [-math.inf] for t in over)  # never trained: the worst score

    # the re-rank scores the same way: minus the loss of its own (longer) training
    done = rerank_results.results(study, config)
    reranked = [result for epochs, result in trainer.results if epochs == 2]
    assert len(done) == len(reranked) == 2
    assert sorted(r["value"] for r in done.values()) == sorted(-r.curve.val_loss[-1] for r in reranked)
    assert sorted(r["val_accuracy"] for r in done.values()) == sorted(r.val_accuracy for r in reranked)


def test_a_pruned_trial_reported_minus_its_loss(write_study):
    """A pruner that stops any trial reporting below 0: with the value built from the loss, every trial."""
    config = load_study_config(write_study(objective=BY_LOSS, training={"epochs": 3}))
    space, data = load_config_data(config)
    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.ThresholdPruner(lower=0.0))
    study.optimize(Objective(config, space, data, device=torch.device("cpu")), n_trials=2)
    for t in study.trials:
        curve = TrialRecord.of(t).curve
        assert t.state == TrialState.PRUNED and curve is not None
        assert t.intermediate_values == {0: -curve["val_loss"][0]} and t.intermediate_values[0] < 0


def test_a_cross_validated_rerank_scores_minus_the_mean_fold_loss(write_study):
    path = write_study(objective=BY_LOSS, n_trials=3, rerank={"top": 1, "epochs": 2, "folds": 2})
    config = load_study_config(path)
    trainer = KeepingTrainer()
    study = run(config, stream=None, progress=False, trainer=trainer)
    ((number, result),) = rerank_results.results(study, config).items()
    folds = [r for epochs, r in trainer.results if epochs == 2]
    assert len(folds) == 2 and result["folds"] == [r.val_accuracy for r in folds]
    assert result["value"] == pytest.approx(-sum(r.curve.val_loss[-1] for r in folds) / 2)


@pytest.mark.parametrize("score, figure", [("balanced_accuracy", "val_balanced_accuracy"),
                                           ("macro_f1", "val_macro_f1")])
def test_a_study_scored_per_class_values_reports_and_reranks_that_figure(write_study, score, figure):
    path = write_study(objective={"type": "constrained", "score": score}, training={"epochs": 2},
                       n_trials=3, rerank={"top": 1, "epochs": 3, "folds": 2})
    config = load_study_config(path)
    trainer = KeepingTrainer()
    study = run(config, stream=None, progress=False, trainer=trainer)
    trained = [t for t in study.trials if t.state == TrialState.COMPLETE and TrialRecord.of(t).curve is not None]
    assert trained
    for t in trained:
        record = TrialRecord.of(t)
        curve = record.curve[figure]
        assert t.intermediate_values == dict(enumerate(curve))  # the pruner saw the same figure
        assert t.values == [curve[-1]]
        metrics = record.class_metrics()  # the recorded matrix gives the same figure through scikit-learn
        assert metrics is not None and getattr(metrics, score) == pytest.approx(curve[-1])
    ((number, result),) = rerank_results.results(study, config).items()
    folds = [r for epochs, r in trainer.results if epochs == 3]
    assert result["value"] == pytest.approx(sum(getattr(r.curve, figure)[-1] for r in folds) / 2)
    assert result["fold_values"] == pytest.approx([getattr(r.curve, figure)[-1] for r in folds])
