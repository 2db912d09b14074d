"""Seed baselines fitted to a budget (archsearch/space/baselines.py): the widest variant within every limit, a latency
limit judged by a predictor (here a real latency table, measured on this machine), and, where no variant fits, the
thinnest one with what it is over, in words."""

from __future__ import annotations

import pytest
from latency_tables import make_table

from archsearch.network.arch import Arch
from archsearch.network.cost import arch_cost
from archsearch.space.baselines import FAMILIES, fit_baseline, fit_to_budget, over_words

SHAPE = {"in_chs": 1, "resolution": 8, "num_classes": 4}


def _variants(family: str) -> list[Arch]:
    """The family's distinct variants on the documented grid (3.0 down to 1/32), widest first."""
    out: list[Arch] = []
    for w in range(96, 0, -1):
        arch = FAMILIES[family](w / 32, **SHAPE)
        if arch not in out:
            out.append(arch)
    return out


class Counted:
    """A table's ``predict``, counting the architectures it was asked about."""

    def __init__(self, predict):
        self.predict, self.asked = predict, []

    def __call__(self, arch: Arch) -> float:
        self.asked.append(arch)
        return self.predict(arch)


@pytest.mark.slow  # measures a latency table's entries: seconds
def test_a_latency_limit_gives_the_widest_variant_predicted_within_it(tmp_path):
    table = make_table(tmp_path)
    variants = _variants("effnet")
    limit = table.predict(variants[len(variants) // 2])  # a variant in the middle of the grid is predicted at it
    predict = Counted(table.predict)
    fit = fit_baseline("effnet", **SHAPE, limits={"latency": limit}, latency=predict)
    assert fit.arch is not None and fit.over == {}
    assert fit.values["latency"] == table.predict(fit.arch) <= limit
    assert fit.budget_use == pytest.approx(fit.values["latency"] / limit)
    at = variants.index(fit.arch)
    if at > 0:  # the next wider variant is predicted over the limit
        assert table.predict(variants[at - 1]) > limit
    # bisection: a few predictions, not one per width (the grid has 96 widths)
    assert len(predict.asked) <= 9 < len(variants)
    assert fit_to_budget("effnet", **SHAPE, limits={"latency": limit}, latency=table.predict) == fit.arch

    # beside an analytic limit: within both, and no wider than either alone allows
    macs = arch_cost(variants[-1]).macs * 4
    both = fit_baseline("effnet", **SHAPE, limits={"latency": limit, "macs": macs}, latency=table.predict)
    assert both.arch is not None and arch_cost(both.arch).macs <= macs and table.predict(both.arch) <= limit
    alone = fit_baseline("effnet", **SHAPE, limits={"macs": macs}).arch
    assert alone is not None and variants.index(both.arch) >= max(variants.index(alone), at)


@pytest.mark.slow  # measures a latency table's entries: about a second
def test_where_even_the_thinnest_variant_is_predicted_over_the_limit_it_says_by_how_much(tmp_path):
    table = make_table(tmp_path)
    thinnest = _variants("mobilenet")[-1]
    ms = table.predict(thinnest)
    fit = fit_baseline("mobilenet", **SHAPE, limits={"latency": ms / 2, "params": 1e9}, latency=table.predict)
    assert fit.arch is None and fit.width == 1 / 32
    assert fit.over == {"latency": ms}  # the params limit it is within is not named
    assert over_words(fit.width, fit.over, fit.limits) == (
        f"even its thinnest variant (x0.0312) is over the budget: latency {ms:.3g} ms (predicted) > "
        f"budget.max_latency_ms {ms / 2:.3g} ms")
    assert fit_to_budget("mobilenet", **SHAPE, limits={"latency": ms / 2}, latency=table.predict) is None


def test_a_latency_limit_without_a_predictor_is_refused_not_dropped():
    with pytest.raises(ValueError, match=r"fitting the shufflenet baseline to a latency limit \(2 ms\) needs a "
                                         r"latency predictor"):
        fit_to_budget("shufflenet", **SHAPE, limits={"latency": 2.0, "macs": 1e6})


def test_over_words_name_each_limit_with_its_unit_and_key():
    assert over_words(0.5, {"macs": 12345.0, "model_kb": 40.25}, {"macs": 10000.0, "model_kb": 32.0}) == (
        "even its thinnest variant (x0.5) is over the budget: macs 12.35K > budget.max_macs 10.00K, "
        "model_kb 40.2 KiB > budget.max_model_kb 32 KiB")
    # without the limits (a study whose config is not at hand): the values alone
    assert over_words(1 / 32, {"latency": 3.14159}) == (
        "even its thinnest variant (x0.0312) is over the budget: latency 3.14 ms (predicted)")


def test_analytic_limits_alone_need_no_predictor_and_report_the_thinnest_variant():
    fit = fit_baseline("mobilenet", **SHAPE, limits={"macs": 1000.0})
    thinnest = _variants("mobilenet")[-1]
    assert fit.arch is None and fit.width == 1 / 32
    assert fit.over == {"macs": arch_cost(thinnest).macs} and fit.values["latency"] is None
