"""The recipe's augmentation of a training batch (``training.augment``)."""

from __future__ import annotations

import torch

from archsearch.config.recipe import AUGMENTATIONS

__all__ = ["augment_batch"]


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
