"""A standalone image classifier (PyTorch only), exported by archsearch.

Architecture i1x8-n10_stem-conv-c16_dwsep-c32-r2-s2_effnet-c64-s2_gap.
Generated from the source of archsearch's block classes; re-export rather than edit.

    import model                 # with this folder on sys.path
    net = model.load()           # eval mode, weights from weights.pt beside this file
    logits = net(images)         # raw images, N x INPUT_SHAPE, in the dataset's own range
    bare = model.load(bare=True) # the network alone: takes PREPROCESSING's output, N x NET_INPUT_SHAPE
    print(CLASSES[logits.argmax(1)[0]])  # the first image's class name

    python model.py              # one forward pass on zeros: prints the logits' shape
"""


from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import torch
from torch import nn


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
    def from_spec(cls, spec: BlockSpec) -> Block:
        raise NotImplementedError


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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act1(self.bn1(self.conv(x)))


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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act1(self.bn1(self.conv_dw(x)))
        return self.act2(self.bn2(self.conv_pw(x)))


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
    def from_spec(cls, spec: BlockSpec) -> EffNetBlock:
        return cls(spec.in_chs, spec.out_chs, spec.stride, spec.mid_chs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn1(self.act1(self.conv_pw(x)))
        x = self.bn2(self.act2(self.conv_dw_w(x)))
        x = self.pool(x)
        x = self.bn3(self.act3(self.conv_dw_h(x)))
        return self.bn4(self.act4(self.conv_out(self.pad(x))))


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


BLOCKS = {
    'conv': ConvBlock,
    'dwsep': DepthwiseSeparable,
    'effnet': EffNetBlock,
}


# the record's plan (archsearch.network.arch.Arch.plan): one BlockSpec per block
ARCH_ID = 'i1x8-n10_stem-conv-c16_dwsep-c32-r2-s2_effnet-c64-s2_gap'
INPUT_SHAPE = (1, 8, 8)  # C, H, W of a raw image: what load() takes
NET_INPUT_SHAPE = (1, 8, 8)  # C, H, W of the network's input: what load(bare=True) takes
# raw image -> network input (archsearch.data.preprocess.Preprocess): x / divisor, minus mean, over std,
# then resized to size x size unless size is None; None: no preprocessing recorded
PREPROCESSING = {'divisor': 16.0, 'mean': (0.3054789402173913,), 'std': (0.3759986700723281,), 'size': None}
STEM = BlockSpec(block='conv', in_chs=1, out_chs=16, stride=1, kernel=3, groups=1, mid_chs=0)
STEM_POOL = 0  # max-pool kernel after the stem (stride 2); 0: none
STAGES = (
    (
        BlockSpec(block='dwsep', in_chs=16, out_chs=32, stride=2, kernel=3, groups=1, mid_chs=0),
        BlockSpec(block='dwsep', in_chs=32, out_chs=32, stride=1, kernel=3, groups=1, mid_chs=0),
    ),
    (
        BlockSpec(block='effnet', in_chs=32, out_chs=64, stride=2, kernel=3, groups=1, mid_chs=32),
    ),
)
HEAD = 'gap'
FEATURES = 64  # classifier inputs
HIDDEN = 0  # units of the FC layer (+ ReLU) before the classifier; 0: none
NUM_CLASSES = 10
CLASSES = ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9']  # the name of each output: CLASSES[logits.argmax(1)]


class Net(nn.Module):
    """stem -> (max-pool) -> stages -> head, as ``archsearch.network.build.Net`` builds it from the record."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = BLOCKS[STEM.block].from_spec(STEM)
        self.stem_pool = nn.MaxPool2d(STEM_POOL, 2, (STEM_POOL - 1) // 2) if STEM_POOL else nn.Identity()
        self.stages = nn.Sequential(
            *(nn.Sequential(*(BLOCKS[spec.block].from_spec(spec) for spec in stage)) for stage in STAGES)
        )
        self.pool = nn.AdaptiveAvgPool2d(1) if HEAD == "gap" else nn.Identity()
        self.flatten = nn.Flatten(1)
        if HIDDEN:  # pooled features -> FC -> ReLU -> classifier
            self.classifier = nn.Sequential(nn.Linear(FEATURES, HIDDEN), nn.ReLU(inplace=True),
                                            nn.Linear(HIDDEN, NUM_CLASSES))
        else:
            self.classifier = nn.Linear(FEATURES, NUM_CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem_pool(self.stem(x))
        x = self.stages(x)
        return self.classifier(self.flatten(self.pool(x)))


def load(folder: str | Path | None = None, *, bare: bool = False) -> nn.Module:
    """The trained network in eval mode, weights from ``weights.pt`` in ``folder`` (default: this file's folder).

    It takes raw images, N x INPUT_SHAPE in the dataset's own range, and applies PREPROCESSING first (where
    that is None the export recorded none: the network's own input). ``bare=True``: the network alone, which
    takes the preprocessed tensor, N x NET_INPUT_SHAPE.
    """
    folder = Path(__file__).resolve().parent if folder is None else Path(folder)
    net = Net()
    state = torch.load(folder / "weights.pt", map_location="cpu", weights_only=True)
    net.load_state_dict(state)
    if bare or PREPROCESSING is None:
        return net.eval()
    return WithPreprocessing(Preprocess(**PREPROCESSING), net).eval()


if __name__ == "__main__":
    import sys

    net = load()
    classify_file = globals().get("classify")  # defined above where the network takes 8-bit images
    if len(sys.argv) > 1 and classify_file is not None:
        failed = 0
        for path in sys.argv[1:]:  # one line per file; a file that cannot be read does not stop the rest
            try:
                _, probs = classify_file(path, net)
            except Exception as e:  # missing, empty, not an image, truncated: the reason, then the next file
                failed += 1
                why = str(e).split("\n")[0] or type(e).__name__
                if isinstance(e, OSError) and e.strerror:
                    why = e.strerror  # No such file or directory, Is a directory, Permission denied
                elif type(e).__name__ == "UnidentifiedImageError":
                    empty = Path(path).is_file() and Path(path).stat().st_size == 0
                    why = "empty (0 bytes)" if empty else "not an image Pillow can read"
                print(f"{path}: cannot read: {why}", flush=True)
                continue
            top = sorted(probs.items(), key=lambda item: -item[1])[:3]
            print(f"{path}: " + ", ".join(f"{name} {p:.2f}" for name, p in top), flush=True)
        if failed:
            sys.exit(1)
    else:
        with torch.no_grad():
            logits = net(torch.zeros(1, *INPUT_SHAPE))
        print(f"{ARCH_ID}: logits shape {tuple(logits.shape)}")
