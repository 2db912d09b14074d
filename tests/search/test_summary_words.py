"""The summary says what happened: trials that Ctrl-C reached or whose worker was lost are counted apart from those
that failed by their own error, with what became of them; seed baselines without a score are named with the reason;
and why a search with several workers stops is said once.

Real SQLite studies, their trials driven with ask/tell and their records written as archsearch writes them.
"""

from __future__ import annotations

import datetime
import sys

import optuna
import pytest
from optuna.trial import TrialState

from archsearch.config.assemble import load_config_data
from archsearch.config.study_config import load_study_config
from archsearch.core.text import fmt_count
from archsearch.network.cost import arch_cost
from archsearch.search.recovery import recover
from archsearch.search.study import open_study, run_workers
from archsearch.search.summary import no_feasible_reason, summary
from archsearch.space import baselines
from archsearch.study.study_record import StudyRecord
from archsearch.study.trial_record import TrialRecord
from archsearch.study.trial_states import BASELINE_LOSSES

# the tests drive trials with ask/tell, as a worker's pieces do, on a storage with heartbeats
pytestmark = pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used with Study.optimize")


def _first_line(study: optuna.Study, config) -> str:
    return summary(study, config).splitlines()[0]


def _tell(study: optuna.Study, record: TrialRecord, state: TrialState = TrialState.FAIL,
          value: float | None = None) -> int:
    """The next trial (a queued one first), its ``record`` written, told ``state``: its number."""
    trial = study.ask()
    record.write(trial)
    study.tell(trial, value, state=state)
    return trial.number


def _trained(study: optuna.Study) -> int:
    return _tell(study, TrialRecord(feasible=True, val_accuracy=0.5), TrialState.COMPLETE, 0.5)


@pytest.mark.slow  # an SQLite study: over half a second
def test_interrupted_trials_are_not_failed_and_say_what_became_of_them(write_study) -> None:
    config = load_study_config(write_study())
    study = open_study(config)
    _tell(study, TrialRecord(error="RuntimeError: boom"))
    first = _tell(study, TrialRecord(interrupted=True))
    second = _tell(study, TrialRecord(interrupted=True))
    # before the resume: nothing queued yet
    assert "1 failed, 2 interrupted (to run again on resume), 0 running" in _first_line(study, config)

    _, queued = recover(study)  # the resume queues both again
    assert sorted(t.number for t, _ in queued) == [first, second]
    assert "1 failed, 2 interrupted (queued to run again)" in _first_line(study, config)
    assert _trained(study) > second  # one retry run
    line = _first_line(study, config)
    assert "1 trained (1 to the end, 0 pruned)" in line
    assert "1 failed, 2 interrupted (1 run again since, 1 queued to run again), 0 running" in line


def test_a_retry_interrupted_again_is_not_run_again(write_study) -> None:
    config = load_study_config(write_study())
    study = open_study(config)
    _tell(study, TrialRecord(interrupted=True))
    recover(study)
    retry = study.ask()
    assert TrialRecord.of(retry).retry_of is not None
    TrialRecord(interrupted=True).write(retry)
    study.tell(retry, state=TrialState.FAIL)
    assert recover(study) == ([], [])  # the search samples another
    assert "0 failed, 2 interrupted (1 run again since, 1 not run again)" in _first_line(study, config)


@pytest.mark.slow  # an SQLite study: a second
def test_trials_whose_worker_died_are_counted_apart(write_study) -> None:
    config = load_study_config(write_study())
    study = open_study(config)
    number = _tell(study, TrialRecord(swept=True))
    assert "0 failed, 1 lost its worker (to run again on resume)" in _first_line(study, config)
    lost = study.get_trials(deepcopy=False)[number]
    # as the sweeper's retry queues it (recovery.queue_retry), then run
    study.enqueue_trial(lost.params, user_attrs=TrialRecord(retry_of=number).attrs(), skip_if_exists=False)
    _trained(study)
    assert "0 failed, 1 lost its worker (run again since)" in _first_line(study, config)


@pytest.mark.slow  # an SQLite study: over half a second
def test_trials_that_gave_way_are_not_failed(write_study) -> None:
    config = load_study_config(write_study())
    study = open_study(config)
    _tell(study, TrialRecord(surplus=True))
    _tell(study, TrialRecord(error="ValueError: no"))
    assert "1 failed, 1 gave way to other workers, 0 running" in _first_line(study, config)


@pytest.mark.slow  # an SQLite study: a second
def test_no_feasible_reason_tells_interrupted_trials_from_failed_ones(write_study) -> None:
    config = load_study_config(write_study())
    study = open_study(config)
    _tell(study, TrialRecord(interrupted=True))
    reason = no_feasible_reason(study, config)
    assert reason is not None and "failed" not in reason, reason
    assert "1 trial(s) were interrupted or lost their worker before a result (they run again)" in reason
    _tell(study, TrialRecord(error="RuntimeError: boom"))
    reason = no_feasible_reason(study, config)
    assert reason is not None and "1 trial(s) failed (their errors are on the trial lines" in reason


def _baseline(family: str, data) -> TrialRecord:
    """A queued seed baseline's record, as ``ensure_baselines`` writes it."""
    arch = baselines.FAMILIES[family](1.0, in_chs=data.in_chs, resolution=data.resolution,
                                      num_classes=data.num_classes)
    return TrialRecord(baseline=family, arch=arch.to_dict())


