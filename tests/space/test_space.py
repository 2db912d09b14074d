"""Search-space files: bad files name the file, the key path and what was expected; sizes; sampling."""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import optuna
import pytest
import torch
import yaml

from archsearch.core.errors import ConfigError
from archsearch.network.arch import Arch, Stage, Stem
from archsearch.network.build import build
from archsearch.space.search_space import Space, load_space, space_from_dict, suggest_architecture

SPACES_DIR = Path(__file__).resolve().parents[2] / "search_spaces"
SPACE_NAMES = ("mixed", "mobilenet", "shufflenet", "effnet")


@pytest.fixture(autouse=True)
def quiet_optuna():
    before = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    yield
    optuna.logging.set_verbosity(before)


# -- malformed files ----------------------------------------------------------------------------------

GOOD = """\
name: tiny
channel_multiple: 8
width_mult: [0.5, 1.0]
stem:
  type: conv
  channels: [8, 16]
  stride: 1
stages:
  - block: [dwsep, shuffle]
    channels: [16, 32]
    depth: [1, 2]
    stride: 2
    groups: [1, 2]
    kernel: [3, 5]
  - block: dwsep
    channels: [32, 64]
    depth: [0, 1]
    stride: 2
head: gap
"""


def edit(old: str, new: str) -> str:
    assert GOOD.count(old) == 1, old
    return GOOD.replace(old, new)


