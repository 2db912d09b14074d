"""The analytic cost model against two independent counters, on 500 random architectures per space.

Convention (archsearch/network/cost.py): MACs are the multiply-accumulates of convolutions and linear layers at
batch 1, nothing else. thop is told the same convention (BN, pooling, padding and activations count
zero); torch's FlopCounterMode counts FLOPs = 2 x MACs of aten.convolution and aten.addmm / aten.mm and
nothing else. All three must agree exactly, and the analytic parameter count must equal the module's.

Cost of the big test, measured on the 2-core CPU machine (one thread): about 12 ms to build a network
and about 30 ms for the one forward pass that runs both counters, per architecture.
"""

from __future__ import annotations

import random
from pathlib import Path

import optuna
import pytest
import thop
import torch
import yaml
from thop.vision.basic_hooks import zero_ops
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from archsearch.network.arch import Arch, Stage, Stem
from archsearch.network.build import build
from archsearch.network.cost import Cost, arch_cost
from archsearch.network.memory import measured_peak_bytes
from archsearch.space.search_space import Space, load_space, space_from_dict, suggest_architecture

SPACES_DIR = Path(__file__).resolve().parents[2] / "search_spaces"
SPACE_NAMES = ("mixed", "mobilenet", "shufflenet", "effnet")
HIDDEN_HEAD = "mixed+hidden"
SHAPES = ((1, 28), (3, 32))  # (channels, resolution)
N_ARCHS = 100  # per space and input shape; benchmarks/cost/accuracy.py checks 500

# thop with our convention: every layer that is not a convolution or a linear layer counts zero
THOP_ZERO = {
    t: zero_ops
    for t in (
        nn.BatchNorm2d,
        nn.ReLU,
        nn.LeakyReLU,
        nn.MaxPool2d,
        nn.AvgPool2d,
        nn.AdaptiveAvgPool2d,
        nn.ZeroPad2d,
        nn.Identity,
        nn.Flatten,
    )
}
aten = torch.ops.aten
COUNTED_OPS = {aten.convolution, aten.addmm, aten.mm}


def space(name: str) -> Space:
    if name == HIDDEN_HEAD:  # mixed.yaml with a hidden layer in the head on offer (no shipped space has one)
        data = yaml.safe_load((SPACES_DIR / "mixed.yaml").read_text())
        return space_from_dict({**data, "head_hidden": [0, 16, 128]}, path=f"{name}.yaml")
    return load_space(SPACES_DIR / f"{name}.yaml")


def random_params(sp: Space, rng: random.Random) -> dict:
    """A value for every parameter ``suggest_architecture`` may ask for, each drawn uniformly.

    The same distribution as Optuna's RandomSampler, without a study: a FixedTrial ignores the
    parameters a record does not use (the blocks of a stage left out, groups of a dwsep stage ...).
    """
    params = {
        "width_mult": rng.choice(sp.width_mult),
        "resolution_mult": rng.choice(sp.resolution_mult),
        "stem": rng.choice(sp.stem_types),
        "stem_channels": rng.choice(sp.stem_channels),
    }
    for i, st in enumerate(sp.stages):
        params[f"s{i}_depth"] = rng.choice(st.depth)
        params[f"s{i}_block"] = rng.choice(st.blocks)
        params[f"s{i}_channels"] = rng.choice(st.channels)
        params[f"s{i}_groups"] = rng.choice(st.groups)
        params[f"s{i}_kernel"] = rng.choice(st.kernel)
    params["head_hidden"] = rng.choice(sp.head_hidden)
    return params


def random_archs(sp: Space, n: int, *, in_chs: int, resolution: int, seed: int) -> list[Arch]:
    rng = random.Random(seed)
    return [
        suggest_architecture(
            optuna.trial.FixedTrial(random_params(sp, rng)), sp,
            in_chs=in_chs, resolution=resolution, num_classes=10,
        )
        for _ in range(n)
    ]


def counted(arch: Arch) -> tuple[int, float, float, dict]:
    """(module parameters, thop MACs, thop parameters, FlopCounterMode FLOPs per aten op) of one build.

    thop and FlopCounterMode watch the same forward pass (batch 1, no grad, eval mode); the
    parameters are counted before thop touches the module.
    """
    model = build(arch).eval()
    params = sum(p.numel() for p in model.parameters())
    x = torch.randn(1, arch.in_chs, arch.resolution, arch.resolution)
    with FlopCounterMode(display=False) as flop_counter:
        thop_macs, thop_params = thop.profile(model, (x,), custom_ops=THOP_ZERO, verbose=False)
    return params, thop_macs, thop_params, flop_counter.get_flop_counts().get("Global", {})


