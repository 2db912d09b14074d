"""Tiny latency tables for tests: the target, quick measurement settings, two tiny networks and a table built on
them (imported as ``latency_tables``: ``tests`` is on pytest's path, so any test file can, run alone or not)."""

from __future__ import annotations

from pathlib import Path

from archsearch.config.study_schema import LatencyTarget
from archsearch.latency.table import LatencyTable, table_for
from archsearch.network.arch import Arch, Stage, Stem

__all__ = ["CPU1", "LATENCY_CPU1", "FAST", "OTHER", "tiny", "make_table"]

CPU1 = LatencyTarget("cpu", 1, 1)
LATENCY_CPU1 = {"device": "cpu", "threads": 1, "batch": 1}  # the same target, as a study file writes it
# measurement settings that keep a tiny table quick: the figures are real, only fewer of them
FAST = {"warmup": 2, "repeats": 9, "min_seconds": 0.0}


def tiny(stem_pool: int = 0, head: str = "gap") -> Arch:
    return Arch(
        in_chs=1, resolution=8, num_classes=4, stem=Stem("conv", 8, pool=stem_pool),
        stages=(Stage("dwsep", 16, stride=2), Stage("shuffle", 32, stride=2, groups=2)), head=head,
    )


OTHER = Arch(in_chs=1, resolution=8, num_classes=4, stem=Stem("conv", 8), stages=(Stage("effnet", 16, stride=2),))


def make_table(directory: Path, target: LatencyTarget = CPU1, **options) -> LatencyTable:
    return table_for(target, directory=directory, calibration=[tiny()], **{**FAST, **options})
