"""Latency on a target (device, threads, batch): measured on a built model, or predicted from a lookup table.

:func:`measure_latency` times forward passes of a built model. :class:`LatencyTable` predicts the
latency of an architecture record without building it: the sum of one measured entry per part (the
stem, its max-pool, every block, the head) plus a per-network constant, the way nn-Meter predicts a
model from its kernels (https://dl.acm.org/doi/10.1145/3458864.3467882). Entries are measured once per
target, on demand, and cached in a JSON file per target under ``studies/latency/``.

What the plain sum misses, measured on this project's 2-core EPYC (1 thread, batch 1, 25 networks from
search_spaces/mixed.yaml at 1x28x28, 2-9 ms each), and how it is modelled:

- context: a block timed alone, pass after pass, runs with its weights, activations, the framework's
  code paths and the branch predictor warm for exactly its own layers; inside a network the other
  blocks have run in between. The plain sum of isolated blocks is 10% below the whole network
  (median ratio 0.90, range 0.76-0.99). Writing a 4 MB buffer between timed passes (caches cold)
  overshoots instead (ratio 1.24): a network is neither warm nor cold. So each entry is timed with a
  fixed *disturber* network, of the three families, run before each timed pass: the ratio
  becomes 1.00 (median; range 0.80-1.11, mostly measurement noise).
- the network's own forward (``Net.forward``, its ``nn.Sequential`` containers, the ``Identity`` of
  an absent max-pool) and what is left of the context effect: a per-network constant, measured once
  per target on three calibration networks as the median of (measured latency - sum of entries).
- the machine's speed: on a shared (virtual) machine the same network, one thread, no other process
  of ours running, ran at 1.22 ms for a second and at 1.71 ms for the next three (thread CPU time
  moved with wall time: the core itself ran slower, e.g. under a busy hyperthread sibling). An entry
  measured in a slow phase stayed wrong for good, and a network measured in one was 40% off its
  prediction: 70% of 100 networks were predicted within +-10%, and one network measured five times
  spread by 10% (median over 8). The disturber is therefore also the *reference*: its pass before
  each timed pass is timed too, and slows down with the machine (the ratio of the two medians varied
  by +-4% where each alone varied by +-13%). Every entry, the constant and every measurement are kept
  as that ratio, and turned into milliseconds at one speed per table: the reference's median time over
  the calibration measurements (``reference_ms``). A measurement (:meth:`LatencyTable.measure`) thus
  says how long the network takes at the table's speed; the wall time as timed is kept beside it.

Not modelled: a long run of identical blocks runs warmer than its entries (the ShuffleNet v1 baseline,
8 identical units in a row, is overpredicted by about 10%) and blocks whose weights outgrow the L2
cache run colder (MobileNet v1 x0.5's 512-channel 1x1 convolutions: underpredicted by about 7%). In
mixed.yaml (runs of at most 3, at most 288 channels) neither shows: the residual per repeated block
is -0.5%. ``archsearch latency check`` measures how well the table does for a space.

The table file's name and its content carry the key (device, threads, batch, torch version and the
processor or GPU name): a table measured under any other key is never reused.

Command line: :mod:`archsearch.latency_cli` (``archsearch latency build|check``); measuring a built model:
:mod:`archsearch.measure`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import platform
import re
import statistics
import sys
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .arch import Arch
from .blocks import BlockSpec, DepthwiseSeparable, EffNetBlock, ShuffleUnit, Tally, get_block
from .config import LatencyTarget
from .measure import MIN_SECONDS, REPEATS, WARMUP, Latency, measure_latency
from .study_schema import LATENCY_DEVICES

__all__ = ["DEFAULT_DIRECTORY", "LatencyTable", "Part", "TableKey", "parts_of", "table_for", "table_key"]

DEFAULT_DIRECTORY = Path("studies") / "latency"
TABLE_FORMAT = 1
#: how entries and the constant are measured; a table measured another way is rebuilt, not mixed in
METHOD = "parts-referenced-v2"
CALIBRATION_ROUNDS = 3


# ---------------------------------------------------------------------------------------------
# The parts of a network, as the table sees them
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Part:
    """One table entry's worth of a network: its key, how to build it alone, and its input (C, H, W)."""

    key: str
    input_shape: tuple[int, int, int]
    make: Callable[[], nn.Module]


