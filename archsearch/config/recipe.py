"""The training recipe: :class:`TrainConfig` (what a trial trains with, declared once: the study file's ``training``
keys, validated in code too), and the optimizer, learning-rate schedule and augmentation it names.
:mod:`archsearch.search.train` runs it."""

from __future__ import annotations

import math
from typing import Literal

import torch
from pydantic import Field
from torch import nn

from archsearch.core.schema import Int, Number, declared

__all__ = ["TRAINING_KEYS_LATER", "MIN_STEPS", "planned_epochs", "planned_steps", "batches_per_epoch", "recipe_note",
           "OPTIMIZERS", "SCHEDULES", "AUGMENTATIONS", "TrainConfig", "augment_batch", "lr_factor", "param_groups",
           "make_optimizer"]

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



_SHIFT_PAD = 2  # `shift` augmentation: translate by up to this many pixels


def augment_batch(x: torch.Tensor, mode: str, generator: torch.Generator) -> torch.Tensor:
    """Randomly shift and/or flip each image of a batch ``x`` (B, C, H, W); vectorized, no loop over samples."""
    if mode not in AUGMENTATIONS:
        raise ValueError(f"augment must be one of {list(AUGMENTATIONS)}, got {mode!r}")
    if "shift" in mode:
        b, c, h, w = x.shape
        dy = torch.randint(-_SHIFT_PAD, _SHIFT_PAD + 1, (b, 1, 1), device=x.device, generator=generator)
        dx = torch.randint(-_SHIFT_PAD, _SHIFT_PAD + 1, (b, 1, 1), device=x.device, generator=generator)
        # clamping the source index is replicate padding: inputs are normalized, so 0 is not the background
        rows = (dy + torch.arange(h, device=x.device).view(1, h, 1)).clamp_(0, h - 1)  # (B, H, 1)
        cols = (dx + torch.arange(w, device=x.device).view(1, 1, w)).clamp_(0, w - 1)  # (B, 1, W)
        src = (rows * w + cols).view(b, h * w, 1).expand(b, h * w, c)  # (B, H*W, C)
        pixels = x.permute(0, 2, 3, 1).reshape(b, h * w, c)  # a view when x is channels_last
        x = pixels.gather(1, src).view(b, h, w, c).permute(0, 3, 1, 2)  # one gather; result is channels_last
    if "flip" in mode:
        flip = torch.rand(x.shape[0], device=x.device, generator=generator) < 0.5
        x = torch.where(flip.view(-1, 1, 1, 1), x.flip(3), x)
    return x


def lr_factor(step: int, total_steps: int, warmup_steps: int, schedule: str) -> float:
    """Multiplier of the base lr at optimizer step ``step`` (0-based) of ``total_steps``."""
    p = step / total_steps  # progress in [0, 1)
    if schedule == "cosine":
        factor = 0.5 * (1.0 + math.cos(math.pi * p))  # to 0 at the end
    elif schedule == "constant":
        factor = 1.0
    elif schedule == "step":
        factor = 0.1 ** ((p >= 0.5) + (p >= 0.75))
    elif schedule == "onecycle":
        # torch.optim.lr_scheduler.OneCycleLR defaults: pct_start=0.3, div_factor=25, final_div_factor=1e4, cos
        peak = 0.3 * total_steps - 1
        lo, end = 1.0 / 25, 1.0 / 25e4
        if step <= peak:
            t = step / peak if peak > 0 else 1.0
            factor = lo + (1.0 - lo) * 0.5 * (1.0 - math.cos(math.pi * t))
        else:
            t = (step - peak) / max(total_steps - 1 - peak, 1)
            factor = end + (1.0 - end) * 0.5 * (1.0 + math.cos(math.pi * min(t, 1.0)))
    else:
        raise ValueError(f"schedule must be one of {list(SCHEDULES)}, got {schedule!r}")
    if step < warmup_steps:
        factor *= (step + 1) / warmup_steps  # linear warmup on top of every schedule
    return factor


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Split parameters so that weight decay skips 1-D ones (BN weights/biases, all biases)."""
    params = [p for p in model.parameters() if p.requires_grad]
    return [
        {"params": [p for p in params if p.ndim >= 2], "weight_decay": weight_decay},
        {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
    ]


def make_optimizer(model: nn.Module, config: TrainConfig, device: torch.device) -> torch.optim.Optimizer:
    """The optimizer named by ``config.optimizer``, with the weight-decay param groups."""
    groups = param_groups(model, config.weight_decay)
    fused = device.type in ("cpu", "cuda")  # one kernel for all params: measurably faster for these small nets
    if config.optimizer == "sgd":
        nesterov = config.momentum > 0  # torch refuses nesterov without momentum
        return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum, nesterov=nesterov, fused=fused)
    if config.optimizer == "adam":
        return torch.optim.Adam(groups, lr=config.lr, fused=fused)
    if config.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=config.lr, fused=fused)
    raise ValueError(f"optimizer must be one of {list(OPTIMIZERS)}, got {config.optimizer!r}")
