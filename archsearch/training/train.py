"""Brief training of a candidate on in-memory tensors: the loop that runs a recipe (:mod:`archsearch.config.recipe`)
and scores the network after each epoch (:mod:`archsearch.training.predict`)."""

from __future__ import annotations

import dataclasses
import math
import os
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from archsearch.config.recipe import TrainConfig
from archsearch.core import interrupt
from archsearch.core.class_metrics import balanced_and_macro_f1
from archsearch.core.errors import ConfigError
from archsearch.core.threads import default_threads, set_threads
from archsearch.training.augment import augment_batch
from archsearch.training.checkpoint import Checkpoint, LearningCurve, data_key
from archsearch.training.optimizer import lr_factor, make_optimizer
from archsearch.training.predict import autocast, confusion_counts, network_input, preprocess_on, score

# --------------------------------------------------------------------------------------------------
# the training loop

_SUBSET_SEED = 0  # fixed on purpose: every trial trains on the same subset, so trials compare architectures
_EARLY_CHECK_STEP = 10  # one extra host sync after this many steps catches an lr that blows up at once


class TrainingDiverged(FloatingPointError):
    """The training loss became NaN or infinite; the message says when and at which learning rate."""


@dataclass
class TrainResult:
    """What one call of :func:`train` measured."""

    val_accuracy: float  # accuracy on the validation tensors after the last epoch done
    history: list[float]  # validation accuracy after each epoch
    epochs_done: int
    train_seconds: float  # wall time of the whole call
    compute_seconds: float  # time in training steps and evaluations (the rest is setup and bookkeeping)
    resumed_epochs: int = 0  # epochs taken from a checkpoint instead of trained by this call
    curve: LearningCurve = field(default_factory=LearningCurve)  # losses and accuracy after each epoch
    # the validation split's confusion matrix after the last epoch (rows: true class, columns: predicted;
    # archsearch.core.class_metrics.ClassMetrics.from_matrix gives its per-class figures)
    val_confusion: list[list[int]] | None = None


