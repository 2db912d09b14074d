"""The search's last step: its top candidates trained again with a longer recipe, the best chosen by that.

A search scores each candidate with a brief proxy recipe, and a brief recipe favours networks that
converge fast; the search's best can also be a lucky short run. With ``rerank: {top: k, epochs: E}`` in
the study YAML, the ``k`` best feasible candidates (one per architecture) are trained again from scratch
with the study's recipe at ``E`` epochs (``train_subset`` images, None: all), scored on the same
validation split, and the summary and ``archsearch export`` pick the best by that score. The seed
baselines are trained again too, so that searched and hand-designed networks compare at one fidelity.

With ``folds: k`` a candidate is scored by k-fold cross-validation instead: the search's training and
validation images are pooled and split into k folds, each class spread evenly over them (drawn from the
recipe's seed); the candidate is trained k times, fold i held out and its initial weights and batches drawn
from the recipe's seed + i, and scored by the mean of the k held-out accuracies. Every pooled image is then
scored once, so on a small dataset the choice rests on k times as many validation images as the search's
own, and on k initial seeds instead of one: what a single small validation split cannot give (the winner's
curse of choosing among many candidates on a few hundred images). It costs k trainings a candidate, each on
(k - 1)/k of the pool. The normalization stays the search's (the training split's mean and std). In the
quickstart, 5 folds picked networks no better on the test split than the single split did (docs/results.md:
Re-rank on the quickstart).

Optuna freezes a finished trial, so each result is a study user attribute ``archsearch.rerank.<trial number>``
(:data:`archsearch.study.study_record.RERANK_PREFIX`): ``{"val_accuracy", "value", "epochs", "seconds",
"recipe"}``, with
``"folds"`` (the k held-out accuracies) under cross-validation. A result counts only while its recipe is
the config's, so changing ``rerank`` re-ranks again. Before a worker trains a candidate it writes a claim
(``{"worker", "recipe"}``), and under cross-validation the claim keeps each fold's result as it finishes
(``"done"``), so a candidate taken over after a crash trains only its missing folds. Other workers skip
candidates claimed by a live worker, and a claim left by a dead worker on this host is taken over. A claim
by a worker on another host is left to that host: ``archsearch search`` there completes it.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

import optuna
import torch
from optuna.trial import FrozenTrial, TrialState

from archsearch.config.study_config import StudyConfig
from archsearch.core.errors import ConfigError
from archsearch.network.arch import Arch
from archsearch.network.cost import arch_cost
from archsearch.search.objective import Objective
from archsearch.study.rerank_results import PREFIX, finished, recipe, recipe_key, results, section, standard_error
from archsearch.study.trial_record import TrialRecord
from archsearch.study.worker_identity import worker_alive, worker_id
from archsearch.training.checkpoint import LearningCurve
from archsearch.training.evaluate import Split, evaluate

__all__ = ["candidates", "rerank", "pending", "fold_indices"]


def fold_indices(y: torch.Tensor, k: int, seed: int) -> list[torch.Tensor]:
    """``k`` disjoint sorted index sets that together cover ``range(len(y))``, stratified: each class's images,
    in an order drawn from ``seed``, are dealt to the folds in turn, continuing from one class to the next, so
    fold sizes differ by at most one and each class's counts by at most one."""
    g = torch.Generator().manual_seed(seed)
    folds: list[list[int]] = [[] for _ in range(k)]
    dealt = 0
    for c in torch.unique(y).tolist():
        idx = torch.nonzero(y == c).flatten()
        for j, i in enumerate(idx[torch.randperm(len(idx), generator=g)].tolist()):
            folds[(dealt + j) % k].append(i)
        dealt += len(idx)
    return [torch.tensor(sorted(f), dtype=torch.long) for f in folds]


def candidates(study: optuna.Study, top: int) -> list[FrozenTrial]:
    """The ``top`` feasible complete searched trials by search score, one per architecture, best first, then
    the feasible seed baselines (so that the summary compares searched and hand-designed at one fidelity)."""
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    records = {t.number: TrialRecord.of(t) for t in complete}
    done = [t for t in complete
            if not (r := records[t.number]).infeasible and t.values is not None and r.arch is not None
            and r.duplicate_of is None]
    done.sort(key=lambda t: (-t.values[0], t.number))
    searched: list[FrozenTrial] = []
    seen: set[str | None] = set()
    for t in done:
        arch_id = records[t.number].arch_id
        if records[t.number].baseline is not None or arch_id in seen or len(searched) == top:
            continue
        seen.add(arch_id)
        searched.append(t)
    return searched + sorted((t for t in done if records[t.number].baseline is not None), key=lambda t: t.number)


def pending(study: optuna.Study, config: StudyConfig) -> bool:
    """Whether a worker still trains a candidate for the config's re-rank (a live worker's claim without a result).

    The claim of a worker known to be dead (killed while it trained) is not pending: nobody will finish it, and
    the next re-rank takes the candidate over if it is still among the top.
    """
    if config.rerank is None:
        return False
    want = recipe_key(config)
    return any(isinstance(v, dict) and v.get("recipe") == want and not finished(v, want)
               and worker_alive(v.get("worker", "")) is not False
               for k, v in study.user_attrs.items() if k.startswith(PREFIX))


def _claimed_elsewhere(value: object, want: dict) -> bool:
    """Whether ``value`` (a study attribute) is another live worker's claim on the same recipe."""
    if not isinstance(value, dict) or value.get("recipe") != want or finished(value, want):
        return False
    return worker_alive(value.get("worker", "")) is not False and value.get("worker") != worker_id()


