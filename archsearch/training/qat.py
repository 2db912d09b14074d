"""Quantization-aware fine-tuning: a trained network trained a few more epochs while its forward pass rounds as
the int8 model will (:func:`archsearch.network.int8.quantize_onnx`), so that its weights settle where rounding
costs least.

What is simulated, with PyTorch's fake-quantize ops (straight-through gradients), in the arithmetic of the int8
file: each BatchNorm that directly follows a convolution folded into it first (as ONNX Runtime folds it); each
convolution's and linear layer's weight rounded to 7-bit int8 (-64..64, as ``reduce_range`` quantizes it),
symmetric, one scale per output channel; the input of
each of them rounded to uint8 with a range that tracks the batches' min and max (a moving average). The other
BatchNorms (EffNet's follow its activations) train as in the first training: frozen in eval mode they let the
fine-tune diverge within ten steps (docs/int8.md). The result is a plain float network
(``torch.fx`` graph module) with the rounded weights, ready to export and quantize.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable

import torch
from torch import fx, nn
from torch.nn.utils import parametrize
from torch.nn.utils.fusion import fuse_conv_bn_eval

from archsearch.config.recipe import TrainConfig
from archsearch.training.train import TrainResult, train

__all__ = ["LR_FACTOR", "WEIGHT_MAX", "fold_batch_norms", "qat_finetune"]

#: the fine-tuning's learning rate, as a share of the recipe's: the weights move a little from where they are
LR_FACTOR = 0.1
_MOMENTUM = 0.05  # the activation ranges' moving average


def fold_batch_norms(model: nn.Module) -> fx.GraphModule:
    """``model`` (eval mode) traced, with each BatchNorm whose input is a convolution's only use folded into it."""
    gm = fx.symbolic_trace(copy.deepcopy(model).eval())
    modules = dict(gm.named_modules())
    for node in list(gm.graph.nodes):
        if node.op != "call_module" or not isinstance(modules[node.target], nn.BatchNorm2d):
            continue
        src = node.args[0]
        if not (isinstance(src, fx.Node) and src.op == "call_module" and isinstance(modules[src.target], nn.Conv2d)
                and len(src.users) == 1):
            continue
        fused = fuse_conv_bn_eval(modules[src.target], modules[node.target])
        _set_module(gm, str(src.target), fused)
        node.replace_all_uses_with(src)
        gm.graph.erase_node(node)
    gm.graph.lint()
    gm.recompile()
    gm.delete_all_unused_submodules()
    return gm


def _set_module(root: nn.Module, target: str, module: nn.Module) -> None:
    parent, _, name = target.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, name, module)


#: the weights' integer range: 7 bits, as archsearch.network.int8 quantizes them
WEIGHT_MAX = 64


class _WeightInt8(nn.Module):
    """A weight rounded to integers in -WEIGHT_MAX..WEIGHT_MAX, symmetric, one scale per output channel."""

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        amax = w.detach().abs().flatten(1).amax(1).clamp_min(1e-8)
        scale = (amax / WEIGHT_MAX).float()
        zero = torch.zeros_like(scale, dtype=torch.int32)
        return torch.fake_quantize_per_channel_affine(w, scale, zero, 0, -WEIGHT_MAX, WEIGHT_MAX)


class _InputUint8:
    """A forward pre-hook: the layer's input rounded to uint8 over a range that tracks the batches' min and max
    (always holding 0, as ONNX Runtime's ranges do); frozen in eval mode."""

    def __init__(self) -> None:
        self.low: torch.Tensor | None = None
        self.high: torch.Tensor | None = None

    def __call__(self, module: nn.Module, args: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        x = args[0]
        if module.training or self.low is None or self.high is None:
            low, high = x.detach().min().clamp(max=0.0), x.detach().max().clamp(min=0.0)
            if self.low is not None and self.high is not None:
                low = self.low + _MOMENTUM * (low - self.low)
                high = self.high + _MOMENTUM * (high - self.high)
            self.low, self.high = low, high
        else:
            low, high = self.low, self.high
        scale = ((high - low) / 255.0).clamp_min(1e-8).reshape(1).float()
        zero = torch.round(-low / scale).clamp(0, 255).to(torch.int32).reshape(1)
        return (torch.fake_quantize_per_tensor_affine(x, scale, zero, 0, 255), *args[1:])


def qat_finetune(
    model: nn.Module,
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    x_val: torch.Tensor,
    y_val: torch.Tensor,
    recipe: TrainConfig,
    *,
    epochs: int,
    device: torch.device,
    preprocess: nn.Module | None = None,
    on_epoch: Callable[[int, float], None] | None = None,
) -> tuple[fx.GraphModule, TrainResult]:
    """``model`` (trained, left unchanged) fine-tuned ``epochs`` epochs with int8 rounding simulated, with
    ``recipe`` at ``LR_FACTOR`` of its learning rate, no warm-up; returns the float network with the rounded
    weights (BatchNorms folded where they follow a convolution; eval mode, on the CPU) and the training's result
    (its accuracy on ``x_val``, with rounding)."""
    net = fold_batch_norms(model.cpu())
    hooks, layers = [], [m for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    for layer in layers:
        parametrize.register_parametrization(layer, "weight", _WeightInt8())
        hooks.append(layer.register_forward_pre_hook(_InputUint8()))
    recipe = dataclasses.replace(recipe, epochs=epochs, steps=None, seconds=None, lr=recipe.lr * LR_FACTOR,
                                 warmup_epochs=0.0)
    try:
        result = train(net, x_train, y_train, x_val, y_val, recipe, device=device,
                       preprocess=preprocess, on_epoch=on_epoch)
    finally:
        for hook in hooks:
            hook.remove()
        net.cpu()
        for layer in layers:
            parametrize.remove_parametrizations(layer, "weight", leave_parametrized=True)
    return net.eval(), result
