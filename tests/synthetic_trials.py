"""A study of made-up trials, for the report's tests and its benchmark (benchmarks/speed/report.py): imported as
``synthetic_trials`` by tests (``tests`` is on pytest's path), as ``tests.synthetic_trials`` by the benchmark."""

from __future__ import annotations

import inspect
import math
import random
from dataclasses import replace
from typing import Any

import optuna
from optuna.trial import TrialState

from archsearch.config.study_config import StudyConfig
from archsearch.network.arch import Arch
from archsearch.study.trial_record import TrialRecord

__all__ = ["add_synthetic_trials"]


def add_synthetic_trials(
    study: optuna.Study,
    config: StudyConfig,
    n: int,
    *,
    in_chs: int,
    resolution: int,
    num_classes: int,
    seed: int = 0,
    latency: bool = False,
) -> None:
    """Add ``n`` finished trials with the user attributes a real search writes, without training.

    Architectures are sampled from the study's space and costed for real (``arch_cost``); accuracy grows
    with log MACs plus noise; about 12% are pruned and 3% failed, over-budget ones are infeasible; the
    first three are the seed baselines fitted to the budget. ``latency`` measures each trained candidate
    for real (CPU, one thread, a few repeats).
    """
    from archsearch.latency.measure import measure_latency
    from archsearch.network.build import build
    from archsearch.network.cost import arch_cost
    from archsearch.space import baselines
    from archsearch.space.search_space import sample_architectures

    rng = random.Random(seed)
    quick: dict[str, Any] = {"warmup": 2, "repeats": 5}  # a few passes are enough for made-up trials
    if "min_seconds" in inspect.signature(measure_latency).parameters:
        quick["min_seconds"] = 0.0
    space = config.load_space()
    b = config.budget
    archs: list[tuple[str | None, Arch]] = []
    for name in baselines.FAMILIES:
        fitted = baselines.fit_to_budget(name, in_chs=in_chs, resolution=resolution, num_classes=num_classes,
                                         limits=b.limits(), bytes_per_param=b.bytes_per_param,
                                         bytes_per_activation=b.bytes_per_activation)
        if fitted is not None:
            archs.append((name, fitted))
    archs += [(None, a) for a in sample_architectures(space, max(0, n - len(archs)), in_chs=in_chs,
                                                      resolution=resolution, num_classes=num_classes, seed=seed)]
    costs = [arch_cost(a) for _, a in archs]
    lo = math.log10(min(c.macs for c in costs))
    span = max(1e-9, math.log10(max(c.macs for c in costs)) - lo)
    multi = len(study.directions) > 1
    first = len(study.get_trials(deepcopy=False))
    seen: dict[str, tuple[int, float]] = {}  # arch id -> (trial number, accuracy): a resampled one is a duplicate
    trials = []
    for number, ((family, arch), cost) in enumerate(zip(archs[:n], costs, strict=False), start=first):
        record = TrialRecord(
            arch=arch.to_dict(), arch_id=arch.id, macs=cost.macs, params=cost.params,
            peak_activation_bytes=cost.peak_activation_bytes, worker="synthetic:0:0",
            seconds=rng.uniform(0.2, 3.0), baseline=family,
        )
        constraints = {m: v / limit - 1.0 for m, v in (("macs", cost.macs), ("params", cost.params))
                       if (limit := b.limit(m)) is not None}
        feasible = not any(c > 0 for c in constraints.values())
        record = replace(record, feasible=feasible)
        acc = min(0.99, max(0.05, 0.6 + 0.3 * (math.log10(cost.macs) - lo) / span + rng.gauss(0, 0.04)))
        roll = rng.random()
        if feasible and arch.id in seen:  # the objective reuses the earlier result and trains nothing
            earlier, acc = seen[arch.id]
            record = replace(record, duplicate_of=earlier)
            roll = 1.0
        elif feasible:
            seen[arch.id] = (number, acc)
        if feasible and latency:
            shape = (arch.in_chs, arch.resolution, arch.resolution)
            record = replace(record, latency_ms=measure_latency(build(arch), shape, **quick).median_ms)
        if not feasible:
            state, values = TrialState.COMPLETE, ([0.0, float(cost.macs)] if multi else [0.0])
        elif family is None and roll < 0.03:
            state, values = TrialState.FAIL, None
            record = replace(record, error="TrainingDiverged: training loss is not finite (nan) in epoch 1/6")
        elif family is None and roll < 0.2 and not multi:
            state, values = TrialState.PRUNED, None
            record = replace(record, val_accuracy=acc - 0.15, epochs_done=1)
        else:
            state, values = TrialState.COMPLETE, ([acc, float(cost.macs)] if multi else [acc])
            record = replace(record, val_accuracy=acc, epochs_done=config.training.epochs)
        intermediate = {0: record.val_accuracy} if record.val_accuracy is not None else {}
        trials.append(optuna.trial.create_trial(state=state, values=values, user_attrs=record.attrs(),
                                                intermediate_values=intermediate, constraints=constraints))
    study.add_trials(trials)
