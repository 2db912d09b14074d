"""Search spaces (YAML) and the one function that samples an architecture record from an Optuna trial.

A space file lists, per stage, a choice of block family, width, group count, depth and kernel, over a
fixed stride schedule; the stem's family; the width multiplier alpha and the resolution multiplier
rho (MobileNet's two knobs). Channels are rounded by construction so that every candidate is valid:

- every width is ``alpha * channels`` rounded to a multiple of ``channel_multiple``, which every
  group count of the space must divide (so groups divide every width);
- a stride-2 ShuffleNet unit concatenates its input, so it is widened to at least
  ``in_chs + channel_multiple`` where the sampled width is not larger than its input.

A depth of 0 among a stage's choices makes the stage optional (it is left out when sampled). ``head_hidden``
offers a hidden fully connected layer between the pooled features and the classifier (0: none), as
MobileNetV3's head has; its width is not scaled by alpha.
"""

import math
import os
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any

import optuna
from pydantic import AfterValidator, Field, WithJsonSchema

from archsearch.core.errors import ConfigError, load_yaml, show
from archsearch.core.schema import Choices, Expect, Int, Model, Number, OneOf, did_you_mean, fail, json_schema, validate
from archsearch.network.arch import HEADS, STEM_POOLS, Arch, Stage, Stem, make_divisible
from archsearch.network.blocks import BLOCKS, get_block

