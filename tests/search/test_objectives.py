"""The three objectives end to end on real (synthetic) training: constrained, soft (MnasNet), pareto."""

from __future__ import annotations

import io
import json

import pytest
from optuna.trial import TrialState

from archsearch.config.study_config import load_study_config
from archsearch.network.arch import Arch
from archsearch.network.cost import arch_cost
from archsearch.search.study import run
from archsearch.study.best import best_trials

pytestmark = pytest.mark.slow  # real searches


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
    assert sum(t.user_attrs["feasible"] for t in done) == 6  # n_trials counts the networks trained
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


@pytest.mark.parametrize("budget,metric", [
    ({"max_peak_activation_kb": 12.0}, "peak_kb"),
    ({"max_model_kb": 3.0, "model_precision": "int8"}, "model_kb"),
    ({"max_peak_activation_kb": 3.0, "activation_precision": "int8"}, "peak_kb"),  # a quarter of the float32 bytes
])
def test_memory_budgets_fit_and_judge_every_candidate(write_study, tmp_path, budget, metric):
    from archsearch.export.folder import export

    bytes_per_param = 1 if budget.get("model_precision") == "int8" else 4
    bytes_per_activation = 1 if budget.get("activation_precision") == "int8" else 4
    limit = next(v for k, v in budget.items() if k.startswith("max_"))

    def kb(t) -> float:
        a = t.user_attrs
        if metric == "peak_kb":  # the record holds float32 bytes
            return a["peak_activation_bytes"] / 4 * bytes_per_activation / 1024
        return a["params"] * bytes_per_param / 1024

    path = write_study(budget={"max_macs": None, **budget}, n_trials=5)
    study, text = _run(path)
    done = [t for t in study.trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert sum(t.user_attrs["feasible"] for t in done) == 5  # n_trials counts the networks trained
    fitted = [t for t in done if "baseline" not in t.user_attrs]
    for t in done:  # judged on the memory metric: within it, or infeasible (a shape over it even at its thinnest)
        assert t.user_attrs["feasible"] is (kb(t) <= limit), (t.number, kb(t))
        assert t.user_attrs["budget_use"] == pytest.approx(kb(t) / limit)
    assert any(t.user_attrs["feasible"] for t in fitted)
    # fitted to the memory budget: each searched candidate spends most of it (the next width step is over)
    assert fitted and all(t.user_attrs["budget_use"] > 0.5 for t in fitted if t.user_attrs["fit"]["status"] == "fitted")
    out = tmp_path / "export"
    export(load_study_config(path), out, stream=None, onnx=False)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["budget"][next(k for k in budget if k.startswith("max_"))] == limit
    card = (out / "card.md").read_text()
    assert f"{metrics['peak_activation_bytes'] / 1024:,.1f} KiB" in card and "KiB as int8" in card
