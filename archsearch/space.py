"""Search spaces (YAML) and the one function that samples an architecture record from an Optuna trial.

A space file lists, per stage, a choice of block family, width, group count, depth and kernel, over a
fixed stride schedule; the stem's family; the width multiplier alpha and the resolution multiplier
rho (MobileNet's two knobs). Channels are rounded by construction so that every candidate is valid:

- every width is ``alpha * channels`` rounded to a multiple of ``channel_multiple``, which every
  group count of the space must divide (so groups divide every width);
- a stride-2 ShuffleNet unit concatenates its input, so it is widened to at least
  ``in_chs + channel_multiple`` where the sampled width is not larger than its input.

A depth of 0 among a stage's choices makes the stage optional (it is left out when sampled).
"""

from __future__ import annotations

import math
import os
import statistics
from dataclasses import dataclass
from typing import Any

import optuna

from .arch import HEADS, STEM_POOLS, Arch, Stage, Stem, make_divisible
from .blocks import BLOCKS, get_block
from .errors import ConfigError, load_yaml

__all__ = [
    "Space", "StageSpace", "Shape", "StageShape", "load_space", "space_from_dict", "suggest_shape",
    "suggest_architecture", "sample_architectures", "sample_shapes",
]

_KERNELS = (1, 3, 5, 7)


@dataclass(frozen=True)
class StageSpace:
    blocks: tuple[str, ...]
    channels: tuple[int, ...]
    depth: tuple[int, ...]
    stride: int
    groups: tuple[int, ...] = (1,)
    kernel: tuple[int, ...] = (3,)


@dataclass(frozen=True)
class Space:
    name: str
    stem_types: tuple[str, ...]
    stem_channels: tuple[int, ...]
    stem_stride: int
    stem_pool: int
    stages: tuple[StageSpace, ...]
    width_mult: tuple[float, ...] = (1.0,)
    resolution_mult: tuple[float, ...] = (1.0,)
    channel_multiple: int = 8
    head: str = "gap"
    source: str | None = None

    @property
    def size(self) -> int:
        """Number of distinct points (parameter combinations) in the space."""
        n = len(self.width_mult) * len(self.resolution_mult) * len(self.stem_types) * len(self.stem_channels)
        for st in self.stages:
            per_stage = 1 if 0 in st.depth else 0  # the stage left out
            depths = len([d for d in st.depth if d > 0])
            for b in st.blocks:
                cls = get_block(b)
                per_stage += (
                    len(st.channels)
                    * depths
                    * (len(st.groups) if cls.uses_groups else 1)
                    * (len(st.kernel) if cls.uses_kernel else 1)
                )
            n *= per_stage
        return n


# -- loading -----------------------------------------------------------------------------------------

_TOP_KEYS = {"name", "description", "channel_multiple", "width_mult", "resolution_mult", "stem", "stages", "head"}
_STEM_KEYS = {"type", "channels", "stride", "pool"}
_STAGE_KEYS = {"block", "channels", "depth", "stride", "groups", "kernel"}


def load_space(path: str | os.PathLike) -> Space:
    """Load and validate a search-space YAML file; errors name the file and the key path."""
    return space_from_dict(load_yaml(path), path=path)