# (id, file text, key path or None, what the message says was expected)
BAD_FILES = [
    ("unknown-block", edit("block: dwsep\n", "block: resnet\n"), "stages[1].block[0]",
     "unknown block 'resnet'; registered blocks: ['conv', 'dwsep', 'effnet', 'shuffle'] (did you mean 'effnet'?)"),
    ("unknown-top-level-key", GOOD + "epochs: 3\n", "epochs",
     "unknown key 'epochs'; valid keys here: name, description, channel_multiple, width_mult, "
     "resolution_mult, stem, stages, head, head_hidden"),
    ("unknown-stage-key", edit("    stride: 2\nhead", "    stride: 2\n    width: 3\nhead"), "stages[1].width",
     "unknown key 'width' (did you mean 'depth'?); valid keys here: block, channels, depth, stride, groups, kernel"),
    ("unknown-stem-key", edit("  stride: 1\n", "  stride: 1\n  act: relu\n"), "stem.act",
     "unknown key 'act'; valid keys here: type, channels, stride, pool"),
    ("groups-not-dividing", edit("groups: [1, 2]", "groups: [1, 3]"), "stages[0].groups",
     "group count 3 does not divide channel_multiple 8, so it cannot divide every width; "
     "set channel_multiple to a multiple of 24 or drop 3"),
    ("negative-width", edit("channels: [32, 64]", "channels: [32, -64]"), "stages[1].channels[1]",
     "expected an integer >= 1 and <= 4096, got int -64"),
    ("zero-width", edit("channels: [8, 16]", "channels: [0, 16]"), "stem.channels[0]",
     "expected an integer >= 1 and <= 4096, got int 0"),
    ("empty-choice-list", edit("channels: [16, 32]", "channels: []"), "stages[0].channels",
     "expected an integer >= 1 and <= 4096, or a non-empty list of distinct ones, got list []"),
    ("empty-block-list", edit("block: [dwsep, shuffle]", "block: []"), "stages[0].block",
     "expected a block name, or a non-empty list of distinct ones, got list []"),
    ("string-for-channels", edit("channels: [32, 64]", "channels: sixteen"), "stages[1].channels[0]",
     "expected an integer >= 1 and <= 4096, got str 'sixteen'"),
    ("1e-3-is-a-string", edit("width_mult: [0.5, 1.0]", "width_mult: [0.5, 1e-3]"), "width_mult[1]",
     "expected a number >= 0.01 and <= 16, got str '1e-3' (YAML 1.1 reads 1e-3 as a string: a float needs "
     "a dot in the mantissa and a sign in the exponent; write 1.0e-3)"),
    ("bool-for-int", edit("depth: [0, 1]", "depth: [0, true]"), "stages[1].depth[1]",
     "expected an integer >= 0 and <= 32, got bool True (true/false is a boolean, not a number)"),
    ("float-for-int", edit("channel_multiple: 8", "channel_multiple: 8.0"), "channel_multiple",
     "expected an integer >= 1 and <= 256, got float 8.0"),
    ("float-stride", edit("    stride: 2\nhead", "    stride: 2.0\nhead"), "stages[1].stride",
     "expected one of 1, 2, got float 2.0"),
    ("duplicate-choices", edit("channels: [16, 32]", "channels: [16, 16]"), "stages[0].channels",
     "choices must be distinct, got [16, 16]"),
    ("duplicate-key", edit("  stride: 1\n", "  stride: 1\n  channels: [4]\n"), None,
     "not valid YAML: duplicate key 'channels' (line 8, column 3)"),
    ("missing-stages", GOOD.split("stages:")[0], "stages", "missing required key"),
    ("missing-stem-type", edit("  type: conv\n", ""), "stem.type", "missing required key"),
    ("stages-empty", GOOD.split("stages:")[0] + "stages: []\n", "stages",
     "expected a non-empty list of stages, got list []"),
    ("stages-a-mapping", GOOD.split("stages:")[0] + "stages: {block: dwsep}\n", "stages",
     "expected a non-empty list of stages, got dict {'block': 'dwsep'}"),
    ("stage-not-a-mapping", GOOD.split("stages:")[0] + "stages: [dwsep]\n", "stages[0]",
     "expected a mapping with keys block, channels, depth, stride, groups, kernel, got str 'dwsep'"),
    ("stride-3", edit("    stride: 2\nhead", "    stride: 3\nhead"), "stages[1].stride",
     "expected one of 1, 2, got int 3"),
    ("kernel-4", edit("kernel: [3, 5]", "kernel: [3, 4]"), "stages[0].kernel[1]",
     "expected one of 1, 3, 5, 7, got int 4"),
    ("kernel-on-effnet", edit("block: dwsep\n", "block: effnet\n    kernel: 5\n"), "stages[1].kernel",
     "none of the blocks ['effnet'] takes a kernel size; remove the key"),
    ("groups-without-shuffle", edit("block: dwsep\n", "block: dwsep\n    groups: [1, 2]\n"), "stages[1].groups",
     "none of the blocks ['dwsep'] uses groups; remove the key or add 'shuffle'"),
    ("depth-minus-1", edit("depth: [0, 1]", "depth: [-1, 1]"), "stages[1].depth[0]",
     "expected an integer >= 0 and <= 32, got int -1"),
    ("stem-pool-4", edit("  stride: 1\n", "  stride: 1\n  pool: 4\n"), "stem.pool",
     "expected one of 0, 2, 3, got int 4"),
    ("unknown-head", edit("head: gap", "head: avg"), "head",
     "expected one of 'gap', 'flatten', got str 'avg'"),
    ("head-hidden-negative", GOOD + "head_hidden: [0, -64]\n", "head_hidden[1]",
     "expected an integer >= 0 and <= 65536, got int -64"),
    ("head-hidden-float", GOOD + "head_hidden: 128.0\n", "head_hidden[0]",
     "expected an integer >= 0 and <= 65536, got float 128.0"),
    ("python-object-tag", "!!python/object/apply:os.system ['echo hacked']\n", None,
     "not valid YAML: could not determine a constructor for the tag 'tag:yaml.org,2002:python/object/apply:os.system'"),
    ("python-tag-inside", edit("name: tiny", "name: !!python/name:os.system"), None,
     "not valid YAML: could not determine a constructor for the tag 'tag:yaml.org,2002:python/name:os.system' "
     "(line 1, column 7)"),
    ("unbalanced-brackets", edit("channels: [16, 32]", "channels: [16, 32"), None,
     "not valid YAML: expected ',' or ']', but got ':' (line 11, column 10)"),
    ("top-level-list", "- block: dwsep\n- block: shuffle\n", None,
     "expected a YAML mapping at the top level, got list"),
    ("empty-file", "", None, "expected a YAML mapping at the top level, got NoneType"),
    ("plain-scalar", "just some words\n", None, "expected a YAML mapping at the top level, got str"),
]


