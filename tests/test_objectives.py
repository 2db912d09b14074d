"""The three objectives end to end on real (synthetic) training: constrained, soft (MnasNet), pareto."""

from __future__ import annotations

import io

import pytest
from optuna.trial import TrialState

from archsearch.config import load_study_config
from archsearch.cost import arch_cost
from archsearch.arch import Arch
from archsearch.study import run
from archsearch.summary import best_trials


def _run(path):
    out = io.StringIO()
    study = run(load_study_config(path), stream=out, progress=False)
    return study, out.getvalue()


def test_soft_objective_is_mnasnet_reward(write_study):
    path = write_study(objective={"type": "soft", "soft_metric": "macs", "soft_weight": -0.07},
                       budget={"max_macs": 20000}, n_trials=5)
    study, text = _run(path)
    trained = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert trained
    for t in trained:
        macs = t.user_attrs["macs"]
        # a soft target is no hard limit: candidates over it are trained and scored lower, not dropped
        assert t.user_attrs["feasible"] is True and "val_accuracy" in t.user_attrs
        assert t.values[0] == pytest.approx(t.user_attrs["val_accuracy"] * (macs / 20000) ** -0.07)
    assert any(t.user_attrs["macs"] > 20000 for t in trained) or len(trained) < 5
    assert "best feasible trial" in text


def test_pareto_objective_gives_a_front_of_accuracy_against_macs(write_study):
    path = write_study(objective={"type": "pareto", "pareto_metric": "macs"}, sampler={"type": "nsga2", "seed": 0},
                       pruner={"type": "none"}, budget={"max_macs": 60000}, n_trials=6)
    study, text = _run(path)
    assert [d.name for d in study.directions] == ["MAXIMIZE", "MINIMIZE"]
    done = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert len(done) == 6
    for t in done:
        assert t.values[1] == t.user_attrs["macs"]
        assert t.values[1] == arch_cost(Arch.from_dict(t.user_attrs["arch"])).macs
    front = best_trials(study)
    assert front and all(t.user_attrs["feasible"] for t in front)
    # nothing feasible dominates a front member
    feasible = [t for t in done if t.user_attrs["feasible"]]
    for f in front:
        assert not any(o.values[0] > f.values[0] and o.values[1] < f.values[1] for o in feasible)
    assert "Pareto front" in text
