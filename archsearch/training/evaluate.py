"""The evaluator: an architecture built and trained with a recipe, scored on held-out images. It knows nothing of
Optuna or of a study: the search's objective, the re-rank and the export's retrain call it alike."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from archsearch.config.recipe import TrainConfig
from archsearch.data.bundle import DataBundle
from archsearch.network.arch import Arch
from archsearch.network.build import build
from archsearch.training.checkpoint import LearningCurve
from archsearch.training.train import TrainResult, train

__all__ = ["Split", "Evaluation", "evaluate"]


@dataclass(frozen=True)
class Split:
    """What a training fits (``x_train``, ``y_train``) and what it is scored on after each epoch (``x_eval``,
    ``y_eval``); ``preprocess`` turns stored images into the network's input
    (:func:`archsearch.training.train.train`)."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_eval: torch.Tensor
    y_eval: torch.Tensor
    preprocess: nn.Module | None = None

    @classmethod
    def of(cls, data: DataBundle) -> Split:
        """The search's split: trained on the training images, scored on the validation images."""
        return cls(data.x_train, data.y_train, data.x_val, data.y_val, data.preprocess())


@dataclass(frozen=True)
class Evaluation:
    """The trained network (in eval mode, on the training's device) and what its training measured."""

    model: nn.Module
    result: TrainResult

    @property
    def accuracy(self) -> float:
        """The accuracy on the evaluation images after the last epoch."""
        return self.result.val_accuracy


def evaluate(
    arch: Arch,
    data: Split,
    recipe: TrainConfig,
    *,
    device: torch.device,
    seed: int | None = None,
    on_epoch: Callable[[int, float], None] | None = None,
    checkpoint: str | os.PathLike | None = None,
    class_figures: bool = False,
    model: nn.Module | None = None,
    curve: LearningCurve | None = None,
    trainer: Callable[..., TrainResult] | None = None,
) -> Evaluation:
    """Build ``arch`` (its initial weights drawn from ``seed``; None: the recipe's), train it with ``recipe`` on
    ``data``'s training images and score it on its evaluation images after each epoch.

    The same architecture, recipe and seed give the same network in any process, however many were built before
    it. ``model``: the network already built for ``arch`` (e.g. to time it first), trained instead of a new one.
    ``on_epoch``, ``checkpoint``, ``class_figures`` and ``curve`` are :func:`~archsearch.training.train.train`'s;
    ``trainer``: a function with ``train``'s signature (a caller may wrap it, e.g. to count trainings), passed only
    the keywords that are set; None: :func:`~archsearch.training.train.train`.
    """
    if model is None:
        torch.manual_seed(recipe.seed if seed is None else seed)
        model = build(arch)
    options: dict[str, Any] = {k: v for k, v in (("on_epoch", on_epoch), ("checkpoint", checkpoint), ("curve", curve))
                               if v is not None}
    if class_figures:
        options["class_figures"] = True
    fit = train if trainer is None else trainer
    result = fit(model, data.x_train, data.y_train, data.x_eval, data.y_eval, recipe, device=device,
                 preprocess=data.preprocess, **options)
    return Evaluation(model, result)
