"""The latency lookup table: its parts, its key and file, on-demand measurement, and the latency budget.

Every measurement here is real (tiny networks on 8x8 inputs, few repeats); nothing asserts a time.
How close the predictions come is measured by ``archsearch latency check`` and benchmarks/.
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import time
from pathlib import Path

import pytest
import torch
from conftest import TINY_SPACE
from latency_tables import CPU1, LATENCY_CPU1, OTHER, make_table, tiny
from optuna.trial import TrialState

from archsearch.cli import latency as latency_cli
from archsearch.cli.latency import parse_target
from archsearch.config.assemble import load_config_data
from archsearch.config.study_config import load_study_config
from archsearch.config.study_schema import LatencyTarget
from archsearch.latency import table as lat
from archsearch.latency.key import table_key
from archsearch.latency.measure import measure_latency
from archsearch.latency.parts import parts_of
from archsearch.network.arch import Arch, Stage, Stem
from archsearch.network.build import build
from archsearch.search.reachable import cheapest
from archsearch.search.study import open_study, run
from archsearch.space.search_space import load_space, sample_architectures
from archsearch.study.best import best_trials

SPACES_DIR = Path(__file__).resolve().parents[2] / "search_spaces"
# -- the parts of a network ------------------------------------------------------------------------


def _sampled(n: int) -> list[Arch]:
    space = load_space(SPACES_DIR / "mixed.yaml")
    return sample_architectures(space, n, in_chs=1, resolution=28, num_classes=10, seed=3)


@pytest.mark.parametrize(
    "arch", [tiny(), tiny(stem_pool=3), tiny(stem_pool=2, head="flatten"), tiny().replace(hidden=32), OTHER,
             *_sampled(6)], ids=lambda a: a.id
)
def test_parts_chain_like_the_built_network(arch):
    parts = parts_of(arch)
    net = build(arch).eval()
    # same layers: the parts hold exactly the network's parameters
    modules = [p.make() for p in parts]
    assert sum(p.numel() for m in modules for p in m.parameters()) == sum(p.numel() for p in net.parameters())
    # same input sizes: each part's output is the next part's declared input
    x = torch.randn(2, arch.in_chs, arch.resolution, arch.resolution)
    with torch.inference_mode():
        for part, module in zip(parts, modules, strict=True):
            assert tuple(x.shape[1:]) == part.input_shape, part.key
            x = module.eval()(x)
        assert x.shape == net(torch.randn(2, arch.in_chs, arch.resolution, arch.resolution)).shape
    assert [p.key.split(":")[0] for p in parts] == (
        ["block"] + (["maxpool"] if arch.stem.pool else []) + ["block"] * sum(s.repeats for s in arch.stages) + ["head"]
    )


def test_part_keys_tell_apart_what_changes_the_latency():
    a = tiny()
    keys = {p.key for p in parts_of(a)}
    for other in (a.replace(resolution=16), a.replace(num_classes=5), a.replace(stem=Stem("conv", 16)),
                  a.replace(stages=(Stage("dwsep", 16, stride=2, kernel=5), a.stages[1])),
                  a.replace(stages=(a.stages[0], Stage("shuffle", 32, stride=2, groups=4))), a.replace(hidden=32)):
        assert {p.key for p in parts_of(other)} != keys


# -- measuring ---------------------------------------------------------------------------------------


@pytest.mark.slow  # times a network: seconds
def test_measure_latency_reports_median_and_p90_and_restores_the_mode():
    model = build(tiny())
    assert model.training
    threads = torch.get_num_threads()
    m = measure_latency(model, (1, 8, 8), threads=2, warmup=1, repeats=7, min_seconds=0.0)
    assert m.repeats == 7 and 0 < m.median_ms <= m.p90_ms
    assert model.training and torch.get_num_threads() == threads
    assert m.reference_ms is None
    calls = []
    m = measure_latency(model, (1, 8, 8), warmup=2, repeats=3, min_seconds=0.0, between=lambda: calls.append(1))
    assert len(calls) == 5 and m.repeats == 3
    # the pass before each timed pass is timed apart: the reference
    # (a 20 ms sleep: a tiny network's pass took 2.3 ms once on a loaded machine, over the 2 ms this had)
    m = measure_latency(model, (1, 8, 8), warmup=0, repeats=5, min_seconds=0.0, between=lambda: time.sleep(0.02))
    assert m.reference_ms >= 20.0 > m.median_ms
    # time-based: more passes until they add up to min_seconds
    assert measure_latency(model, (1, 8, 8), warmup=0, repeats=2, min_seconds=0.05).repeats > 2


# -- the key and the file ----------------------------------------------------------------------------


def test_a_table_is_keyed_by_device_threads_batch_torch_version_and_hardware():
    base = table_key(CPU1, torch_version="2.13.0+cpu", hardware="AMD EPYC")
    others = [
        table_key(LatencyTarget("cpu", 2, 1), torch_version="2.13.0+cpu", hardware="AMD EPYC"),
        table_key(LatencyTarget("cpu", 1, 8), torch_version="2.13.0+cpu", hardware="AMD EPYC"),
        table_key(LatencyTarget("cuda", 1, 1), torch_version="2.13.0+cpu", hardware="AMD EPYC"),
        table_key(CPU1, torch_version="2.12.1+cpu", hardware="AMD EPYC"),
        table_key(CPU1, torch_version="2.13.0+cpu", hardware="Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz"),
    ]
    names = {base.file_name()} | {k.file_name() for k in others}
    assert len(names) == 1 + len(others) and all(k != base for k in others)
    assert base.file_name() == table_key(CPU1, torch_version="2.13.0+cpu", hardware="AMD EPYC").file_name()
    assert base.file_name().startswith("cpu-t1-b1-torch2.13.0+cpu-amd-epyc-")
    assert table_key(CPU1).torch == torch.__version__


@pytest.mark.parametrize(
    "target, match",
    [(("tpu", 1, 1), "device: expected one of 'cpu', 'cuda', got str 'tpu'"),
     (("cpu", 0, 1), "threads: expected an integer >= 1"), (("cpu", 1, 0), "batch: expected an integer >= 1")],
)
def test_a_bad_target_cannot_be_built(target, match):
    with pytest.raises(ValueError, match=match):
        table_key(LatencyTarget(*target))


@pytest.mark.slow  # measures tables: a second
def test_a_different_thread_count_or_torch_version_does_not_reuse_a_table(tmp_path, capsys):
    first = make_table(tmp_path)
    first.predict(tiny())
    assert len(first) > 0 and first.path.exists()
    capsys.readouterr()

    two_threads = make_table(tmp_path, LatencyTarget("cpu", 2, 1))
    assert two_threads.path != first.path and len(two_threads) == 0
    old_torch = make_table(tmp_path, key=table_key(CPU1, torch_version="1.0.0"))
    assert old_torch.path != first.path and len(old_torch) == 0

    # even a table copied under the other key's file name is refused: the key inside is checked
    shutil.copy(first.path, old_torch.path)
    capsys.readouterr()
    refused = make_table(tmp_path, key=table_key(CPU1, torch_version="1.0.0"))
    err = capsys.readouterr().err
    assert len(refused) == 0 and refused.overhead is None and refused.reference_ms is None
    assert str(old_torch.path) in err and "another key" in err
    # the refused file is replaced by a table of its own key
    refused.predict(OTHER)
    assert json.loads(old_torch.path.read_text())["key"]["torch"] == "1.0.0"


def test_a_missing_table_is_built_with_a_message_naming_the_file(tmp_path, capsys):
    directory = tmp_path / "studies" / "latency"  # created on the first save
    table = make_table(directory)
    err = capsys.readouterr().err
    assert str(table.path) in err and "does not exist" in err
    assert table.predict(tiny()) > 0
    saved = json.loads(table.path.read_text())
    assert saved["format"] == lat.TABLE_FORMAT and saved["key"]["threads"] == 1
    assert set(saved["entries"]) == set(table.entries)
    assert (saved["overhead"], saved["reference_ms"]) == (table.overhead, table.reference_ms)
    assert not [p for p in directory.iterdir() if p != table.path]  # no temporary file left behind


@pytest.mark.parametrize(
    "content, reason",
    [
        (b"{not json", "not valid JSON"),
        (b"\xff\xfe\x00garbage", "not UTF-8"),
        (b"[1, 2, 3]", "not a latency table"),
        (b"", "not valid JSON"),
    ],
    ids=["truncated", "binary", "list", "empty"],
)
def test_a_corrupt_table_is_rebuilt_with_a_message_naming_the_file(tmp_path, capsys, content, reason):
    path = tmp_path / table_key(CPU1).file_name()
    path.write_bytes(content)
    table = make_table(tmp_path)
    err = capsys.readouterr().err
    assert str(path) in err and reason in err and "rebuilt" in err
    assert len(table) == 0
    assert table.predict(tiny()) > 0
    assert json.loads(path.read_text())["entries"] == table.entries


@pytest.mark.parametrize(
    "change, reason",
    [
        (lambda d: d["entries"].update({next(iter(d["entries"])): {"median_ms": "fast"}}), "is malformed"),
        (lambda d: d["entries"][next(iter(d["entries"]))].update(reference_ms=0.0), "is malformed"),
        (lambda d: d.update(method="parts-disturbed-v1"), "measured by method 'parts-disturbed-v1'"),
        (lambda d: d.update(overhead=float("nan")), "malformed"),
        (lambda d: d.update(reference_ms=None), "malformed"),
    ],
    ids=["entry", "entry-reference", "method", "overhead", "reference"],
)
def test_a_table_with_bad_content_is_rebuilt(tmp_path, capsys, change, reason):
    table = make_table(tmp_path)
    table.predict(tiny())
    data = json.loads(table.path.read_text())
    change(data)
    table.path.write_text(json.dumps(data))
    capsys.readouterr()
    assert len(make_table(tmp_path)) == 0
    err = capsys.readouterr().err
    assert reason in err and str(table.path) in err


# -- on-demand entries and predictions ---------------------------------------------------------------


def test_missing_entries_are_measured_on_demand_and_persisted(tmp_path):
    first = make_table(tmp_path)
    p = first.predict(tiny())
    parts = {part.key for part in parts_of(tiny())}
    assert parts <= set(first.entries)
    # the parts of tiny(), then the constant: its one calibration network (tiny() itself, no new parts)
    # measured whole in every calibration round
    measured = len(parts) + lat.CALIBRATION_ROUNDS
    assert first.measurements == measured
    assert first.predict(tiny()) == p and first.measurements == measured  # nothing measured twice

    second = make_table(tmp_path)
    assert second.predict(tiny()) == p and second.measurements == 0
    q = second.predict(OTHER)
    new = {part.key for part in parts_of(OTHER)} - parts
    assert new and second.measurements == len(new)
    third = make_table(tmp_path)
    # from the entries second saved; not asserted positive: the constant, calibrated on tiny() alone
    # under a loaded test run, may outweigh another network's few microseconds
    assert third.predict(OTHER) == q and third.measurements == 0


@pytest.mark.slow  # measures tables: a second
def test_entries_saved_by_another_process_are_kept(tmp_path):
    a, b = make_table(tmp_path), make_table(tmp_path)
    a.predict(tiny())
    b.predict(OTHER)  # b was loaded before a saved: saving merges, it does not overwrite
    merged = make_table(tmp_path)
    assert {p.key for p in parts_of(tiny()) + parts_of(OTHER)} <= set(merged.entries)


@pytest.mark.slow  # measures a table: a second
def test_predict_is_the_sum_of_the_entries_plus_the_constant_at_the_tables_speed(tmp_path):
    table = make_table(tmp_path)
    for arch in (tiny(), tiny(stem_pool=3), tiny(stem_pool=2, head="flatten"), OTHER):
        predicted = table.predict(arch)
        assert predicted > 0
        entries = [table.entries[p.key] for p in parts_of(arch)]
        assert all(e["median_ms"] > 0 and e["reference_ms"] > 0 for e in entries)
        # each entry in units of the reference's time as it ran beside that entry
        relative = [e["median_ms"] / e["reference_ms"] for e in entries]
        expected = max(sum(relative) + table.overhead, max(relative)) * table.reference_ms
        assert predicted == pytest.approx(expected, rel=1e-12)
        assert table.overhead_ms == pytest.approx(table.overhead * table.reference_ms)


@pytest.mark.slow  # measures a table: a second
def test_a_prediction_is_never_below_the_slowest_part(tmp_path):
    table = make_table(tmp_path)
    table.predict(OTHER)
    table.overhead = -1.0e6  # a constant that outweighs every network: measured under heavy load, say
    slowest = max(table.entries[p.key]["median_ms"] / table.entries[p.key]["reference_ms"] for p in parts_of(OTHER))
    assert table.predict(OTHER) == pytest.approx(slowest * table.reference_ms) and table.predict(OTHER) > 0


@pytest.mark.slow  # measures a table: a second
def test_a_measurement_is_scaled_to_the_tables_speed(tmp_path):
    table = make_table(tmp_path)
    table.fill([])
    model = build(OTHER)
    scaled, timed = table.measure(model, (1, 8, 8), warmup=1, repeats=9, min_seconds=0.0)
    assert timed.repeats == scaled.repeats == 9 and timed.reference_ms > 0
    scale = table.reference_ms / timed.reference_ms
    assert scaled.median_ms == pytest.approx(timed.median_ms * scale) and scaled.p90_ms == pytest.approx(
        timed.p90_ms * scale)
    assert scaled.reference_ms == table.reference_ms


@pytest.mark.slow  # measures a table: a second
def test_a_measurement_calibrates_a_new_table_first(tmp_path):
    table = make_table(tmp_path)
    scaled, _ = table.measure(build(OTHER), (1, 8, 8), warmup=1, repeats=3, min_seconds=0.0)
    assert table.reference_ms is not None and scaled.median_ms > 0
    assert json.loads(table.path.read_text())["reference_ms"] == table.reference_ms


@pytest.mark.slow  # measures tables: a second
def test_fill_measures_the_parts_of_every_architecture(tmp_path):
    table = make_table(tmp_path)
    archs = [tiny(), OTHER]
    new = table.fill(archs)
    assert new == len({p.key for a in archs for p in parts_of(a)}) and table.overhead is not None
    assert make_table(tmp_path).fill(archs) == 0


# -- the latency budget ------------------------------------------------------------------------------


class Counted:
    """Counts the calls of ``archsearch.search.objective``'s ``build`` and of the trainer given to ``run``."""

    def __init__(self, monkeypatch):
        import archsearch.search.objective

        self.builds, self.trains = [], []
        real_build = archsearch.search.objective.build

        def counted_build(arch):
            self.builds.append(arch.id)
            return real_build(arch)

        monkeypatch.setattr(archsearch.search.objective, "build", counted_build)

    def trainer(self, *args, **kwargs):
        from archsearch.training.train import train

        self.trains.append(1)
        return train(*args, **kwargs)