@pytest.mark.parametrize("text,key,expected", [pytest.param(*case[1:], id=case[0]) for case in BAD_FILES])
def test_malformed_space_files(tmp_path, text, key, expected):
    path = tmp_path / "space.yaml"
    path.write_text(text)
    where = f"{path}: {key}: " if key else f"{path}: "
    with pytest.raises(ConfigError, match=re.escape(where + expected)) as info:
        load_space(path)
    assert info.value.path == str(path)
    assert info.value.key == key


def test_binary_junk_file(tmp_path):
    path = tmp_path / "space.yaml"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe junk")
    with pytest.raises(ConfigError, match=re.escape(f"{path}: not a UTF-8 text file (invalid start byte at byte 0)")):
        load_space(path)


def test_control_characters_are_not_yaml(tmp_path):
    path = tmp_path / "space.yaml"
    path.write_text("stem: \x00\x01\x02\n")
    with pytest.raises(ConfigError, match=re.escape(f"{path}: not valid YAML: ")):
        load_space(path)


def test_missing_file(tmp_path):
    path = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError, match=re.escape(f"{path}: file not found")):
        load_space(path)


def test_a_directory(tmp_path):
    with pytest.raises(ConfigError, match=re.escape(f"{tmp_path}: expected a YAML file, found a directory")):
        load_space(tmp_path)


def test_config_error_is_a_value_error(tmp_path):
    path = tmp_path / "space.yaml"
    path.write_text(edit("    stride: 2\nhead", "    stride: 3\nhead"))
    with pytest.raises(ValueError):
        load_space(path)


