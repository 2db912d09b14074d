"""One trial: sample -> fit to the budget -> analytic cost -> (over budget: infeasible, nothing built) -> build
-> train -> score."""

from __future__ import annotations

import gc
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import optuna
import torch
from optuna.trial import FrozenTrial

from archsearch.config.budgets import budget_excess
from archsearch.config.recipe import planned_epochs
from archsearch.config.study_config import StudyConfig
from archsearch.core import interrupt
from archsearch.data.bundle import DataBundle
from archsearch.latency.table import LatencyTable
from archsearch.network.arch import Arch
from archsearch.network.build import build
from archsearch.network.cost import Cost, arch_cost
from archsearch.network.metrics import Costs, metric_values
from archsearch.search import scoring
from archsearch.search.reachable import latency_table_of
from archsearch.search.recovery import gives_way
from archsearch.search.samplers import trial_snapshot
from archsearch.space.fit import Fit, budget_use, fit_shape
from archsearch.space.search_space import Space, suggest_architecture, suggest_shape
from archsearch.study.trial_record import TrialRecord, fit_attr
from archsearch.study.trial_states import COUNTED_STATES, counts
from archsearch.study.worker_identity import worker_id
from archsearch.training.checkpoint import LearningCurve
from archsearch.training.evaluate import Split, evaluate
from archsearch.training.train import TrainResult, train

__all__ = ["Objective", "SurplusTrial"]


class SurplusTrial(RuntimeError):
    """A trial started by a worker while the study's last trials were already taken by others."""


