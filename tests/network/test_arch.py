"""The architecture record: round trips, validation messages, the baselines and the EffNet-paper networks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from archsearch.network.arch import Arch, Stage, Stem
from archsearch.network.blocks import ConvBlock, DepthwiseSeparable, EffNetBlock, ShuffleUnit
from archsearch.network.build import build
from archsearch.network.cost import arch_cost
from archsearch.space.baselines import (
    EFFNET_PAPER,
    FAMILIES,
    effnet,
    effnet_paper,
    fit_to_budget,
    mobilenet_v1,
    shufflenet_v1,
)
from archsearch.space.search_space import load_space, sample_architectures

SPACES_DIR = Path(__file__).resolve().parents[2] / "search_spaces"
SPACE_NAMES = ("mixed", "mobilenet", "shufflenet", "effnet")


def baselines() -> list[Arch]:
    archs = [
        mobilenet_v1(),
        mobilenet_v1(0.25, 160 / 224),
        mobilenet_v1(0.5, in_chs=1, resolution=28, num_classes=10),
        mobilenet_v1(1.0, in_chs=1, resolution=8, num_classes=10),
        effnet(),
        effnet(0.5, in_chs=1, resolution=28),
    ]
    archs += [shufflenet_v1(g) for g in (1, 2, 3, 4, 8)]
    archs += [shufflenet_v1(3, 0.5, in_chs=3, resolution=32, num_classes=10)]
    archs += [make(w, in_chs=1, resolution=28, num_classes=10) for make in FAMILIES.values() for w in (0.25, 1.0, 2.0)]
    return archs


def assert_round_trips(a: Arch) -> None:
    assert Arch.from_dict(a.to_dict()) == a
    assert Arch.from_dict(json.loads(json.dumps(a.to_dict()))) == a
    assert Arch.from_json(a.to_json()) == a
    assert Arch.from_yaml(a.to_yaml()) == a
    assert Arch.from_id(a.id) == a
    assert Arch.from_id(a.id).id == a.id
    assert hash(Arch.from_json(a.to_json())) == hash(a)


@pytest.mark.parametrize("arch", [*baselines(), *EFFNET_PAPER.values()], ids=lambda a: a.id)
def test_baselines_round_trip(arch):
    assert_round_trips(arch)


@pytest.mark.slow  # 200 sampled architectures a case: seconds
@pytest.mark.parametrize("name", SPACE_NAMES)
def test_sampled_archs_round_trip(name):
    space = load_space(SPACES_DIR / f"{name}.yaml")
    archs = sample_architectures(space, 200, in_chs=3, resolution=32, num_classes=10, seed=5)
    for a in archs:
        assert_round_trips(a)


def test_round_trip_keeps_ratio_and_stem_options():
    a = Arch(
        1, 28, 10, Stem("dwsep", 24, stride=2, pool=3),
        (Stage("shuffle", 48, 2, 1, groups=4, kernel=5, ratio=1 / 3), Stage("effnet", 64, stride=2, ratio=1e-5)),
        head="flatten",
    )
    assert a.id == (
        "i1x28-n10_stem-dwsep-c24-s2-p3_shuffle-c48-r2-g4-k5-e0.3333333333333333_effnet-c64-s2-e0.00001_flatten"
    )
    assert_round_trips(a)
    assert Stage("dwsep", 8, ratio=1).ratio == 1.0 and isinstance(Stage("dwsep", 8, ratio=1).ratio, float)


def test_a_hidden_head_layer_round_trips_and_leaves_older_records_as_they_were():
    plain = Arch(1, 28, 10, Stem("conv", 16), (Stage("dwsep", 32, stride=2),))
    with_hidden = plain.replace(hidden=128)
    assert with_hidden.id == "i1x28-n10_stem-conv-c16_dwsep-c32-s2_gap-h128"
    assert_round_trips(with_hidden)
    assert_round_trips(with_hidden.replace(head="flatten"))
    # a record without the layer is written as before the key existed (stored trials and results compare equal)
    assert "hidden" not in plain.to_dict() and plain.id.endswith("_gap")
    assert Arch.from_dict({**plain.to_dict(), "hidden": 0}) == plain
    # its cost: one more linear layer, in_features x hidden MACs and (in_features + 1) x hidden parameters
    base, more = arch_cost(plain), arch_cost(with_hidden)
    assert more.macs - base.macs == 32 * 128 + 128 * 10 - 32 * 10
    assert more.params - base.params == (32 * 128 + 128) + (128 * 10 + 10) - (32 * 10 + 10)
    assert sum(p.numel() for p in build(with_hidden).parameters()) == more.params
    # He's init for the hidden layer (it feeds a ReLU), the classifier's std 0.01 for the last one
    torch.manual_seed(0)
    hidden, last = build(with_hidden.replace(hidden=4096)).classifier[0], build(with_hidden).classifier[2]
    assert hidden.weight.std().item() == pytest.approx((2 / 32) ** 0.5, rel=0.05)
    assert last.weight.std().item() == pytest.approx(0.01, rel=0.1)


# -- invalid records ----------------------------------------------------------------------------------


def arch(*stages: Stage, stem: Stem | None = None, **kw) -> Arch:
    return Arch(kw.pop("in_chs", 1), kw.pop("resolution", 28), kw.pop("num_classes", 10), stem or Stem("conv", 16),
                tuple(stages), **kw)


INVALID = [
    # (make the record, exception, message)
    (lambda: Arch(True, 28, 10), TypeError, r"arch\.in_chs must be an int, got bool True"),
    (lambda: Arch(1, 28.0, 10), TypeError, r"arch\.resolution must be an int, got float 28\.0"),
    (lambda: Arch(1, 28, 1), ValueError, r"arch\.num_classes must be in \[2, 100000\], got 1"),
    (lambda: Stage("dwsep", True), TypeError, r"stage\.out_chs must be an int, got bool True"),
    (lambda: Stage("dwsep", 32, repeats=False), TypeError, r"stage\.repeats must be an int, got bool"),
    (lambda: Stage("dwsep", 0), ValueError, r"stage\.out_chs must be in \[1, 4096\], got 0"),
    (lambda: Stage("dwsep", -8), ValueError, r"stage\.out_chs must be in \[1, 4096\], got -8"),
    (lambda: Stage("dwsep", "32"), TypeError, r"stage\.out_chs must be an int, got str '32'"),
    (lambda: Stage("resnet", 32), ValueError, r"unknown block 'resnet'; registered blocks: \['conv', "),
    (lambda: Stage(3, 32), TypeError, r"stage\.block must be a block name \(str\), got int 3"),
    (lambda: Stem("resnet"), ValueError, r"unknown block 'resnet'"),
    (lambda: Stage("dwsep", 32, stride=3), ValueError, r"stage\.stride must be in \[1, 2\], got 3"),
    (lambda: Stem("conv", 16, stride=3), ValueError, r"stem\.stride must be in \[1, 2\], got 3"),
    (lambda: Stem("conv", 16, pool=1), ValueError, r"stem\.pool must be one of \(0, 2, 3\)"),
    (lambda: Stem("conv", 16, pool=True), TypeError, r"stem\.pool must be an int, got bool True"),
    (lambda: Stem("conv", 16, pool=2.0), TypeError, r"stem\.pool must be an int, got float 2\.0"),
    (lambda: Stage("dwsep", 32, ratio=0), ValueError, r"stage\.ratio must be in \(0, 4\], got 0"),
    (lambda: Stage("dwsep", 32, ratio=float("nan")), ValueError, r"stage\.ratio must be in \(0, 4\], got nan"),
    (lambda: Stage("dwsep", 32, ratio="0.5"), TypeError, r"stage\.ratio must be a number or None"),
    (lambda: Arch(1, 28, 10, head="avg"), ValueError, r"arch\.head must be one of \['gap', 'flatten'\], got 'avg'"),
    (lambda: Arch(1, 28, 10, hidden=-1), ValueError, r"arch\.hidden must be in \[0, 65536\], got -1"),
    (lambda: Arch(1, 28, 10, hidden=1.5), TypeError, r"arch\.hidden must be an int, got float 1\.5"),
    (lambda: Arch(1, 28, 10, hidden=True), TypeError, r"arch\.hidden must be an int, got bool True"),
    (lambda: Arch(1, 28, 10, stem="conv"), TypeError, r"arch\.stem must be a Stem, got str"),
    (lambda: Arch(1, 28, 10, stages=({"block": "dwsep"},)), TypeError, r"arch\.stages must be a tuple of Stage"),
    # groups do not divide the shuffle branch (stride 1: out_chs) or the bottleneck
    (lambda: arch(Stage("shuffle", 30, groups=4)), ValueError,
     r"stages\[0\]\.block\[0\]: shuffle: groups=4 must divide the bottleneck \(8\) "
     r"and the branch output \(30 = out_chs\)"),
    # stride 2: the branch is out_chs - in_chs = 40 - 16 = 24, not a multiple of 16
    (lambda: arch(Stage("shuffle", 40, stride=2, groups=16)), ValueError,
     r"stages\[0\]\.block\[0\]: shuffle: groups=16 must divide .* \(24 = out_chs - in_chs\)"),
    # a stride-2 shuffle unit concatenates its input: it must widen
    (lambda: arch(Stage("shuffle", 16, stride=2, groups=2)), ValueError,
     r"stages\[0\]\.block\[0\]: shuffle: a stride-2 unit concatenates its input, so out_chs must exceed in_chs; "
     r"got in_chs=16, out_chs=16"),
    (lambda: arch(Stage("dwsep", 32), Stage("shuffle", 24, stride=2)), ValueError,
     r"stages\[1\]\.block\[0\]: shuffle: .* got in_chs=32, out_chs=24"),
    (lambda: arch(Stage("dwsep", 32, groups=2)), ValueError,
     r"stages\[0\]\.block\[0\]: dwsep: has no group convolution, groups must be 1, got 2"),
    (lambda: arch(Stage("dwsep", 32, kernel=4)), ValueError,
     r"stages\[0\]\.block\[0\]: dwsep: kernel must be one of 1, 3, 5, 7, got 4"),
    (lambda: arch(Stage("effnet", 32, kernel=5)), ValueError,
     r"stages\[0\]\.block\[0\]: effnet: has a fixed kernel, kernel must be 3, got 5"),
    (lambda: arch(stem=Stem("shuffle", 1, stride=2)), ValueError, r"stem: shuffle: a stride-2 unit concatenates"),
    # the map vanishes: 2x2 -> stride-2 stem 1x1 -> 2x2 max-pool 0x0, with a flatten head that would have 0 inputs
    (lambda: arch(stem=Stem("conv", 8, stride=2, pool=2), resolution=2, head="flatten"), ValueError,
     r"arch i1x2-n10_stem-conv-c8-s2-p2_flatten at 2x2: feature map shrinks to 0x0: too many stride-2 layers"),
    (lambda: arch(Stage("dwsep", 16, stride=2), stem=Stem("conv", 8, pool=2), resolution=1), ValueError,
     r"feature map shrinks to 0x0"),
]


@pytest.mark.parametrize("make,exc,message", INVALID)
def test_invalid_records_raise(make, exc, message):
    with pytest.raises(exc, match=message):
        make()


def test_stride_2_layers_on_a_1x1_map_keep_it_1x1():
    # padded stride-2 convolutions never shrink a map below 1x1, exactly as in PyTorch: such a record is
    # wasteful but buildable, and its flatten head sees out_chs features
    a = arch(*(Stage(b, c, stride=2) for b, c in [("dwsep", 32), ("effnet", 48), ("shuffle", 64), ("dwsep", 64)]),
             resolution=4, head="flatten")
    assert _final_map(a) == (64, 1, 1)
    net = build(a)
    assert net.classifier.in_features == 64
    assert net.eval()(torch.randn(1, 1, 4, 4)).shape == (1, 10)


def _final_map(a: Arch) -> tuple[int, int, int]:
    from archsearch.network.tally import Tally

    t = a.walk(Tally(a.in_chs, a.resolution, a.resolution), head=False)
    return t.c, t.h, t.w


BAD_DICTS = [
    ({"in_chs": 1, "resolution": 28, "num_classes": 10, "depth": 3}, r"arch: unknown keys \['depth'\]; valid keys: "
     r"\['head', 'hidden', 'in_chs', 'num_classes', 'resolution', 'stages', 'stem'\]"),
    ({"in_chs": 1, "resolution": 28, "num_classes": 10, "stem": {"type": "conv", "channels": 8}},
     r"stem: unknown keys \['channels'\]; valid keys: \['out_chs', 'pool', 'stride', 'type'\]"),
    ({"in_chs": 1, "resolution": 28, "num_classes": 10, "stages": [{"block": "dwsep", "out_chs": 8},
                                                                  {"block": "dwsep", "out_chs": 8, "width": 2}]},
     r"stages\[1\]: unknown keys \['width'\]"),
    ({"resolution": 28, "num_classes": 10}, r"architecture record misses \['in_chs'\]"),
]


@pytest.mark.parametrize("data,message", BAD_DICTS)
def test_from_dict_rejects_unknown_and_missing_keys(data, message):
    with pytest.raises(ValueError, match=message):
        Arch.from_dict(data)


@pytest.mark.parametrize(
    "data,message",
    [
        ([1, 2], r"an architecture record must be a mapping, got list"),
        ({"in_chs": 1, "resolution": 28, "num_classes": 10, "stem": "conv"}, r"arch\.stem must be a mapping, got str"),
        ({"in_chs": 1, "resolution": 28, "num_classes": 10, "stages": "dwsep"},
         r"arch\.stages must be a list, got str"),
        ({"in_chs": 1, "resolution": 28, "num_classes": 10, "stages": ["dwsep"]},
         r"arch\.stages\[0\] must be a mapping, got str"),
    ],
)
def test_from_dict_rejects_wrong_shapes(data, message):
    with pytest.raises(TypeError, match=message):
        Arch.from_dict(data)


GOOD_ID = "i1x28-n10_stem-conv-c16_dwsep-c32-s2_gap"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "garbage",
        "i1x28-n10",
        "i1x28-n10_stem-conv-c16",  # no head
        "i1x28_stem-conv-c16_gap",  # no class count
        "ix28-n10_stem-conv-c16_gap",
        "i1x28-n10_conv-c16_gap",  # no 'stem-' prefix
        "i1x28-n10_stem-conv-cX_gap",
        "i1x28-n10_stem-conv-c16_dwsep-c32-z9_gap",  # unknown key
        "i1x28-n10_stem-conv-c16_dwsep-c32--s2_gap",  # empty item
        "i1x28-n10_stem-conv-c16_dwsep-c32-c64_gap",  # key given twice
        "i1x28-n10_stem-conv-c16_Dwsep-c32_gap",
        "i1x28-n10_stem-conv-c16_resnet-c32_gap",
        "i1x28-n10_stem-conv-c16_dwsep-c32-einf_gap",
        "i1x28-n10_stem-conv-c16_dwsep-c32-enan_gap",
        "i1x28-n10_stem-conv-c16_dwsep-s2_gap",  # no width
        "i1x28-n10_stem-conv-c16_dwsep-c32-s3_gap",  # invalid stride
        "i1x28-n10_stem-conv-c16_dwsep-c32_avg",  # unknown head
        "i1x28-n10_stem-conv-c16_dwsep-c32_gap-h",  # hidden units missing
        "i1x28-n10_stem-conv-c16_dwsep-c32_gap-h0",  # 0 is written as no token
        "i1x28-n10_stem-conv-c16_dwsep-c32_gap-hx",
        "i1x28-n10_stem-conv-c16_dwsep-c32_gap-h99999999",  # above the limit
        GOOD_ID + "_gap",
    ],
)
def test_from_id_rejects_malformed_ids(text):
    with pytest.raises(ValueError):
        Arch.from_id(text)


def test_from_id_reads_a_good_id():
    assert Arch.from_id(GOOD_ID) == Arch(1, 28, 10, Stem("conv", 16), (Stage("dwsep", 32, stride=2),))


# -- baselines ----------------------------------------------------------------------------------------


def test_mobilenet_v1_matches_the_paper():
    a = mobilenet_v1()  # alpha 1, 224x224x3, 1000 classes
    cost = arch_cost(a)
    # paper (Table 1/8): 569 million mult-adds, 4.2 million parameters; our count adds BN's 2 per channel
    assert (cost.macs, cost.params) == (568_740_352, 4_231_976)
    net = build(a)
    assert sum(p.numel() for p in net.parameters()) == 4_231_976
    assert sum(isinstance(m, DepthwiseSeparable) for m in net.modules()) == 13


def test_shufflenet_v1_matches_the_paper():
    # paper (Table 2): 1x g=3 140 MFLOPs (its FLOPs are mult-adds); g=1 143M, g=8 140M; the model keeps
    # 137.5M / 143.1M / 138.4M (stage widths as in Table 1, the first 1x1 of stage 2 dense)
    assert arch_cost(shufflenet_v1(3)).macs == 137_460_672
    assert arch_cost(shufflenet_v1(1)).macs == 143_078_976
    assert arch_cost(shufflenet_v1(8)).macs == 138_365_952
    a = shufflenet_v1(3)
    assert [(s.out_chs, s.repeats, s.stride, s.groups) for s in a.stages] == [
        (240, 4, 2, 3), (480, 8, 2, 3), (960, 4, 2, 3)
    ]
    assert (a.stem.out_chs, a.stem.stride, a.stem.pool) == (24, 2, 3)


def test_effnet_paper_records():
    assert sorted(EFFNET_PAPER) == ["effnet-paper/effnet", "effnet-paper/mobilenet", "effnet-paper/shufflenet"]
    for name, a in EFFNET_PAPER.items():
        assert effnet_paper(name) is a
        assert (a.in_chs, a.resolution, a.num_classes, a.head) == (3, 32, 10, "flatten")
        assert _final_map(a) == (256, 4, 4)
        net = build(a)
        assert net.classifier.in_features == 4 * 4 * 256 == 4096
        out = net.eval()(torch.randn(2, 3, 32, 32))
        assert out.shape == (2, 10) and torch.isfinite(out).all()
    with pytest.raises(ValueError, match="unknown network 'effnet-paper/resnet'; choose from"):
        effnet_paper("effnet-paper/resnet")


def _convs(module: nn.Module) -> list[tuple]:
    return [
        (m.in_channels, m.out_channels, m.kernel_size, m.stride, m.groups)
        for m in module.modules() if isinstance(m, nn.Conv2d)
    ]


def test_effnet_paper_mobilenet_layers():
    # 3x3x64 conv + 2x2 max-pool; dw 3x3/2 + 1x1x128; dw 3x3/2 + 1x1x256; FC on 4x4x256
    net = build(EFFNET_PAPER["effnet-paper/mobilenet"])
    assert isinstance(net.stem, ConvBlock)
    assert isinstance(net.stem_pool, nn.MaxPool2d) and (net.stem_pool.kernel_size, net.stem_pool.stride) == (2, 2)
    assert _convs(net) == [
        (3, 64, (3, 3), (1, 1), 1),
        (64, 64, (3, 3), (2, 2), 64), (64, 128, (1, 1), (1, 1), 1),
        (128, 128, (3, 3), (2, 2), 128), (128, 256, (1, 1), (1, 1), 1),
    ]


def test_effnet_paper_shufflenet_layers():
    # 3x3x64 conv + max-pool; [g4 1x1x32, dw 3x3/2, g4 1x1x128]; [g4 1x1x64, dw 3x3/2, g4 1x1x256]; FC
    # with the concatenated shortcut the last 1x1s give 128 - 64 and 256 - 128 channels.
    net = build(EFFNET_PAPER["effnet-paper/shufflenet"])
    assert isinstance(net.stem_pool, nn.MaxPool2d) and net.stem_pool.kernel_size == 2
    assert all(isinstance(u, ShuffleUnit) for stage in net.stages for u in stage)
    assert _convs(net) == [
        (3, 64, (3, 3), (1, 1), 1),
        (64, 32, (1, 1), (1, 1), 4), (32, 32, (3, 3), (2, 2), 32), (32, 64, (1, 1), (1, 1), 4),
        (128, 64, (1, 1), (1, 1), 4), (64, 64, (3, 3), (2, 2), 64), (64, 128, (1, 1), (1, 1), 4),
    ]


def test_effnet_paper_effnet_layers():
    # three EffNet blocks 3 -> 64 -> 128 -> 256, the 1x1 to half the output each; FC on 4x4x256
    net = build(EFFNET_PAPER["effnet-paper/effnet"])
    blocks = [net.stem, *(b for stage in net.stages for b in stage)]
    assert all(isinstance(b, EffNetBlock) for b in blocks) and len(blocks) == 3
    assert isinstance(net.stem_pool, nn.Identity)
    for b, (cin, mid, cout) in zip(blocks, [(3, 32, 64), (64, 64, 128), (128, 128, 256)], strict=True):
        assert _convs(b) == [
            (cin, mid, (1, 1), (1, 1), 1),
            (mid, mid, (1, 3), (1, 1), mid),
            (mid, mid, (3, 1), (1, 1), mid),
            (mid, cout, (2, 1), (1, 2), 1),
        ]
        assert b.pool.kernel_size == (2, 1)


@pytest.mark.parametrize("family", sorted(FAMILIES))
@pytest.mark.parametrize("budget", [{"max_macs": 1_000_000}, {"max_macs": 5_000_000}, {"max_params": 50_000},
                                    {"max_macs": 3_000_000, "max_params": 30_000}])
def test_fit_to_budget_returns_the_widest_variant_within_budget(family, budget):
    shape = dict(in_chs=1, resolution=28, num_classes=10)
    got = fit_to_budget(family, **shape, **budget)
    assert got is not None

    def fits(a: Arch) -> bool:
        c = arch_cost(a)
        return c.macs <= budget.get("max_macs", float("inf")) and c.params <= budget.get("max_params", float("inf"))

    assert fits(got)
    widths = [w / 32 for w in range(1, 97)]  # the documented grid: 1/32 .. 3.0
    variants = [FAMILIES[family](w, **shape) for w in widths]
    widest_of_got = max(i for i, a in enumerate(variants) if a == got)
    wider = [a for a in variants[widest_of_got + 1:] if a != got]
    if wider:  # the next wider variant, and every wider one, exceeds the budget
        assert not fits(wider[0])
        assert not any(fits(a) for a in wider)


def test_fit_to_budget_none_when_nothing_fits_and_unknown_family():
    assert fit_to_budget("mobilenet", in_chs=1, resolution=28, num_classes=10, max_macs=1000) is None
    assert fit_to_budget("shufflenet", in_chs=1, resolution=28, num_classes=10, max_params=10) is None
    with pytest.raises(ValueError, match="unknown family 'resnet'; choose from"):
        fit_to_budget("resnet", in_chs=1, resolution=28, num_classes=10, max_macs=1e6)
