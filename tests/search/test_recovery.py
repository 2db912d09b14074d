"""Every trial ends with a verdict (archsearch/search/recovery.py), on real SQLite studies: a sweep killed between its
writes is completed by the next one, a retry without a verdict is not retried again, a baseline enqueued twice
by racing starts runs once, a study whose creator died before enqueuing the baselines still gets them, and the
baselines are fitted to a latency limit by the study's own latency table."""

from __future__ import annotations

import io
import socket

import pytest
from conftest import DIGITS
from latency_tables import LATENCY_CPU1, make_table
from optuna.trial import TrialState

from archsearch.config.assemble import load_config_data
from archsearch.config.study_config import load_study_config
from archsearch.network.arch import Arch
from archsearch.network.cost import arch_cost
from archsearch.search import recovery
from archsearch.search.recovery import baseline_status, ensure_baselines, recover
from archsearch.search.study import open_study, run
from archsearch.search.summary import summary
from archsearch.space import baselines
from archsearch.study.study_record import StudyRecord
from archsearch.study.trial_record import BASELINE_ATTR
from archsearch.study.trial_states import COUNTED_STATES

# the tests drive trials with ask/tell, as a worker's pieces do, on a storage with heartbeats
pytestmark = pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used with Study.optimize")


@pytest.mark.slow  # an SQLite study: over half a second
def test_a_sweep_killed_between_its_writes_is_completed_by_the_next(write_study, monkeypatch) -> None:
    # a sweep that died a while ago: its FAIL is older than the time a live sweeper takes to queue the retry
    monkeypatch.setattr(recovery, "_UNCLAIMED_S", 0.0)
    study = open_study(load_study_config(write_study()))
    number = study.ask().number
    # what a sweep killed after its first two writes leaves: marked swept, failed, no retry yet
    tid = study.get_trials(deepcopy=False)[number]._trial_id
    study._storage.set_trial_user_attr(tid, "swept", True)
    study._storage.set_trial_state_values(tid, TrialState.FAIL)

    failed, queued = recover(study)
    assert failed == [] and [(t.number, why) for t, why in queued] == [(number, "its worker died")]
    assert recover(study) == ([], [])  # idempotent: one retry, whatever the number of sweeps
    retries = [t for t in study.get_trials(deepcopy=False) if t.user_attrs.get("retry_of") == number]
    assert len(retries) == 1 and retries[0].state == TrialState.WAITING


def test_a_retry_lost_again_stays_failed(write_study) -> None:
    study = open_study(load_study_config(write_study()))
    trial = study.ask()
    trial.set_user_attr("interrupted", True)
    study.tell(trial, state=TrialState.FAIL)
    _, queued = recover(study)
    assert [(t.number, why) for t, why in queued] == [(trial.number, "interrupted")]
    # the retry runs and is interrupted too: a trial lost twice is FAIL for good
    retry = study.ask()
    assert retry.user_attrs["retry_of"] == trial.number
    retry.set_user_attr("interrupted", True)
    study.tell(retry, state=TrialState.FAIL)
    assert recover(study) == ([], [])
    assert len([t for t in study.get_trials(deepcopy=False) if "retry_of" in t.user_attrs]) == 1


@pytest.mark.slow  # a search
def test_racing_starts_give_a_baseline_one_verdict(write_study) -> None:
    path = write_study(name="race", dataset=DIGITS, training={"epochs": 1, "batch_size": 32}, n_trials=3,
                       enqueue_baselines=True)
    config = load_study_config(path)
    _, data = load_config_data(config)
    study = open_study(config)
    first = ensure_baselines(study, config, data, created=True)
    assert first and ensure_baselines(study, config, data, created=False) == []  # done: not enqueued again
    # what two starts racing past the check do: the same family enqueued twice
    family = first[0]
    arch = next(t.user_attrs["arch"] for t in study.get_trials(deepcopy=False) if t.user_attrs[BASELINE_ATTR] == family)
    study.enqueue_trial({}, user_attrs={BASELINE_ATTR: family, "arch": arch})

    text = io.StringIO()
    study = run(config, stream=text, progress=False)
    trials = study.get_trials(deepcopy=False)
    runs = [t for t in trials if t.user_attrs.get(BASELINE_ATTR) == family]
    assert len(runs) == 2
    assert runs[0].state in COUNTED_STATES and runs[1].state == TrialState.FAIL
    assert runs[1].user_attrs["surplus"] is True
    assert sum(t.state in COUNTED_STATES for t in trials) == 3
    assert baseline_status(trials) == {f: None for f in first}