def rerank(study: optuna.Study, config: StudyConfig, objective: Objective,
           *, say: Callable[[str], None] = lambda text: None) -> dict[int, dict]:
    """Train the top candidates that have no result yet with the re-rank recipe; returns every result."""
    if config.rerank is None or config.objective.multi_objective:
        return {}
    want = recipe_key(config)
    train_cfg = recipe(config)
    top = candidates(study, config.rerank.top)
    for t in top:
        key = f"{PREFIX}{t.number}"
        current = study.user_attrs.get(key)  # read again: another worker may have finished or claimed it
        if finished(current, want):
            continue
        if _claimed_elsewhere(current, want):
            continue
        rec = TrialRecord.of(t)
        arch = rec.architecture()
        if config.rerank.folds:
            # a dead worker's claim on this recipe keeps the folds it finished
            done = list(current.get("done", [])) if isinstance(current, dict) and current.get("recipe") == want else []
            accuracy, epochs, seconds, folds, figures = _cross_validate(study, key, want, config, objective, arch,
                                                                         done)
            mean = {name: None if values is None else sum(values) / len(values) for name, values in figures.items()}
        else:
            study.set_user_attr(key, {"worker": worker_id(), "recipe": want})
            data = objective.data_for(arch.resolution)
            t0 = time.perf_counter()
            result = evaluate(arch, Split.of(data), train_cfg, device=objective.device, trainer=objective.trainer,
                              class_figures=objective.class_figures()).result
            accuracy, epochs, seconds, folds = result.val_accuracy, result.epochs_done, time.perf_counter() - t0, None
            mean, figures = result.curve.last(), {}
        # the search's score (objective.score); under folds the mean of the folds' values (one training: one value;
        # a pareto study has no re-rank, so the value is one number)
        cost = arch_cost(arch)
        value = objective.score(accuracy, cost, rec.latency_ms, **mean)
        assert not isinstance(value, tuple)  # one objective: a re-rank is refused for pareto
        record: dict = {"val_accuracy": accuracy, "value": value, "epochs": epochs, "seconds": seconds, "recipe": want}
        se = None
        if folds is not None:  # each fold's own value: their spread is the score's noise
            per_fold = [{name: None if values is None else values[i] for name, values in figures.items()}
                        for i in range(len(folds))]
            fold_values = [float(objective.score(a, cost, rec.latency_ms, **f))  # type: ignore[arg-type]
                           for a, f in zip(folds, per_fold, strict=True)]
            record.update(folds=folds, fold_values=fold_values)
            se = standard_error(fold_values)
        study.set_user_attr(key, record)
        tag = f" [{rec.baseline}]" if rec.baseline is not None else ""
        how = "" if folds is None else (f" ± {se:.4f}" if se is not None else "") + (
            f", mean of {len(folds)} folds ({' '.join(f'{a:.4f}' for a in folds)})")
        say(f"re-rank trial {t.number:>4}  search {t.values[0]:.4f} -> {accuracy:.4f} after "
            f"{epochs} epochs{how} ({seconds:.1f}s)  {rec.arch_id}{tag}")
    return results(study, config)


def _cross_validate(study: optuna.Study, key: str, want: dict, config: StudyConfig, objective: Objective,
                    arch: Arch, done: list[dict]
                    ) -> tuple[float, int, float, list[float], dict[str, list[float] | None]]:
    """Train ``arch`` once per fold not in ``done`` (each fold's result kept in the claim as it finishes);
    the mean held-out accuracy, the epochs trained, the seconds of all folds, the per-fold accuracies and
    each other held-out figure per fold (``val_loss``, ``balanced_accuracy``, ``macro_f1``; None where a fold
    has none: a claim by an archsearch before the score could be built from it)."""
    k, seed = section(config).folds, config.training.seed
    assert k is not None  # called for a re-rank with folds
    data = objective.data_for(arch.resolution)
    x, y = torch.cat((data.x_train, data.x_val)), torch.cat((data.y_train, data.y_val))
    if len(y) < 2 * k:
        raise ConfigError(f"{k} folds need at least {2 * k} training and validation images, the dataset has "
                          f"{len(y)}", path=config.source, key="rerank.folds")
    folds = fold_indices(y, k, seed)
    study.set_user_attr(key, {"worker": worker_id(), "recipe": want, "done": done})
    for i in range(len(done), k):
        held = torch.zeros(len(y), dtype=torch.bool)
        held[folds[i]] = True
        fold_cfg = dataclasses.replace(recipe(config), seed=seed + i)
        t0 = time.perf_counter()
        split = Split(x[~held], y[~held], x[held], y[held], data.preprocess())
        result = evaluate(arch, split, fold_cfg, device=objective.device, seed=seed + i, trainer=objective.trainer,
                          class_figures=objective.class_figures()).result
        done.append({"val_accuracy": result.val_accuracy, "epochs": result.epochs_done,
                     "seconds": time.perf_counter() - t0, **result.curve.last()})
        study.set_user_attr(key, {"worker": worker_id(), "recipe": want, "done": done})
    accuracies = [d["val_accuracy"] for d in done]
    figures = {}
    for name in LearningCurve().last():  # val_loss, balanced_accuracy, macro_f1
        values = [d[name] for d in done if d.get(name) is not None]
        figures[name] = values if len(values) == k else None
    return (sum(accuracies) / k, min(d["epochs"] for d in done), sum(d["seconds"] for d in done), accuracies,
            figures)