def space_from_dict(data: dict[str, Any], *, path: str | os.PathLike | None = None) -> Space:
    def err(key: str, msg: str) -> ConfigError:
        return ConfigError(msg, path=path, key=key)

    def keys(where: str, d: Any, allowed: set[str], required: set[str] = frozenset()) -> dict:
        if not isinstance(d, dict):
            raise err(where, f"expected a mapping, got {type(d).__name__} {d!r}")
        for k in d:
            if k not in allowed:
                raise err(f"{where}.{k}" if where else str(k), f"unknown key; valid keys: {sorted(allowed)}")
        for k in sorted(required - set(d)):
            raise err(f"{where}.{k}" if where else k, "missing required key")
        return d

    def choices(key: str, value: Any, kind: type, low: float, high: float) -> tuple:
        items = value if isinstance(value, list) else [value]
        if not items:
            raise err(key, "expected a value or a non-empty list of choices, got an empty list")
        out = []
        for v in items:
            ok = isinstance(v, kind) and not isinstance(v, bool)
            if kind is float:
                ok = isinstance(v, (int, float)) and not isinstance(v, bool)
            if not ok:
                hint = " (YAML reads 1e-3 without a dot as a string: write 1.0e-3)" if isinstance(v, str) else ""
                raise err(key, f"expected {kind.__name__} choices in [{low}, {high}], got {v!r}{hint}")
            if not (low <= v <= high) or (kind is float and not math.isfinite(v)):
                raise err(key, f"expected {kind.__name__} choices in [{low}, {high}], got {v!r}")
            out.append(kind(v))
        if len(set(out)) != len(out):
            raise err(key, f"choices must be distinct, got {items!r}")
        return tuple(out)

    def names(key: str, value: Any) -> tuple[str, ...]:
        items = value if isinstance(value, list) else [value]
        if not items:
            raise err(key, "expected a block name or a non-empty list of block names, got an empty list")
        for v in items:
            if not isinstance(v, str) or v not in BLOCKS:
                raise err(key, f"unknown block {v!r}; registered blocks: {sorted(BLOCKS)}")
        if len(set(items)) != len(items):
            raise err(key, f"choices must be distinct, got {items!r}")
        return tuple(items)

    def one(key: str, value: Any, allowed: tuple) -> Any:
        if isinstance(value, (bool, float)) or value not in allowed:  # 2.0 == 2, but records take ints
            raise err(key, f"expected one of {list(allowed)}, got {value!r}")
        return value

    d = keys("", data, _TOP_KEYS, {"stem", "stages"})
    name = d.get("name", os.path.splitext(os.path.basename(str(path)))[0] if path else "space")
    if not isinstance(name, str) or not name:
        raise err("name", f"expected a non-empty string, got {name!r}")
    if "description" in d and not isinstance(d["description"], str):
        raise err("description", f"expected a string, got {d['description']!r}")
    multiple = choices("channel_multiple", d.get("channel_multiple", 8), int, 1, 256)
    if len(multiple) != 1:
        raise err("channel_multiple", f"expected one int, got a list {d['channel_multiple']!r}")
    multiple = multiple[0]
    width_mult = choices("width_mult", d.get("width_mult", 1.0), float, 0.01, 16.0)
    resolution_mult = choices("resolution_mult", d.get("resolution_mult", 1.0), float, 0.05, 4.0)
    head = one("head", d.get("head", "gap"), HEADS)

    stem = keys("stem", d["stem"], _STEM_KEYS, {"type", "channels"})
    stem_types = names("stem.type", stem["type"])
    stem_channels = choices("stem.channels", stem["channels"], int, 1, 4096)
    stem_stride = one("stem.stride", stem.get("stride", 1), (1, 2))
    stem_pool = one("stem.pool", stem.get("pool", 0), STEM_POOLS)

    raw_stages = d["stages"]
    if not isinstance(raw_stages, list) or not raw_stages:
        raise err("stages", f"expected a non-empty list of stages, got {raw_stages!r}")
    stages = []
    for i, raw in enumerate(raw_stages):
        at = f"stages[{i}]"
        s = keys(at, raw, _STAGE_KEYS, {"block", "channels", "stride"})
        blocks = names(f"{at}.block", s["block"])
        classes = [get_block(b) for b in blocks]
        groups = choices(f"{at}.groups", s.get("groups", 1), int, 1, 64)
        kernel = choices(f"{at}.kernel", s.get("kernel", 3), int, 1, 7)
        if groups != (1,) and not any(c.uses_groups for c in classes):
            raise err(f"{at}.groups", f"none of the blocks {list(blocks)} uses groups; remove the key or add 'shuffle'")
        for g in groups:
            if multiple % g:
                raise err(
                    f"{at}.groups",
                    f"group count {g} does not divide channel_multiple {multiple}, so it cannot divide every "
                    f"width; set channel_multiple to a multiple of {math.lcm(multiple, g)} or drop {g}",
                )
        if kernel != (3,) and not any(c.uses_kernel for c in classes):
            raise err(f"{at}.kernel", f"none of the blocks {list(blocks)} takes a kernel size; remove the key")
        for k in kernel:
            if k not in _KERNELS:
                raise err(f"{at}.kernel", f"expected kernel sizes from {list(_KERNELS)}, got {k}")
        stages.append(
            StageSpace(
                blocks=blocks,
                channels=choices(f"{at}.channels", s["channels"], int, 1, 4096),
                depth=choices(f"{at}.depth", s.get("depth", 1), int, 0, 32),
                stride=one(f"{at}.stride", s["stride"], (1, 2)),
                groups=groups,
                kernel=kernel,
            )
        )
    return Space(
        name=name,
        stem_types=stem_types,
        stem_channels=stem_channels,
        stem_stride=stem_stride,
        stem_pool=stem_pool,
        stages=tuple(stages),
        width_mult=width_mult,
        resolution_mult=resolution_mult,
        channel_multiple=multiple,
        head=head,
        source=None if path is None else str(path),
    )


