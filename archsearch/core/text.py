"""Small text helpers shared by the command line and the modules that add subcommands to it.

Here, below both, so that no library module imports ``archsearch.cli.commands`` (which imports them).
"""

from __future__ import annotations

import argparse
import re

__all__ = ["input_shape", "table"]


def input_shape(text: str) -> tuple[int, int]:
    """``CxHxW`` (H == W), e.g. ``1x28x28`` -> (1, 28); an ``argparse`` type."""
    m = re.fullmatch(r"(\d+)x(\d+)x(\d+)", text)
    if not m or m.group(2) != m.group(3):
        raise argparse.ArgumentTypeError(f"expected CxHxW with H == W, e.g. 1x28x28, got {text!r}")
    c, h = int(m.group(1)), int(m.group(2))
    if not (1 <= c <= 64 and 1 <= h <= 4096):
        raise argparse.ArgumentTypeError(f"channels must be in [1, 64] and size in [1, 4096], got {text!r}")
    return c, h


def table(rows: list[list[str]], header: list[str]) -> str:
    """A plain-text table: the first column left-aligned, the others right-aligned."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    fmt = "  ".join(f"{{:<{w}}}" if i == 0 else f"{{:>{w}}}" for i, w in enumerate(widths))
    out = [fmt.format(*header), fmt.format(*("-" * w for w in widths))]
    out += [fmt.format(*r) for r in rows]
    return "\n".join(out)


def fmt_count(n: float | None) -> str:
    """12345 -> '12.35K' (None -> '-')."""
    if n is None:
        return "-"
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.2f}{unit}"
    return f"{n:.0f}"
