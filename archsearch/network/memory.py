"""Peak activation memory measured on a built network, to check the analytic figure (``Cost.peak_activation_bytes``).

The method: trace the network with ``torch.fx``, give every node its shape on one batch-1 input (``ShapeProp``),
and walk the nodes in execution order, as an inference runtime without a memory planner's tricks would run them.
A tensor is alive from the node that makes it until its last use; the peak is the largest sum of the bytes of the
tensors alive at any node, that node's output included. The convention, the same as the analytic walk's
(:class:`archsearch.network.tally.Tally`):

- float32 activations, batch 1; the input image counts, parameters and BN statistics do not;
- a view (``view``, ``reshape``, ``transpose``, ``flatten``) and an in-place module (``ReLU(inplace=True)``) share
  their input's memory; a copy (``contiguous``, ``torch.cat``, an addition) is a tensor of its own;
- BN is not folded: a BN's input and output are both alive while it runs (folded into the convolution, as
  ONNX Runtime does, the peak of a convolution followed by BN would be its input and output only);
- a block's input stays alive while a shortcut still needs it (ShuffleNet's residual and average-pooled
  concatenation), and no longer.

``python -m benchmarks.cost.peak_memory`` compares the two on 200 random networks of each shipped space.
"""

from __future__ import annotations

import torch
import torch.fx as fx
from torch import nn
from torch.fx.passes.shape_prop import ShapeProp

__all__ = ["measured_peak_bytes"]

_VIEW_METHODS = ("view", "reshape", "transpose", "permute", "flatten", "squeeze", "unsqueeze")
_VIEW_FUNCTIONS = ("flatten", "transpose", "reshape", "getitem")


def _is_alias(gm: fx.GraphModule, node: fx.Node) -> bool:
    """Whether ``node``'s output shares its first input's memory."""
    if node.op == "call_module":
        assert isinstance(node.target, str)  # a call_module node's target is the submodule's qualified name
        module = gm.get_submodule(node.target)
        return bool(getattr(module, "inplace", False)) or isinstance(module, nn.Identity)
    if node.op == "call_method":
        return node.target in _VIEW_METHODS
    if node.op == "call_function":
        return getattr(node.target, "__name__", "") in _VIEW_FUNCTIONS
    return False


@torch.no_grad()
def measured_peak_bytes(model: nn.Module, input_shape: tuple[int, int, int]) -> int:
    """The peak activation bytes of ``model`` (eval mode) on one ``input_shape`` (C, H, W) input, by liveness."""
    was_training = model.training
    model.eval()
    try:
        gm = fx.symbolic_trace(model)
        ShapeProp(gm).propagate(torch.zeros(1, *input_shape))
    finally:
        model.train(was_training)
    nodes = list(gm.graph.nodes)
    owner: dict[fx.Node, fx.Node] = {}  # node -> the node whose memory its output is
    size: dict[fx.Node, int] = {}
    for node in nodes:
        meta = node.meta.get("tensor_meta")
        if node.op == "output" or not isinstance(meta, fx.passes.shape_prop.TensorMetadata):
            continue
        if _is_alias(gm, node) and node.all_input_nodes and node.all_input_nodes[0] in owner:
            owner[node] = owner[node.all_input_nodes[0]]
        else:
            owner[node] = node
            size[node] = meta.shape.numel() * meta.dtype.itemsize
    last_use: dict[fx.Node, int] = {}
    for i, node in enumerate(nodes):
        for source in node.all_input_nodes:
            if source in owner:
                last_use[owner[source]] = i
    peak, alive = 0, set()
    for i, node in enumerate(nodes):
        if node not in owner:
            continue
        alive.add(owner[node])
        peak = max(peak, sum(size[t] for t in alive))
        alive = {t for t in alive if last_use.get(t, -1) > i or t is owner[node]}
    return peak
