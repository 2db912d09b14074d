"""The recipe's optimizer and learning-rate schedule: what ``training.optimizer``, ``weight_decay`` and
``schedule`` build."""

from __future__ import annotations

import math

import torch
from torch import nn

from archsearch.config.recipe import OPTIMIZERS, SCHEDULES, TrainConfig

__all__ = ["lr_factor", "param_groups", "make_optimizer"]


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