def _block_key(spec: BlockSpec, h: int, w: int) -> str:
    return (
        f"block:{spec.block}:i{spec.in_chs}:o{spec.out_chs}:s{spec.stride}:k{spec.kernel}:g{spec.groups}"
        f":m{spec.mid_chs}:{h}x{w}"
    )


def _make_block(spec: BlockSpec) -> Callable[[], nn.Module]:
    return lambda: get_block(spec.block).from_spec(spec)


def _make_stem_pool(k: int) -> Callable[[], nn.Module]:
    return lambda: nn.MaxPool2d(k, 2, (k - 1) // 2)  # as build.Net makes it


def _make_head(head: str, c: int, h: int, w: int, classes: int) -> Callable[[], nn.Module]:
    # as build.Net's pool -> flatten -> classifier
    def make() -> nn.Module:
        pool = nn.AdaptiveAvgPool2d(1) if head == "gap" else nn.Identity()
        features = c if head == "gap" else c * h * w
        return nn.Sequential(pool, nn.Flatten(1), nn.Linear(features, classes))

    return make


def parts_of(arch: Arch) -> list[Part]:
    """The parts of ``arch`` in forward order: stem, stem max-pool (if any), every block, head.

    Follows ``build.Net``: the same modules with the same input sizes (walked on a :class:`Tally`,
    so nothing is built here). A repeated identical block appears once per repeat.
    """
    stem_spec, stages = arch.plan()
    t = Tally(arch.in_chs, arch.resolution, arch.resolution)
    parts = [Part(_block_key(stem_spec, t.h, t.w), (t.c, t.h, t.w), _make_block(stem_spec))]
    get_block(stem_spec.block).cost(stem_spec, t)
    k = arch.stem.pool
    if k:
        parts.append(Part(f"maxpool:c{t.c}:k{k}:s2:{t.h}x{t.w}", (t.c, t.h, t.w), _make_stem_pool(k)))
        t.pool(k, stride=2, padding=(k - 1) // 2)
    for spec in (spec for stage in stages for spec in stage):
        parts.append(Part(_block_key(spec, t.h, t.w), (t.c, t.h, t.w), _make_block(spec)))
        get_block(spec.block).cost(spec, t)
    parts.append(
        Part(
            f"head:{arch.head}:c{t.c}:{t.h}x{t.w}:n{arch.num_classes}",
            (t.c, t.h, t.w),
            _make_head(arch.head, t.c, t.h, t.w, arch.num_classes),
        )
    )
    return parts


# ---------------------------------------------------------------------------------------------
# The table's key and file
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TableKey:
    """What a table's measurements depend on; a table is only reused under an equal key."""

    device: str
    threads: int
    batch: int
    torch: str
    hardware: str

    def file_name(self) -> str:
        """``cpu-t1-b1-torch2.13.0+cpu-amd-epyc-3f2a9c.json``: readable, and distinct for distinct keys."""
        slug = re.sub(r"[^a-z0-9]+", "-", self.hardware.lower()).strip("-")[:24].strip("-") or "unknown"
        digest = hashlib.sha256(self.hardware.encode()).hexdigest()[:6]
        version = re.sub(r"[^A-Za-z0-9.+]+", "_", self.torch)
        return f"{self.device}-t{self.threads}-b{self.batch}-torch{version}-{slug}-{digest}.json"


def _hardware_name(device: str) -> str:
    """The processor model (``/proc/cpuinfo``'s model name) or the CUDA device's name."""
    if device == "cuda":
        return torch.cuda.get_device_name() if torch.cuda.is_available() else "cuda (unavailable)"
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "unknown cpu"


def table_key(target: LatencyTarget, *, torch_version: str | None = None, hardware: str | None = None) -> TableKey:
    """The key of ``target``'s table on this machine; ``torch_version``/``hardware`` default to this process's."""
    if target.device not in LATENCY_DEVICES:
        raise ValueError(f"latency device must be one of {list(LATENCY_DEVICES)}, got {target.device!r}")
    for name in ("threads", "batch"):
        value = getattr(target, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"latency {name} must be an int >= 1, got {value!r}")
    return TableKey(
        device=target.device,
        threads=target.threads,
        batch=target.batch,
        torch=torch.__version__ if torch_version is None else torch_version,
        hardware=_hardware_name(target.device) if hardware is None else hardware,
    )


# ---------------------------------------------------------------------------------------------
# The table
# ---------------------------------------------------------------------------------------------


def _disturber() -> tuple[nn.Module, tuple[int, int, int]]:
    """A small network of the three families, run between an entry's timed passes (module docstring)."""
    net = nn.Sequential(
        ShuffleUnit(24, 48, stride=2, groups=4, mid_chs=12, kernel=5),
        DepthwiseSeparable(48, 40, stride=1, kernel=7),
        EffNetBlock(40, 56, stride=2, mid_chs=24),
    )
    return net, (24, 20, 20)


def _calibration_archs() -> list[Arch]:
    """Networks the per-network constant is measured on: each mixes the three families, in short runs.

    Three, so that the median shrugs off one disturbed measurement; small, so that calibrating (the
    first prediction of a new table) takes seconds. Not the single-family baselines: their long runs
    of identical blocks run warmer than any entry (see the module docstring).
    """
    from .arch import Stage, Stem

    return [
        Arch(1, 28, 10, Stem("conv", 16), (
            Stage("dwsep", 24, repeats=2, stride=2), Stage("shuffle", 48, repeats=2, stride=2, groups=2),
            Stage("effnet", 96, stride=2), Stage("dwsep", 128, kernel=5))),
        Arch(3, 32, 10, Stem("effnet", 16), (
            Stage("shuffle", 32, stride=2, groups=4, kernel=5), Stage("effnet", 64, repeats=2, stride=2),
            Stage("dwsep", 128, repeats=2, stride=2))),
        Arch(1, 21, 10, Stem("dwsep", 8), (
            Stage("effnet", 24, stride=2), Stage("dwsep", 48, repeats=3, stride=2, kernel=5),
            Stage("shuffle", 96, repeats=2, stride=2, groups=8))),
    ]


class _Corrupt(ValueError):
    pass


class LatencyTable:
    """Predicted latency (ms) of architecture records on one target, from measured parts.

    ``predict(arch)`` = (sum of the entries of ``parts_of(arch)`` + ``overhead``) x ``reference_ms``,
    entries and overhead in units of the reference's time (module docstring), and never less than its
    largest entry. Missing entries
    (and the constant, the first time) are measured on demand, each part built alone, and saved to
    ``path`` (write to a temporary file, then ``os.replace``; entries another process saved meanwhile
    are kept). ``measurements`` counts the measurements this object made.

    ``warmup``/``repeats``/``min_seconds`` are the per-entry measurement settings; ``calibration``
    the networks the constant is measured on (default: a few baselines; tests pass tiny ones).
    """

    def __init__(
        self,
        target: LatencyTarget,
        path: str | os.PathLike,
        *,
        key: TableKey | None = None,
        warmup: int = 5,
        repeats: int = 50,
        min_seconds: float = 0.0,
        calibration: Sequence[Arch] | None = None,
        stream: Any = None,
    ):
        self.target = target
        self.key = key if key is not None else table_key(target)
        self.path = Path(path)
        self.warmup, self.repeats, self.min_seconds = warmup, repeats, min_seconds
        self.calibration = list(calibration) if calibration is not None else None
        self.stream = stream  # where messages go; None: sys.stderr at the time of writing
        self.measurements = 0
        self.entries: dict[str, dict[str, float]] = {}  # as measured: median_ms, p90_ms, repeats, reference_ms
        self.overhead: float | None = None  # the per-network constant, in units of the reference's time
        self.reference_ms: float | None = None  # the speed of the table: the reference's time in calibration
        self._reference: Callable[[], Any] | None = None
        self._load()

    # -- file -------------------------------------------------------------------------------------

    def _say(self, text: str) -> None:
        print(f"archsearch: {text}", file=self.stream or sys.stderr, flush=True)

    def _read(self) -> tuple[dict[str, dict[str, float]], float | None, float | None]:
        """The entries, the constant and the reference time in ``path``; FileNotFoundError or _Corrupt."""
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except UnicodeDecodeError as e:
            raise _Corrupt(f"not UTF-8 text ({e.reason})") from None
        except json.JSONDecodeError as e:
            raise _Corrupt(f"not valid JSON ({e.msg} at line {e.lineno})") from None
        if not isinstance(data, dict) or data.get("format") != TABLE_FORMAT:
            raise _Corrupt(f"not a latency table of format {TABLE_FORMAT}")
        if data.get("method") != METHOD:
            raise _Corrupt(f"it was measured by method {data.get('method')!r}, not {METHOD!r}")
        if data.get("key") != asdict(self.key):
            raise _Corrupt(f"it was measured under another key {data.get('key')!r}, not {asdict(self.key)!r}")
        entries, overhead, reference = data.get("entries"), data.get("overhead"), data.get("reference_ms")
        calibrated = _is_number(overhead) and _is_positive(reference)
        if not isinstance(entries, dict) or not (calibrated or overhead is reference is None):
            raise _Corrupt("its entries, overhead or reference_ms are malformed")
        for k, v in entries.items():
            if not (isinstance(v, dict) and _is_number(v.get("median_ms")) and _is_number(v.get("p90_ms"))
                    and _is_positive(v.get("reference_ms"))):
                raise _Corrupt(f"entry {k!r} is malformed: {v!r}")
        return entries, overhead, reference

    def _load(self) -> None:
        try:
            self.entries, self.overhead, self.reference_ms = self._read()
        except FileNotFoundError:
            self._say(f"latency table {self.path} does not exist: a new one is built (parts are measured as needed)")
        except (OSError, _Corrupt) as e:
            reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
            self._say(f"latency table {self.path} is unusable ({reason}): it is rebuilt and the file replaced")

    def save(self) -> None:
        """Write the table atomically, merged with the entries another process saved meanwhile.

        Readers never see a half-written file. Two processes saving at the same instant can still
        lose each other's newest entries (no lock): those are measured again when next needed.
        """
        with contextlib.suppress(FileNotFoundError, OSError, _Corrupt):
            theirs, their_overhead, their_reference = self._read()
            self.entries = {**theirs, **self.entries}
            if self.overhead is None:
                self.overhead, self.reference_ms = their_overhead, their_reference
        data = {
            "format": TABLE_FORMAT,
            "key": asdict(self.key),
            "method": METHOD,
            "settings": {"warmup": self.warmup, "repeats": self.repeats, "min_seconds": self.min_seconds},
            "reference_ms": self.reference_ms,
            "overhead": self.overhead,
            "entries": dict(sorted(self.entries.items())),
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(data, f, indent=1)
                f.write("\n")
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    # -- measuring --------------------------------------------------------------------------------

    def _timed(self, model: nn.Module, input_shape: tuple[int, int, int], **settings: Any) -> Latency:
        """``model`` timed with a pass of the reference network before each timed pass (timed apart)."""
        t = self.target
        if self._reference is None:
            net, shape = _disturber()
            net = net.eval().to(t.device)
            x = torch.randn(t.batch, *shape, device=t.device)

            @torch.inference_mode()
            def reference() -> None:
                net(x)

            self._reference = reference
        self.measurements += 1
        settings = {"warmup": self.warmup, "repeats": self.repeats, "min_seconds": self.min_seconds, **settings}
        return measure_latency(model, input_shape, device=t.device, threads=t.threads, batch=t.batch,
                               between=self._reference, **settings)

    def _measure_parts(self, parts: Iterable[Part]) -> int:
        n = 0
        for part in parts:
            if part.key in self.entries:
                continue
            lat = self._timed(part.make(), part.input_shape)
            self.entries[part.key] = {"median_ms": lat.median_ms, "p90_ms": lat.p90_ms, "repeats": lat.repeats,
                                      "reference_ms": lat.reference_ms}
            n += 1
        return n

    def _ensure_overhead(self) -> bool:
        """Measure the per-network constant and the table's speed if it has none yet; whether it did."""
        if self.overhead is not None:
            return False
        from .build import build

        archs = self.calibration if self.calibration is not None else _calibration_archs()
        models = [build(a) for a in archs]
        for a in archs:
            self._measure_parts(parts_of(a))
        # each network measured in CALIBRATION_ROUNDS interleaved rounds, keeping its fastest ratio:
        # other processes only ever add time, and the constant is kept for good once measured
        whole = [math.inf] * len(archs)
        references = []
        for _ in range(CALIBRATION_ROUNDS):
            for i, (a, model) in enumerate(zip(archs, models)):
                lat = self._timed(model, (a.in_chs, a.resolution, a.resolution))
                whole[i] = min(whole[i], lat.median_ms / lat.reference_ms)
                references.append(lat.reference_ms)
        self.overhead = statistics.median(w - self._sum(a) for w, a in zip(whole, archs))
        self.reference_ms = statistics.median(references)
        return True

    def _relative(self, arch: Arch) -> list[float]:
        """The entries of ``arch``'s parts, in units of the reference's time."""
        return [e["median_ms"] / e["reference_ms"] for e in (self.entries[p.key] for p in parts_of(arch))]

    def _sum(self, arch: Arch) -> float:
        return sum(self._relative(arch))

    def fill(self, archs: Iterable[Arch]) -> int:
        """Measure every missing entry of ``archs`` (and the constant); save; the number of new entries."""
        new = 0
        for a in archs:
            new += self._measure_parts(parts_of(a))
        calibrated = self._ensure_overhead()
        if new or calibrated:
            self.save()
        return new

    def measure(self, model: nn.Module, input_shape: tuple[int, int, int], **settings: Any) -> tuple[Latency, Latency]:
        """``model``'s latency at the table's speed, and as timed: ``(scaled, timed)``.

        Timed like the entries, beside the reference network; ``scaled`` multiplies the times by
        ``reference_ms / timed.reference_ms``, which takes out how fast the machine ran meanwhile.
        ``settings`` go to :func:`measure_latency` (WARMUP, REPEATS, MIN_SECONDS otherwise).
        """
        if self._ensure_overhead():
            self.save()
        settings = {"warmup": WARMUP, "repeats": REPEATS, "min_seconds": MIN_SECONDS, **settings}
        timed = self._timed(model, input_shape, **settings)
        scale = self.reference_ms / timed.reference_ms
        scaled = Latency(timed.median_ms * scale, timed.p90_ms * scale, timed.repeats, self.reference_ms)
        return scaled, timed

    # -- predicting -------------------------------------------------------------------------------

    def predict(self, arch: Arch) -> float:
        """Predicted median latency of ``arch`` in ms; measures (and saves) what the table lacks."""
        new = self._measure_parts(parts_of(arch))
        if self._ensure_overhead() or new:
            self.save()
        relative = self._relative(arch)
        # a network is never faster than its slowest part: the floor for a constant measured under
        # load that would outweigh a small network's parts (a negative latency breaks the soft reward)
        return max(sum(relative) + self.overhead, max(relative)) * self.reference_ms

    @property
    def overhead_ms(self) -> float | None:
        """The per-network constant in ms, at the table's speed."""
        return None if self.overhead is None else self.overhead * self.reference_ms

    def __len__(self) -> int:
        return len(self.entries)

    def __repr__(self) -> str:
        return (f"LatencyTable({self.path}, {len(self)} entries, reference_ms={self.reference_ms}, "
                f"overhead={self.overhead})")


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _is_positive(v: Any) -> bool:
    return _is_number(v) and v > 0


def table_for(
    target: LatencyTarget, *, directory: str | os.PathLike = DEFAULT_DIRECTORY, **options: Any
) -> LatencyTable:
    """The table of ``target`` on this machine, in ``directory`` (created when needed).

    The file name carries the key (:meth:`TableKey.file_name`), so another thread count, batch, torch
    version or processor opens another file. ``options`` go to :class:`LatencyTable`.
    """
    key = options.pop("key", None) or table_key(target)
    return LatencyTable(target, Path(directory) / key.file_name(), key=key, **options)




