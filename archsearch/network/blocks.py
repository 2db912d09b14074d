"""The block families: MobileNet v1, ShuffleNet v1 and EffNet, each with its analytic cost.

A block knows only its own inputs (a :class:`BlockSpec`). Chaining channels across blocks, rounding
them so that groups divide them and placing strides is the builder's job (``arch.Arch.plan``).

Every block class implements three class methods next to its ``forward``:

- ``validate(spec)`` raises ``ValueError`` for a spec it cannot build,
- ``from_spec(spec)`` calls its explicit constructor,
- ``cost(spec, tally)`` walks the same layers as ``forward`` on a :class:`~archsearch.network.tally.Tally`, so
  that MACs, parameters and activation sizes are known from the record alone, with nothing built.

Users add a family with :func:`register_block` from their own code.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from archsearch.network.tally import Tally

__all__ = [
    "BLOCKS",
    "Block",
    "BlockSpec",
    "Tally",
    "register_block",
    "get_block",
    "ConvBlock",
    "DepthwiseSeparable",
    "ShuffleUnit",
    "EffNetBlock",
    "channel_shuffle",
]


@dataclass(frozen=True)
class BlockSpec:
    """One block as the builder places it: its own channels, stride and options."""

    block: str
    in_chs: int
    out_chs: int
    stride: int = 1
    kernel: int = 3
    groups: int = 1
    mid_chs: int = 0  # bottleneck width, for the families that have one


class Block(nn.Module):
    """Base class of a block family; see the module docstring for the three class methods."""

    #: bottleneck width as a fraction of ``out_chs`` (None: the family has no bottleneck)
    default_ratio: ClassVar[float | None] = None
    #: whether ``groups`` and ``kernel`` mean anything to the family (otherwise they must stay 1 and 3)
    uses_groups: ClassVar[bool] = False
    uses_kernel: ClassVar[bool] = False

    @classmethod
    def validate(cls, spec: BlockSpec) -> None:
        if spec.stride not in (1, 2):
            raise ValueError(f"{spec.block}: stride must be 1 or 2, got {spec.stride}")
        if not cls.uses_groups and spec.groups != 1:
            raise ValueError(f"{spec.block}: has no group convolution, groups must be 1, got {spec.groups}")
        if not cls.uses_kernel and spec.kernel != 3:
            raise ValueError(f"{spec.block}: has a fixed kernel, kernel must be 3, got {spec.kernel}")
        if spec.kernel not in (1, 3, 5, 7):
            raise ValueError(f"{spec.block}: kernel must be one of 1, 3, 5, 7, got {spec.kernel}")

    @classmethod
    def from_spec(cls, spec: BlockSpec) -> Block:
        raise NotImplementedError

    @classmethod
    def cost(cls, spec: BlockSpec, t: Tally) -> None:
        raise NotImplementedError


BLOCKS: dict[str, type[Block]] = {}


def register_block(name: str):
    """Class decorator adding a :class:`Block` subclass to the registry under ``name``."""

    if not isinstance(name, str) or not re.fullmatch(r"[a-z][a-z0-9]*", name):
        # names appear in architecture ids, which split on '-' and '_'
        raise ValueError(f"block names are lower-case letters and digits, starting with a letter; got {name!r}")

    def wrap(cls: type[Block]) -> type[Block]:
        if name in BLOCKS:
            raise ValueError(f"block {name!r} is already registered (by {BLOCKS[name].__qualname__})")
        if not (isinstance(cls, type) and issubclass(cls, Block)):
            raise TypeError(f"register_block({name!r}) expects a Block subclass, got {cls!r}")
        for method in ("from_spec", "cost"):
            if getattr(cls, method).__func__ is getattr(Block, method).__func__:
                raise TypeError(f"block {name!r}: {cls.__qualname__} must implement {method}()")
        BLOCKS[name] = cls
        return cls

    return wrap


def get_block(name: str) -> type[Block]:
    try:
        return BLOCKS[name]
    except KeyError:
        raise ValueError(f"unknown block {name!r}; registered blocks: {sorted(BLOCKS)}") from None


def _conv_bn_relu(in_chs: int, out_chs: int, kernel: int, stride: int, groups: int = 1) -> list[nn.Module]:
    return [
        nn.Conv2d(in_chs, out_chs, kernel, stride, kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(out_chs),
        nn.ReLU(inplace=True),
    ]


@register_block("conv")
class ConvBlock(Block):
    """A full k x k convolution -> BN -> ReLU: the first layer MobileNet and ShuffleNet keep.

    MobileNet v1 (https://arxiv.org/abs/1704.04861) and ShuffleNet v1 (https://arxiv.org/abs/1707.01083)
    both start with one dense 3x3 convolution. Used as a stem; also valid as a stage block.
    """

    uses_kernel = True

    def __init__(self, in_chs: int, out_chs: int, stride: int = 1, kernel: int = 3):
        super().__init__()
        self.conv = nn.Conv2d(in_chs, out_chs, kernel, stride, kernel // 2, bias=False)
        self.bn1 = nn.BatchNorm2d(out_chs)
        self.act1 = nn.ReLU(inplace=True)

    @classmethod
    def from_spec(cls, spec: BlockSpec) -> ConvBlock:
        return cls(spec.in_chs, spec.out_chs, spec.stride, spec.kernel)

    @classmethod
    def cost(cls, spec: BlockSpec, t: Tally) -> None:
        t.conv(spec.out_chs, spec.kernel, stride=spec.stride, padding=spec.kernel // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act1(self.bn1(self.conv(x)))


@register_block("dwsep")
class DepthwiseSeparable(Block):
    """MobileNet v1 depthwise-separable convolution (https://arxiv.org/abs/1704.04861, Fig. 3).

    depthwise k x k (stride) -> BN -> ReLU -> pointwise 1x1 -> BN -> ReLU.
    Deviation: the paper uses 3x3 only; the kernel is a search choice here (3, 5 or 7).
    """

    uses_kernel = True

    def __init__(self, in_chs: int, out_chs: int, stride: int = 1, kernel: int = 3):
        super().__init__()
        # depthwise
        self.conv_dw = nn.Conv2d(in_chs, in_chs, kernel, stride, kernel // 2, groups=in_chs, bias=False)
        self.bn1 = nn.BatchNorm2d(in_chs)
        self.act1 = nn.ReLU(inplace=True)
        # pointwise
        self.conv_pw = nn.Conv2d(in_chs, out_chs, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_chs)
        self.act2 = nn.ReLU(inplace=True)

    @classmethod
    def from_spec(cls, spec: BlockSpec) -> DepthwiseSeparable:
        return cls(spec.in_chs, spec.out_chs, spec.stride, spec.kernel)

    @classmethod
    def cost(cls, spec: BlockSpec, t: Tally) -> None:
        t.conv(spec.in_chs, spec.kernel, stride=spec.stride, padding=spec.kernel // 2, groups=spec.in_chs)
        t.conv(spec.out_chs, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act1(self.bn1(self.conv_dw(x)))
        return self.act2(self.bn2(self.conv_pw(x)))


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """ShuffleNet's channel shuffle: (N, g*c, H, W) -> (N, c*g, H, W), interleaving the groups.

    A channels_last input stays channels_last (training runs so): the shuffle then permutes the innermost
    axis, where a copy into the default layout sent the rest of the unit down slower kernels (a training step
    median 1.09x faster; docs/design.md, "Measured figures").
    """
    n, c, h, w = x.shape
    traced = isinstance(x, torch.fx.Proxy)  # torch.fx (archsearch.network.memory) knows no layout: the default path
    if not traced and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
        x = x.permute(0, 2, 3, 1).reshape(n, h, w, groups, c // groups)  # a view: (N, H, W, g, c/g)
        x = x.transpose(3, 4).reshape(n, h, w, c)  # the copy: (N, H, W, c/g, g)
        return x.permute(0, 3, 1, 2)  # (N, C, H, W), channels_last
    x = x.view(n, groups, c // groups, h, w)  # (N, g, c/g, H, W)
    x = x.transpose(1, 2).contiguous()  # (N, c/g, g, H, W)
    return x.view(n, c, h, w)


@register_block("shuffle")
class ShuffleUnit(Block):
    """ShuffleNet v1 unit (https://arxiv.org/abs/1707.01083, Fig. 2b/2c).

    grouped 1x1 to ``mid_chs`` -> BN -> ReLU -> channel shuffle -> depthwise 3x3 (stride) -> BN ->
    grouped 1x1 -> BN; stride 1 adds the identity, stride 2 concatenates a 3x3 average-pooled
    shortcut (the branch then produces ``out_chs - in_chs`` channels); ReLU after the merge.

    The first 1x1 is not grouped where its input has too few channels: where it widens the input
    (``in_chs < mid_chs``, as for the paper's stage-2 input of 24 channels) or where ``groups`` does
    not divide ``in_chs``; where it narrows (every later unit, and the EffNet paper's g=4 comparison
    network on a 64-channel stem) it is grouped.
    Deviations: at stride 1 with ``in_chs != out_chs`` (a stage that widens without downsampling,
    which the paper never has) there is no shortcut; the depthwise kernel is a search choice.
    """

    default_ratio = 0.25
    uses_groups = True
    uses_kernel = True

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        stride: int = 1,
        groups: int = 1,
        mid_chs: int = 0,
        kernel: int = 3,
        group_first_pw: bool = True,  # False: the first 1x1 is dense (see the class docstring)
    ):
        super().__init__()
        self.stride = stride
        self.groups = groups
        self.concat = stride == 2
        self.residual = stride == 1 and in_chs == out_chs
        branch_chs = out_chs - in_chs if self.concat else out_chs
        mid_chs = mid_chs or max(groups, out_chs // 4)
        g1 = groups if group_first_pw and in_chs % groups == 0 else 1
        # pointwise (grouped), then shuffle so that the depthwise sees channels of every group
        self.conv_pw = nn.Conv2d(in_chs, mid_chs, 1, groups=g1, bias=False)
        self.bn1 = nn.BatchNorm2d(mid_chs)
        self.act1 = nn.ReLU(inplace=True)
        # depthwise (no ReLU after it, as in the paper)
        self.conv_dw = nn.Conv2d(mid_chs, mid_chs, kernel, stride, kernel // 2, groups=mid_chs, bias=False)
        self.bn2 = nn.BatchNorm2d(mid_chs)
        # pointwise (grouped) back to the branch width
        self.conv_pwl = nn.Conv2d(mid_chs, branch_chs, 1, groups=groups, bias=False)
        self.bn3 = nn.BatchNorm2d(branch_chs)
        self.shortcut = nn.AvgPool2d(3, 2, 1) if self.concat else nn.Identity()
        self.act2 = nn.ReLU(inplace=True)

    @staticmethod
    def _first_groups(spec: BlockSpec) -> int:
        dense = spec.in_chs < spec.mid_chs or spec.in_chs % spec.groups
        return 1 if dense else spec.groups

    @classmethod
    def validate(cls, spec: BlockSpec) -> None:
        super().validate(spec)
        g = spec.groups
        branch = spec.out_chs - spec.in_chs if spec.stride == 2 else spec.out_chs
        if spec.stride == 2 and branch < 1:
            raise ValueError(
                f"shuffle: a stride-2 unit concatenates its input, so out_chs must exceed in_chs; "
                f"got in_chs={spec.in_chs}, out_chs={spec.out_chs}"
            )
        if branch % g or spec.mid_chs % g or spec.mid_chs < 1:
            raise ValueError(
                f"shuffle: groups={g} must divide the bottleneck ({spec.mid_chs}) and the branch output "
                f"({branch} = out_chs{' - in_chs' if spec.stride == 2 else ''})"
            )

    @classmethod
    def from_spec(cls, spec: BlockSpec) -> ShuffleUnit:
        return cls(
            spec.in_chs,
            spec.out_chs,
            spec.stride,
            spec.groups,
            spec.mid_chs,
            spec.kernel,
            group_first_pw=cls._first_groups(spec) > 1,
        )

    @classmethod
    def cost(cls, spec: BlockSpec, t: Tally) -> None:
        x_in, c_in, h_in, w_in = t.numel, t.c, t.h, t.w
        branch = spec.out_chs - spec.in_chs if spec.stride == 2 else spec.out_chs
        keep = x_in if spec.stride == 2 or branch == c_in else 0  # the input, held for the shortcut or residual
        # the first 1x1's input is the held tensor itself: nothing more is held beside it, then ``keep`` beside
        # its BN; the shuffle's copy (input and output alive) is the size of that BN's input and output
        t.conv(spec.mid_chs, 1, groups=cls._first_groups(spec), norm_held=keep)
        t.conv(spec.mid_chs, spec.kernel, stride=spec.stride, padding=spec.kernel // 2,
               groups=spec.mid_chs, held=keep)
        t.conv(branch, 1, groups=spec.groups, held=keep)
        if spec.stride == 2:
            short = c_in * t.h * t.w  # the 3x3/2 average pool gives the same map size as the branch
            t.peak = max(t.peak, x_in + t.numel + short)  # the pool: its input, its output, and the branch
            t.join(spec.out_chs, t.h, t.w, held=short)
        elif branch == c_in:
            t.join(spec.out_chs, h_in, w_in, held=x_in)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act1(self.bn1(self.conv_pw(x)))
        # shuffle (a no-op for one group)
        if self.groups > 1:
            out = channel_shuffle(out, self.groups)
        out = self.bn2(self.conv_dw(out))
        out = self.bn3(self.conv_pwl(out))
        if self.concat:
            out = torch.cat((self.shortcut(x), out), dim=1)
        elif self.residual:
            out = out + x
        return self.act2(out)


@register_block("effnet")
class EffNetBlock(Block):
    """EffNet block (https://arxiv.org/abs/1801.06434, Fig. 3): spatially separable depthwise convolution.

    1x1 to ``mid_chs`` -> depthwise 1x3 -> max-pool 2x1 (height only) -> depthwise 3x1 ->
    2x1 convolution to ``out_chs`` striding the width. Each convolution is followed by LeakyReLU
    (slope 0.3) then BN, in that order, as in the authors' reference code.

    It halves both axes by construction. Deviations: where the stage asks for stride 1, the one-axis
    pool is left out and the 2x1 convolution does not stride, so the block keeps the map size; odd
    sizes round up on both axes (``ceil_mode`` pooling, as a padded 3x3/2 convolution does), so height
    and width stay equal.
    """

    default_ratio = 0.5

    def __init__(self, in_chs: int, out_chs: int, stride: int = 2, mid_chs: int = 0):
        super().__init__()
        mid_chs = mid_chs or max(1, out_chs // 2)
        # pointwise bottleneck
        self.conv_pw = nn.Conv2d(in_chs, mid_chs, 1, bias=False)
        self.act1 = nn.LeakyReLU(0.3, inplace=True)
        self.bn1 = nn.BatchNorm2d(mid_chs)
        # depthwise 1x3 along the width
        self.conv_dw_w = nn.Conv2d(mid_chs, mid_chs, (1, 3), padding=(0, 1), groups=mid_chs, bias=False)
        self.act2 = nn.LeakyReLU(0.3, inplace=True)
        self.bn2 = nn.BatchNorm2d(mid_chs)
        # separable pooling: halve the height only
        self.pool = nn.MaxPool2d((2, 1), (2, 1), ceil_mode=True) if stride == 2 else nn.Identity()
        # depthwise 3x1 along the height
        self.conv_dw_h = nn.Conv2d(mid_chs, mid_chs, (3, 1), padding=(1, 0), groups=mid_chs, bias=False)
        self.act3 = nn.LeakyReLU(0.3, inplace=True)
        self.bn3 = nn.BatchNorm2d(mid_chs)
        # 2x1 convolution striding the width; one row of bottom padding keeps the height ("same")
        self.pad = nn.ZeroPad2d((0, 0, 0, 1))
        self.conv_out = nn.Conv2d(mid_chs, out_chs, (2, 1), stride=(1, stride), bias=False)
        self.act4 = nn.LeakyReLU(0.3, inplace=True)
        self.bn4 = nn.BatchNorm2d(out_chs)

    @classmethod
    def validate(cls, spec: BlockSpec) -> None:
        super().validate(spec)
        if spec.mid_chs < 1:
            raise ValueError(f"effnet: mid_chs must be >= 1, got {spec.mid_chs}")

    @classmethod
    def from_spec(cls, spec: BlockSpec) -> EffNetBlock:
        return cls(spec.in_chs, spec.out_chs, spec.stride, spec.mid_chs)

    @classmethod
    def cost(cls, spec: BlockSpec, t: Tally) -> None:
        mid = spec.mid_chs
        t.conv(mid, 1)
        t.conv(mid, (1, 3), padding=(0, 1), groups=mid)
        if spec.stride == 2:
            t.pool((2, 1), stride=(2, 1), ceil_mode=True)
        t.conv(mid, (3, 1), padding=(1, 0), groups=mid)
        t.pad(bottom=1)
        t.conv(spec.out_chs, (2, 1), stride=(1, spec.stride))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn1(self.act1(self.conv_pw(x)))
        x = self.bn2(self.act2(self.conv_dw_w(x)))
        x = self.pool(x)
        x = self.bn3(self.act3(self.conv_dw_h(x)))
        return self.bn4(self.act4(self.conv_out(self.pad(x))))
