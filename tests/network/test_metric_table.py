"""Each budget metric is declared once (archsearch/network/metrics.py): a copy of the package with one row added
there accepts the new limit in the study file and its schema, refuses a limit no candidate meets, fits and judges
candidates by it, records it on every trial and reports it, with no other file changed."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml
from conftest import TINY_SPACE, study_dict

from archsearch.network.cost import Cost, arch_cost
from archsearch.network.metrics import METRICS, Costs, amount, metric, metric_values

PACKAGE = Path(__file__).resolve().parents[2] / "archsearch"
ROW = ('    Metric("kparams", "max_kparams", 1e9, "thousands of parameters", "", "thousand parameters",\n'
       '           lambda c: None if c.params is None else c.params / 1000),\n')


def test_every_metric_is_computed_from_a_cost() -> None:
    values = metric_values(Costs.of(Cost(macs=2_000_000, params=30_000, peak_activation_bytes=4096), 1.5,
                                    bytes_per_param=1))
    assert values == {"macs": 2_000_000, "params": 30_000, "latency": 1.5, "peak_kb": 4.0,
                      "model_kb": 30_000 / 1024}
    assert [m.name for m in METRICS] == list(values)
    assert metric_values(Costs(None, None, None)) == dict.fromkeys(values)  # an older record's unknowns
    assert (amount("macs", 12_345), amount("latency", 2.5), amount("peak_kb", 40.25)) == ("12.35K", "2.5 ms",
                                                                                          "40.2 KiB")
    with pytest.raises(KeyError, match="no budget metric 'flops'"):
        metric("flops")


@pytest.mark.parametrize("family", ["mobilenet", "shufflenet", "effnet"])
def test_int8_activations_are_a_quarter_of_the_float32_peak(family: str) -> None:
    from archsearch.config.study_schema import Budget
    from archsearch.space.baselines import FAMILIES

    cost = arch_cost(FAMILIES[family](1.0, in_chs=1, resolution=28, num_classes=10))
    default, int8 = Budget(), Budget(max_peak_activation_kb=64, activation_precision="int8")
    at = {b.activation_precision: metric_values(Costs.of(cost, bytes_per_activation=b.bytes_per_activation))
          for b in (default, int8)}
    assert at["float32"]["peak_kb"] == cost.peak_activation_bytes / 1024  # as before the key: the record's bytes
    assert at["int8"]["peak_kb"] == at["float32"]["peak_kb"] / 4
    assert {m: v for m, v in at["int8"].items() if m != "peak_kb"} == \
        {m: v for m, v in at["float32"].items() if m != "peak_kb"}  # the weights keep model_precision
    # the words say the precision the figure is at, in reachability's and the export's messages and the summary
    assert (default.words("peak_kb"), int8.words("peak_kb")) == ("KiB of activations at float32",
                                                                 "KiB of activations at int8")
    assert int8.words("model_kb") == "KiB of float32 weights" and int8.words("macs") == "MACs"
    assert int8.describe() == "max_peak_activation_kb=64, activations at int8"


def test_a_peak_limit_at_int8_admits_the_network_float32_rejects(write_study) -> None:
    import torch

    from archsearch.config.assemble import load_config_data
    from archsearch.config.budgets import budget_excess
    from archsearch.config.study_config import load_study_config
    from archsearch.core.errors import ConfigError
    from archsearch.search.objective import Objective
    from archsearch.search.reachable import check_budget_reachable, smallest_cost

    space, data = load_config_data(load_study_config(write_study()))
    low = smallest_cost(space, in_chs=data.in_chs, resolution=data.resolution, num_classes=data.num_classes)
    limit = low.peak_activation_bytes / 2 / 1024  # half the smallest candidate's float32 peak: twice its int8 peak
    judged = {}
    for precision in ("float32", "int8"):
        config = load_study_config(write_study(budget={"max_macs": None, "max_peak_activation_kb": limit,
                                                       "activation_precision": precision}))
        objective = Objective(config, space, data, device=torch.device("cpu"))
        judged[precision] = budget_excess(config, objective.values(low, None))["peak_kb"]
        if precision == "float32":
            with pytest.raises(ConfigError, match=r"KiB of activations at float32 at 1x8x8") as info:
                check_budget_reachable(config, space, data)
            assert info.value.key == "budget.max_peak_activation_kb"
        else:
            check_budget_reachable(config, space, data)  # no candidate over it: the search may start
    assert judged == {"float32": 1.0, "int8": -0.5}  # over by its own size; within by half


# the search below: every trial's record, constraints and the summary and report text, as JSON
_SCRIPT = textwrap.dedent("""
    import json, sys
    import archsearch
    from archsearch.config.assemble import load_config_data
    from archsearch.config.study_config import load_study_config
    from archsearch.core.errors import ConfigError
    from archsearch.report.study_report import report
    from archsearch.search.reachable import smallest_cost
    from archsearch.search.summary import over_budget_words
    from archsearch.study.trial_record import TrialRecord

    assert archsearch.__file__.startswith(sys.argv[1]), archsearch.__file__  # the copy, not the checkout
    path = sys.argv[2]
    config = load_study_config(path)
    space, data = load_config_data(config)
    low = smallest_cost(space, in_chs=data.in_chs, resolution=data.resolution, num_classes=data.num_classes)
    out = {"smallest_kparams": low.params / 1000, "limit": config.budget.limit("kparams")}
    try:  # a limit below the smallest candidate: refused before anything trains
        load_study_config(sys.argv[3])
        archsearch.run(sys.argv[3], stream=None, progress=False)
    except ConfigError as e:
        out["unreachable"] = str(e)
    study = archsearch.run(path, stream=None, progress=False)
    out["trials"] = [{"params": (r := TrialRecord.of(t)).params, "feasible": r.feasible, "budget_use": r.budget_use,
                      "macs": r.macs, "constraints": t.constraints, "state": t.state.name} for t in study.trials]
    out["over"] = [over_budget_words(t, config) for t in study.trials if TrialRecord.of(t).feasible is False]
    out["report"] = report(path, png=False, html=False).text
    print(json.dumps(out))
