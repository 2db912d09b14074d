"""Which trials an export takes: one by number, the best feasible one (by the re-rank where it ran), or the
Pareto front, and the error that says why there is none; and :func:`retrain`, which trains a chosen one again."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import torch
from optuna.trial import FrozenTrial, TrialState

from archsearch.config.budgets import budget_excess
from archsearch.config.recipe import TrainConfig
from archsearch.config.storage_url import redact
from archsearch.config.study_config import StudyConfig
from archsearch.core.class_metrics import ClassMetrics, confusion
from archsearch.core.errors import ConfigError
from archsearch.data.bundle import DataBundle
from archsearch.export.metrics import DatasetInfo, ExportMetrics, SplitMetrics
from archsearch.network.arch import Arch
from archsearch.network.build import Net
from archsearch.network.metrics import Costs, metric_values
from archsearch.study.best import best_trials, pareto_front
from archsearch.study.trial_record import ARCH_ATTR, TrialRecord
from archsearch.training.evaluate import Split, evaluate
from archsearch.training.predict import predict
from archsearch.training.train import TrainResult, resolve_device

__all__ = ["select_trials", "retrain", "retrain_record"]


def _relative_excess(t: FrozenTrial, config: StudyConfig) -> dict[str, float]:
    """Per budgeted metric, value / limit - 1 (the trial's stored constraints, else from its attributes)."""
    if t.constraints:
        return dict(t.constraints)
    return budget_excess(config, _values(TrialRecord.of(t), config))


def _values(r: TrialRecord, config: StudyConfig) -> dict[str, float | None]:
    """The trial's budget metrics, from its record (None: not recorded)."""
    b = config.budget
    return metric_values(Costs(r.macs, r.params, r.peak_activation_bytes, r.latency_ms, b.bytes_per_param,
                               b.bytes_per_activation))


def _no_feasible(study: optuna.Study, config: StudyConfig) -> ConfigError:
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    where = f"study {study.study_name!r} ({redact(config.storage)})"
    if not complete:
        return ConfigError(f"{where} has no complete trial yet; run `archsearch search {config.source or ''}` first",
                           path=config.source)
    scored = []
    for t in complete:
        excess = _relative_excess(t, config)
        if excess:
            metric = max(excess, key=excess.__getitem__)
            scored.append((excess[metric], t.number, metric, t))
    text = f"no feasible trial in {where}: none of its {len(complete)} complete trial(s) fits the budget " \
           f"({config.budget.describe()})"
    if scored:
        worst, number, metric, t = min(scored, key=lambda s: (s[0], s[1]))
        limit = config.budget.limit(metric)
        r = TrialRecord.of(t)
        value = _values(r, config).get(metric)
        words = config.budget.words(metric)
        shown = f"{value:,g} {words}" if value is not None else metric
        text += (f"; the nearest is trial {number} ({r.arch_id or '?'}) with {shown}, "
                 f"{100 * worst:.3g}% over the limit of {limit:,g}. Raise the budget or run more trials; "
                 f"`--trial {number}` exports it anyway")
    return ConfigError(text, path=config.source, key="budget")


def select_trials(
    study: optuna.Study, config: StudyConfig, *, trial: int | None = None, pareto: bool = False
) -> list[FrozenTrial]:
    """The trials to export: ``trial``, the Pareto front (``pareto``) or the best feasible trial.

    The front is the study's own for a two-objective study, else validation accuracy against MACs over the
    feasible complete trials. A pruned, failed or unfinished ``trial`` is an error (it has no final
    accuracy); an infeasible one is exported when asked for by number.
    """
    if trial is not None and pareto:
        raise ConfigError("give either a trial number or pareto, not both")
    if trial is not None:
        trials = study.get_trials(deepcopy=False)
        found = [t for t in trials if t.number == trial]
        if not found:
            last = max((t.number for t in trials), default=None)
            span = "it has no trials" if last is None else f"its trials are numbered 0 to {last}"
            raise ConfigError(f"study {study.study_name!r} has no trial {trial}; {span}", path=config.source)
        t = found[0]
        r = TrialRecord.of(t)
        if t.state != TrialState.COMPLETE:
            epochs = "?" if r.epochs_done is None else r.epochs_done
            why = {
                TrialState.PRUNED: f"was pruned after {epochs} epoch(s): the search "
                                   f"stopped it as unpromising, so it has no final accuracy",
                TrialState.FAIL: f"failed ({'no error recorded' if r.error is None else r.error})",
            }.get(t.state, f"is {t.state.name} (not finished)")
            raise ConfigError(f"trial {trial} {why}; only complete trials can be exported", path=config.source)
        if r.arch is None:
            raise ConfigError(f"trial {trial} has no {ARCH_ATTR!r} user attribute: not an archsearch trial",
                              path=config.source)
        return [t]
    front = best_trials(study, config)
    if not front:
        raise _no_feasible(study, config)
    if pareto:
        if len(study.directions) == 1:
            done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                    if not (r := TrialRecord.of(t)).infeasible and r.val_accuracy is not None]
            front = pareto_front(done, "macs")
        return sorted(front, key=lambda t: t.number)
    return [max(front, key=lambda t: (t.values[0], -t.number))]


