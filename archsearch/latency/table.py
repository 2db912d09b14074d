"""Latency on a target (device, threads, batch): measured on a built model, or predicted from a lookup table.

:func:`measure_latency` times forward passes of a built model. :class:`LatencyTable` predicts the
latency of an architecture record without building it: the sum of one measured entry per part (the
stem, its max-pool, every block, the head) plus a per-network constant, the way nn-Meter predicts a
model from its kernels (https://dl.acm.org/doi/10.1145/3458864.3467882). Entries are measured once per
target, on demand, and cached in a JSON file per target under ``studies/latency/``.

Each entry is timed with a fixed *disturber* network, of the three families, run before each timed pass:
a block timed alone, pass after pass, runs warmer than it does inside a network. The disturber is also the
*reference*: its pass is timed too, and every entry, the per-network constant and every measurement are kept
as a ratio to it and turned into milliseconds at one speed per table (``reference_ms``), because on a shared
machine the core itself changes speed for seconds at a time. A measurement (:meth:`LatencyTable.measure`) thus
says how long the network takes at the table's speed; the wall time as timed is kept beside it.

ONNX Runtime (``runtime: onnxruntime``) has a table of its own, timed by the same method with three changes:
one session call (``CALL_KEY``) is taken off every part, the reference runs twice and only its second, warm pass
is timed (:func:`_warm_then_timed`), and each entry is timed in ``ENTRY_ROUNDS`` rounds spread over the fill.
ONNX Runtime at int8 (``runtime: onnxruntime-int8``) has another, by that method with every part, the reference
and the calibration networks quantized alone (:func:`archsearch.latency.measure.int8_model`).

What each choice was measured against, and what the table does not model: docs/budgets.md, "How the table's
method was measured" (``archsearch latency check`` measures how well the table does for a space).

The table file's name and its content carry the key (device, threads, batch, torch version and the
processor or GPU name, and for ONNX Runtime, float32 or int8, the runtime and its version): a table measured
under any other key is never reused.

Command line: :mod:`archsearch.cli.latency` (``archsearch latency build|check``); measuring a built model:
:mod:`archsearch.latency.measure`.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from torch import nn

from archsearch.config.study_schema import LatencyTarget
from archsearch.latency.key import INT8_METHOD, METHOD, ONNXRUNTIME_METHOD, TableKey, table_key
from archsearch.latency.measure import (
    MIN_SECONDS,
    ONNXRUNTIME_RUNTIMES,
    REPEATS,
    WARMUP,
    Latency,
    forward_pass,
    int8_model,
    measure_latency,
    onnx_model,
)
from archsearch.latency.parts import Part, parts_of
from archsearch.network.arch import Arch
from archsearch.network.blocks import DepthwiseSeparable, EffNetBlock, ShuffleUnit

__all__ = ["DEFAULT_DIRECTORY", "INT8_METHOD", "METHOD", "ONNXRUNTIME_METHOD", "LatencyTable", "Part", "TableKey",
           "parts_of", "table_for", "table_key"]

DEFAULT_DIRECTORY = Path("studies") / "latency"
TABLE_FORMAT = 1
#: the entry of an (almost) empty ONNX Runtime session: the cost of one ``run`` call. Each part timed
#: alone pays it, a whole network once, so it is taken off every part (and the constant pays it once)
CALL_KEY = "call:relu:c1:1x1"
CALIBRATION_ROUNDS = 3
#: ONNX Runtime entries are measured in this many rounds over the parts being filled (docs/budgets.md)
ENTRY_ROUNDS = 3


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


def _warm_then_timed(forward: Callable[[], Any]) -> Callable[[], float]:
    """ONNX Runtime's reference: one pass to disturb (and warm it), then one timed pass; returns its ms.

    A single reference pass after a part runs as cold as the part left the caches (after a big part, 3x
    slower), so its time would say more about the part than about the machine's speed; the second pass
    runs warm and keeps only the speed.
    """
    def between() -> float:
        forward()
        t0 = time.perf_counter()
        forward()
        return (time.perf_counter() - t0) * 1000

    return between


def _calibration_archs() -> list[Arch]:
    """Networks the per-network constant is measured on: each mixes the three families, in short runs.

    Three, so that the median shrugs off one disturbed measurement; small, so that calibrating (the
    first prediction of a new table) takes seconds. Not the single-family baselines: their long runs
    of identical blocks run warmer than any entry (see the module docstring).
    """
    from archsearch.network.arch import Stage, Stem

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

    ``warmup``/``repeats``/``min_seconds`` are the per-entry measurement settings (``min_seconds``:
    0 for torch, 0.05 for ONNX Runtime by default); ``calibration``
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
        min_seconds: float | None = None,
        rounds: int | None = None,
        calibration: Sequence[Arch] | None = None,
        stream: Any = None,
    ):
        self.target = target
        self.key = key if key is not None else table_key(target)
        self.path = Path(path)
        ort = target.runtime in ONNXRUNTIME_RUNTIMES
        if min_seconds is None:  # an ONNX Runtime part runs in microseconds: 50 passes are a few ms of noise
            min_seconds = 0.05 if ort else 0.0
        if rounds is None:
            rounds = ENTRY_ROUNDS if ort else 1
        self.warmup, self.repeats, self.min_seconds, self.rounds = warmup, repeats, min_seconds, rounds
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
        if data.get("method") != self.key.method:
            raise _Corrupt(f"it was measured by method {data.get('method')!r}, not {self.key.method!r}")
        if data.get("key") != self.key.to_dict():
            raise _Corrupt(f"it was measured under another key {data.get('key')!r}, not {self.key.to_dict()!r}")
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
            "key": self.key.to_dict(),
            "method": self.key.method,
            "settings": {"warmup": self.warmup, "repeats": self.repeats, "min_seconds": self.min_seconds,
                         "rounds": self.rounds},
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

    def _prepared(self, model: nn.Module, input_shape: tuple[int, int, int]) -> nn.Module | bytes:
        """``model`` as the runtime runs it, made once for all its rounds: itself (torch) or its ONNX model."""
        batch = self.target.batch
        if self.target.runtime == "onnxruntime-int8":
            return int8_model(model, input_shape, batch=batch)
        return onnx_model(model, input_shape, batch=batch) if self.target.runtime == "onnxruntime" else model

    def _timed(self, model: nn.Module | bytes, input_shape: tuple[int, int, int], **settings: Any) -> Latency:
        """``model`` (or its ONNX model, :meth:`_prepared`) timed with a pass of the reference network before each
        timed pass (timed apart)."""
        t = self.target
        if self._reference is None:  # run inside measure_latency's torch.inference_mode
            net, shape = _disturber()
            reference = forward_pass(net, shape, runtime=t.runtime, device=t.device, threads=t.threads, batch=t.batch)
            self._reference = reference if t.runtime == "torch" else _warm_then_timed(reference)
        self.measurements += 1
        settings = {"warmup": self.warmup, "repeats": self.repeats, "min_seconds": self.min_seconds, **settings}
        runtime = "onnxruntime" if isinstance(model, bytes) else t.runtime  # bytes: as the runtime runs them
        return measure_latency(model, input_shape, runtime=runtime, device=t.device, threads=t.threads,
                               batch=t.batch, between=self._reference, **settings)

    def _parts(self, arch: Arch) -> list[Part]:
        """What ``arch``'s prediction reads: its parts, and for ONNX Runtime the session call's entry."""
        parts = parts_of(arch)
        if self.target.runtime in ONNXRUNTIME_RUNTIMES:  # at int8 too: a lone ReLU stays float32, a bare call
            parts.append(Part(CALL_KEY, (1, 1, 1), nn.ReLU))
        return parts

    def _measure_parts(self, parts: Iterable[Part]) -> int:
        """Measure the parts the table lacks, in ``rounds`` passes over all of them (every other one in
        reverse order), keeping for each the round of its median ratio to the reference; the number measured."""
        missing = list({p.key: p for p in parts if p.key not in self.entries}.values())
        models = [self._prepared(p.make(), p.input_shape) for p in missing]
        timed: list[list[Latency]] = [[] for _ in missing]
        for r in range(self.rounds):
            order = range(len(missing)) if r % 2 == 0 else reversed(range(len(missing)))
            for i in order:
                timed[i].append(self._timed(models[i], missing[i].input_shape))
        for part, lats in zip(missing, timed, strict=False):
            lat = sorted(lats, key=lambda x: x.median_ms / _reference_ms(x))[(len(lats) - 1) // 2]
            self.entries[part.key] = {"median_ms": lat.median_ms, "p90_ms": lat.p90_ms, "repeats": lat.repeats,
                                      "reference_ms": _reference_ms(lat)}
        return len(missing)

    def _ensure_overhead(self) -> bool:
        """Measure the per-network constant and the table's speed if it has none yet; whether it did."""
        if self.overhead is not None:
            return False
        from archsearch.network.build import build

        archs = self.calibration if self.calibration is not None else _calibration_archs()
        models = [self._prepared(build(a), (a.in_chs, a.resolution, a.resolution)) for a in archs]
        for a in archs:
            self._measure_parts(self._parts(a))
        # each network measured in CALIBRATION_ROUNDS interleaved rounds, keeping its fastest ratio:
        # other processes only ever add time, and the constant is kept for good once measured
        whole = [math.inf] * len(archs)
        references = []
        for _ in range(CALIBRATION_ROUNDS):
            for i, (a, model) in enumerate(zip(archs, models, strict=False)):
                lat = self._timed(model, (a.in_chs, a.resolution, a.resolution))
                whole[i] = min(whole[i], lat.median_ms / _reference_ms(lat))
                references.append(_reference_ms(lat))
        self.overhead = statistics.median(w - self._sum(a) for w, a in zip(whole, archs, strict=False))
        self.reference_ms = statistics.median(references)
        return True

    def _relative(self, arch: Arch) -> list[float]:
        """The entries of ``arch``'s parts, in units of the reference's time (less the session call's, if any)."""
        call = self.entries.get(CALL_KEY) if self.target.runtime in ONNXRUNTIME_RUNTIMES else None
        less = 0.0 if call is None else call["median_ms"] / call["reference_ms"]
        return [e["median_ms"] / e["reference_ms"] - less for e in (self.entries[p.key] for p in parts_of(arch))]

    def _sum(self, arch: Arch) -> float:
        return sum(self._relative(arch))

    def fill(self, archs: Iterable[Arch]) -> int:
        """Measure every missing entry of ``archs`` (and the constant); save; the number of new entries.

        The entries are measured together, so that their rounds are spread over the whole fill."""
        new = self._measure_parts([p for a in archs for p in self._parts(a)])
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
        assert self.reference_ms is not None  # calibrated above
        settings = {"warmup": WARMUP, "repeats": REPEATS, "min_seconds": MIN_SECONDS, **settings}
        timed = self._timed(model, input_shape, **settings)
        scale = self.reference_ms / _reference_ms(timed)
        scaled = Latency(timed.median_ms * scale, timed.p90_ms * scale, timed.repeats, self.reference_ms)
        return scaled, timed

    # -- predicting -------------------------------------------------------------------------------

    def predict(self, arch: Arch) -> float:
        """Predicted median latency of ``arch`` in ms; measures (and saves) what the table lacks."""
        new = self._measure_parts(self._parts(arch))
        if self._ensure_overhead() or new:
            self.save()
        assert self.overhead is not None and self.reference_ms is not None  # calibrated above
        relative = self._relative(arch)
        # a network is never faster than its slowest part: the floor for a constant measured under
        # load that would outweigh a small network's parts (a negative latency breaks the soft reward)
        return max(sum(relative) + self.overhead, max(relative)) * self.reference_ms

    @property
    def overhead_ms(self) -> float | None:
        """The per-network constant in ms, at the table's speed."""
        return None if self.overhead is None or self.reference_ms is None else self.overhead * self.reference_ms

    def __len__(self) -> int:
        return len(self.entries)

    def __repr__(self) -> str:
        return (f"LatencyTable({self.path}, {len(self)} entries, reference_ms={self.reference_ms}, "
                f"overhead={self.overhead})")


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _is_positive(v: Any) -> bool:
    return _is_number(v) and v > 0


def _reference_ms(lat: Latency) -> float:
    """The reference time of a measurement by :meth:`LatencyTable._timed`, which always runs the reference."""
    assert lat.reference_ms is not None  # measure_latency times `between` on every timed pass
    return lat.reference_ms


def table_for(
    target: LatencyTarget, *, directory: str | os.PathLike = DEFAULT_DIRECTORY, **options: Any
) -> LatencyTable:
    """The table of ``target`` on this machine, in ``directory`` (created when needed).

    The file name carries the key (:meth:`TableKey.file_name`), so another thread count, batch, torch
    version or processor opens another file. ``options`` go to :class:`LatencyTable`.
    """
    key = options.pop("key", None) or table_key(target)
    return LatencyTable(target, Path(directory) / key.file_name(), key=key, **options)
