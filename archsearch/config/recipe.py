"""The training recipe: :class:`TrainConfig` (what a trial trains with, declared once: the study file's ``training``
keys, validated in code too), and the optimizer, learning-rate schedule and augmentation it names.
:mod:`archsearch.training.train` runs it."""

from __future__ import annotations

import math
from typing import Literal

from pydantic import Field

from archsearch.core.schema import Int, Number, declared

__all__ = ["TRAINING_KEYS_LATER", "MIN_STEPS", "planned_epochs", "planned_steps", "batches_per_epoch", "recipe_note",
           "OPTIMIZERS", "SCHEDULES", "AUGMENTATIONS", "TrainConfig"]

OPTIMIZERS = ("sgd", "adamw", "adam")
SCHEDULES = ("cosine", "constant", "step", "onecycle")
AUGMENTATIONS = ("none", "shift", "flip", "shift+flip")


@declared()
class TrainConfig:
    """The training recipe of every trial (and of a final retrain): the study file's ``training`` section."""

    epochs: Int(1, 10_000) = 5  # type: ignore[valid-type]
    steps: Int(1, 10**9) | None = Field(  # type: ignore[valid-type]
        default=None, description="train for this many optimizer steps (batches) instead of `epochs`: a length "
        "that does not shrink with the data, for a folder of a few hundred images (docs/data.md: How long to "
        "train); null: `epochs`")
    seconds: Number(0, 1e7, lo_open=True) | None = Field(  # type: ignore[valid-type]
        default=None, description="wall-clock cap per trial: training stops after the epoch that crosses it")
    train_subset: Int(1, 10**9) | None = Field(  # type: ignore[valid-type]
        default=None, description="train on at most this many images (a fixed subset); null: all")
    batch_size: Int(1, 65536) = 128  # type: ignore[valid-type]
    eval_batch_size: Int(1, 65536) = 1024  # type: ignore[valid-type]
    optimizer: Literal[OPTIMIZERS] = "sgd"  # type: ignore[valid-type]
    lr: Number(0, 10, lo_open=True) = 0.05  # type: ignore[valid-type]
    momentum: Number(0, 1, hi_open=True) = 0.9  # type: ignore[valid-type]
    weight_decay: Number(0, 1) = 5e-4  # type: ignore[valid-type]
    schedule: Literal[SCHEDULES] = "cosine"  # type: ignore[valid-type]
    warmup_epochs: Number(0, 10_000) = 0.0  # type: ignore[valid-type]
    label_smoothing: Number(0, 1, hi_open=True) = 0.0  # type: ignore[valid-type]
    augment: Literal[AUGMENTATIONS] = "none"  # type: ignore[valid-type]
    class_weight: Literal["balanced"] | None = Field(
        default=None, description="balanced: weigh each class's loss by n / (classes x its count in the training "
        "split), scikit-learn's class_weight='balanced', so a rare class counts as much as a common one; null: "
        "every image alike")
    sampler: Literal["balanced"] | None = Field(
        default=None, description="balanced: draw each epoch's batches with replacement, each image with a "
        "probability inverse to its class's count, so every class is seen about equally often; null: each image "
        "once an epoch, shuffled")
    seed: Int(0, 2**32 - 1) = 0  # type: ignore[valid-type]


#: optimizer steps that a network on a 4-class folder of 500 images needed to come within 2 points of a long
#: training (docs/data.md: How long to train); a recipe that gives a trial fewer is named when a search starts
MIN_STEPS = 100

#: recipe keys added after studies were made with this recipe: left out of the study's fingerprint, a re-rank's
#: recorded recipe and a checkpoint's check while they are null, so that those made before still match
TRAINING_KEYS_LATER = ("steps", "class_weight", "sampler")

def planned_epochs(config: TrainConfig, n_train: int, *, batchnorm: bool = True) -> int:
    """How many epochs :func:`train` runs on ``n_train`` images (before any ``train_subset``) unless its time cap
    stops it: ``config.epochs``, or as many as ``config.steps`` batches take (the last one part-way)."""
    if config.steps is None:
        return config.epochs
    return math.ceil(config.steps / batches_per_epoch(config, n_train, batchnorm=batchnorm))


def batches_per_epoch(config: TrainConfig, n_train: int, *, batchnorm: bool = True) -> int:
    """Optimizer steps in one epoch over ``n_train`` images (before any ``train_subset``): a last batch of a single
    image is left out where BatchNorm is in the network (it cannot normalize one)."""
    n = min(n_train, config.train_subset or n_train)
    return max(1, math.ceil(n / config.batch_size) - (batchnorm and n % config.batch_size == 1 and n > 1))


def planned_steps(config: TrainConfig, n_train: int) -> int:
    """The optimizer steps a training of ``config`` runs on ``n_train`` images (unless its time cap stops it)."""
    return config.steps if config.steps is not None else config.epochs * batches_per_epoch(config, n_train)


def recipe_note(config: TrainConfig, n_train: int) -> str | None:
    """A line where ``config`` trains a network on ``n_train`` images for fewer than :data:`MIN_STEPS` optimizer
    steps, too few to learn on a small folder; None otherwise."""
    steps = planned_steps(config, n_train)
    if steps >= MIN_STEPS:
        return None
    how = (f"training.steps {config.steps}" if config.steps is not None else
           f"{config.epochs} epoch(s) of {batches_per_epoch(config, n_train)} batch(es) of {config.batch_size} on "
           f"{min(n_train, config.train_subset or n_train):,} images")
    return (f"each trial trains {steps} optimizer steps ({how}): on a 4-class folder of 500 images a network needed "
            f"{MIN_STEPS} to come within 2 points of a long training, and 28 left it at chance (docs/data.md: How long "
            f"to train); set `training: {{steps: 400}}`, or trials may end at chance")


