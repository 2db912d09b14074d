"""The architecture record: the single source of truth for one candidate network.

A record holds only ints, floats, strings and tuples. It is what a trial stores, what export writes
and what :func:`archsearch.network.build.build` reads. It round-trips through dict, JSON and YAML, and has a
compact id (``Arch.id``) from which ``Arch.from_id`` gives the record back.

    >>> a = Arch(in_chs=1, resolution=28, num_classes=10, stem=Stem("conv", 16),
    ...          stages=(Stage("dwsep", 32, stride=2), Stage("shuffle", 64, stride=2, groups=4)))
    >>> a.id
    'i1x28-n10_stem-conv-c16_dwsep-c32-s2_shuffle-c64-s2-g4_gap'
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from dataclasses import dataclass, field, fields
from decimal import Decimal
from typing import Any

import yaml

from archsearch.network.blocks import BlockSpec, get_block
from archsearch.network.tally import Tally

__all__ = ["Arch", "Stage", "Stem", "HEADS", "make_divisible"]

HEADS = ("gap", "flatten")
STEM_POOLS = (0, 2, 3)  # max-pool kernel after the stem (stride 2); 0: none
_NAME = re.compile(r"[a-z][a-z0-9]*\Z")


def make_divisible(value: float, divisor: int) -> int:
    """Round ``value`` to the nearest multiple of ``divisor``, at least ``divisor``."""
    return max(divisor, int(value / divisor + 0.5) * divisor)


def _check_int(owner: str, name: str, value: Any, low: int, high: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{owner}.{name} must be an int, got {type(value).__name__} {value!r}")
    if value < low or (high is not None and value > high):
        bound = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise ValueError(f"{owner}.{name} must be {bound}, got {value}")


def _check_name(owner: str, name: str, value: Any) -> None:
    if not isinstance(value, str):
        raise TypeError(f"{owner}.{name} must be a block name (str), got {type(value).__name__} {value!r}")
    get_block(value)  # ValueError listing the registered blocks


@dataclass(frozen=True)
class Stem:
    """The first layer: a registered block from the input channels to ``out_chs``, then an optional max-pool."""

    type: str = "conv"
    out_chs: int = 16
    stride: int = 1
    pool: int = 0

    def __post_init__(self) -> None:
        _check_name("stem", "type", self.type)
        _check_int("stem", "out_chs", self.out_chs, 1, 4096)
        _check_int("stem", "stride", self.stride, 1, 2)
        _check_int("stem", "pool", self.pool, 0, max(STEM_POOLS))
        if self.pool not in STEM_POOLS:
            raise ValueError(f"stem.pool must be one of {STEM_POOLS} (max-pool kernel, 0: none), got {self.pool!r}")


@dataclass(frozen=True)
class Stage:
    """``repeats`` blocks of one family; the first one strides, the others keep the size."""

    block: str
    out_chs: int
    repeats: int = 1
    stride: int = 1
    groups: int = 1
    kernel: int = 3
    ratio: float | None = None  # bottleneck width / out_chs; None: the family's default

    def __post_init__(self) -> None:
        _check_name("stage", "block", self.block)
        _check_int("stage", "out_chs", self.out_chs, 1, 4096)
        _check_int("stage", "repeats", self.repeats, 1, 32)
        _check_int("stage", "stride", self.stride, 1, 2)
        _check_int("stage", "groups", self.groups, 1, 64)
        _check_int("stage", "kernel", self.kernel, 1, 7)
        if self.ratio is not None:
            if isinstance(self.ratio, bool) or not isinstance(self.ratio, (int, float)):
                raise TypeError(f"stage.ratio must be a number or None, got {self.ratio!r}")
            if not 0 < self.ratio <= 4:
                raise ValueError(f"stage.ratio must be in (0, 4], got {self.ratio}")
            object.__setattr__(self, "ratio", float(self.ratio))


@dataclass(frozen=True)
class Arch:
    """A whole network: input, stem, stages and head. Invalid records raise ``ValueError``/``TypeError``."""

    in_chs: int
    resolution: int
    num_classes: int
    stem: Stem = field(default_factory=Stem)
    stages: tuple[Stage, ...] = ()
    head: str = "gap"
    #: units of a hidden fully connected layer (+ ReLU) between the pooled features and the classifier, as
    #: MobileNetV3's head has (arXiv 1905.02244); 0: none, the features go straight to the classifier
    hidden: int = 0

    def __post_init__(self) -> None:
        _check_int("arch", "in_chs", self.in_chs, 1, 64)
        _check_int("arch", "resolution", self.resolution, 1, 4096)
        _check_int("arch", "num_classes", self.num_classes, 2, 100_000)
        if not isinstance(self.stem, Stem):
            raise TypeError(f"arch.stem must be a Stem, got {type(self.stem).__name__}")
        if isinstance(self.stages, list):
            object.__setattr__(self, "stages", tuple(self.stages))
        if not isinstance(self.stages, tuple) or not all(isinstance(s, Stage) for s in self.stages):
            raise TypeError("arch.stages must be a tuple of Stage")
        if self.head not in HEADS:
            raise ValueError(f"arch.head must be one of {list(HEADS)}, got {self.head!r}")
        _check_int("arch", "hidden", self.hidden, 0, 65_536)
        stem_spec, stages = self.plan()
        located = [("stem", stem_spec)] + [
            (f"stages[{i}].block[{j}]", spec) for i, stage in enumerate(stages) for j, spec in enumerate(stage)
        ]
        for where, spec in located:
            try:
                get_block(spec.block).validate(spec)
            except ValueError as e:
                raise ValueError(f"{where}: {e}") from None
        try:
            self.walk(Tally(self.in_chs, self.resolution, self.resolution))
        except ValueError as e:
            raise ValueError(f"arch {self.id} at {self.resolution}x{self.resolution}: {e}") from None

    # -- builder arithmetic -------------------------------------------------------------------------

    def plan(self) -> tuple[BlockSpec, tuple[tuple[BlockSpec, ...], ...]]:
        """Expand the record into the stem's spec and, per stage, the spec of every block.

        Channels chain from block to block, only the first block of a stage strides, and bottlenecks
        are rounded so that the stage's groups divide them.
        """
        stem = self.stem
        stem_cls = get_block(stem.type)
        stem_spec = BlockSpec(
            stem.type,
            self.in_chs,
            stem.out_chs,
            stride=stem.stride,
            mid_chs=_mid_chs(stem_cls.default_ratio, None, stem.out_chs, 1),
        )
        stages = []
        in_chs = stem.out_chs
        for stage in self.stages:
            cls = get_block(stage.block)
            mid = _mid_chs(cls.default_ratio, stage.ratio, stage.out_chs, stage.groups)
            specs = []
            for j in range(stage.repeats):
                spec = BlockSpec(
                    stage.block,
                    in_chs,
                    stage.out_chs,
                    stride=stage.stride if j == 0 else 1,
                    kernel=stage.kernel,
                    groups=stage.groups,
                    mid_chs=mid,
                )
                specs.append(spec)
                in_chs = stage.out_chs
            stages.append(tuple(specs))
        return stem_spec, tuple(stages)

    def walk(self, t: Tally, *, head: bool = True) -> Tally:
        """Run every layer of the network on ``t`` (its cost, without building anything)."""
        stem_spec, stages = self.plan()
        get_block(stem_spec.block).cost(stem_spec, t)
        if self.stem.pool:
            t.pool(self.stem.pool, stride=2, padding=(self.stem.pool - 1) // 2)
        for spec in (spec for stage in stages for spec in stage):
            get_block(spec.block).cost(spec, t)
        if not head:
            return t
        if self.head == "gap":
            t.pool((t.h, t.w), stride=1)
        if self.hidden:
            t.linear(self.hidden)  # its ReLU runs in place: no MACs, no new tensor
        t.linear(self.num_classes)
        return t

    @property
    def out_chs(self) -> int:
        return self.stages[-1].out_chs if self.stages else self.stem.out_chs

    def replace(self, **changes: Any) -> Arch:
        return dataclasses.replace(self, **changes)

    # -- serialisation ------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {
            "in_chs": self.in_chs,
            "resolution": self.resolution,
            "num_classes": self.num_classes,
            "stem": dataclasses.asdict(self.stem),
            "stages": [dataclasses.asdict(s) for s in self.stages],
            "head": self.head,
            # only when there is one: records written before the key existed keep their exact form
            **({"hidden": self.hidden} if self.hidden else {}),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Arch:
        if not isinstance(data, dict):
            raise TypeError(f"an architecture record must be a mapping, got {type(data).__name__}")
        _check_keys("arch", data, cls)
        d = dict(data)
        stem = d.get("stem", {})
        if not isinstance(stem, dict):
            raise TypeError(f"arch.stem must be a mapping, got {type(stem).__name__}")
        _check_keys("stem", stem, Stem)
        stages = d.get("stages", [])
        if not isinstance(stages, (list, tuple)):
            raise TypeError(f"arch.stages must be a list, got {type(stages).__name__}")
        parsed = []
        for i, s in enumerate(stages):
            if not isinstance(s, dict):
                raise TypeError(f"arch.stages[{i}] must be a mapping, got {type(s).__name__}")
            _check_keys(f"stages[{i}]", s, Stage)
            parsed.append(Stage(**s))
        d["stem"] = Stem(**stem)
        d["stages"] = tuple(parsed)
        missing = [k for k in ("in_chs", "resolution", "num_classes") if k not in d]
        if missing:
            raise ValueError(f"architecture record misses {missing}")
        return cls(**d)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Arch:
        return cls.from_dict(json.loads(text))

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    @classmethod
    def from_yaml(cls, text: str) -> Arch:
        return cls.from_dict(yaml.safe_load(text))

    # -- compact id ---------------------------------------------------------------------------------

    @property
    def id(self) -> str:
        """A compact, file-name-safe string such as ``i1x28-n10_stem-conv-c16_dwsep-c32-r2-s2_gap``."""
        stem = self.stem
        parts = [f"i{self.in_chs}x{self.resolution}-n{self.num_classes}"]
        stem_tok = [f"stem-{stem.type}", f"c{stem.out_chs}"]
        if stem.stride != 1:
            stem_tok.append(f"s{stem.stride}")
        if stem.pool:
            stem_tok.append(f"p{stem.pool}")
        parts.append("-".join(stem_tok))
        for s in self.stages:
            tok = [s.block, f"c{s.out_chs}"]
            for key, value, default in (
                ("r", s.repeats, 1), ("s", s.stride, 1), ("g", s.groups, 1), ("k", s.kernel, 3)
            ):
                if value != default:
                    tok.append(f"{key}{value}")
            if s.ratio is not None:
                tok.append(f"e{_ratio_str(s.ratio)}")
            parts.append("-".join(tok))
        parts.append(f"{self.head}-h{self.hidden}" if self.hidden else self.head)
        return "_".join(parts)

    @classmethod
    def from_id(cls, text: str) -> Arch:
        """Inverse of :attr:`id`."""
        try:
            head_in, *rest = text.split("_")
            stem_tok, *stage_toks, head = rest
            m = _fullmatch(r"i(\d+)x(\d+)-n(\d+)", head_in, "i<in_chs>x<resolution>-n<classes>")
            in_chs, resolution, num_classes = (int(g) for g in m.groups())
            name, stem_kw = _parse_tok(stem_tok, {"c": "out_chs", "s": "stride", "p": "pool"}, prefix="stem-")
            stem = Stem(type=name, **stem_kw)
            keys = {"c": "out_chs", "r": "repeats", "s": "stride", "g": "groups", "k": "kernel", "e": "ratio"}
            stages = []
            for tok in stage_toks:
                name, kw = _parse_tok(tok, keys)
                stages.append(Stage(block=name, **kw))
            head, hidden = _fullmatch(r"([a-z]+)(?:-h([1-9][0-9]*))?", head, "<head>[-h<hidden>]").groups()
            hidden = int(hidden or 0)
        except (AttributeError, ValueError, TypeError, KeyError, IndexError) as e:
            raise ValueError(f"not an architecture id: {text!r} ({e})") from None
        return cls(in_chs, resolution, num_classes, stem, tuple(stages), head, hidden)


def _mid_chs(default_ratio: float | None, ratio: float | None, out_chs: int, groups: int) -> int:
    ratio = ratio if ratio is not None else default_ratio
    return 0 if ratio is None else make_divisible(out_chs * ratio, groups)


def _ratio_str(ratio: float) -> str:
    # '%g' keeps 6 digits and writes 1e-05 (with the '-' that ids split on): fall back to exact positional digits
    text = f"{ratio:g}"
    return text if "-" not in text and float(text) == ratio else format(Decimal(repr(ratio)), "f")


def _check_keys(owner: str, data: dict, cls: type) -> None:
    names = {f.name for f in fields(cls)}
    unknown = sorted(str(k) for k in data if k not in names)
    if unknown:
        raise ValueError(f"{owner}: unknown keys {unknown}; valid keys: {sorted(names)}")


def _fullmatch(pattern: str, text: str, form: str) -> re.Match[str]:
    m = re.fullmatch(pattern, text)
    if m is None:
        raise ValueError(f"expected {form} at {text!r}")
    return m


def _parse_tok(tok: str, keys: dict[str, str], prefix: str = "") -> tuple[str, dict[str, Any]]:
    if not tok.startswith(prefix):
        raise ValueError(f"expected {prefix!r} at {tok!r}")
    name, *items = tok[len(prefix):].split("-")
    if not _NAME.match(name):
        raise ValueError(f"bad block name {name!r}")
    kw: dict[str, Any] = {}
    for item in items:
        key, value = item[0], item[1:]
        if keys[key] in kw:
            raise ValueError(f"{key!r} given twice in {tok!r}")
        kw[keys[key]] = float(value) if key == "e" else int(value)
        if key == "e" and not math.isfinite(kw["ratio"]):
            raise ValueError(f"bad ratio {value!r}")
    return name, kw
