"""The budget metrics, each declared once: its name, the study file's key for its limit, what the trial record
holds it in, its unit, how it is computed, and whether a soft objective may take it as its target.

The study file's ``budget`` section (:class:`archsearch.config.study_schema.Budget`), the budget fitting
(:mod:`archsearch.space.fit`), a trial's constraints (:mod:`archsearch.search.objective`), reachability, the summary,
the report, the export's selection and the command line read this table: a new metric is one row here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from archsearch.core.text import fmt_count
from archsearch.network.cost import FLOAT32_BYTES, Cost

__all__ = ["Costs", "Metric", "METRICS", "metric", "metric_values", "amount"]


@dataclass(frozen=True)
class Costs:
    """What a metric is computed from: a network's analytic cost (None where not known, e.g. in an older trial's
    record; the peak in float32 bytes, as :class:`~archsearch.network.cost.Cost` and the trial record hold it), its
    latency in ms (None: not measured or predicted) and the bytes a parameter and an activation take at the
    precision the budget counts them at (``model_precision``, ``activation_precision``)."""

    macs: float | None
    params: float | None
    peak_activation_bytes: float | None
    latency_ms: float | None = None
    bytes_per_param: int = 4
    bytes_per_activation: int = 4

    @classmethod
    def of(cls, cost: Cost, latency_ms: float | None = None, *, bytes_per_param: int = 4,
           bytes_per_activation: int = 4) -> Costs:
        return cls(cost.macs, cost.params, cost.peak_activation_bytes, latency_ms, bytes_per_param,
                   bytes_per_activation)


@dataclass(frozen=True)
class Metric:
    """One budget metric.

    ``name``: in constraints, limits and messages; ``key``: its limit in the study file's ``budget`` section;
    ``high``: the largest limit the file accepts (any limit is > 0); ``description``: the key's, in the schema;
    ``unit``: after a value in messages ("": a count, written 12.35K); ``words``: what a value counts, in a sentence
    (``{precision}``: the value of the budget key ``precision`` names, "float32" or "int8"); ``value``: the metric
    of a network's :class:`Costs` (None: not known); ``field``: the trial record's field that holds it, where one
    does; ``measured``: taken on the latency target (predicted, then measured), not computed from the analytic cost;
    ``soft``: a soft objective may take it as its target (then the limit is that target, not a limit);
    ``precision``: the study file's ``budget`` key that says what precision the metric counts bytes at, if any.
    """

    name: str
    key: str
    high: float
    description: str | None
    unit: str
    words: str
    value: Callable[[Costs], float | None]
    field: str | None = None
    measured: bool = False
    soft: bool = False
    precision: str | None = None


def _kib(n: float | None) -> float | None:
    return None if n is None else n / 1024


def _activation_kib(c: Costs) -> float | None:
    """The peak activations at the budget's precision: the record counts float32 (4 bytes), int8 is a quarter."""
    peak = c.peak_activation_bytes
    return _kib(None if peak is None else peak * c.bytes_per_activation / FLOAT32_BYTES)


METRICS: tuple[Metric, ...] = (
    Metric("macs", "max_macs", 1e15, "multiply-accumulates of one image (batch 1); YAML 1.1: write 3.0e+6, not 3e6",
           "", "MACs", lambda c: c.macs, field="macs", soft=True),
    Metric("params", "max_params", 1e12, None, "", "parameters", lambda c: c.params, field="params", soft=True),
    Metric("latency", "max_latency_ms", 1e7, "milliseconds per batch on `latency`'s target", " ms", "ms",
           lambda c: c.latency_ms, field="latency_ms", measured=True, soft=True),
    Metric("peak_kb", "max_peak_activation_kb", 1e9,
           "KiB of activations alive at once at batch 1, at activation_precision (the RAM a forward pass needs)",
           " KiB", "KiB of activations at {precision}", _activation_kib, precision="activation_precision"),
    Metric("model_kb", "max_model_kb", 1e9,
           "KiB of parameters at model_precision (the flash or disk that holds the weights)", " KiB",
           "KiB of {precision} weights", lambda c: _kib(None if c.params is None else c.params * c.bytes_per_param),
           precision="model_precision"),
)


def metric(name: str) -> Metric:
    """The metric called ``name``; KeyError naming the known ones."""
    for m in METRICS:
        if m.name == name:
            return m
    raise KeyError(f"no budget metric {name!r}; known: {[m.name for m in METRICS]}")


def metric_values(costs: Costs) -> dict[str, float | None]:
    """Every metric's value for ``costs``, by name (None: not known)."""
    return {m.name: m.value(costs) for m in METRICS}


def amount(name: str, value: float) -> str:
    """A metric's value as messages write it: ``12.35K`` (a count), ``2.5 ms``, ``40.2 KiB``."""
    unit = metric(name).unit
    return f"{value:.3g}{unit}" if unit else fmt_count(value)
