"""The analytic walk: MACs, parameters and peak activation memory of layers, counted with nothing built.

A block's ``cost`` (:mod:`archsearch.network.blocks`) walks the same layers as its ``forward`` on a :class:`Tally`.
"""

from __future__ import annotations

__all__ = ["Tally"]


class Tally:
    """Walks layers on a (channels, height, width) activation, batch 1, adding up their cost.

    MACs count the multiply-accumulates of convolutions and linear layers only (no bias adds, BN,
    activations or pooling). ``peak`` is the largest number of activation elements alive at once,
    taken at each layer as input + output + whatever a shortcut holds.
    """

    def __init__(self, c: int, h: int, w: int):
        self.c, self.h, self.w = c, h, w
        self.macs = 0
        self.params = 0
        self.peak = c * h * w

    @property
    def numel(self) -> int:
        return self.c * self.h * self.w

    def _step(self, c: int, h: int, w: int, held: int) -> None:
        if h < 1 or w < 1:
            raise ValueError(f"feature map shrinks to {h}x{w}: too many stride-2 layers for the input size")
        self.peak = max(self.peak, self.numel + c * h * w + held)
        self.c, self.h, self.w = c, h, w

    def conv(
        self,
        out_chs: int,
        kernel: int | tuple[int, int],
        *,
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] = 0,
        groups: int = 1,
        norm: bool = True,
        bias: bool = False,
        held: int = 0,
        norm_held: int | None = None,
    ) -> None:
        """``held``: elements kept alive beside the convolution's input and output; ``norm_held`` beside its BN's
        (default: ``held``; differs where the held tensor is the convolution's own input)."""
        kh, kw = _pair(kernel)
        sh, sw = _pair(stride)
        ph, pw = _pair(padding)
        h = (self.h + 2 * ph - kh) // sh + 1
        w = (self.w + 2 * pw - kw) // sw + 1
        weights = out_chs * (self.c // groups) * kh * kw
        self.macs += weights * h * w
        self.params += weights + (out_chs if bias else 0) + (2 * out_chs if norm else 0)
        self._step(out_chs, h, w, held)
        if norm:  # the BN after it is a layer of its own (until folded): its input and output are both alive
            self.peak = max(self.peak, 2 * self.numel + (held if norm_held is None else norm_held))

    def pool(
        self,
        kernel: int | tuple[int, int],
        *,
        stride: int | tuple[int, int],
        padding: int | tuple[int, int] = 0,
        ceil_mode: bool = False,
        held: int = 0,
    ) -> None:
        kh, kw = _pair(kernel)
        sh, sw = _pair(stride)
        ph, pw = _pair(padding)
        h, w = (_pool_out(self.h, kh, sh, ph, ceil_mode), _pool_out(self.w, kw, sw, pw, ceil_mode))
        self._step(self.c, h, w, held)

    def pad(self, *, bottom: int = 0, right: int = 0, held: int = 0) -> None:
        self._step(self.c, self.h + bottom, self.w + right, held)

    def join(self, c: int, h: int, w: int, held: int = 0) -> None:
        """A merge (add or concat) producing a ``c x h x w`` map from the current one plus ``held``."""
        self._step(c, h, w, held)

    def linear(self, out_features: int) -> None:
        in_features = self.numel
        self.macs += in_features * out_features
        self.params += in_features * out_features + out_features
        self._step(out_features, 1, 1, 0)


def _pair(v: int | tuple[int, int]) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else v


def _pool_out(size: int, k: int, s: int, p: int, ceil_mode: bool) -> int:
    span = size + 2 * p - k
    out = (-(-span // s) if ceil_mode else span // s) + 1
    # PyTorch drops a last window that would start in the right padding (ceil_mode only).
    if ceil_mode and (out - 1) * s >= size + p:
        out -= 1
    return out