def resolve_device(name: str) -> torch.device:
    """Map ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"`` to a device that exists on this machine."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {name!r}") from None
    if device.type == "cpu":
        return device
    if device.type != "cuda":
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {name!r}")
    if not torch.cuda.is_available():
        raise ValueError(f"device {name!r} was requested but CUDA is not available here; use 'cpu' or 'auto'")
    if device.index is not None and device.index >= torch.cuda.device_count():
        raise ValueError(f"device {name!r} does not exist: there are {torch.cuda.device_count()} CUDA device(s)")
    return device


def train(
    model: nn.Module,
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    x_val: torch.Tensor,
    y_val: torch.Tensor,
    config: TrainConfig,
    *,
    device: torch.device,
    on_epoch: Callable[[int, float], None] | None = None,
    checkpoint: str | os.PathLike | None = None,
    preprocess: nn.Module | None = None,
    curve: LearningCurve | None = None,
    threads: int | None = None,
    class_figures: bool = False,
) -> TrainResult:
    """Train ``model`` in place on (N, C, H, W) images with int64 labels.

    Without ``preprocess`` the images are the network's input (normalized float tensors). With it, they are
    stored images (uint8 pixels, say: a quarter of float32's memory) and ``preprocess`` (e.g.
    :meth:`DataBundle.preprocess() <archsearch.data.bundle.DataBundle.preprocess>`) turns each batch into the
    network's input on ``device``, before augmentation.

    ``threads``: torch's intra-op threads on the CPU while training (None: archsearch's default, one, which
    never collapses beside another CPU-bound job; :mod:`archsearch.core.threads`); the number before is restored.

    ``class_figures``: also the validation split's balanced accuracy and macro-F1 after each epoch (scikit-learn's,
    into the curve), what a study scored by them prunes and ranks on; off, they are None (and scikit-learn is not
    imported). The confusion matrix after the last epoch is counted either way (``TrainResult.val_confusion``).

    ``curve``: a :class:`LearningCurve` that each epoch's losses and accuracy are appended to as training runs
    (the caller can read it in ``on_epoch``, e.g. before it prunes); a new one when None. It is also the result's.

    Evaluates on the validation tensors after every epoch and calls ``on_epoch(epoch_index, val_acc)``;
    an exception raised there (e.g. ``optuna.TrialPruned``) propagates unchanged. Raises
    :class:`TrainingDiverged` when the loss stops being finite. The model ends in eval mode on ``device``.

    ``checkpoint``: a file that holds the whole state of the loop after each epoch (weights, optimizer and
    scaler state, the batch generator, the step, the history, the time spent). When it exists, training
    continues from it, and ends with what an uninterrupted run would have on the same machine; a killed
    training loses at most the epoch in progress. A checkpoint written by another recipe, for other training
    data or for another network is refused with a :class:`~archsearch.core.errors.ConfigError` that names it.
    The caller deletes the file once the result is safe.
    """
    before = set_threads(default_threads() if threads is None else threads) if device.type == "cpu" else None
    try:
        return _train(model, x_train, y_train, x_val, y_val, config, device=device, on_epoch=on_epoch,
                      checkpoint=checkpoint, preprocess=preprocess, curve=curve, class_figures=class_figures)
    finally:
        if before is not None:
            set_threads(before)


def _train(
    model: nn.Module,
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    x_val: torch.Tensor,
    y_val: torch.Tensor,
    config: TrainConfig,
    *,
    device: torch.device,
    on_epoch: Callable[[int, float], None] | None,
    checkpoint: str | os.PathLike | None,
    preprocess: nn.Module | None,
    curve: LearningCurve | None,
    class_figures: bool = False,
) -> TrainResult:
    t0 = time.perf_counter()
    if len(x_train) != len(y_train) or len(x_train) == 0:
        raise ValueError(
            f"x_train and y_train must be non-empty and of equal length, got {len(x_train)} and {len(y_train)}"
        )
    torch.manual_seed(config.seed)
    x_train, y_train = _subset(x_train, y_train, config)
    loop = _Loop.start(model, x_train, y_train, x_val, y_val, config, device=device, preprocess=preprocess,
                       curve=LearningCurve() if curve is None else curve)
    path = Path(checkpoint) if checkpoint is not None else None
    key = data_key(x_train, y_train) if path is not None else None
    if path is not None and key is not None and path.exists():
        loop.resume(Checkpoint.load(path, config, key, device), path)
    resumed = len(loop.history)
    confusion = None
    try:
        for epoch in range(resumed, loop.epochs if not loop.finished else resumed):
            t_epoch = time.perf_counter()
            loss, tail, steps, tail_steps = loop.train_epoch(epoch)
            val_acc, val_loss, predicted = score(model, loop.x_val, loop.y_val, batch_size=config.eval_batch_size,
                                                  device=device, preprocess=loop.pre)
            balanced, macro_f1 = (balanced_and_macro_f1(loop.y_val_cpu, predicted, loop.num_classes)
                                  if class_figures else (None, None))
            confusion = confusion_counts(loop.y_val_cpu, predicted, loop.num_classes)
            loop.compute_seconds += time.perf_counter() - t_epoch
            loop.history.append(val_acc)
            loop.curve.add(loss / steps, tail / tail_steps, val_loss, val_acc, balanced, macro_f1)
            spent = loop.spent_before + time.perf_counter() - t0
            out_of_time = config.seconds is not None and spent >= config.seconds
            if path is not None and key is not None:
                loop.checkpoint(key, finished=out_of_time or epoch + 1 == loop.epochs, spent=spent).save(path)
            if on_epoch is not None:
                on_epoch(epoch, val_acc)
            if out_of_time:
                break
    finally:
        model.eval()
    if confusion is None:  # every epoch came from a checkpoint: score the validation split once
        predicted = score(model, loop.x_val, loop.y_val, batch_size=config.eval_batch_size, device=device,
                           preprocess=loop.pre)[2]
        confusion = confusion_counts(loop.y_val_cpu, predicted, loop.num_classes)
    return TrainResult(
        val_accuracy=loop.history[-1],
        history=loop.history,
        curve=loop.curve,
        epochs_done=len(loop.history),
        train_seconds=loop.spent_before + time.perf_counter() - t0,
        compute_seconds=loop.compute_seconds,
        resumed_epochs=resumed,
        val_confusion=confusion,
    )


def _subset(x: torch.Tensor, y: torch.Tensor, config: TrainConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """The recipe's ``train_subset`` of the training images: the same fixed subset for every network."""
    if config.train_subset is None or config.train_subset >= len(x):
        return x, y
    keep = torch.randperm(len(x), generator=torch.Generator().manual_seed(_SUBSET_SEED))[: config.train_subset]
    return x[keep], y[keep]


