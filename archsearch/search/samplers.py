"""The sampler and pruner a study runs with (:func:`make_sampler`, :func:`make_pruner`), tuned for per-trial storage
reads.

On an RDB storage every ``study.get_trials()`` is a round of SQL queries (about 4 ms on SQLite), and
a quickstart trial trains for only a second or two, so reads that Optuna repeats within one trial are a
visible share of the search. Optuna takes one snapshot of the study per trial (``ask`` and ``tell``
drop it; its samplers read it through a private call, :mod:`archsearch.study._optuna_internals`); :func:`trial_snapshot`
is that snapshot, and what else reads the study during a trial reads it there:

- TPE with ``constant_liar`` reads the study again for every independently sampled parameter (about
  ten per candidate of ``mixed.yaml``), because it must see the RUNNING trials of other workers. While
  no other trial runs there is nothing for the liar to do: :class:`ArchTPESampler` turns it on per
  trial, only when another trial is running as the trial starts, and otherwise samples from the
  snapshot.
- the median pruner reads the completed trials at every epoch. :class:`PerTrialPruner` reads them from
  the snapshot: trials completed by other workers while this one trains are seen from its next trial on.
- the objective's surplus and duplicate checks (``archsearch.search.objective``).

Both classes decide exactly as the Optuna classes they extend, given the trials they read.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Container
from typing import Any, cast

import optuna
from optuna.trial import FrozenTrial, TrialState

from archsearch.config.study_schema import PRUNERS, SAMPLERS, PrunerConfig, SamplerConfig
from archsearch.core.errors import ConfigError
from archsearch.study._optuna_internals import cached_trials, set_constant_liar

__all__ = ["ArchTPESampler", "PerTrialPruner", "trial_snapshot"]


def trial_snapshot(study: optuna.Study, states: Container[TrialState]) -> list[FrozenTrial]:
    """The study's trials in ``states`` as read once for the current trial (not copies: do not modify).

    Optuna's own per-trial snapshot, which its samplers share; read at the first call after ``ask``
    (in :meth:`ArchTPESampler.before_trial`, as the trial starts), dropped by ``ask`` and ``tell``.
    """
    return cached_trials(study, states)


class ArchTPESampler(optuna.samplers.TPESampler):
    """Multivariate TPE over the space's conditional parameters, its constant liar on only while other trials run.

    ``multivariate``: block choices interact (width x depth x kernel). ``group``: a stage's groups and kernel
    exist only for the families that use them, and the fourth stage only when its depth is not 0; plain
    multivariate TPE models only the parameters every trial has and samples the others one by one,
    independently. Grouped, every parameter is sampled jointly with those it appears with, which searched
    better on the quickstart and stopped repeating trained architectures (measurements: docs/design.md,
    "Why TPE samples the space's parameters jointly").
    """

    def __init__(self, *, seed: int | None = None) -> None:
        with warnings.catch_warnings():  # `group` is marked experimental (since Optuna 2.8, still in 5.0)
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            super().__init__(seed=seed, multivariate=True, group=True, constant_liar=True)

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        super().before_trial(study, trial)
        # the per-trial snapshot: the sampler reuses it when the liar is off, the objective and pruner always
        running = trial_snapshot(study, (TrialState.RUNNING,))
        set_constant_liar(self, any(t.number != trial.number for t in running))


class _CompletedSnapshot:
    """A study whose ``get_trials`` answers from trials read once; anything else goes to the study."""

    def __init__(self, study: optuna.Study, trials: list[FrozenTrial]):
        self._study = study
        self._trials = trials

    def get_trials(self, deepcopy: bool = True, states: Container[TrialState] | None = None) -> list[FrozenTrial]:
        trials = [t for t in self._trials if states is None or t.state in states]
        return copy.deepcopy(trials) if deepcopy else trials

    def __getattr__(self, name: str) -> Any:
        return getattr(self._study, name)


class PerTrialPruner(optuna.pruners.BasePruner):
    """``pruner``, with the study's finished trials taken from the trial's snapshot instead of read at every step.

    For pruners that look at other trials only through ``study.get_trials`` (median, percentile).
    """

    def __init__(self, pruner: optuna.pruners.BasePruner):
        self.pruner = pruner
        self._trial: int | None = None  # the number of the trial the snapshot was read for
        self._view: _CompletedSnapshot | None = None

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        if self._view is None or self._trial != trial.number or self._view._study is not study:
            finished = trial_snapshot(study, (TrialState.COMPLETE, TrialState.PRUNED))
            self._view = _CompletedSnapshot(study, finished)
            self._trial = trial.number
        # the snapshot stands in for the study: get_trials from it, the rest forwarded
        return self.pruner.prune(cast(optuna.Study, self._view), trial)


def make_sampler(cfg: SamplerConfig, *, multi_objective: bool) -> optuna.samplers.BaseSampler:
    """The sampler of ``cfg``.

    In Optuna 5 constraints are per trial (``trial.set_constraint``) and TPESampler, NSGAIISampler read
    them from ``FrozenTrial.constraints`` on their own; ``constraints_func`` is deprecated, so no flag is
    passed. All three samplers handle single- and multi-objective studies with the same arguments
    (multivariate TPE included), so ``multi_objective`` changes nothing today; callers pass it so that a
    sampler needing it later does not change this signature.
    """
    if cfg.type == "tpe":
        # multivariate TPE over grouped (conditional) parameters; its constant liar keeps parallel workers
        # from sampling around the same running trial, and is off while no other trial runs (samplers.py)
        return ArchTPESampler(seed=cfg.seed)
    if cfg.type == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=cfg.seed)
    if cfg.type == "random":
        return optuna.samplers.RandomSampler(seed=cfg.seed)
    raise ConfigError(f"expected one of {', '.join(map(repr, SAMPLERS))}, got {cfg.type!r}", key="sampler.type")


def make_pruner(cfg: PrunerConfig) -> optuna.pruners.BasePruner:
    """The pruner of ``cfg``; steps are epochs (a trial reports validation accuracy after each)."""
    if cfg.type == "median":
        # n_warmup_steps=1: the first epoch's accuracy says little about a candidate
        return PerTrialPruner(optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=1))
    if cfg.type == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource="auto", reduction_factor=3)
    if cfg.type == "none":
        return optuna.pruners.NopPruner()
    raise ConfigError(f"expected one of {', '.join(map(repr, PRUNERS))}, got {cfg.type!r}", key="pruner.type")