def _run_latency_study(path, counted):
    out = io.StringIO()
    study = run(load_study_config(path), stream=out, progress=False, trainer=counted.trainer)
    return study, out.getvalue()


@pytest.mark.slow  # a search
def test_an_over_latency_candidate_is_rejected_by_the_prediction_without_being_built(write_study, monkeypatch):
    counted = Counted(monkeypatch)
    path = write_study(budget={"max_latency_ms": 1000.0, "latency": LATENCY_CPU1}, n_trials=3)
    # the table a study predicts from (latency/ beside its YAML), calibrated on a tiny network: quick
    table = make_table(path.parent / "latency")
    table.fill([])
    # a limit just above the fastest candidate's prediction: reachable (archsearch/search/reachable.py), and nearly
    # every candidate over it; the run stops after 3 of them
    space, data = load_config_data(load_study_config(path))
    limit = 1.0001 * table.predict(cheapest(space, table.predict, in_chs=data.in_chs, resolution=data.resolution,
                                            num_classes=data.num_classes))
    path = write_study(budget={"max_latency_ms": limit, "latency": LATENCY_CPU1, "fit": False}, n_trials=3,
                       sampler={"type": "random", "seed": 0})
    out = io.StringIO()
    study = run(load_study_config(path), stream=out, progress=False, trainer=counted.trainer, max_infeasible=3)
    text = out.getvalue()
    done = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert len(done) == 3 and not counted.trains and not counted.builds
    assert text.count("INFEASIBLE macs") == 3 and text.count("latency ~") == 3  # the prediction, marked
    for t in done:
        assert t.user_attrs["feasible"] is False and t.constraints["latency"] > 0
        assert "latency_ms" not in t.user_attrs  # nothing was built to be measured
        arch = Arch.from_dict(t.user_attrs["arch"])
        # the table, reread from its file, holds every part of the candidate: it predicted from them
        assert t.user_attrs["latency_pred_ms"] == pytest.approx(make_table(path.parent / "latency").predict(arch))
    assert best_trials(study) == []