def test_the_good_file_loads(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(GOOD)
    sp = load_space(path)
    assert sp.name == "tiny" and sp.source == str(path)
    assert sp.stages[0].blocks == ("dwsep", "shuffle") and sp.stages[1].depth == (0, 1)
    # scalars are one-choice lists
    assert sp.stem_types == ("conv",) and sp.stages[1].blocks == ("dwsep",)


# -- shipped spaces and their size --------------------------------------------------------------------


@pytest.mark.parametrize("name", SPACE_NAMES)
def test_shipped_spaces_load(name):
    sp = load_space(SPACES_DIR / f"{name}.yaml")
    assert sp.name == name
    assert sp.size > 1
    assert sp.head == "gap" and sp.stem_stride == 1
    # the stride schedule of mixed.yaml: three stride-2 stages (28 -> 14 -> 7 -> 4), an optional stride-1 one
    assert [st.stride for st in sp.stages if 0 not in st.depth] == [2, 2, 2]
    assert all(st.stride == 1 for st in sp.stages if 0 in st.depth)


def test_shufflenet_space_uses_the_paper_group_counts_but_3():
    # g=3 would force every width to a multiple of 24, too coarse for budget fitting (the YAML says why)
    sp = load_space(SPACES_DIR / "shufflenet.yaml")
    assert sp.channel_multiple == 8
    assert all(st.groups == (1, 2, 4, 8) and st.blocks == ("shuffle",) for st in sp.stages)
    assert sp.stem_types == ("conv",)


def test_mobilenet_and_effnet_spaces():
    mobilenet = load_space(SPACES_DIR / "mobilenet.yaml")
    assert mobilenet.stem_types == ("conv", "dwsep")
    assert all(st.blocks == ("dwsep",) and st.kernel == (3, 5) for st in mobilenet.stages)
    assert len(mobilenet.width_mult) > 1
    effnet = load_space(SPACES_DIR / "effnet.yaml")
    assert effnet.stem_types == ("effnet", "conv")
    assert all(st.blocks == ("effnet",) for st in effnet.stages)


SMALL = {
    "channel_multiple": 8,
    "width_mult": [0.5, 1.0],
    "resolution_mult": [1.0],
    "stem": {"type": ["conv", "dwsep"], "channels": [8]},
    "stages": [
        {"block": ["dwsep", "shuffle", "effnet"], "channels": [16, 32], "depth": [1, 2], "stride": 2,
         "groups": [1, 2, 4], "kernel": [3, 5]},
        {"block": ["shuffle", "dwsep"], "channels": [32], "depth": [0, 1], "stride": 1, "groups": [1, 2]},
        {"block": "effnet", "channels": [32, 64], "depth": [0, 2], "stride": 2},
    ],
}


def brute_force_size(sp: Space) -> int:
    """Distinct sets of parameters the sampler asks for, over every combination of every choice."""
    names = ["width_mult", "resolution_mult", "stem", "stem_channels", "head_hidden"]
    options = [sp.width_mult, sp.resolution_mult, sp.stem_types, sp.stem_channels, sp.head_hidden]
    for i, st in enumerate(sp.stages):
        names += [f"s{i}_depth", f"s{i}_block", f"s{i}_channels", f"s{i}_groups", f"s{i}_kernel"]
        options += [st.depth, st.blocks, st.channels, st.groups, st.kernel]
    seen = set()
    for values in itertools.product(*options):
        trial = optuna.trial.FixedTrial(dict(zip(names, values, strict=True)))
        suggest_architecture(trial, sp, in_chs=1, resolution=28, num_classes=10)
        seen.add(frozenset(trial.params.items()))
    return len(seen)


@pytest.mark.slow  # enumerates the space: seconds
def test_size_equals_a_brute_force_count():
    sp = space_from_dict(SMALL)
    # by hand: 2 widths x 2 stems x (dwsep 2x2x2 + shuffle 2x2x3x2 + effnet 2x2) x (1 + 2 + 1) x (1 + 2)
    assert sp.size == 2 * 2 * (8 + 24 + 4) * 4 * 3 == 1728
    assert brute_force_size(sp) == sp.size


def test_a_hidden_head_layer_is_one_more_choice():
    assert space_from_dict({**SMALL, "head_hidden": [0, 64, 256]}).size == 3 * 1728
    sp = space_from_dict({"stem": {"type": "conv", "channels": 8}, "head_hidden": [0, 64, 256],
                          "stages": [{"block": "dwsep", "channels": 16, "stride": 2}]})
    assert sp.size == brute_force_size(sp) == 3
    for hidden in sp.head_hidden:
        trial = optuna.trial.FixedTrial({**params(), "head_hidden": hidden})
        arch = suggest_architecture(trial, space_from_dict({**ROUNDING_DICT, "head_hidden": [0, 64, 256]}),
                                    in_chs=1, resolution=28, num_classes=10)
        assert arch.hidden == hidden and trial.params["head_hidden"] == hidden
    # a space without the key offers none and asks nothing: studies from before it existed resume unchanged
    _, asked = suggest(params())
    assert "head_hidden" not in asked and suggest(params())[0].hidden == 0


def test_size_of_a_one_point_space():
    sp = space_from_dict({"stem": {"type": "conv", "channels": 8}, "stages": [{"block": "dwsep", "channels": 16,
                                                                              "stride": 2}]})
    assert sp.size == brute_force_size(sp) == 1


# -- suggest_architecture -----------------------------------------------------------------------------

ROUNDING_DICT = {
    "channel_multiple": 8,
    "width_mult": [0.5, 0.75, 1.0, 1.3],
    "resolution_mult": [0.75, 1.0],
    "stem": {"type": ["conv", "dwsep"], "channels": [16, 24]},
    "stages": [
        {"block": ["dwsep", "shuffle"], "channels": [24, 40], "depth": [1, 2], "stride": 2, "groups": [1, 2, 4],
         "kernel": [3, 5]},
        {"block": ["shuffle", "effnet"], "channels": [16, 48], "depth": [0, 1, 2], "stride": 2,
         "groups": [1, 2, 4, 8], "kernel": [3, 5]},
        {"block": "dwsep", "channels": [64], "depth": [0, 1], "stride": 1},
    ],
}
ROUNDING = space_from_dict(ROUNDING_DICT)


def params(**overrides) -> dict:
    base = {
        "width_mult": 1.0, "resolution_mult": 1.0, "stem": "conv", "stem_channels": 16,
        "s0_depth": 1, "s0_block": "dwsep", "s0_channels": 24, "s0_groups": 1, "s0_kernel": 3,
        "s1_depth": 1, "s1_block": "shuffle", "s1_channels": 48, "s1_groups": 1, "s1_kernel": 3,
        "s2_depth": 1,
    }
    return {**base, **overrides}


def suggest(p: dict) -> tuple[Arch, dict]:
    trial = optuna.trial.FixedTrial(p)
    return suggest_architecture(trial, ROUNDING, in_chs=1, resolution=28, num_classes=10), trial.params


@pytest.mark.parametrize(
    "overrides,expected",
    [
        # plain: every choice as written
        ({}, Arch(1, 28, 10, Stem("conv", 16),
                  (Stage("dwsep", 24, 1, 2), Stage("shuffle", 48, 1, 2), Stage("dwsep", 64, 1, 1)))),
        # alpha 0.75: 16 -> 12 -> 16 (half up), 24 -> 18 -> 16, 48 -> 36 -> 40 (4.5 rounds up), 64 -> 48;
        # rho 0.75: 28 -> 21
        ({"width_mult": 0.75, "resolution_mult": 0.75}, Arch(1, 21, 10, Stem("conv", 16),
            (Stage("dwsep", 16, 1, 2), Stage("shuffle", 40, 1, 2), Stage("dwsep", 48, 1, 1)))),
        # alpha 0.5: 40 -> 20 -> 24 (2.5 rounds up, not to even), 24 -> 12 -> 16
        ({"width_mult": 0.5, "s0_channels": 40, "stem_channels": 24, "s1_block": "effnet"},
         Arch(1, 28, 10, Stem("conv", 16), (Stage("dwsep", 24, 1, 2), Stage("effnet", 24, 1, 2),
                                             Stage("dwsep", 32, 1, 1)))),
        # alpha 1.3: 24 -> 31.2 -> 32, 40 -> 52 -> 56 (6.5 up), 64 -> 83.2 -> 80
        ({"width_mult": 1.3, "stem_channels": 24, "s0_channels": 40, "s0_kernel": 5, "s1_channels": 16,
          "s1_block": "effnet"},
         Arch(1, 28, 10, Stem("conv", 32), (Stage("dwsep", 56, 1, 2, kernel=5), Stage("effnet", 24, 1, 2),
                                             Stage("dwsep", 80, 1, 1)))),
        # a stride-2 shuffle stage no wider than its input (16 <= 40) is widened to 40 + 8
        ({"s0_channels": 40, "s0_kernel": 5, "s0_depth": 2, "s1_channels": 16, "s1_groups": 4, "s1_kernel": 5},
         Arch(1, 28, 10, Stem("conv", 16), (Stage("dwsep", 40, 2, 2, kernel=5), Stage("shuffle", 48, 1, 2, 4, 5),
                                             Stage("dwsep", 64, 1, 1)))),
        # equal width is not enough either: alpha 0.5 makes both 40 and 48 into 24, widened to 24 + 8
        ({"s0_channels": 40, "s1_channels": 48, "width_mult": 0.5, "s1_groups": 8},
         Arch(1, 28, 10, Stem("conv", 8), (Stage("dwsep", 24, 1, 2), Stage("shuffle", 32, 1, 2, 8),
                                            Stage("dwsep", 32, 1, 1)))),
        # the first stage shuffle too: the stem (24) is its input; 24 -> 32
        ({"s0_block": "shuffle", "s0_groups": 2, "stem_channels": 24},
         Arch(1, 28, 10, Stem("conv", 24), (Stage("shuffle", 32, 1, 2, 2), Stage("shuffle", 48, 1, 2),
                                             Stage("dwsep", 64, 1, 1)))),
        # depth 0 leaves a stage out; the next one chains from the one before
        ({"s1_depth": 0, "s2_depth": 0, "stem": "dwsep"},
         Arch(1, 28, 10, Stem("dwsep", 16), (Stage("dwsep", 24, 1, 2),))),
        ({"s1_depth": 0, "s0_block": "shuffle", "s0_groups": 4, "s0_depth": 2},
         Arch(1, 28, 10, Stem("conv", 16), (Stage("shuffle", 24, 2, 2, 4), Stage("dwsep", 64, 1, 1)))),
    ],
)
def test_suggest_architecture_with_fixed_params(overrides, expected):
    arch, _ = suggest(params(**overrides))
    assert arch == expected


def test_parameter_names_are_the_documented_stable_names():
    _, asked = suggest(params(s0_block="shuffle", s1_block="effnet"))
    assert set(asked) == {
        "width_mult", "resolution_mult", "stem", "stem_channels",
        "s0_depth", "s0_block", "s0_channels", "s0_groups", "s0_kernel",  # shuffle: groups and kernel
        "s1_depth", "s1_block", "s1_channels",  # effnet: neither groups nor kernel
        "s2_depth",  # one block, one width: constants, not parameters
    }
    _, asked = suggest(params(s0_block="dwsep", s1_depth=0, s2_depth=0))
    assert set(asked) == {
        "width_mult", "resolution_mult", "stem", "stem_channels",
        "s0_depth", "s0_block", "s0_channels", "s0_kernel",  # dwsep: a kernel, no groups
        "s1_depth", "s2_depth",  # a stage left out asks nothing more
    }


def test_sampled_parameter_names_follow_the_pattern():
    sp = load_space(SPACES_DIR / "mixed.yaml")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=3))
    pattern = re.compile(r"width_mult|resolution_mult|stem|stem_channels|head_hidden|"
                         r"s[0-9]+_(block|channels|depth|groups|kernel)")
    for _ in range(20):
        trial = study.ask()
        suggest_architecture(trial, sp, in_chs=1, resolution=28, num_classes=10)
        assert all(pattern.fullmatch(n) for n in trial.params), sorted(trial.params)
        study.tell(trial, 0.0)


@pytest.mark.slow  # builds and runs 300 sampled networks a case: seconds
@pytest.mark.parametrize("name", SPACE_NAMES)
def test_random_trials_all_give_buildable_archs(name):
    sp = load_space(SPACES_DIR / f"{name}.yaml")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=11))
    x = torch.randn(1, 1, 28, 28)
    for _ in range(300):
        trial = study.ask()
        arch = suggest_architecture(trial, sp, in_chs=1, resolution=28, num_classes=10)
        net = build(arch).eval()
        with torch.no_grad():
            out = net(x if arch.resolution == 28 else torch.randn(1, 1, arch.resolution, arch.resolution))
        assert out.shape == (1, 10) and torch.isfinite(out).all(), arch.id
        study.tell(trial, 0.0)
    assert len(study.trials) == 300
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)


def test_shipped_space_files_are_plain_yaml():
    for name in SPACE_NAMES:
        text = (SPACES_DIR / f"{name}.yaml").read_text()
        assert text.lstrip().startswith("#")  # commented, as mixed.yaml
        assert isinstance(yaml.safe_load(text), dict)
