"""Architecture record -> ``nn.Module``."""

from __future__ import annotations

import torch
from torch import nn

from archsearch.network.arch import Arch
from archsearch.network.blocks import get_block
from archsearch.network.tally import Tally

__all__ = ["Net", "build"]


class Net(nn.Module):
    """stem -> (max-pool) -> stages -> head. The head is global average pooling + linear (any input
    size) or, for the EffNet paper's comparison networks, flatten + linear (fixed input size)."""

    def __init__(self, arch: Arch):
        super().__init__()
        self.arch = arch
        stem_spec, stages = arch.plan()
        self.stem = get_block(stem_spec.block).from_spec(stem_spec)
        k = arch.stem.pool
        self.stem_pool = nn.MaxPool2d(k, 2, (k - 1) // 2) if k else nn.Identity()
        self.stages = nn.Sequential(
            *(nn.Sequential(*(get_block(spec.block).from_spec(spec) for spec in stage)) for stage in stages)
        )
        self.pool = nn.AdaptiveAvgPool2d(1) if arch.head == "gap" else nn.Identity()
        self.flatten = nn.Flatten(1)
        feat = arch.out_chs if arch.head == "gap" else _flat_features(arch)
        self.classifier: nn.Module
        if arch.hidden:  # pooled features -> FC -> ReLU -> classifier (MobileNetV3's head)
            hidden = nn.Linear(feat, arch.hidden)
            self.classifier = nn.Sequential(hidden, nn.ReLU(inplace=True), nn.Linear(arch.hidden, arch.num_classes))
        else:
            self.classifier = nn.Linear(feat, arch.num_classes)
        _init_weights(self)
        if arch.hidden:
            # the hidden layer feeds a ReLU: He's init, fan_in. At the classifier's std 0.01 the two small layers
            # in a row starve the start of training: a 1M network scored 50-56% after the 2-epoch proxy recipe,
            # 78% with this init and 80-81% without the layer (seeds 0-1; benchmarks/fashion_mnist/1m_head/README.md)
            nn.init.kaiming_normal_(hidden.weight, mode="fan_in", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem_pool(self.stem(x))
        x = self.stages(x)
        return self.classifier(self.flatten(self.pool(x)))


def _flat_features(arch: Arch) -> int:
    return arch.walk(Tally(arch.in_chs, arch.resolution, arch.resolution), head=False).numel


def _init_weights(model: nn.Module) -> None:
    # torchvision's MobileNet/ShuffleNet initialisation
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            nn.init.zeros_(m.bias)


def build(arch: Arch) -> Net:
    """Build the network an architecture record describes (float32, train mode, on the CPU)."""
    return Net(arch)