@pytest.mark.slow  # a search
def test_a_candidate_predicted_within_the_budget_is_measured_and_trained(write_study, monkeypatch):
    counted = Counted(monkeypatch)
    path = write_study(budget={"max_latency_ms": 1000.0, "latency": LATENCY_CPU1}, n_trials=2)
    make_table(path.parent / "latency").fill([])
    study, text = _run_latency_study(path, counted)
    done = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert len(done) == 2 and len(counted.trains) == 2
    for t in done:  # the trial lines show the measured latency
        assert f"latency {t.user_attrs['latency_ms']:.2f}ms" in text
    for t in done:
        a = t.user_attrs
        assert a["feasible"] is True and 0 < a["latency_ms"] <= a["latency_p90_ms"] and a["latency_pred_ms"] > 0
        assert a["latency_timed_ms"] > 0  # the wall time as timed, beside the time at the table's speed
        assert 0 <= t.constraints["latency"] + 1 == pytest.approx(a["latency_ms"] / 1000.0)
        # built once: measured, then trained
        assert counted.builds.count(a["arch_id"]) == 1


@pytest.mark.slow  # a search
def test_the_measured_latency_decides_where_the_prediction_was_too_low(write_study, monkeypatch):
    counted = Counted(monkeypatch)
    path = write_study(budget={"max_latency_ms": 1.0e-3, "latency": LATENCY_CPU1}, n_trials=2)
    archs = [tiny(), OTHER]
    study = open_study(load_study_config(path))
    for arch in archs:  # the trials' candidates, known in advance: the table below covers their parts
        study.enqueue_trial({}, user_attrs={"arch": arch.to_dict()})
    table = make_table(path.parent / "latency")
    table.fill(archs)
    space, data = load_config_data(load_study_config(path))  # and the space's fastest: the budget is reachable
    cheapest(space, table.predict, in_chs=data.in_chs, resolution=data.resolution, num_classes=data.num_classes)
    for entry in table.entries.values():  # a table that predicts these candidates a million times too fast
        entry["median_ms"] *= 1e-6
    table.overhead = 0.0
    table.save()
    study = run(load_study_config(path), stream=None, progress=False, trainer=counted.trainer, max_infeasible=2)
    done = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert len(done) == 2 and not counted.trains
    assert sorted(t.user_attrs["arch_id"] for t in done) == sorted(a.id for a in archs)
    for t in done:
        a = t.user_attrs
        assert a["latency_pred_ms"] < 1.0e-3 < a["latency_ms"]
        assert a["feasible"] is False and t.constraints["latency"] > 0
        assert counted.builds.count(a["arch_id"]) == 1  # built to be measured, never to be trained