# -- sampling ----------------------------------------------------------------------------------------


def _pick(trial: optuna.Trial, name: str, options: tuple) -> Any:
    # a single option is a constant, not a parameter, so FixedTrial and old studies need not carry it
    return options[0] if len(options) == 1 else trial.suggest_categorical(name, list(options))


@dataclass(frozen=True)
class StageShape:
    """One stage as sampled, before the width multiplier: its base width is the space's choice."""

    block: str
    channels: int
    depth: int
    stride: int
    groups: int = 1
    kernel: int = 3


@dataclass(frozen=True)
class Shape:
    """A candidate without its size: everything the sampler picks except the width multiplier.

    ``at(alpha)`` is the architecture record with every width scaled by ``alpha`` and rounded as the
    module docstring says; :mod:`archsearch.fit` picks the ``alpha`` that spends a budget.
    """

    in_chs: int
    resolution: int  # after the resolution multiplier
    num_classes: int
    stem_type: str
    stem_channels: int
    stem_stride: int
    stem_pool: int
    stages: tuple[StageShape, ...]
    head: str = "gap"
    channel_multiple: int = 8

    def at(self, alpha: float, extra: tuple[int, ...] = ()) -> Arch:
        """The record at width multiplier ``alpha``.

        ``extra``: channel units added after rounding, to the stem and then to each stage in turn
        (missing entries are 0); budget fitting tops widths up with it.
        """
        unit = self.channel_multiple
        extra = tuple(extra) + (0,) * (1 + len(self.stages) - len(extra))
        stem_chs = make_divisible(self.stem_channels * alpha, unit) + extra[0] * unit
        stages, in_chs = [], stem_chs
        for st, more in zip(self.stages, extra[1:]):
            out = make_divisible(st.channels * alpha, unit) + more * unit
            if get_block(st.block).uses_groups and st.stride == 2 and out <= in_chs:
                out = in_chs + unit  # a stride-2 shuffle unit concatenates its input
            stages.append(Stage(st.block, out, repeats=st.depth, stride=st.stride, groups=st.groups, kernel=st.kernel))
            in_chs = out
        return Arch(
            in_chs=self.in_chs,
            resolution=self.resolution,
            num_classes=self.num_classes,
            stem=Stem(self.stem_type, stem_chs, stride=self.stem_stride, pool=self.stem_pool),
            stages=tuple(stages),
            head=self.head,
        )

    def breakpoints(self, low: float, high: float) -> list[float]:
        """The multipliers in ``[low, high]`` at which ``at`` changes, with ``low`` first, ascending.

        A width ``c * alpha`` rounds up to the next multiple ``k * unit`` once it passes ``(k - 1/2) * unit``;
        the record is the same for every multiplier between two neighbours of this list.
        """
        unit = self.channel_multiple
        points = {low}
        for c in {self.stem_channels, *(st.channels for st in self.stages)}:
            k = max(2, math.floor(low * c / unit + 0.5) + 1)
            while (alpha := (k - 0.5) * unit / c) <= high:
                if alpha > low:
                    # nudged up: at the exact midpoint int(x + 0.5) can land on either side in floating point
                    points.add(alpha * (1 + 1e-9))
                k += 1
        return sorted(points)


