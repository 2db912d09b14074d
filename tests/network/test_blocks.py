"""Every registered block family on tiny CPU inputs: shapes as the Tally predicts, finite outputs and
gradients; the channel shuffle; the registry; ShuffleNet's dense first 1x1."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from archsearch.network.arch import Arch, Stage, Stem, make_divisible
from archsearch.network.blocks import BLOCKS, Block, BlockSpec, ShuffleUnit, channel_shuffle, get_block, register_block
from archsearch.network.build import build
from archsearch.network.tally import Tally

SIZES = [(1, 1), (2, 2), (7, 7), (8, 8), (9, 9), (28, 28), (7, 9)]  # (height, width), odd and even


def spec_for(name: str, in_chs: int, stride: int, groups: int = 1, kernel: int = 3) -> BlockSpec:
    """A spec the family can build: what the builder would place after an ``in_chs``-channel map."""
    cls = BLOCKS[name]
    if name == "shuffle" and stride == 2:
        out_chs = in_chs + 24  # the unit concatenates its input; the branch (24) divides by every g
    elif name == "shuffle" and in_chs == 24:
        out_chs = 24  # stride 1, same width: the residual unit of the paper
    else:
        out_chs = 24
    mid = 0 if cls.default_ratio is None else make_divisible(out_chs * cls.default_ratio, groups)
    return BlockSpec(name, in_chs, out_chs, stride=stride, kernel=kernel, groups=groups, mid_chs=mid)


def block_cases():
    for name in sorted(BLOCKS):
        cls = BLOCKS[name]
        for in_chs in (1, 3, 16, 24):
            for stride in (1, 2):
                for groups in (1, 2, 4) if cls.uses_groups else (1,):
                    for kernel in (3, 5) if cls.uses_kernel else (3,):
                        spec = spec_for(name, in_chs, stride, groups, kernel)
                        yield pytest.param(spec, id=f"{name}-i{in_chs}-o{spec.out_chs}-s{stride}-g{groups}-k{kernel}")


def predicted(spec: BlockSpec, h: int, w: int) -> Tally:
    t = Tally(spec.in_chs, h, w)
    get_block(spec.block).cost(spec, t)
    return t


@pytest.mark.parametrize("spec", list(block_cases()))
def test_block_shapes_params_and_gradients(spec):
    cls = get_block(spec.block)
    cls.validate(spec)
    torch.manual_seed(0)
    block = cls.from_spec(spec)
    assert isinstance(block, Block)
    t = predicted(spec, 9, 9)
    assert t.params == sum(p.numel() for p in block.parameters())

    block.eval()
    with torch.no_grad():
        for h, w in SIZES:
            out = block(torch.randn(1, spec.in_chs, h, w))
            t = predicted(spec, h, w)
            assert tuple(out.shape) == (1, t.c, t.h, t.w), f"{h}x{w}"
            assert torch.isfinite(out).all()

    block.train()
    out = block(torch.randn(2, spec.in_chs, 9, 9))
    assert torch.isfinite(out).all()
    # a weighted sum: the plain sum of a BN output does not depend on anything before that BN
    (out * torch.randn_like(out)).sum().backward()
    for name, p in block.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def test_every_family_is_covered():
    covered = {case.values[0].block for case in block_cases()}
    assert covered == set(BLOCKS) >= {"conv", "dwsep", "shuffle", "effnet"}


# -- channel shuffle ----------------------------------------------------------------------------------


def test_channel_shuffle_interleaves_the_groups():
    x = torch.arange(6.0).view(1, 6, 1, 1)
    # groups (0 1 2) and (3 4 5): take one channel of each group in turn
    assert channel_shuffle(x, 2).flatten().tolist() == [0, 3, 1, 4, 2, 5]
    assert channel_shuffle(x, 3).flatten().tolist() == [0, 2, 4, 1, 3, 5]
    x = torch.arange(12.0).view(1, 12, 1, 1)
    assert channel_shuffle(x, 4).flatten().tolist() == [0, 3, 6, 9, 1, 4, 7, 10, 2, 5, 8, 11]
    assert torch.equal(channel_shuffle(x, 1), x)


@pytest.mark.parametrize("groups", [2, 3, 4, 6])
def test_channel_shuffle_is_a_permutation_undone_by_the_transposed_group_count(groups):
    x = torch.randn(2, 12, 3, 5)
    y = channel_shuffle(x, groups)
    assert y.shape == x.shape
    # a permutation of whole channels
    assert sorted(y[0, :, 0, 0].tolist()) == sorted(x[0, :, 0, 0].tolist())
    assert torch.equal(channel_shuffle(y, 12 // groups), x)


@pytest.mark.parametrize("groups", [2, 3, 4])
def test_channel_shuffle_keeps_channels_last_and_its_values(groups):
    x = torch.randn(2, 12, 3, 5)
    y = channel_shuffle(x.contiguous(memory_format=torch.channels_last), groups)
    assert y.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(y, channel_shuffle(x, groups))


# -- registry -----------------------------------------------------------------------------------------


class Pointwise(Block):
    """A user family: 1x1 convolution (stride) -> BN -> ReLU."""

    def __init__(self, in_chs: int, out_chs: int, stride: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(in_chs, out_chs, 1, stride, bias=False)
        self.bn1 = nn.BatchNorm2d(out_chs)
        self.act1 = nn.ReLU(inplace=True)

    @classmethod
    def from_spec(cls, spec: BlockSpec) -> Pointwise:
        return cls(spec.in_chs, spec.out_chs, spec.stride)

    @classmethod
    def cost(cls, spec: BlockSpec, t: Tally) -> None:
        t.conv(spec.out_chs, 1, stride=spec.stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act1(self.bn1(self.conv(x)))


@pytest.fixture
def user_block():
    name = "pointwise"
    assert name not in BLOCKS
    register_block(name)(Pointwise)
    yield name
    BLOCKS.pop(name, None)


def test_a_user_block_is_registered_and_built(user_block):
    assert get_block(user_block) is Pointwise
    arch = Arch(1, 9, 10, Stem(user_block, 8), (Stage("dwsep", 16, stride=2), Stage(user_block, 32, 2, stride=2)))
    assert arch.id == "i1x9-n10_stem-pointwise-c8_dwsep-c16-s2_pointwise-c32-r2-s2_gap"
    assert Arch.from_id(arch.id) == arch
    net = build(arch)
    assert isinstance(net.stages[1][1], Pointwise)
    assert net(torch.randn(2, 1, 9, 9)).shape == (2, 10)


def test_registering_a_taken_name_raises():
    with pytest.raises(ValueError, match="'conv' is already registered"):
        register_block("conv")(Pointwise)
    assert BLOCKS["conv"] is not Pointwise


@pytest.mark.parametrize("name", ["Conv", "my-block", "my_block", "", "1x1", "conv 2", None, 3])
def test_bad_block_names_raise(name):
    with pytest.raises(ValueError, match="lower-case letters and digits"):
        register_block(name)


def test_a_block_without_cost_raises_type_error():
    class NoCost(Block):
        @classmethod
        def from_spec(cls, spec):
            return cls()

    with pytest.raises(TypeError, match=r"must implement cost\(\)"):
        register_block("nocost")(NoCost)
    assert "nocost" not in BLOCKS


def test_a_class_that_is_not_a_block_raises_type_error():
    with pytest.raises(TypeError, match="expects a Block subclass"):
        register_block("notablock")(nn.Conv2d)
    assert "notablock" not in BLOCKS


def test_unknown_block_lists_the_registered_ones():
    with pytest.raises(ValueError, match=r"unknown block 'resnet'; registered blocks: \[.*'dwsep'"):
        get_block("resnet")


# -- ShuffleNet: the first 1x1 is dense where it widens ------------------------------------------------------


def test_shufflenet_first_pointwise_is_dense_only_where_it_widens():
    # stage 1: 24 -> bottleneck 12 (narrows: grouped); stage 2 first unit: 48 -> 24 (grouped);
    # a unit whose input is narrower than its bottleneck (the paper's stage-2 input) stays dense
    arch = Arch(
        3, 32, 10, Stem("conv", 24),
        (Stage("shuffle", 48, repeats=2, stride=2, groups=4), Stage("shuffle", 96, repeats=2, stride=2, groups=4)),
    )
    net = build(arch)
    units = [u for stage in net.stages for u in stage]
    assert all(isinstance(u, ShuffleUnit) for u in units)
    assert [u.conv_pw.groups for u in units] == [4, 4, 4, 4]
    assert [u.conv_pwl.groups for u in units] == [4, 4, 4, 4]
    assert net(torch.randn(1, 3, 32, 32)).shape == (1, 10)
    widening = Arch(3, 32, 10, Stem("conv", 8), (Stage("shuffle", 96, repeats=2, stride=2, groups=4),))
    assert [u.conv_pw.groups for u in build(widening).stages[0]] == [1, 4]  # 8 < 24, then 96 > 24


def test_shufflenet_first_pointwise_is_dense_where_groups_do_not_divide_the_input():
    spec = BlockSpec("shuffle", 3, 27, stride=2, groups=4, mid_chs=8)
    assert ShuffleUnit.from_spec(spec).conv_pw.groups == 1