@pytest.mark.slow  # an SQLite study: a second
def test_baselines_without_a_score_are_named_with_the_reason(write_study) -> None:
    # a MACs budget that MobileNet x1 is over by 20%
    path = write_study(budget={"max_macs": 100000})
    _, data = load_config_data(load_study_config(path))
    mobilenet = _baseline("mobilenet", data)
    macs = arch_cost(mobilenet.architecture()).macs
    config = load_study_config(write_study(budget={"max_macs": macs / 1.2}))
    study = open_study(config)
    for family in ("mobilenet", "shufflenet"):
        study.enqueue_trial({}, user_attrs=_baseline(family, data).attrs())
    StudyRecord(baselines=True).write(study)  # effnet: did not fit, never queued

    over = study.ask()  # mobilenet: recorded over the budget by the objective, never trained
    TrialRecord(macs=macs, feasible=False).write(over)
    over.set_constraint("macs", macs / config.budget.max_macs - 1)
    study.tell(over, 0.0)
    failed = study.ask()
    TrialRecord(error="RuntimeError: trainer exploded\nTraceback...").write(failed)
    study.tell(failed, state=TrialState.FAIL)
    _trained(study)  # a searched candidate

    text = summary(study, config)
    lines = text.splitlines()
    assert "seed baselines at the same budget:" not in lines
    at = lines.index("seed baselines left out of the comparison:")
    assert lines[at + 1:at + 4] == [
        f"  mobilenet (trial {over.number} over the budget, never trained: macs {fmt_count(macs)} > "
        f"budget.max_macs {fmt_count(macs / 1.2)})",
        f"  shufflenet (trial {failed.number} failed: RuntimeError: trainer exploded)",
        "  effnet (not queued: even its thinnest variant is over the budget)",
    ], text
    assert "without a result yet" not in text


@pytest.mark.slow  # an SQLite study: a second
def test_a_pruned_baseline_is_named_and_a_pending_one_stays_pending(write_study) -> None:
    path = write_study()
    config = load_study_config(path)
    _, data = load_config_data(config)
    study = open_study(config)
    for family in ("mobilenet", "shufflenet"):
        study.enqueue_trial({}, user_attrs=_baseline(family, data).attrs())
    pruned = study.ask()
    TrialRecord(feasible=True, epochs_done=1, val_accuracy=0.25).write(pruned)
    study.tell(pruned, state=TrialState.PRUNED)
    interrupted = study.ask()
    TrialRecord(interrupted=True).write(interrupted)
    study.tell(interrupted, state=TrialState.FAIL)

    text = summary(study, config)
    assert f"seed baselines without a result yet: shufflenet (trial {interrupted.number} interrupted)" in text
    assert f"  mobilenet (trial {pruned.number} pruned after epoch 1 at accuracy 0.2500)" in text
    assert "effnet" not in text  # the baselines were not enqueued by the study: nothing said of the others
    assert "1 trained (0 to the end, 1 pruned)" in text and "0 failed, 1 interrupted" in text


@pytest.mark.slow  # an SQLite study: seconds
def test_a_given_up_baseline_is_left_out_not_pending(write_study) -> None:
    config = load_study_config(write_study())
    study = open_study(config)
    retry_of = None
    for _ in range(BASELINE_LOSSES):  # its worker lost at every try: given up (recovery.may_retry)
        lost = optuna.trial.create_trial(state=TrialState.FAIL, user_attrs=TrialRecord(
            baseline="mobilenet", arch={"stem": {}}, retry_of=retry_of, swept=True).attrs())
        lost.datetime_start = lost.datetime_complete = datetime.datetime.now() - datetime.timedelta(minutes=5)
        study.add_trial(lost)
        retry_of = study.trials[-1].number
    assert recover(study)[1] == []
    text = summary(study, config)
    assert "without a result yet" not in text
    assert (f"  mobilenet (trial {BASELINE_LOSSES - 1} its worker died at each of {BASELINE_LOSSES} tries: given up"
            in text), text
    assert f"0 failed, {BASELINE_LOSSES} lost their worker ({BASELINE_LOSSES - 1} run again since, 1 not run again)" \
        in text


@pytest.mark.slow  # two worker processes
def test_a_tight_budget_stops_a_search_of_two_workers_with_one_line(write_study, capfd) -> None:
    from archsearch.search.reachable import smallest_cost

    # unfitted, at the smallest candidate's MACs: nearly every candidate is over it, and the cap ends the run
    path = write_study(budget={"max_macs": 100000, "fit": False}, n_trials=2, sampler={"type": "random", "seed": 0})
    space, data = load_config_data(load_study_config(path))
    smallest = smallest_cost(space, in_chs=data.in_chs, resolution=data.resolution, num_classes=data.num_classes)
    path = write_study(budget={"max_macs": smallest.macs, "fit": False}, n_trials=2,
                       sampler={"type": "random", "seed": 0})
    run_workers(load_study_config(path), 2, max_infeasible=3, stream=sys.stdout)
    out = capfd.readouterr().out  # the workers' lines and the parent's
    stops = [line for line in out.splitlines() if line.startswith("stopping:")]
    assert len(stops) == 1, out
    assert "candidates in this run were over the budget (the cap, --max-infeasible)" in stops[0]
    assert out.count("study tiny: 0 trained") == 1, out
