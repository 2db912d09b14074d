"""The seed's hand-designed networks as architecture records, all in one place.

- MobileNet v1 (https://arxiv.org/abs/1704.04861, Table 1) with width alpha and resolution rho;
- ShuffleNet v1 (https://arxiv.org/abs/1707.01083, Table 1) with groups g and scale s;
- EffNet (https://arxiv.org/abs/1801.06434): three EffNet blocks 64 -> 128 -> 256 with a width factor.

Small inputs: the ImageNet networks halve 224 five times to 7x7. Here the input is halved while it is
larger than 4 pixels (28 and 32 -> 3 halvings, 8 -> 1), and the *earliest* stride-2 layers become
stride 1 (the usual CIFAR adaptation: the stem keeps full resolution; ShuffleNet drops its max-pool).

A search enqueues each family at the widest width that fits its budget (:func:`fit_baseline`): the analytic limits
computed, a latency limit from the study's lookup table, passed in as a predictor (this layer measures nothing).

``effnet_paper(name)`` gives the three networks of the EffNet paper's 32x32x3 comparison exactly as
its layer table lists them, with their flatten + linear heads.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from archsearch.network.arch import Arch, Stage, Stem, make_divisible
from archsearch.network.metrics import amount, metric
from archsearch.space.fit import budget_use, cost_values

__all__ = ["FAMILIES", "mobilenet_v1", "shufflenet_v1", "effnet", "effnet_paper", "EFFNET_PAPER", "BaselineFit",
           "fit_baseline", "fit_to_budget", "over_words"]


def _strides(n_positions: int, resolution: int) -> list[int]:
    """Stride of each of ``n_positions`` downsampling places: keep the last ones, as many as fit."""
    halvings, size = 0, resolution
    while size > 4 and halvings < n_positions:
        size = -(-size // 2)
        halvings += 1
    return [1] * (n_positions - halvings) + [2] * halvings


def mobilenet_v1(alpha: float = 1.0, rho: float = 1.0, *, in_chs: int = 3, resolution: int = 224,
                 num_classes: int = 1000) -> Arch:
    """MobileNet v1: a 3x3 conv then 13 depthwise-separable blocks (the paper's Table 1)."""
    res = max(1, round(resolution * rho))
    s = _strides(5, res)
    ch = lambda c: make_divisible(c * alpha, 8 if alpha >= 0.5 else 4)  # noqa: E731
    return Arch(
        in_chs=in_chs,
        resolution=res,
        num_classes=num_classes,
        stem=Stem("conv", ch(32), stride=s[0]),
        stages=(
            Stage("dwsep", ch(64), 1, 1),
            Stage("dwsep", ch(128), 2, s[1]),
            Stage("dwsep", ch(256), 2, s[2]),
            Stage("dwsep", ch(512), 6, s[3]),
            Stage("dwsep", ch(1024), 2, s[4]),
        ),
    )


_SHUFFLE_WIDTHS = {1: 144, 2: 200, 3: 240, 4: 272, 8: 384}


def shufflenet_v1(groups: int = 3, scale: float = 1.0, *, in_chs: int = 3, resolution: int = 224,
                  num_classes: int = 1000) -> Arch:
    """ShuffleNet v1 (g groups, s x): conv 24 + max-pool, stages of 4, 8 and 4 units (Table 1)."""
    if groups not in _SHUFFLE_WIDTHS:
        raise ValueError(f"ShuffleNet v1 groups must be one of {sorted(_SHUFFLE_WIDTHS)}, got {groups}")
    s = _strides(5, resolution)
    base = _SHUFFLE_WIDTHS[groups]
    # widths multiple of 4g, so that the bottleneck (a quarter) is a multiple of g as in the paper
    # (and each stage wider than the last: a stride-2 unit concatenates its input)
    unit = 4 * groups
    stem_chs = make_divisible(24 * scale, groups)
    widths, prev = [], stem_chs
    for c in (base, 2 * base, 4 * base):
        prev = max(make_divisible(c * scale, unit), prev - prev % unit + unit)
        widths.append(prev)
    return Arch(
        in_chs=in_chs,
        resolution=resolution,
        num_classes=num_classes,
        stem=Stem("conv", stem_chs, stride=s[0], pool=3 if s[1] == 2 else 0),
        stages=tuple(
            Stage("shuffle", w, repeats, stride, groups=groups)
            for w, repeats, stride in zip(widths, (4, 8, 4), s[2:], strict=True)
        ),
    )


def effnet(width: float = 1.0, *, in_chs: int = 3, resolution: int = 32, num_classes: int = 10) -> Arch:
    """EffNet: three EffNet blocks 64 -> 128 -> 256 (the first replaces the stem), global pooling head."""
    s = _strides(3, resolution)
    ch = lambda c: make_divisible(c * width, 4)  # noqa: E731
    return Arch(
        in_chs=in_chs,
        resolution=resolution,
        num_classes=num_classes,
        stem=Stem("effnet", ch(64), stride=s[0]),
        stages=(Stage("effnet", ch(128), 1, s[1]), Stage("effnet", ch(256), 1, s[2])),
    )


EFFNET_PAPER: dict[str, Arch] = {
    # 3x3x64 conv + 2x2 max-pool; dw 3x3/2 + 1x1x128; dw 3x3/2 + 1x1x256; FC on 4x4x256
    "effnet-paper/mobilenet": Arch(
        3, 32, 10, Stem("conv", 64, pool=2),
        (Stage("dwsep", 128, stride=2), Stage("dwsep", 256, stride=2)), head="flatten",
    ),
    # 3x3x64 conv + max-pool; [g4 1x1x32, dw 3x3/2, g4 1x1x128]; [g4 1x1x64, dw 3x3/2, g4 1x1x256]; FC.
    # With the unit's concatenated shortcut the last 1x1s produce 128-64 and 256-128 channels.
    "effnet-paper/shufflenet": Arch(
        3, 32, 10, Stem("conv", 64, pool=2),
        (Stage("shuffle", 128, stride=2, groups=4), Stage("shuffle", 256, stride=2, groups=4)), head="flatten",
    ),
    # three EffNet blocks 3->64, 64->128, 128->256 (1x1 to half the output each); FC on 4x4x256
    "effnet-paper/effnet": Arch(
        3, 32, 10, Stem("effnet", 64, stride=2),
        (Stage("effnet", 128, stride=2), Stage("effnet", 256, stride=2)), head="flatten",
    ),
}


def effnet_paper(name: str) -> Arch:
    try:
        return EFFNET_PAPER[name]
    except KeyError:
        raise ValueError(f"unknown network {name!r}; choose from {sorted(EFFNET_PAPER)}") from None


#: family name -> function(width, in_chs=, resolution=, num_classes=) -> Arch
FAMILIES: dict[str, Callable[..., Arch]] = {
    "mobilenet": lambda w, **kw: mobilenet_v1(w, **kw),
    "shufflenet": lambda w, **kw: shufflenet_v1(3, w, **kw),
    "effnet": lambda w, **kw: effnet(w, **kw),
}

# widths tried, widest first: 3.0 down to 1/32 in steps of 1/32
_WIDTHS = [w / 32 for w in range(96, 0, -1)]


@dataclass(frozen=True)
class BaselineFit:
    """A seed family fitted to a budget.

    ``arch``: the widest variant within every limit (None: even the thinnest is over); ``width``: its width
    multiplier, or the thinnest variant's where none fits; ``values``: the budget metrics of that variant (its
    latency predicted where the budget limits latency; None: not known); ``limits``: what it was fitted to.
    """

    family: str
    arch: Arch | None
    width: float
    values: dict[str, float | None]
    limits: dict[str, float]

    @property
    def over(self) -> dict[str, float]:
        """The limited metrics over their limit, with their value (empty where ``arch`` fits)."""
        return {m: v for m, limit in self.limits.items() if (v := self.values.get(m)) is not None and v > limit}

    @property
    def budget_use(self) -> float | None:
        """The largest value / limit over the limited metrics (None: none is known)."""
        return budget_use(self.values, self.limits)


def _variants(family: str, in_chs: int, resolution: int, num_classes: int) -> list[tuple[float, Arch]]:
    """The distinct variants of ``family`` on ``_WIDTHS``, widest first, each with the widest width that gives it."""
    try:
        make = FAMILIES[family]
    except KeyError:
        raise ValueError(f"unknown family {family!r}; choose from {sorted(FAMILIES)}") from None
    seen: set[Arch] = set()
    out = []
    for w in _WIDTHS:
        arch = make(w, in_chs=in_chs, resolution=resolution, num_classes=num_classes)
        if arch not in seen:
            seen.add(arch)
            out.append((w, arch))
    return out


def fit_baseline(
    family: str,
    *,
    in_chs: int,
    resolution: int,
    num_classes: int,
    limits: Mapping[str, float],
    latency: Callable[[Arch], float] | None = None,
    bytes_per_param: int = 4,
    bytes_per_activation: int = 4,
) -> BaselineFit:
    """The widest variant of ``family`` within every limit of ``limits`` (budget metrics of
    :mod:`archsearch.network.metrics`), or, where none is, its thinnest variant with what it is over.

    The analytic metrics are computed (weights and activations at ``bytes_per_param`` and ``bytes_per_activation``,
    the budget's precisions); latency is ``latency(arch)`` (the study's lookup table predicts it, measuring
    the parts it lacks), needed where ``limits`` has "latency". Latency grows with the width, so the widest variant
    within it is found by bisection over the variants within the analytic limits: a few predictions, not one per
    width.
    """
    limits = dict(limits)
    if "latency" in limits and latency is None:
        raise ValueError(f"fitting the {family} baseline to a latency limit ({limits['latency']:g} ms) needs a "
                         "latency predictor (latency=, e.g. the study's latency table's predict)")
    variants = _variants(family, in_chs, resolution, num_classes)
    precision = {"bytes_per_param": bytes_per_param, "bytes_per_activation": bytes_per_activation}
    predicted: dict[Arch, float] = {}

    def values(arch: Arch) -> dict[str, float | None]:
        ms = None
        if latency is not None and "latency" in limits:
            if arch not in predicted:
                predicted[arch] = latency(arch)
            ms = predicted[arch]
        return cost_values(arch, ms, **precision)

    def within(arch: Arch, names: Iterable[str]) -> bool:
        v = values(arch) if "latency" in names else cost_values(arch, **precision)
        return all((x := v.get(m)) is None or x <= limits[m] for m in names)

    analytic = [m for m in limits if m != "latency"]
    fitting = [(w, a) for w, a in variants if within(a, analytic)]  # widest first
    if "latency" in limits and fitting:
        # bisection: fitting[bad] is over the latency limit (-1: wider than the widest, untried), fitting[good] is
        # within it; the thinnest is tried first, the widest only where everything thinner is within
        bad, good = -1, len(fitting) - 1
        if not within(fitting[good][1], ["latency"]):
            fitting = []
        else:
            while good - bad > 1:
                mid = (bad + good) // 2
                if within(fitting[mid][1], ["latency"]):
                    good = mid
                else:
                    bad = mid
            fitting = fitting[good:]
    width, arch = fitting[0] if fitting else variants[-1]
    return BaselineFit(family, arch if fitting else None, width, values(arch), limits)


def fit_to_budget(
    family: str,
    *,
    in_chs: int,
    resolution: int,
    num_classes: int,
    max_macs: float | None = None,
    max_params: float | None = None,
    limits: Mapping[str, float] | None = None,
    latency: Callable[[Arch], float] | None = None,
    bytes_per_param: int = 4,
    bytes_per_activation: int = 4,
) -> Arch | None:
    """The widest variant of ``family`` within the budget (None if even the thinnest is over it):
    :func:`fit_baseline`'s ``arch``.

    ``limits``: any budget metrics (:mod:`archsearch.network.metrics`) with their limits, beside ``max_macs`` and
    ``max_params``; a latency limit needs ``latency``, the predictor (the study's latency table's ``predict``).
    """
    limits = {**(limits or {}), **({"macs": max_macs} if max_macs is not None else {}),
              **({"params": max_params} if max_params is not None else {})}
    return fit_baseline(family, in_chs=in_chs, resolution=resolution, num_classes=num_classes, limits=limits,
                        latency=latency, bytes_per_param=bytes_per_param,
                        bytes_per_activation=bytes_per_activation).arch


def over_words(width: float, over: Mapping[str, float], limits: Mapping[str, float] | None = None) -> str:
    """Why a family was not fitted, in words: ``even its thinnest variant (x0.0312) is over the budget: latency
    2.43 ms (predicted) > budget.max_latency_ms 2 ms`` (``over``: its values over their limit; ``limits``: the
    budget's, where known)."""
    parts = []
    for m, value in over.items():
        limit = (limits or {}).get(m)
        predicted = " (predicted)" if metric(m).measured else ""
        against = "" if limit is None else f" > budget.{metric(m).key} {amount(m, limit)}"
        parts.append(f"{m} {amount(m, value)}{predicted}{against}")
    return f"even its thinnest variant (x{width:.3g}) is over the budget" + (f": {', '.join(parts)}" if parts else "")