@pytest.mark.slow  # a search
@pytest.mark.parametrize("objective", [{"type": "soft", "soft_metric": "latency", "soft_weight": -0.07},
                                       {"type": "pareto", "pareto_metric": "latency"}])
def test_latency_objectives_score_infeasible_candidates_by_their_predicted_latency(write_study, objective):
    # a MACs limit makes some candidates infeasible: they are never built, and still scored on latency
    # (unfitted: fitting would bring every candidate within the MACs limit)
    path = write_study(objective=objective, budget={"max_macs": 20000, "max_latency_ms": 1000.0,
                                                    "latency": LATENCY_CPU1, "fit": False}, n_trials=6,
                       sampler={"type": "random", "seed": 1})
    make_table(path.parent / "latency").fill([])
    study = run(load_study_config(path), stream=None, progress=False)
    done = [t for t in study.trials if t.state == TrialState.COMPLETE]
    infeasible = [t for t in done if not t.user_attrs["feasible"]]
    assert infeasible and len(done) - len(infeasible) == 6  # n_trials counts the networks trained
    for t in done:
        a = t.user_attrs
        latency = a.get("latency_ms", a["latency_pred_ms"])
        assert ("latency_ms" in a) == a["feasible"]
        if objective["type"] == "pareto":
            assert t.values[1] == latency
        else:
            accuracy = a.get("val_accuracy", 0.0)
            assert t.values[0] == pytest.approx(accuracy * (latency / 1000.0) ** -0.07)