@dataclass
class _Loop:
    """One training's loop: its data on the device, the optimizer and what schedules it, and the state that a
    checkpoint holds (the history, the step, the time spent)."""

    model: nn.Module
    config: TrainConfig
    device: torch.device
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    y_val_cpu: torch.Tensor  # for the confusion matrix and the per-class figures
    pre: nn.Module | None
    gen: torch.Generator  # batch order and augmentation
    ctx: AbstractContextManager[Any]
    scaler: torch.amp.GradScaler
    optimizer: torch.optim.Optimizer
    starts: list[int]  # the first image of each batch
    total_steps: int
    epochs: int
    num_classes: int
    weight: torch.Tensor | None  # the loss's class weights
    draw: torch.Tensor | None  # each image's chance to be drawn, for the balanced sampler
    warmup_steps: int
    curve: LearningCurve
    history: list[float] = field(default_factory=list)
    step: int = 0
    finished: bool = False
    compute_seconds: float = 0.0
    spent_before: float = 0.0  # the time of the trainings this one resumed

    @classmethod
    def start(cls, model: nn.Module, x_train: torch.Tensor, y_train: torch.Tensor, x_val: torch.Tensor,
              y_val: torch.Tensor, config: TrainConfig, *, device: torch.device, preprocess: nn.Module | None,
              curve: LearningCurve) -> _Loop:
        """Everything on the device once (in channels_last, like the model), the optimizer, the batches and the
        schedule, which spans ``config.epochs`` (or ``config.steps``) even where ``config.seconds`` stops early."""
        x_train = x_train.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
        y_train = y_train.to(device, non_blocking=True)
        # Module.to takes memory_format (torch._C._nn._parse_to), which its typed overloads leave out
        model.to(device, memory_format=torch.channels_last)  # type: ignore[call-overload]
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # fixed input shapes: pick the fastest conv algorithms once
        ctx, amp_dtype = autocast(device)
        # batches: keep the ragged last one, unless it is a single sample and BatchNorm would fail on it
        n = len(x_train)
        has_bn = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())  # BatchNorm1d/2d/3d
        starts = [i for i in range(0, n, config.batch_size) if not (has_bn and n - i == 1)]
        if not starts:
            raise ValueError("a single training sample cannot train a model with BatchNorm")
        total_steps = config.epochs * len(starts) if config.steps is None else config.steps
        num_classes = _num_classes(model, y_train, y_val)
        inverse = (class_weights(y_train, num_classes).to(device)  # per class: n / (classes x its count)
                   if "balanced" in (config.class_weight, config.sampler) else None)
        return cls(
            model=model, config=config, device=device, x_train=x_train, y_train=y_train,
            x_val=x_val.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last),
            y_val=y_val.to(device, non_blocking=True), y_val_cpu=y_val.cpu(), pre=preprocess_on(preprocess, device),
            gen=torch.Generator(device=device).manual_seed(config.seed), ctx=ctx,
            scaler=torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16),  # bf16 needs no scaling
            optimizer=make_optimizer(model, config, device), starts=starts, total_steps=total_steps,
            epochs=math.ceil(total_steps / len(starts)),  # with config.steps, the last epoch may end part-way
            num_classes=num_classes, weight=inverse if config.class_weight == "balanced" else None,
            draw=inverse[y_train] if inverse is not None and config.sampler == "balanced" else None,
            warmup_steps=round(config.warmup_epochs * len(starts)), curve=curve,
        )

    def resume(self, saved: Checkpoint, path: Path) -> None:
        """Continue from ``saved``: the network, optimizer, scaler and random states, the history and the step."""
        try:
            self.model.load_state_dict(saved.model)
        except RuntimeError as e:  # other layers or shapes: the checkpoint of another network
            raise ConfigError(f"checkpoint of another network ({e}); delete it to start over", path=path) from None
        self.optimizer.load_state_dict(saved.optimizer)
        self.scaler.load_state_dict(saved.scaler)
        self.gen.set_state(saved.generator)
        torch.set_rng_state(saved.torch_rng)
        self.history, self.step, self.finished = list(saved.history), saved.step, saved.finished
        self.curve.resume(saved.curve, len(self.history))
        self.compute_seconds, self.spent_before = saved.compute_seconds, saved.train_seconds

    def train_epoch(self, epoch: int) -> tuple[float, float, int, int]:
        """One epoch's steps (the last epoch may end part-way, at ``total_steps``); the sum of the losses, the sum
        over the epoch's last quarter of steps, and the counts of both."""
        config, model, gen = self.config, self.model, self.gen
        model.train()
        loss_sum = torch.zeros((), device=self.device)  # stays on the device: no sync per step
        tail_sum = torch.zeros((), device=self.device)
        n, bs = len(self.x_train), config.batch_size
        if self.draw is None:
            perm = torch.randperm(n, device=self.device, generator=gen)
        else:  # class-balanced: n draws with replacement
            perm = torch.multinomial(self.draw, n, replacement=True, generator=gen)
        epoch_starts = self.starts[: self.total_steps - self.step]
        tail_from = len(epoch_starts) - max(1, len(epoch_starts) // 4)
        lr = config.lr
        for k, i in enumerate(epoch_starts):
            interrupt.check()  # a Ctrl-C during a search stops here, outside any storage write
            lr = config.lr * lr_factor(self.step, self.total_steps, self.warmup_steps, config.schedule)
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            idx = perm[i : i + bs]
            xb, yb = network_input(self.x_train[idx], self.pre), self.y_train[idx]
            if config.augment != "none":
                xb = augment_batch(xb, config.augment, gen).contiguous(memory_format=torch.channels_last)
            # forward, backward, update
            with self.ctx:
                logits = model(xb)
                loss = F.cross_entropy(logits, yb, weight=self.weight, label_smoothing=config.label_smoothing)
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
            loss_sum += loss.detach()
            if k >= tail_from:
                tail_sum += loss.detach()
            self.step += 1
            if self.step == _EARLY_CHECK_STEP:
                _check_finite(loss_sum, epoch, config, self.step, lr)
        _check_finite(loss_sum, epoch, config, self.step, lr)  # the epoch's host sync: the time after it is real
        return loss_sum.item(), tail_sum.item(), len(epoch_starts), len(epoch_starts) - tail_from

    def checkpoint(self, data: list, *, finished: bool, spent: float) -> Checkpoint:
        """The loop's state now, as a checkpoint of training images ``data`` (:func:`data_key`)."""
        return Checkpoint(
            config=dataclasses.asdict(self.config), data=data, device=self.device.type, curve=self.curve.to_dict(),
            model=self.model.state_dict(), optimizer=self.optimizer.state_dict(), scaler=self.scaler.state_dict(),
            generator=self.gen.get_state(), torch_rng=torch.get_rng_state(), history=self.history, step=self.step,
            finished=finished, compute_seconds=self.compute_seconds, train_seconds=spent,
        )


def class_weights(y: torch.Tensor, num_classes: int) -> torch.Tensor:
    """scikit-learn's ``class_weight='balanced'``: ``len(y) / (num_classes * count)`` per class, float32 (a class
    absent from ``y`` weighs 0: it has no image to weigh)."""
    from sklearn.utils.class_weight import compute_class_weight

    present = torch.unique(y.cpu()).numpy()
    out = torch.zeros(num_classes, dtype=torch.float32)
    # scikit-learn's divisor counts the classes present, so the weights of a y with every class are its own
    out[torch.from_numpy(present)] = torch.from_numpy(
        compute_class_weight("balanced", classes=present, y=y.cpu().numpy())).float()
    return out


def _num_classes(model: nn.Module, y_train: torch.Tensor, y_val: torch.Tensor) -> int:
    """The network's number of outputs (an archsearch Net's record says it), else what the labels show."""
    arch = getattr(model, "arch", None)
    if arch is not None and isinstance(getattr(arch, "num_classes", None), int):
        return int(arch.num_classes)
    return int(max(y_train.max().item(), y_val.max().item())) + 1


def _check_finite(loss_sum: torch.Tensor, epoch: int, config: TrainConfig, step: int, lr: float) -> None:
    """Raise :class:`TrainingDiverged` if the accumulated loss is NaN/inf (one host sync)."""
    if not torch.isfinite(loss_sum).item():
        raise TrainingDiverged(
            f"training loss is not finite ({loss_sum.item()}) in epoch {epoch + 1}/{config.epochs} "
            f"by global step {step}, at lr={lr:.4g} (base lr={config.lr:.4g}, schedule={config.schedule!r})"
        )