class Objective:
    """The callable given to ``study.optimize``.

    ``trainer`` is the training function (``archsearch.training.train.train`` by default); it is a parameter so
    that callers can wrap it, e.g. to count how often a search trains.
    """

    def __init__(
        self,
        config: StudyConfig,
        space: Space,
        data: DataBundle,
        *,
        device: torch.device,
        trainer: Callable[..., TrainResult] = train,
        target: int | None = None,
    ):
        self.config = config
        self.target = target  # the study's n_trials: a trial beyond them is surplus (parallel workers)
        self.space = space
        self.data = data
        self.device = device
        self.trainer = trainer
        self._resized: dict[int, DataBundle] = {data.resolution: data}
        self._latency_table: LatencyTable | None = None
        self.last_trial: int | None = None  # the number of the trial this objective ran last

    # -- the pieces ------------------------------------------------------------------------------

    def architecture(self, trial: optuna.Trial) -> tuple[Arch, Fit | None]:
        """The trial's record; with budget fitting, also how it was fitted (None for a fixed record)."""
        fixed = TrialRecord.of(trial)
        if fixed.arch is not None:  # an enqueued baseline (or a retried trial) carries its record
            return fixed.architecture(), None
        shape_of = {"in_chs": self.data.in_chs, "resolution": self.data.resolution,
                    "num_classes": self.data.num_classes}
        if not self.config.budget.fit:
            return suggest_architecture(trial, self.space, **shape_of), None
        shape = suggest_shape(trial, self.space, **shape_of)
        limits = self.limits()
        predict = self.latency_table().predict if "latency" in limits else None
        fit = fit_shape(shape, limits, low=min(self.space.width_mult), high=max(self.space.width_mult),
                        latency=predict, bytes_per_param=self.config.budget.bytes_per_param,
                        bytes_per_activation=self.config.budget.bytes_per_activation)
        return fit.arch, fit

    def limits(self) -> dict[str, float]:
        """What a candidate's ``budget_use`` is measured against, and fitted to: every limit of the budget,
        the soft reward's target included."""
        return self.config.budget.limits()

    def values(self, cost: Cost, latency_ms: float | None) -> dict[str, float | None]:
        b = self.config.budget
        return metric_values(Costs.of(cost, latency_ms, bytes_per_param=b.bytes_per_param,
                                      bytes_per_activation=b.bytes_per_activation))

    def constraints(self, cost: Cost, latency_ms: float | None) -> dict[str, float]:
        return budget_excess(self.config, self.values(cost, latency_ms))

    def needs_latency(self) -> bool:
        return self.config.budget.limit("latency") is not None or self.scores_latency()

    def scores_latency(self) -> bool:
        """Whether latency is part of the score (soft reward or Pareto), so even an infeasible trial needs it."""
        o = self.config.objective
        return {"soft": o.soft_metric, "pareto": o.pareto_metric}.get(o.type) == "latency"

    def latency_table(self) -> LatencyTable:
        """The lookup table of the budget's latency target, in ``latency/`` beside the study YAML."""
        if self._latency_table is None:
            self._latency_table = latency_table_of(self.config)
        return self._latency_table

    def score(self, accuracy: float, cost: Cost, latency_ms: float | None,
              **figures: float | None) -> float | tuple[float, float]:
        """A candidate's value (:func:`archsearch.search.scoring.score`; ``figures``: its keyword figures)."""
        return scoring.score(self.config, accuracy, cost, latency_ms, **figures)

    def class_figures(self) -> bool:
        """Whether a training computes the per-class figures after each epoch: where the score is built from them."""
        return self.config.objective.score in ("balanced_accuracy", "macro_f1")

    def build(self, arch: Arch, *, seed: int | None = None) -> torch.nn.Module:
        """The candidate's network, its initial weights drawn from ``seed`` (None: the recipe's seed).

        Seeded here, not only in the trainer, so that a candidate starts from the same weights however
        many trials ran before it in this process (a resumed study, another worker).
        """
        torch.manual_seed(self.config.training.seed if seed is None else seed)
        return build(arch)

    def data_for(self, resolution: int) -> DataBundle:
        if resolution not in self._resized:
            self._resized[resolution] = self.data.resized(resolution)
        return self._resized[resolution]

    def is_surplus(self, trial: optuna.Trial, taken: list[optuna.trial.FrozenTrial]) -> bool:
        """Whether ``n_trials`` trials numbered before this one are finished or running.

        ``taken``: the study's finished and running trials (over-budget ones do not count). Workers check
        the count before they ask for a trial, but two can ask at the same instant; the later-numbered one
        then gives way (recorded as failed, not counted), so the study ends with exactly ``n_trials``
        networks trained unless one of those running fails.
        """
        assert self.target is not None  # asked only of an objective with a target
        return sum(t.number < trial.number and counts(t) for t in taken) >= self.target

    @staticmethod
    def earlier_result(taken: list[optuna.trial.FrozenTrial], arch_id: str) -> optuna.trial.FrozenTrial | None:
        """A finished trial among ``taken`` that trained the architecture ``arch_id``, if any."""
        for t in taken:
            record = TrialRecord.of(t)
            if t.state in COUNTED_STATES and record.arch_id == arch_id and record.val_accuracy is not None:
                return t
        return None

    # -- the trial -------------------------------------------------------------------------------

    def __call__(self, trial: optuna.Trial) -> float | tuple[float, float]:
        self.last_trial = trial.number
        try:
            return self._run(trial)
        except KeyboardInterrupt:
            # Optuna records the trial as FAIL; marked, it is no verdict and the next start queues it again
            # (archsearch/search/recovery.py)
            TrialRecord(interrupted=True).write(trial)
            raise

    def _run(self, trial: optuna.Trial) -> float | tuple[float, float]:
        interrupt.check()
        t0 = time.perf_counter()
        TrialRecord(worker=worker_id()).write(trial)
        # the trial's snapshot of the study (read as it started, shared with the sampler) serves both checks
        taken = trial_snapshot(trial.study, (*COUNTED_STATES, optuna.trial.TrialState.RUNNING))
        self._give_way_if_surplus(trial, taken)
        candidate = self._candidate(trial)
        if not self._within_budget(trial, candidate):
            # over budget: recorded, never built for training; the sampler learns from the constraint
            TrialRecord(seconds=time.perf_counter() - t0).write(trial)
            # never trained: the worst accuracy, or the worst loss (-inf) where the value is built from the loss
            return self.score(0.0, candidate.cost, candidate.latency_ms, val_loss=math.inf, balanced_accuracy=0.0,
                              macro_f1=0.0)
        earlier = self.earlier_result(taken, candidate.arch.id)
        if earlier is not None:
            return self._reuse(trial, earlier, t0)
        result, curve = self._train(trial, candidate, t0)
        self._record_result(trial, result, curve)
        return self.score(result.val_accuracy, candidate.cost, candidate.latency_ms, **curve.last())

    # -- the trial's steps, in order -------------------------------------------------------------

    def _give_way_if_surplus(self, trial: optuna.Trial, taken: list[FrozenTrial]) -> None:
        """Raise :class:`SurplusTrial` (marked ``surplus``) where the study's last trials are taken by others, or
        an earlier trial runs the same queued baseline or retry."""
        if self.target is not None and self.is_surplus(trial, taken):
            TrialRecord(surplus=True).write(trial)
            raise SurplusTrial(f"the study already has {self.target} trials finished or running before this one")
        queued = TrialRecord.of(trial)
        if queued.baseline is not None or queued.retry_of is not None:
            runner = gives_way(trial)
            if runner is not None:  # two starts queued this at once: the earlier trial runs it
                TrialRecord(surplus=True).write(trial)
                raise SurplusTrial(f"trial {runner} runs the same queued candidate")

    def _candidate(self, trial: optuna.Trial) -> _Candidate:
        """The trial's record (sampled and fitted, or queued) and its analytic cost, both recorded."""
        arch, fit = self.architecture(trial)
        cost = arch_cost(arch)
        TrialRecord(arch=arch.to_dict(), fit=None if fit is None else fit_attr(fit), arch_id=arch.id, macs=cost.macs,
                    params=cost.params, peak_activation_bytes=cost.peak_activation_bytes).write(trial)
        return _Candidate(arch, cost)

    def _within_budget(self, trial: optuna.Trial, candidate: _Candidate) -> bool:
        """Whether the candidate is within the budget: its analytic cost, then its latency where the budget or
        the score needs it. Records the constraints (what the sampler learns from), ``budget_use`` and
        ``feasible``."""
        constraints = self.constraints(candidate.cost, None)
        if self.needs_latency() and (_within(constraints) or self.scores_latency()):
            constraints = self._latency(trial, candidate)
        feasible = _within(constraints)
        for metric, excess in constraints.items():
            trial.set_constraint(metric, excess)
        use = budget_use(self.values(candidate.cost, candidate.latency_ms), self.limits())
        TrialRecord(budget_use=use, feasible=feasible).write(trial)  # budget_use: where a limit is known
        return feasible

    def _latency(self, trial: optuna.Trial, candidate: _Candidate) -> dict[str, float]:
        """The candidate's latency, recorded (``candidate.latency_ms``), and the constraints it gives."""
        arch = candidate.arch
        # the table's prediction first: an over-latency candidate is rejected without being built
        candidate.latency_ms = self.latency_table().predict(arch)
        runtime = self.config.budget.latency.runtime
        TrialRecord(latency_pred_ms=candidate.latency_ms, latency_runtime=runtime).write(trial)
        constraints = self.constraints(candidate.cost, candidate.latency_ms)
        if _within(constraints):
            # predicted within budget: the built network's measured latency decides, and is scored;
            # measured at the table's speed (archsearch/latency/table.py), the wall time as timed beside it
            candidate.model = self.build(arch)
            lat, timed = self.latency_table().measure(candidate.model, (arch.in_chs, arch.resolution, arch.resolution))
            candidate.latency_ms = lat.median_ms
            TrialRecord(latency_ms=candidate.latency_ms, latency_p90_ms=lat.p90_ms,
                        latency_timed_ms=timed.median_ms).write(trial)
            constraints = self.constraints(candidate.cost, candidate.latency_ms)
        return constraints

    @staticmethod
    def _reuse(trial: optuna.Trial, earlier: FrozenTrial, t0: float) -> float | tuple[float, float]:
        """The sampler proposed an architecture already trained: reuse its result, train nothing."""
        e = TrialRecord.of(earlier)
        TrialRecord(duplicate_of=earlier.number, val_accuracy=e.val_accuracy, val_confusion=e.val_confusion,
                    epochs_done=e.epochs_done, latency_ms=e.latency_ms,
                    seconds=time.perf_counter() - t0).write(trial)  # those known
        if earlier.state == optuna.trial.TrialState.PRUNED:
            raise optuna.TrialPruned(f"same architecture as pruned trial {earlier.number}")
        return earlier.values[0] if len(earlier.values) == 1 else tuple(earlier.values)

    def _train(self, trial: optuna.Trial, candidate: _Candidate, t0: float) -> tuple[TrainResult, LearningCurve]:
        """Train the candidate (the network built for its latency, or built now), pruned by the study's pruner; a
        failure is recorded as the trial's ``error``, the time as ``seconds`` however it ends."""
        data = self.data_for(candidate.arch.resolution)
        model = candidate.model if candidate.model is not None else self.build(candidate.arch)
        candidate.model = None  # held here only, so that an out-of-memory below frees it
        curve = LearningCurve()  # filled as the training runs: a pruned trial keeps its curve too
        on_epoch = self._pruning(trial, curve, planned_epochs(self.config.training, len(data.y_train)))
        try:
            return evaluate(candidate.arch, Split.of(data), self.config.training, device=self.device,
                            on_epoch=on_epoch, model=model, curve=curve, trainer=self.trainer,
                            class_figures=self.class_figures()).result, curve
        except optuna.TrialPruned:
            raise
        except torch.cuda.OutOfMemoryError as e:
            # free what the failed trial held so the next candidate starts with an empty cache
            del model
            gc.collect()
            torch.cuda.empty_cache()
            TrialRecord(error=f"CUDA out of memory: {str(e).splitlines()[0]}").write(trial)
            raise
        except Exception as e:
            TrialRecord(error=f"{type(e).__name__}: {e}").write(trial)
            raise
        finally:
            TrialRecord(seconds=time.perf_counter() - t0).write(trial)

    def _pruning(self, trial: optuna.Trial, curve: LearningCurve, epochs: int) -> Callable[[int, float], None]:
        """The trainer's per-epoch callback: reports to the pruner (single objective only) what the value is built
        from (:func:`~archsearch.search.scoring.measured`; other figures than the accuracy are read from ``curve``,
        which the trainer fills first) and, pruned, records how far the trial got before it raises
        ``TrialPruned``. ``epochs``: how many the training runs."""
        prune = not self.config.objective.multi_objective
        score = self.config.objective.score
        last_epoch = epochs - 1

        def on_epoch(epoch: int, accuracy: float) -> None:
            if prune:
                measured = scoring.measured(self.config.objective, accuracy, **curve.last())
                trial.report(measured, epoch)
                # after the last epoch stopping saves nothing: the trained candidate completes with its value
                if epoch < last_epoch and trial.should_prune():
                    TrialRecord(epochs_done=epoch + 1, val_accuracy=accuracy, curve=curve.to_dict()).write(trial)
                    at = {"val_accuracy": f"accuracy {accuracy:.4f}", "val_loss": f"validation loss {-measured:.4f}",
                          }.get(score, f"{score.replace('_', ' ')} {measured:.4f}")
                    raise optuna.TrialPruned(f"pruned after epoch {epoch + 1} at {at}")

        return on_epoch

    def _record_result(self, trial: optuna.Trial, result: TrainResult, curve: LearningCurve) -> None:
        matrix = result.val_confusion
        confusion = None if matrix is None else {"classes": list(self.data.classes), "matrix": matrix}
        TrialRecord(val_accuracy=result.val_accuracy, epochs_done=result.epochs_done, curve=curve.to_dict(),
                    val_confusion=confusion, train_seconds=result.train_seconds,
                    compute_seconds=result.compute_seconds).write(trial)


@dataclass
class _Candidate:
    """What a trial's steps learn of its candidate."""

    arch: Arch
    cost: Cost
    latency_ms: float | None = None  # predicted, then measured where the prediction is within the budget
    model: torch.nn.Module | None = None  # built once: to measure its latency, then to train it


def _within(constraints: dict[str, float]) -> bool:
    return not any(c > 0 for c in constraints.values())