@pytest.mark.slow  # a search
def test_a_study_whose_creator_died_before_the_baselines_gets_them(write_study) -> None:
    path = write_study(name="orphan", dataset=DIGITS, training={"epochs": 1, "batch_size": 32}, n_trials=2,
                       enqueue_baselines=True)
    config = load_study_config(path)
    _, data = load_config_data(config)
    study = open_study(config)  # created by this process, nothing enqueued yet: it may still enqueue them
    assert ensure_baselines(study, config, data, created=False) is None
    # the creator was killed here: a worker of this host that is gone
    study.set_user_attr("archsearch.created_by", "this-host:1:1".replace("this-host", socket.gethostname()))
    study = run(config, stream=None, progress=False)
    families = [t.user_attrs[BASELINE_ATTR] for t in study.get_trials(deepcopy=False) if BASELINE_ATTR in t.user_attrs]
    assert families and len(families) == len(set(families))
    assert all(t.state in COUNTED_STATES for t in study.get_trials(deepcopy=False) if BASELINE_ATTR in t.user_attrs)


@pytest.mark.slow  # an SQLite study and digits: a second
def test_the_summary_names_a_baseline_without_a_result(write_study) -> None:
    path = write_study(name="pending", dataset=DIGITS, training={"epochs": 1, "batch_size": 32}, n_trials=1,
                       enqueue_baselines=True)
    config = load_study_config(path)
    _, data = load_config_data(config)
    study = open_study(config)
    (family,) = ensure_baselines(study, config, data, created=True)[:1]
    trial = study.ask()  # the baseline, taken from the queue
    assert trial.user_attrs[BASELINE_ATTR] == family
    trial.set_user_attr("interrupted", True)
    study.tell(trial, state=TrialState.FAIL)
    assert baseline_status(study.get_trials(deepcopy=False))[family] == f"trial {trial.number} interrupted"
    assert f"seed baselines without a result yet: {family} (trial {trial.number} interrupted)" in summary(study, config)


@pytest.mark.slow  # measures latency table entries: seconds
def test_baselines_are_fitted_to_a_latency_limit_by_the_studys_table(write_study) -> None:
    path = write_study(name="lat", budget={"max_macs": None, "max_latency_ms": 1000.0, "latency": LATENCY_CPU1},
                       enqueue_baselines=True)
    _, data = load_config_data(load_study_config(path))

    def variant(family: str, width: float) -> Arch:
        return baselines.FAMILIES[family](width, in_chs=data.in_chs, resolution=data.resolution,
                                          num_classes=data.num_classes)

    # the study's table (latency/ beside its YAML), calibrated on a tiny network: the thinnest variants predicted
    table = make_table(path.parent / "latency")
    thinnest = {f: variant(f, 1 / 32) for f in baselines.FAMILIES}
    ms = {f: table.predict(a) for f, a in thinnest.items()}
    fastest, *slower = sorted(ms, key=ms.__getitem__)
    limit = (ms[fastest] + ms[slower[0]]) / 2  # the fastest family fits; the others are over even at their thinnest
    # and a params limit that every thinnest variant is within: the fastest is fitted among its thin variants (quick
    # to measure) to both limits
    params = max(arch_cost(a).params for a in [variant(fastest, 0.25), *thinnest.values()])
    config = load_study_config(write_study(name="lat", budget={"max_macs": None, "max_params": params,
                                                               "max_latency_ms": limit, "latency": LATENCY_CPU1},
                                           enqueue_baselines=True))
    study = open_study(config)
    assert ensure_baselines(study, config, data, created=True) == [fastest]
    (queued,) = [t for t in study.get_trials(deepcopy=False) if BASELINE_ATTR in t.user_attrs]
    arch = Arch.from_dict(queued.user_attrs["arch"])
    reread = make_table(path.parent / "latency")  # what ensure_baselines measured was saved to the study's table
    assert reread.predict(arch) <= limit and arch_cost(arch).params <= params and reread.measurements == 0
    wider = variant(fastest, 2 / 32)  # the next width: over a limit, where the thinnest was taken
    assert arch != thinnest[fastest] or reread.predict(wider) > limit or arch_cost(wider).params > params
    assert StudyRecord.of(study).baselines_over == {f: {"width": 1 / 32, "over": {"latency": ms[f]}} for f in slower}
    lines = summary(study, config).splitlines()
    for f in slower:
        assert (f"  {f} (not queued: even its thinnest variant (x0.0312) is over the budget: latency {ms[f]:.3g} ms "
                f"(predicted) > budget.max_latency_ms {limit:.3g} ms)") in lines