def retrain(
    arch: Arch, config: StudyConfig, data: DataBundle, *, epochs: int | None = None, device: torch.device | None = None,
    checkpoint: Path | None = None, on_epoch: Callable[[int, float], None] | None = None,
) -> tuple[Net, dict[str, Any]]:
    """:func:`retrain_record`, with what was measured as metrics.json holds it (its ``to_json()``)."""
    model, measured = retrain_record(arch, config, data, epochs=epochs, device=device, checkpoint=checkpoint,
                                     on_epoch=on_epoch)
    return model, measured.to_json()


def retrain_record(
    arch: Arch, config: StudyConfig, data: DataBundle, *, epochs: int | None = None, device: torch.device | None = None,
    checkpoint: Path | None = None, on_epoch: Callable[[int, float], None] | None = None,
) -> tuple[Net, ExportMetrics]:
    """Train ``arch`` from scratch with the study's recipe; returns the model (eval mode) and what was measured
    (the retrain's fields of the export's metrics: ``retrained`` to ``dataset``).

    Without ``epochs``: the search's recipe on the training split, scored on the validation split. With
    ``epochs``: that many epochs on training + validation (the whole training data, no subset, no time cap).
    The test split is measured in both cases; nothing during training depends on it. With ``checkpoint``,
    the training saves its state there after each epoch and resumes from it (:func:`archsearch.training.train.train`).
    ``on_epoch(epoch, accuracy)`` is called after each epoch trained (the accuracy on what the training scores).
    """
    device = resolve_device(config.device) if device is None else device
    data = data.resized(arch.resolution).to(device)
    # the initial weights from the recipe's seed, as the search drew them, whatever this process drew before:
    # with the search's recipe and thread count the trial's accuracy comes back
    recipe = config.training
    has_test = len(data.y_test) > 0
    if epochs is None:
        x, y = data.x_train, data.y_train
        model, result = _evaluate(arch, Split.of(data), recipe, device=device, checkpoint=checkpoint,
                                  on_epoch=on_epoch)
        measured = ExportMetrics(retrained="train", val_accuracy=result.val_accuracy,
                                 val=_class_metrics(result.val_confusion, data.classes))
    else:
        if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
            raise ConfigError(f"epochs must be an int >= 1, got {epochs!r}")
        recipe = dataclasses.replace(recipe, epochs=epochs, steps=None, train_subset=None, seconds=None)
        x, y = torch.cat((data.x_train, data.x_val)), torch.cat((data.y_train, data.y_val))
        # train() scores an eval set after each epoch: the test split, which only reports (nothing is chosen on it)
        x_eval, y_eval = (data.x_test, data.y_test) if has_test else (data.x_val, data.y_val)
        model, result = _evaluate(arch, Split(x, y, x_eval, y_eval, data.preprocess()), recipe, device=device,
                                  checkpoint=checkpoint, on_epoch=on_epoch)
        measured = ExportMetrics(retrained="train+val", val_accuracy=None, val=None)
    per_class = None
    if has_test:
        predicted = predict(model, data.x_test, data.y_test, batch_size=recipe.eval_batch_size, device=device,
                            preprocess=data.preprocess())
        per_class = SplitMetrics.of_metrics(ClassMetrics.from_matrix(
            confusion(data.y_test.cpu(), predicted, arch.num_classes), data.classes or None))
    measured = measured.replace(
        test_accuracy=None if per_class is None else per_class.accuracy,
        test=per_class,
        trained_on=min(len(y), recipe.train_subset or len(y)),  # images trained on (train() takes a subset)
        epochs=result.epochs_done,
        train_seconds=result.train_seconds,
        resumed_epochs=result.resumed_epochs,
        training=dataclasses.asdict(recipe),
        dataset=DatasetInfo(name=data.name, resolution=data.resolution, in_chs=data.in_chs,
                            n_train=len(data.y_train), n_val=len(data.y_val), n_test=len(data.y_test),
                            skipped_files=[path for path, _ in data.skipped_files]),
    )
    return model.cpu().eval(), measured


def _evaluate(arch: Arch, split: Split, recipe: TrainConfig, **options: Any) -> tuple[Net, TrainResult]:
    """:func:`~archsearch.training.evaluate.evaluate` of a network :func:`~archsearch.network.build.build` makes."""
    evaluation = evaluate(arch, split, recipe, **options)
    assert isinstance(evaluation.model, Net)  # built from arch
    return evaluation.model, evaluation.result


def _class_metrics(matrix: list[list[int]] | None, classes: tuple[str, ...] | None) -> SplitMetrics | None:
    """metrics.json's per-class figures of one split (:class:`~archsearch.core.class_metrics.ClassMetrics`)."""
    if matrix is None:
        return None
    return SplitMetrics.of_metrics(ClassMetrics.from_matrix(matrix, classes or None))
