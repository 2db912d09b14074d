"""How a raw image becomes the tensor a network was trained on, as a record and as a module that travels with it.

archsearch trains on images divided by a fixed divisor (uint8 pixels by 255, scikit-learn's digits by 16),
normalized per channel with the training split's mean and std, and resized to the architecture's resolution
(bilinear, antialiased) where the search picked a resolution multiplier (:mod:`archsearch.data.bundle`). An export
records these steps (:class:`Preprocessing`) and its artefacts apply them: ``model.py``'s ``load()``,
``model.pt2`` and ``model.onnx`` take raw images, N x C x H x W at the dataset's resolution, in the dataset's
own range. ``load(bare=True)`` gives the bare network, which takes the preprocessed tensor.

:class:`Preprocess` and :class:`WithPreprocessing` are copied into ``model.py`` from this file's source, so
they use torch only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from archsearch.core.errors import ConfigError

__all__ = ["Preprocessing", "Preprocess", "WithPreprocessing"]

RESIZE = {"mode": "bilinear", "antialias": True, "align_corners": False}  # as archsearch.data.bundle resizes


class Preprocess(nn.Module):
    """Raw images -> the network's input: ``(x / divisor - mean) / std`` per channel, then resized to ``size``.

    Takes N x C x H x W of any real dtype (uint8 pixels as they are stored); computes in float32, in the
    order the training data was made, so that a raw test image reaches the network as it did in training.
    """

    mean: torch.Tensor  # buffers, registered in __init__
    std: torch.Tensor

    def __init__(self, divisor: float, mean: tuple[float, ...], std: tuple[float, ...], size: int | None) -> None:
        super().__init__()
        self.divisor = float(divisor)
        self.size = size  # None: the network takes the dataset's resolution
        # constants, not weights: kept out of the state dict, so weights.pt stays the bare network's
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x.to(torch.float32) / self.divisor - self.mean) / self.std
        if self.size is not None:
            x = nn.functional.interpolate(
                x, size=(self.size, self.size), mode="bilinear", align_corners=False, antialias=True
            )
        return x


class WithPreprocessing(nn.Module):
    """``net(preprocess(x))``: a network that takes raw images."""

    def __init__(self, preprocess: nn.Module, net: nn.Module) -> None:
        super().__init__()
        self.preprocess = preprocess
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.preprocess(x))


@dataclass(frozen=True)
class Preprocessing:
    """The input contract of a trained network: what raw images are and how they become its input tensor."""

    raw: str  # what the dataset stores, e.g. "the IDX files' uint8 pixels, 0 to 255, N x 28 x 28"
    divisor: float
    mean: tuple[float, ...]
    std: tuple[float, ...]
    source_resolution: int  # the raw images' height and width
    resolution: int  # the network's

    def __post_init__(self) -> None:
        if len(self.mean) != len(self.std) or not self.mean:
            raise ValueError(f"mean and std need one value per channel, got {self.mean} and {self.std}")
        if not all(math.isfinite(v) for v in (self.divisor, *self.mean, *self.std)):
            raise ValueError(f"divisor, mean and std must be finite, got {self.divisor}, {self.mean}, {self.std}")
        if not (self.divisor > 0 and all(s > 0 for s in self.std)):
            raise ValueError(f"divisor and std must be positive, got {self.divisor} and {self.std}")
        if min(self.source_resolution, self.resolution) < 1:
            raise ValueError(f"resolutions must be >= 1, got {self.source_resolution} and {self.resolution}")

    @classmethod
    def of_data(cls, data: Any, resolution: int) -> Preprocessing:
        """What ``data`` (a :class:`~archsearch.data.bundle.DataBundle`) did to its raw images, for a network at
        ``resolution``."""
        return cls(raw=data.raw_format, divisor=float(data.raw_divisor), mean=tuple(data.mean),
                   std=tuple(data.std), source_resolution=int(data.raw_resolution), resolution=int(resolution))

    @property
    def channels(self) -> int:
        return len(self.mean)

    @property
    def resize(self) -> bool:
        return self.resolution != self.source_resolution

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """C, H, W of a raw image."""
        return (self.channels, self.source_resolution, self.source_resolution)

    def kwargs(self) -> dict[str, Any]:
        """:class:`Preprocess`'s arguments."""
        return {"divisor": self.divisor, "mean": self.mean, "std": self.std,
                "size": self.resolution if self.resize else None}

    def module(self) -> Preprocess:
        return Preprocess(**self.kwargs())

    def formula(self) -> str:
        mean = ", ".join(f"{m:.6g}" for m in self.mean)
        std = ", ".join(f"{s:.6g}" for s in self.std)
        text = f"x = (raw / {self.divisor:g} - mean) / std per channel, mean ({mean}), std ({std}), in float32"
        if self.resize:
            text += (f"; then resized {self.source_resolution}x{self.source_resolution} -> "
                     f"{self.resolution}x{self.resolution} (bilinear, antialias, align_corners=False)")
        return text

    def to_dict(self) -> dict[str, Any]:
        return {
            "raw": self.raw,
            "input_shape": list(self.input_shape),
            "divisor": self.divisor,
            "mean": list(self.mean),
            "std": list(self.std),
            "resize": {"from": self.source_resolution, "to": self.resolution, **RESIZE} if self.resize else None,
            "network_input_shape": [self.channels, self.resolution, self.resolution],
            "formula": self.formula(),
        }

    @classmethod
    def from_dict(cls, d: Any, where: Any = None) -> Preprocessing:
        """The record of :meth:`to_dict`; a damaged one is a :class:`ConfigError` naming ``where``."""
        try:
            resize = d["resize"]
            res = int(d["input_shape"][1])
            return cls(raw=str(d["raw"]), divisor=float(d["divisor"]), mean=tuple(map(float, d["mean"])),
                       std=tuple(map(float, d["std"])), source_resolution=res,
                       resolution=int(resize["to"]) if resize else res)
        except (KeyError, TypeError, ValueError, IndexError) as e:
            raise ConfigError(f"bad preprocessing record ({type(e).__name__}: {e}); expected the keys raw, "
                              f"input_shape, divisor, mean, std and resize", path=where, key="preprocessing") from None
