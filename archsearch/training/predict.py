"""A trained network on held-out images: its accuracy, its mean loss and its predictions, in batches, in the
precision the device trains in, the stored images preprocessed on the way; and the confusion matrix counted from
the predictions."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["autocast", "accuracy", "predict", "score", "preprocess_on", "network_input", "confusion_counts"]


def autocast(device: torch.device) -> tuple[AbstractContextManager[Any], torch.dtype | None]:
    """Mixed precision context for ``device`` and its dtype (None: full fp32 on CPU)."""
    if device.type != "cuda":
        return nullcontext(), None
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.autocast("cuda", dtype=dtype), dtype


def accuracy(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    batch_size: int,
    device: torch.device,
    preprocess: nn.Module | None = None,
) -> float:
    """Top-1 accuracy of ``model`` on (x, y), in eval mode and batches of ``batch_size``; restores the mode.
    ``preprocess`` turns each batch of stored images into the network's input (see :func:`train`)."""
    return score(model, x, y, batch_size=batch_size, device=device, preprocess=preprocess)[0]


def predict(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    batch_size: int,
    device: torch.device,
    preprocess: nn.Module | None = None,
) -> torch.Tensor:
    """The class ``model`` predicts for each image of ``x`` (int64, on the CPU), as :func:`accuracy` scores them."""
    return score(model, x, y, batch_size=batch_size, device=device, preprocess=preprocess)[2]


@torch.inference_mode()
def score(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, batch_size: int, device: torch.device,
           preprocess: nn.Module | None) -> tuple[float, float, torch.Tensor]:
    """Accuracy, mean cross-entropy (no label smoothing) and the predictions (on the CPU) of ``model`` on (x, y)."""
    if len(x) == 0 or len(x) != len(y):
        raise ValueError(f"x and y must be non-empty and of equal length, got {len(x)} and {len(y)}")
    was_training = model.training
    model.eval()
    ctx, _ = autocast(device)
    correct = torch.zeros((), dtype=torch.int64, device=device)
    loss = torch.zeros((), dtype=torch.float64, device=device)
    predictions = []
    pre = preprocess_on(preprocess, device)
    for i in range(0, len(x), batch_size):
        xb = network_input(x[i : i + batch_size].to(device, non_blocking=True), pre)
        yb = y[i : i + batch_size].to(device, non_blocking=True)
        with ctx:
            logits = model(xb)
        predicted = logits.argmax(dim=1)
        correct += (predicted == yb).sum()
        loss += F.cross_entropy(logits.float(), yb, reduction="sum")
        predictions.append(predicted)
    model.train(was_training)
    # the host syncs
    return correct.item() / len(x), loss.item() / len(x), torch.cat(predictions).cpu()


def confusion_counts(y: torch.Tensor, predicted: torch.Tensor, num_classes: int) -> list[list[int]]:
    """The counts of (true, predicted) pairs as scikit-learn's ``confusion_matrix`` gives them (a test holds
    that), counted here so that a training imports no scikit-learn."""
    k = max(num_classes, int(predicted.max().item()) + 1, int(y.max().item()) + 1)
    return torch.bincount(y * k + predicted, minlength=k * k).view(k, k).tolist()


def preprocess_on(preprocess: nn.Module | None, device: torch.device) -> nn.Module | None:
    return None if preprocess is None else preprocess.to(device)


def network_input(xb: torch.Tensor, preprocess: nn.Module | None) -> torch.Tensor:
    """A batch as the network takes it: preprocessed where a ``preprocess`` is given, in channels_last."""
    if preprocess is not None:
        xb = preprocess(xb)
    elif not xb.is_floating_point():
        raise TypeError(f"images of dtype {xb.dtype} need a `preprocess` that turns them into float inputs")
    return xb.contiguous(memory_format=torch.channels_last)