def suggest_shape(trial: optuna.Trial, space: Space, *, in_chs: int, resolution: int, num_classes: int) -> Shape:
    """Sample everything but the width multiplier (budget fitting picks that; see :mod:`archsearch.fit`)."""
    rho = _pick(trial, "resolution_mult", space.resolution_mult)
    stem_type = _pick(trial, "stem", space.stem_types)
    stem_chs = _pick(trial, "stem_channels", space.stem_channels)
    stages = []
    for i, st in enumerate(space.stages):
        depth = _pick(trial, f"s{i}_depth", st.depth)
        if depth == 0:  # an optional stage, left out
            continue
        block = _pick(trial, f"s{i}_block", st.blocks)
        cls = get_block(block)
        channels = _pick(trial, f"s{i}_channels", st.channels)
        groups = _pick(trial, f"s{i}_groups", st.groups) if cls.uses_groups else 1
        kernel = _pick(trial, f"s{i}_kernel", st.kernel) if cls.uses_kernel else 3
        stages.append(StageShape(block, channels, depth, st.stride, groups, kernel))
    return Shape(
        in_chs=in_chs,
        resolution=max(1, round(resolution * rho)),
        num_classes=num_classes,
        stem_type=stem_type,
        stem_channels=stem_chs,
        stem_stride=space.stem_stride,
        stem_pool=space.stem_pool,
        stages=tuple(stages),
        head=space.head,
        channel_multiple=space.channel_multiple,
    )


def suggest_architecture(
    trial: optuna.Trial, space: Space, *, in_chs: int, resolution: int, num_classes: int
) -> Arch:
    """Sample an architecture record: its shape, then the width multiplier alpha from the space's choices.

    Parameter names are stable (``width_mult``, ``resolution_mult``, ``stem``, ``stem_channels``,
    ``s{i}_block``, ``s{i}_channels``, ``s{i}_depth``, ``s{i}_groups``, ``s{i}_kernel``), so a
    study stays resumable across versions. ``groups`` and ``kernel`` are only sampled for families
    that use them. With budget fitting ``width_mult`` is not sampled (:func:`suggest_shape`).
    """
    alpha = _pick(trial, "width_mult", space.width_mult)
    return suggest_shape(trial, space, in_chs=in_chs, resolution=resolution, num_classes=num_classes).at(alpha)


def sample_architectures(
    space: Space, n: int, *, in_chs: int, resolution: int, num_classes: int, seed: int = 0
) -> list[Arch]:
    """``n`` architectures drawn uniformly from the space (Optuna's RandomSampler, seeded)."""
    return _sample(suggest_architecture, space, n, seed, in_chs=in_chs, resolution=resolution, num_classes=num_classes)


def sample_shapes(
    space: Space, n: int, *, in_chs: int, resolution: int, num_classes: int, seed: int = 0
) -> list[Shape]:
    """``n`` shapes (everything but the width multiplier) drawn uniformly from the space, seeded."""
    return _sample(suggest_shape, space, n, seed, in_chs=in_chs, resolution=resolution, num_classes=num_classes)


def _sample(suggest: Any, space: Space, n: int, seed: int, **shape_of: int) -> list:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    out = []
    for _ in range(n):
        trial = study.ask()
        out.append(suggest(trial, space, **shape_of))
        study.tell(trial, 0.0)
    return out


def describe(values: list[float]) -> tuple[float, float, float]:
    return min(values), statistics.median(values), max(values)
