"""Budgets that behave: an unreachable latency budget is refused before the search, over-budget candidates do not
use up ``n_trials``, a search without a feasible trial exits non-zero, and the card prints budgets exactly.

Real searches on the tiny synthetic study of conftest.py, on one torch thread.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys

import optuna
import pytest
from latency_tables import LATENCY_CPU1, make_table
from optuna.trial import TrialState

from archsearch.config.assemble import load_config_data
from archsearch.config.study_config import load_study_config
from archsearch.core.errors import ConfigError
from archsearch.export.card import model_card
from archsearch.network.arch import Arch, Stage, Stem
from archsearch.search.reachable import smallest_cost
from archsearch.search.study import run
from archsearch.study.trial_states import finished_count, infeasible_count

ONE_THREAD_ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}

pytestmark = pytest.mark.slow  # real searches


def _cli(path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "archsearch.cli", "search", str(path), "--no-progress",
                           "--workers", "1", *args], cwd=path.parent, env=ONE_THREAD_ENV, capture_output=True,
                          text=True, timeout=900)


def _no_trials(path) -> None:
    url = f"sqlite:///{path.parent / 'tiny.db'}"
    if (path.parent / "tiny.db").exists():  # an empty storage is fine; a trial is not
        for name in optuna.get_all_study_names(url):
            assert optuna.load_study(study_name=name, storage=url).trials == []


def test_a_latency_budget_below_the_fastest_candidate_is_refused_before_any_trial(write_study):
    path = write_study(budget={"max_latency_ms": 1.0e-4, "latency": LATENCY_CPU1}, n_trials=3)
    make_table(path.parent / "latency").fill([])  # calibrated on a tiny network: quick
    with pytest.raises(ConfigError, match=r"budget\.max_latency_ms") as info:
        run(load_study_config(path), stream=None, progress=False)
    text = str(info.value)
    assert "0.0001 ms is below the smallest predicted latency of the space" in text
    assert "raise the budget" in text
    _no_trials(path)

    cli = _cli(path)
    assert cli.returncode == 2
    errors = [line for line in cli.stderr.splitlines() if line.startswith("archsearch: error:")]
    assert len(errors) == 1 and "budget.max_latency_ms" in errors[0] and "Traceback" not in cli.stderr
    _no_trials(path)


def test_a_reachable_latency_budget_is_searched(write_study):
    path = write_study(budget={"max_latency_ms": 1000.0, "latency": LATENCY_CPU1}, n_trials=1)
    make_table(path.parent / "latency").fill([])
    study = run(load_study_config(path), stream=None, progress=False)
    assert finished_count(study) == 1


def test_over_budget_candidates_do_not_use_up_n_trials(write_study):
    n_trials = 4
    path = write_study(budget={"max_macs": 20000}, n_trials=n_trials)  # about half the space is over it
    text = io.StringIO()
    study = run(load_study_config(path), stream=text, progress=False)
    trials = study.get_trials(deepcopy=False)
    trained = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)
               and t.user_attrs["feasible"] is True]
    over = [t for t in trials if t.user_attrs.get("feasible") is False]
    assert len(trained) == finished_count(study) == n_trials
    assert over and infeasible_count(study) == len(over)
    # the summary shows both counts
    assert f"study tiny: {n_trials} trained ({n_trials} to the end, 0 pruned), {len(over)} infeasible" in \
        text.getvalue()


def test_a_search_with_no_feasible_trial_exits_non_zero_saying_why(write_study):
    # unfitted, a budget at the smallest candidate's MACs: reachable, so the search starts, but almost every
    # candidate is over it; the cap ends the run after 3 of them
    path = write_study(budget={"max_macs": 100000, "fit": False}, n_trials=2, sampler={"type": "random", "seed": 0})
    space, data = load_config_data(load_study_config(path))
    smallest = smallest_cost(space, in_chs=data.in_chs, resolution=data.resolution, num_classes=data.num_classes)
    path = write_study(budget={"max_macs": smallest.macs, "fit": False}, n_trials=2,
                       sampler={"type": "random", "seed": 0})

    cli = _cli(path, "--max-infeasible", "3")
    assert "Traceback" not in cli.stderr
    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{path.parent / 'tiny.db'}")
    assert finished_count(study) == 0 and infeasible_count(study) == 3
    assert cli.returncode == 1, cli.stderr
    assert "stopping: 3 candidates in this run were over the budget" in cli.stdout
    last = cli.stderr.strip().splitlines()
    assert len(last) == 1
    assert last[0].startswith(f"archsearch: no feasible trial: 3 candidate(s) were over the budget "
                              f"(budget.max_macs {smallest.macs:g} (3)): raise that limit")


def test_the_card_prints_budgets_as_given():
    arch = Arch(1, 8, 4, Stem("conv", 8), (Stage("dwsep", 16, stride=2),))
    metrics = {"macs": 1000, "params": 100, "peak_activation_bytes": 512, "study": "s", "trial": 3,
               "budget": {"max_latency_ms": 1.5, "max_params": 50000.0, "max_macs": None, "max_model_kb": 0.25}}
    card = model_card(arch, metrics)
    assert "| budget | max_latency_ms 1.5, max_params 50,000, max_model_kb 0.25 |" in card