# -- command line ------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["cpu", "cpu:1", "cpu:0:1", "cpu:1:0", "tpu:1:1", "cpu:1:1:1", "cpu:a:1"])
def test_parse_target_refuses_bad_targets(text):
    with pytest.raises(argparse.ArgumentTypeError, match="DEVICE:THREADS:BATCH"):
        parse_target(text)


def test_parse_target():
    assert parse_target("cpu:4:8") == LatencyTarget("cpu", 4, 8)


@pytest.mark.slow  # measures tables: seconds
def test_latency_build_and_check_commands(tmp_path, capsys):
    import yaml

    space = tmp_path / "tiny_space.yaml"
    space.write_text(yaml.safe_dump(TINY_SPACE))
    make_table(tmp_path).fill([tiny()])  # the constant, measured on a tiny calibration network
    parser = argparse.ArgumentParser()
    latency_cli.add_parser(parser.add_subparsers(dest="command"))
    common = ["--space", str(space), "--input", "1x8x8", "--classes", "4", "--dir", str(tmp_path)]

    args = parser.parse_args(["latency", "build", "cpu:1:1", "--samples", "3", *common])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "entries" in out and "new" in out

    args = parser.parse_args(["latency", "check", "cpu:1:1", "--samples", "3", "--worst", "2", *common])
    assert args.seed == 1 and args.func(args) == 0
    out = capsys.readouterr().out
    assert "within +-10%" in out and "worst predictions" in out and out.count("i1x8-n4_") == 2
