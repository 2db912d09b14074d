"""What a training keeps: its learning curve, and its checkpoint (its whole state after each epoch, written
atomically, checked to belong to this recipe and these training images before a training resumes from it)."""

from __future__ import annotations

import dataclasses
import io
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from archsearch.core.errors import ConfigError


@dataclass
class LearningCurve:
    """What a training measured after each epoch, one list entry an epoch (None: an epoch trained before the
    curve was recorded, in a checkpoint of an older archsearch)."""

    train_loss: list[float | None] = field(default_factory=list)  # mean training loss over the epoch
    train_loss_tail: list[float | None] = field(default_factory=list)  # over the epoch's last quarter of steps
    val_loss: list[float | None] = field(default_factory=list)  # mean cross-entropy on validation, no smoothing
    val_accuracy: list[float | None] = field(default_factory=list)
    # mean recall and mean F1 over the classes (None: not computed, train(class_figures=False))
    val_balanced_accuracy: list[float | None] = field(default_factory=list)
    val_macro_f1: list[float | None] = field(default_factory=list)

    def add(self, train_loss: float, train_loss_tail: float, val_loss: float, val_accuracy: float,
            val_balanced_accuracy: float | None = None, val_macro_f1: float | None = None) -> None:
        """One epoch's figures (the per-class ones: None where the training did not compute them)."""
        values = (train_loss, train_loss_tail, val_loss, val_accuracy, val_balanced_accuracy, val_macro_f1)
        for name, value in zip(_CURVE_KEYS, values, strict=True):
            getattr(self, name).append(None if value is None else float(value))

    def to_dict(self) -> dict[str, list[float | None]]:
        return {name: list(getattr(self, name)) for name in _CURVE_KEYS}

    @property
    def last_val_loss(self) -> float | None:
        """The last epoch's validation loss (None: no epoch recorded)."""
        return self.val_loss[-1] if self.val_loss else None

    def last(self) -> dict[str, float | None]:
        """The last epoch's validation figures a score can be built from, by the keyword names of
        :func:`archsearch.search.scoring.measured` (None: not recorded)."""
        return {"val_loss": self.last_val_loss,
                "balanced_accuracy": self.val_balanced_accuracy[-1] if self.val_balanced_accuracy else None,
                "macro_f1": self.val_macro_f1[-1] if self.val_macro_f1 else None}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LearningCurve:
        return cls(**{name: list(d.get(name, [])) for name in _CURVE_KEYS})

    def resume(self, saved: dict[str, Any] | None, epochs: int) -> None:
        """Take a checkpoint's curve of ``epochs`` epochs (padded with None where it has fewer)."""
        loaded = LearningCurve.from_dict(saved or {})
        for name in _CURVE_KEYS:
            values = getattr(loaded, name)[:epochs]
            getattr(self, name)[:] = [None] * (epochs - len(values)) + values


_CURVE_KEYS = ("train_loss", "train_loss_tail", "val_loss", "val_accuracy", "val_balanced_accuracy", "val_macro_f1")


@dataclass
class Checkpoint:
    """A training's whole state after an epoch: what it trained with (the recipe, a key of its training images, the
    device kind), the network, optimizer and loss-scaler states, the batch generator's and torch's random states, the
    validation accuracy after each epoch, the step, whether it finished, and the time spent. The file holds these
    fields as a dict (an older archsearch's file has no ``curve``)."""

    config: dict[str, Any]
    data: list
    device: str
    model: dict[str, Any]
    optimizer: dict[str, Any]
    scaler: dict[str, Any]
    generator: torch.Tensor
    torch_rng: torch.Tensor
    history: list[float]
    step: int
    finished: bool
    compute_seconds: float
    train_seconds: float
    curve: dict[str, Any] | None = None

    def save(self, path: Path) -> None:
        """Write it to ``path`` atomically: a reader sees the previous epoch's file or this one, never half."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        state = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        write_bytes(tmp, lambda f: torch.save(state, f))
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path, config: Any, data_key: list, device: torch.device) -> Checkpoint:
        """The checkpoint in ``path``, after checking that it belongs to this recipe, training set and device kind;
        a :class:`~archsearch.core.errors.ConfigError` naming the file where it does not."""
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # truncated or not a checkpoint: say which file, never train over it silently
            raise ConfigError(f"not a readable training checkpoint ({e}); delete it to start over", path=path) from e
        saved = state.get("config") if isinstance(state, dict) else None
        if not isinstance(saved, dict):
            raise ConfigError("not a training checkpoint of archsearch (no recipe in it); delete it to start over",
                              path=path)
        now = dataclasses.asdict(config)
        diff = [f"{k}: saved {saved.get(k)!r}, now {v!r}" for k, v in now.items() if saved.get(k) != v]
        saved_data = state.get("data") or [None, None, None]
        if saved_data[0] != data_key[0]:
            diff.append(f"training images: saved {saved_data[0]}, now {data_key[0]}")
        elif saved_data != data_key:
            diff.append("the same number of training images, but other images or labels")
        if state.get("device") != device.type:  # the batch generator's state is the device's own kind
            diff.append(f"device: saved {state.get('device')}, now {device.type}")
        if diff:
            raise ConfigError(f"checkpoint of another training ({'; '.join(diff)}); delete it to start over",
                              path=path)
        fields = dataclasses.fields(cls)
        missing = [f.name for f in fields if f.default is dataclasses.MISSING and f.name not in state]
        if missing:
            raise ConfigError(f"not a whole training checkpoint (no {', '.join(missing)}); delete it to start over",
                              path=path)
        return cls(**{f.name: state[f.name] for f in fields if f.name in state})


def write_bytes(path: Path, save: Callable[[io.BytesIO], Any]) -> None:
    """``save`` into memory, then the bytes to ``path``: a full disk is then Python's OSError (ENOSPC), where
    torch's own file writer fails with a RuntimeError and, destroyed later, aborts the process. A failed write
    leaves no file."""
    buffer = io.BytesIO()
    save(buffer)
    try:
        with open(path, "wb") as f:
            f.write(buffer.getbuffer())
    except BaseException:
        path.unlink(missing_ok=True)
        raise


def data_key(x: torch.Tensor, y: torch.Tensor) -> list:
    """What tells one training set from another, cheaply: its size, the sum of its pixels, its class counts."""
    return [len(y), round(x.sum(dtype=torch.float64).item(), 3), y.bincount().tolist()]