@pytest.mark.slow  # counts 100 networks a case with thop and torch: seconds
@pytest.mark.parametrize("name,in_chs,resolution", [*((n, c, r) for n in SPACE_NAMES for c, r in SHAPES),
                                                    (HIDDEN_HEAD, 1, 28)])
def test_analytic_cost_equals_thop_and_flop_counter(name, in_chs, resolution):
    n = 40 if name == HIDDEN_HEAD else N_ARCHS  # the head alone differs from mixed.yaml's
    archs = random_archs(space(name), n, in_chs=in_chs, resolution=resolution, seed=1234)
    assert len({a.id for a in archs}) > n // 2  # really a spread of architectures
    wrong = []
    for arch in archs:
        cost = arch_cost(arch)
        params, thop_macs, thop_params, flops_by_op = counted(arch)
        assert set(flops_by_op) <= COUNTED_OPS, f"{arch.id}: FlopCounterMode counted {sorted(map(str, flops_by_op))}"
        assert aten.convolution in flops_by_op and flops_by_op.keys() & {aten.addmm, aten.mm}, arch.id
        flops = sum(flops_by_op.values())
        got = (cost.macs, thop_macs, flops / 2, cost.params, params, thop_params)
        if flops % 2 or len({cost.macs, thop_macs, flops / 2}) != 1 or len({cost.params, params, thop_params}) != 1:
            wrong.append(f"{arch.id}: (analytic, thop, flop_counter / 2) MACs, (analytic, module, thop) params = {got}")
    assert not wrong, f"{len(wrong)}/{len(archs)} disagree, e.g.\n" + "\n".join(wrong[:5])


@pytest.mark.slow  # counts every baseline and paper network: seconds
def test_baselines_and_paper_networks_agree_too():
    from archsearch.space.baselines import EFFNET_PAPER, effnet, mobilenet_v1, shufflenet_v1

    archs = [
        *EFFNET_PAPER.values(),
        mobilenet_v1(0.25, in_chs=1, resolution=28, num_classes=10),
        shufflenet_v1(8, 0.5, in_chs=3, resolution=32, num_classes=10),
        effnet(1.0, in_chs=1, resolution=28, num_classes=10),
    ]
    for arch in archs:
        cost = arch_cost(arch)
        params, thop_macs, _, flops_by_op = counted(arch)
        assert (cost.macs, cost.params) == (thop_macs, params) == (sum(flops_by_op.values()) // 2, params), arch.id


# -- peak activation memory ---------------------------------------------------------------------------


@pytest.mark.slow  # traces 20-30 networks a case: seconds
@pytest.mark.parametrize("name,in_chs,res,n", [*((name, 1, 28, 30) for name in SPACE_NAMES), ("mixed", 3, 32, 20),
                                                ("mixed", 1, 8, 20), (HIDDEN_HEAD, 1, 28, 30)])
def test_analytic_peak_equals_the_measured_one(name, in_chs, res, n):
    # the measurement: a torch.fx trace walked in execution order, each tensor alive until its last use
    # (archsearch/network/memory.py states the convention); benchmarks/cost/peak_memory.py runs 200 of each space
    for arch in random_archs(space(name), n, in_chs=in_chs, resolution=res, seed=11):
        analytic = arch_cost(arch).peak_activation_bytes
        assert measured_peak_bytes(build(arch), (arch.in_chs, arch.resolution, arch.resolution)) == analytic, arch.id


def test_peak_activation_of_a_hand_computed_network():
    # 1x8x8 -> conv 4 (3x3, pad 1) -> 4x8x8 -> dwsep 8 / 2: depthwise 4x4x4, pointwise 8x4x4 -> gap -> 10
    arch = Arch(1, 8, 10, Stem("conv", 4), (Stage("dwsep", 8, stride=2),))
    # largest: the BN after the stem conv, its input and its output (256 elements each) alive at once
    assert arch_cost(arch) == Cost(
        macs=4 * 9 * 64 + 4 * 9 * 16 + 8 * 4 * 16 + 8 * 10,
        params=4 * 9 + 8 + 4 * 9 + 8 + 8 * 4 + 16 + 8 * 10 + 10,
        peak_activation_bytes=4 * (256 + 256),
    )