""")


@pytest.mark.slow  # a search in a fresh process on a copy of the package
def test_a_metric_added_in_one_place_is_budgeted_recorded_and_reported(tmp_path: Path) -> None:
    copy = shutil.copytree(PACKAGE, tmp_path / "pkg" / "archsearch", ignore=shutil.ignore_patterns("__pycache__"))
    table = copy / "network" / "metrics.py"
    text = table.read_text(encoding="utf-8")
    end = text.index("\n)\n", text.index("METRICS: tuple[Metric, ...] = ("))  # the table's closing parenthesis
    table.write_text(text[:end + 1] + ROW + text[end + 1:], encoding="utf-8")

    schema = subprocess.run([sys.executable, "-m", "archsearch.cli", "schema", "study"], capture_output=True,
                            text=True, timeout=900, cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(copy.parent)})
    assert schema.returncode == 0, schema.stderr
    budget = json.loads(schema.stdout)["$defs"]["Budget"]["properties"]
    assert budget["max_kparams"]["description"] == "thousands of parameters"

    # the tiny space's smallest candidate has about 1.7K parameters and most have several times as many:
    # 2.5K leaves the seed baselines (fitted to every limit) within and most sampled candidates over
    (tmp_path / "tiny_space.yaml").write_text(yaml.safe_dump(TINY_SPACE, sort_keys=False))
    for name, limit in (("kp", 2.5), ("below", 0.01)):
        study = study_dict(name=name, storage=f"sqlite:///{name}.db", budget={"max_macs": 100000, "max_kparams": limit,
                                                                              "fit": False},
                           enqueue_baselines=True, n_trials=5, sampler={"type": "random", "seed": 0})
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(study, sort_keys=False))
    proc = subprocess.run([sys.executable, "-c", _SCRIPT, str(copy), str(tmp_path / "kp.yaml"),
                           str(tmp_path / "below.yaml")], capture_output=True, text=True, timeout=900, cwd=tmp_path,
                          env={**os.environ, "PYTHONPATH": str(copy.parent), "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])

    assert out["limit"] == 2.5 and out["smallest_kparams"] < 2.5
    # reachability reads the table: the limit, its key and the row's words
    assert "budget.max_kparams" in out["unreachable"] and "thousand parameters" in out["unreachable"]
    trials = out["trials"]
    # judged and recorded: every trial carries the new constraint; over it is infeasible, within it is not
    assert all("kparams" in t["constraints"] for t in trials)
    over = [t for t in trials if t["params"] / 1000 > 2.5]
    assert over and all(not t["feasible"] and t["constraints"]["kparams"] > 0 for t in over)
    within = [t for t in trials if t["feasible"]]
    assert within and all(t["params"] / 1000 <= 2.5 and t["constraints"]["kparams"] <= 0 for t in within)
    # budget use is the largest cost / limit, the new metric among them
    for t in trials:
        assert t["budget_use"] == pytest.approx(max(t["params"] / 1000 / 2.5, t["macs"] / 100000))
    # reported: the report's budget line, and the summary's words for a candidate over it (the limit's key)
    assert "max_kparams=2.5" in out["report"]
    assert len(out["over"]) == len(over) and all(w.startswith("kparams ") and "> budget.max_kparams" in w
                                                 for w in out["over"])