__all__ = [
    "Space", "StageSpace", "Shape", "StageShape", "load_space", "space_from_dict", "space_schema", "suggest_shape",
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
    head_hidden: tuple[int, ...] = (0,)
    source: str | None = None

    @property
    def size(self) -> int:
        """Number of distinct points (parameter combinations) in the space."""
        n = (len(self.width_mult) * len(self.resolution_mult) * len(self.stem_types) * len(self.stem_channels)
             * len(self.head_hidden))
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


def _block_name(value: str) -> str:
    if value not in BLOCKS:
        fail(f"unknown block {value!r}; registered blocks: {sorted(BLOCKS)}{did_you_mean(value, BLOCKS)}")
    return value


_BlockName = Annotated[str, Expect("a block name"), AfterValidator(_block_name),
                       WithJsonSchema({"type": "string", "enum": sorted(BLOCKS)})]
_Width = Int(1, 4096, integral_floats=False)  # 2.0 == 2, but records take ints


# The field types below are calls (schema's Choices, OneOf, Int, Number) that build pydantic's Annotated types when
# the class is made; mypy cannot evaluate a call in an annotation, hence each one's `type: ignore[valid-type]`.


class StemSpace(Model):
    """The stem's family (the first layer) and width choices."""

    type: Choices(_BlockName) = Field(  # type: ignore[valid-type]
        description="conv (a full 3x3 convolution) or a block family, e.g. effnet")
    channels: Choices(_Width)  # type: ignore[valid-type]
    stride: OneOf(1, 2) = 1  # type: ignore[valid-type]
    pool: OneOf(*STEM_POOLS) = Field(  # type: ignore[valid-type]
        0, description="0: none; else a max-pool of this size after the stem")


class StageSpaceModel(Model):
    """One stage: its block families, widths, depths (0: the stage is optional), fixed stride."""

    block: Choices(_BlockName)  # type: ignore[valid-type]
    channels: Choices(_Width)  # type: ignore[valid-type]
    depth: Choices(Int(0, 32, integral_floats=False)) = (1,)  # type: ignore[valid-type]
    stride: OneOf(1, 2)  # type: ignore[valid-type]
    groups: Choices(Int(1, 64, integral_floats=False)) = Field(  # type: ignore[valid-type]
        (1,), description="group counts of ShuffleNet's pointwise convolutions; each divides channel_multiple")
    kernel: Choices(OneOf(*_KERNELS)) = Field(  # type: ignore[valid-type]
        (3,), description="depthwise kernel sizes (MobileNet blocks)")


class SpaceModel(Model):
    """A search space: per stage a choice of family, width, groups, depth and kernel; the stem; alpha and rho."""

    name: Annotated[str, Field(min_length=1)] | None = Field(None, description="default: the file's name")
    description: str | None = None
    channel_multiple: Int(1, 256, integral_floats=False) = Field(  # type: ignore[valid-type]
        8, description="every width is rounded to a multiple of this")
    width_mult: Choices(Number(0.01, 16.0)) = Field(  # type: ignore[valid-type]
        (1.0,), description="MobileNet's width multiplier alpha")
    resolution_mult: Choices(Number(0.05, 4.0)) = Field(  # type: ignore[valid-type]
        (1.0,), description="MobileNet's resolution multiplier rho")
    stem: StemSpace
    stages: Annotated[list[StageSpaceModel], Expect("a non-empty list of stages"), Field(min_length=1)]
    head: OneOf(*HEADS) = "gap"  # type: ignore[valid-type]
    head_hidden: Choices(Int(0, 65_536, integral_floats=False)) = Field(  # type: ignore[valid-type]
        (0,), description="units of a hidden FC layer (+ ReLU) after pooling, before the classifier; 0: none")


def load_space(path: str | os.PathLike) -> Space:
    """Load and validate a search-space YAML file; errors name the file and the key path."""
    return space_from_dict(load_yaml(path), path=path)


def space_from_dict(data: dict[str, Any], *, path: str | os.PathLike | None = None) -> Space:
    """Validate a space given as a dict (the parsed YAML, or built in code); ``path`` is named in errors."""
    if not isinstance(data, dict):
        raise ConfigError(f"expected a mapping at the top level, got {show(data)}", path=path)
    model: SpaceModel = validate(SpaceModel, data, path=path)
    for i, st in enumerate(model.stages):
        _check_stage(st, model.channel_multiple, path=path, at=f"stages[{i}]")
    return Space(
        name=model.name or (os.path.splitext(os.path.basename(str(path)))[0] if path else "space"),
        stem_types=model.stem.type,
        stem_channels=model.stem.channels,
        stem_stride=model.stem.stride,
        stem_pool=model.stem.pool,
        stages=tuple(StageSpace(st.block, st.channels, st.depth, st.stride, st.groups, st.kernel)
                     for st in model.stages),
        width_mult=tuple(float(a) for a in model.width_mult),
        resolution_mult=tuple(float(r) for r in model.resolution_mult),
        channel_multiple=model.channel_multiple,
        head=model.head,
        head_hidden=model.head_hidden,
        source=None if path is None else str(path),
    )


def _check_stage(st: StageSpaceModel, multiple: int, *, path: Any, at: str) -> None:
    """What a stage's keys mean together: groups and kernels only for the families that use them."""
    classes = [get_block(b) for b in st.block]
    if st.groups != (1,) and not any(c.uses_groups for c in classes):
        raise ConfigError(f"none of the blocks {list(st.block)} uses groups; remove the key or add 'shuffle'",
                          path=path, key=f"{at}.groups")
    for g in st.groups:
        if multiple % g:
            raise ConfigError(f"group count {g} does not divide channel_multiple {multiple}, so it cannot divide "
                              f"every width; set channel_multiple to a multiple of {math.lcm(multiple, g)} or drop {g}",
                              path=path, key=f"{at}.groups")
    if st.kernel != (3,) and not any(c.uses_kernel for c in classes):
        raise ConfigError(f"none of the blocks {list(st.block)} takes a kernel size; remove the key",
                          path=path, key=f"{at}.kernel")


def space_schema() -> dict[str, Any]:
    """The space YAML's JSON Schema (shipped as archsearch/schemas/space.schema.json)."""
    return json_schema(SpaceModel, title="archsearch search space",
                       description="An archsearch search-space file, named by a study's `space` key.")


# -- sampling ----------------------------------------------------------------------------------------


def _pick(trial: optuna.trial.BaseTrial, name: str, options: tuple) -> Any:
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
    module docstring says; :mod:`archsearch.space.fit` picks the ``alpha`` that spends a budget.
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
    hidden: int = 0  # the head's hidden units (not scaled by alpha, as MobileNetV3 keeps its head's 1280)

    def at(self, alpha: float, extra: tuple[int, ...] = ()) -> Arch:
        """The record at width multiplier ``alpha``.

        ``extra``: channel units added after rounding, to the stem and then to each stage in turn
        (missing entries are 0); budget fitting tops widths up with it.
        """
        unit = self.channel_multiple
        extra = tuple(extra) + (0,) * (1 + len(self.stages) - len(extra))
        stem_chs = make_divisible(self.stem_channels * alpha, unit) + extra[0] * unit
        stages, in_chs = [], stem_chs
        for st, more in zip(self.stages, extra[1:], strict=False):
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
            hidden=self.hidden,
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


def suggest_shape(
    trial: optuna.trial.BaseTrial, space: Space, *, in_chs: int, resolution: int, num_classes: int
) -> Shape:
    """Sample everything but the width multiplier (budget fitting picks that; see :mod:`archsearch.space.fit`)."""
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
    hidden = _pick(trial, "head_hidden", space.head_hidden)
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
        hidden=hidden,
    )


def suggest_architecture(
    trial: optuna.trial.BaseTrial, space: Space, *, in_chs: int, resolution: int, num_classes: int
) -> Arch:
    """Sample an architecture record: its shape, then the width multiplier alpha from the space's choices.

    Parameter names are stable (``width_mult``, ``resolution_mult``, ``stem``, ``stem_channels``,
    ``s{i}_block``, ``s{i}_channels``, ``s{i}_depth``, ``s{i}_groups``, ``s{i}_kernel``, ``head_hidden``), so a
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


def describe(values: Sequence[float]) -> tuple[float, float, float]:
    return min(values), statistics.median(values), max(values)
