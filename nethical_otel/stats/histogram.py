"""The one latency-distribution type of nethical-otel.

Guarantee: a ``LatencyHistogram`` at scale ``s`` answers any quantile of the values it
holds with a relative error of at most ``(b - 1) / (b + 1)`` where ``b = 2 ** (2 ** -s)``:
0.54 % at the default scale 6 (if the true p99 is 100 ms the answer is within
99.46 .. 100.54 ms), 0.27 % at scale 7. "The true p99" is the order statistic numpy calls
``np.quantile(x, 0.99, method="lower")``: rank ``floor(q * (n - 1))``, 0-based. (Add 1e-6
for values that sit within 1e-6 of a bucket boundary, see the mapping below.)

The mapping is the OpenTelemetry base-2 exponential one: bucket ``i`` holds the values in
``(b**i, b**(i+1)]``. So a histogram converts losslessly to an OTLP exponential histogram,
and to Prometheus ``le`` buckets exactly when the ``le`` bounds are powers of
``2 ** (1 / 2**k)`` with ``k <= s`` (the default bounds are). Powers of two are placed
exactly; a value within 1e-6 (relative) of another bucket boundary may land on its other
side (the log is taken in float32 at scales -5..10, for speed), but always on the same
side: the mapping is a pure function of the value, so merging is exact. At scale 6 about
2 values in 100,000 land in a different bucket than an exact float64 mapping would put them.

Cost: counts live in one dense ``int64`` array covering only the populated index range;
1 ms .. 10 s at scale 6 is 850 buckets, about 7 kB (``nbytes``). Ingest of one million
float64 latencies takes 3.5-4 ms on one core, about 2x faster than ``np.histogram`` with
1000 ``geomspace`` bins (``benchmarks/detector.py`` measures both). Each ingesting thread
keeps 384 KiB of scratch buffers.

Two ideas are kept apart, as in DDSketch: the *mapping* (value -> index, module functions)
and the *store* (``offset`` + ``counts``). Merge is a first-class operation, and so is its
inverse ``subtract`` (a window is the difference of two cumulative snapshots).

Bad input from outside (a baseline file, a scraped or exported histogram) raises
``StatsError``, a ``ValueError`` whose message names the field.
"""

from __future__ import annotations

import math
import numbers
import sys
import threading
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

DEFAULT_SCALE = 6
MIN_SCALE = -10
MAX_SCALE = 20
# Values at or below this (seconds) count as zero: below timer resolution.
ZERO_THRESHOLD = 1e-9
# Version of the ``to_dict`` layout; ``from_dict`` refuses any other.
DICT_VERSION = 1
_DICT_FIELDS = ("version", "scale", "offset", "counts", "zero_count", "count", "errors", "sum", "min", "max")
# Values per pass of the ingest loop: three 256 KiB buffers stay in the L2 cache.
_CHUNK = 1 << 15


class StatsError(ValueError):
    """Data a user handed in (a baseline file, a scraped histogram) is not a valid histogram.

    The message names the field and what is wrong with it.
    """


# -- mapping -----------------------------------------------------------------------------
#
# The index of v is ceil(2**s * L(v)) - 1, with L(v) numpy's log2 of v. At scales -5..10 that
# log2 runs in float32 (on v rounded to float32): numpy's SIMD float32 log2 is several times
# faster than the float64 one, and there buckets are >= 1e-3 wide in log2 while float32 log2 is
# off by at most ~1.1e-6 (measured from 1e-9 to 4e9 s): a value within 1e-6 (relative) of a
# boundary may land in the neighbouring bucket. Elsewhere, and for values outside the float32
# range, it runs in float64 (about 1e-13). Multiplying by 2**s is exact, so the index is a
# function of v alone (batching never changes it) and powers of two are exact.
#
# Sub-second values (L <= 0, the usual case) take a shortcut: trunc(-2**s * L) equals
# -ceil(2**s * L) exactly, is >= 0 and feeds np.bincount without a ceil pass.

_F32_SCALES = range(-5, 11)


class _Mapping:
    """The index arithmetic of one scale (see the comment above)."""

    __slots__ = ("dtype", "factor", "high", "low")

    def __init__(self, scale: int) -> None:
        self.factor = 2.0**scale
        if scale in _F32_SCALES:
            self.dtype, self.low, self.high = np.float32, 2.0**-126, 2.0**127  # normal float32
        else:
            self.dtype, self.low, self.high = np.float64, 5e-324, math.inf

    def _log2(self, values: np.ndarray, scratch: np.ndarray) -> None:
        # float32: numpy rounds each value to float32 on the way in, then runs its SIMD log2.
        np.log2(values, out=scratch, dtype=self.dtype, casting="same_kind")

    def below_one(self, values: np.ndarray, scratch: np.ndarray, out: np.ndarray) -> np.ndarray:
        """``-(index + 1)`` (>= 0) into ``out`` for ``low <= values <= 1``."""
        self._log2(values, scratch)
        np.multiply(scratch, self.dtype(-self.factor), out=scratch)
        np.copyto(out, scratch, casting="unsafe")  # truncation: floor of a value >= 0
        return out

    def indices(self, values: np.ndarray, scratch: np.ndarray, out: np.ndarray) -> np.ndarray:
        """``index`` into ``out`` for ``low <= values <= high``."""
        self._log2(values, scratch)
        np.multiply(scratch, self.dtype(self.factor), out=scratch)
        np.ceil(scratch, out=scratch)
        np.copyto(out, scratch, casting="unsafe")
        out -= 1
        return out


_MAPPINGS = {scale: _Mapping(scale) for scale in range(MIN_SCALE, MAX_SCALE + 1)}
_buffers = threading.local()


def _scratch(dtype: type) -> tuple[np.ndarray, np.ndarray]:
    """Per-thread ingest buffers (float ``dtype`` and int64, ``_CHUNK`` long: 384 KiB at most),
    kept because allocating them per call costs page faults on every call."""
    key = np.dtype(dtype).char
    pair = getattr(_buffers, key, None)
    if pair is None:
        pair = (np.empty(_CHUNK, dtype=dtype), np.empty(_CHUNK, dtype=np.int64))
        setattr(_buffers, key, pair)
    return pair


def index_of(values: np.ndarray, scale: int) -> np.ndarray:
    """Bucket index of each positive value: ``i`` such that ``b**i < v <= b**(i+1)``.

    Exact for powers of two; a value within 1e-6 (relative) of a boundary may get the
    neighbouring index at scales -5..10 (1e-13 at other scales). The same arithmetic places
    values in ``record_many``, so where a value lands never depends on its batch.
    """
    values = np.asarray(values, dtype=np.float64)
    shape = values.shape
    flat = np.ascontiguousarray(values.ravel())
    mapping = _MAPPINGS[scale]
    index = np.empty(flat.size, dtype=np.int64)
    usual = (flat >= mapping.low) & (flat <= mapping.high)
    if usual.all():
        mapping.indices(flat, np.empty(flat.size, dtype=mapping.dtype), index)
    else:  # outside the float32 range (garbage for a latency): float64
        picked = flat[usual]
        index[usual] = mapping.indices(
            picked, np.empty(picked.size, mapping.dtype), np.empty(picked.size, np.int64)
        )
        index[~usual] = np.ceil(np.log2(flat[~usual]) * mapping.factor).astype(np.int64) - 1
    return index.reshape(shape)


def lower_bound(index: int | np.ndarray, scale: int) -> float | np.ndarray:
    """Lower (exclusive) bound of bucket ``index``: ``b ** index``."""
    return np.exp2(np.asarray(index, dtype=np.float64) * 2.0**-scale)


def relative_accuracy(scale: int) -> float:
    """Worst-case relative error of a quantile answered at ``scale``."""
    base = 2.0 ** (2.0**-scale)
    return (base - 1.0) / (base + 1.0)


def _check_scale(scale: Any, where: str = "scale") -> int:
    if not isinstance(scale, numbers.Integral) or isinstance(scale, bool):
        raise StatsError(f"{where} must be an integer, got {scale!r}")
    if not MIN_SCALE <= scale <= MAX_SCALE:
        raise StatsError(f"{where} must be in {MIN_SCALE}..{MAX_SCALE}, got {scale}")
    return int(scale)


# -- store -------------------------------------------------------------------------------


class LatencyHistogram:
    """Mergeable log-bucket histogram of latencies in seconds, plus count/sum/min/max/errors.

    ``errors`` counts the observations that ended in an error; their latencies are in the
    buckets like any other (a failed call still took time). Values at or below
    ``ZERO_THRESHOLD`` (1 ns), negative ones included, go to ``zero_count``.
    """

    __slots__ = ("count", "counts", "errors", "max", "min", "offset", "scale", "sum", "zero_count")

    def __init__(self, scale: int = DEFAULT_SCALE) -> None:
        if not MIN_SCALE <= scale <= MAX_SCALE:
            raise ValueError(f"scale must be in {MIN_SCALE}..{MAX_SCALE}, got {scale}")
        self.scale = scale
        self.offset = 0
        self.counts = np.zeros(0, dtype=np.int64)
        self.zero_count = 0
        self.count = 0
        self.errors = 0
        self.sum = 0.0
        self.min = math.inf
        self.max = -math.inf

    # -- building -------------------------------------------------------------------------

    @classmethod
    def from_samples(
        cls, seconds: Sequence[float] | np.ndarray, *, errors: int = 0, scale: int = DEFAULT_SCALE
    ) -> LatencyHistogram:
        """Histogram of an array of latencies (seconds), vectorized."""
        hist = cls(scale)
        hist.record_many(seconds, errors=errors)
        return hist

    def record_many(self, seconds: Sequence[float] | np.ndarray, *, errors: int = 0) -> None:
        """Add latencies (seconds); ``errors`` of them ended in an error.

        All or nothing: a NaN or infinity, or ``errors`` outside ``0 .. len(seconds)``, raises
        ``ValueError`` and leaves the histogram as it was. Runs in chunks that stay in cache,
        so the only full-size pass is the read.
        """
        values = np.ascontiguousarray(seconds, dtype=np.float64).ravel()
        n = values.size
        if not (_is_int(errors) and 0 <= errors <= n):
            raise ValueError(f"errors must be an integer within 0..{n} (the values recorded), got {errors!r}")
        if n == 0:
            return
        mapping = _MAPPINGS[self.scale]
        scratch, ints = _scratch(mapping.dtype)
        fast_low = max(ZERO_THRESHOLD, mapping.low)
        minimum, maximum, add = np.minimum.reduce, np.maximum.reduce, np.add.reduce
        # Counts keyed by -(index + 1) for sub-second chunks, by index for the others.
        below, below_base = np.zeros(0, dtype=np.int64), 0
        above, above_base = np.zeros(0, dtype=np.int64), 0
        zeros = 0
        total = 0.0
        lo_all, hi_all = math.inf, -math.inf
        # The loop body runs ~30 times per million values: kept lean on purpose.
        for start in range(0, n, _CHUNK):
            chunk = values[start : start + _CHUNK]
            m = chunk.size
            if m != _CHUNK:
                scratch, ints = scratch[:m], ints[:m]
            lo, hi = float(minimum(chunk)), float(maximum(chunk))  # NaN propagates into both
            total += float(add(chunk))
            if lo < lo_all:
                lo_all = lo
            if hi > hi_all:
                hi_all = hi
            if lo > fast_low and hi <= 1.0:  # False for NaN: those go below and raise
                keys = mapping.below_one(chunk, scratch, ints)
                base = 0
                # Fine scales or tiny values make keys large: shift down so bincount stays small.
                if mapping.factor * (1 - math.log2(lo)) > 8192:
                    base = int(keys.min())
                    keys -= base
                part = np.bincount(keys)
                if base == below_base and part.size <= below.size:
                    below[: part.size] += part
                else:
                    below, below_base = _accumulate(below, below_base, part, base)
                continue
            if not (math.isfinite(lo) and math.isfinite(hi)):
                raise ValueError("latencies must be finite")
            if lo > fast_low and hi <= mapping.high:
                keys = mapping.indices(chunk, scratch, ints)
            else:
                positive = chunk[chunk > ZERO_THRESHOLD]
                zeros += m - positive.size
                if positive.size == 0:
                    continue
                keys = index_of(positive, self.scale)
            base = int(keys.min())
            keys -= base
            above, above_base = _accumulate(above, above_base, np.bincount(keys), base)

        # Everything validated: commit.
        if below.size:
            nonzero = np.flatnonzero(below)
            first, last = int(nonzero[0]), int(nonzero[-1])
            self._add_counts(-1 - (below_base + last), below[first : last + 1][::-1])
        if above.size:
            self._add_counts(above_base, above)
        self.zero_count += zeros
        self.count += n
        self.errors += errors
        self.sum += total
        self.min = min(self.min, lo_all)
        self.max = max(self.max, hi_all)

    def record(self, seconds: float, *, error: bool = False) -> None:
        """One observation (convenience; use ``record_many`` for bulk)."""
        self.record_many(np.array([seconds]), errors=int(error))

    def _add_counts(self, offset: int, counts: np.ndarray) -> None:
        if counts.size == 0:
            return
        if self.counts.size == 0:
            self.offset, self.counts = offset, counts.astype(np.int64, copy=True)
            return
        lo = min(self.offset, offset)
        hi = max(self.offset + self.counts.size, offset + counts.size)
        if lo != self.offset or hi != self.offset + self.counts.size:
            grown = np.zeros(hi - lo, dtype=np.int64)
            grown[self.offset - lo : self.offset - lo + self.counts.size] = self.counts
            self.offset, self.counts = lo, grown
        start = offset - self.offset
        self.counts[start : start + counts.size] += counts

    def merge(self, other: LatencyHistogram) -> LatencyHistogram:
        """Add ``other`` into this histogram (in place) and return self."""
        if other.scale != self.scale:
            raise ValueError(f"cannot merge scale {other.scale} into scale {self.scale}")
        self._add_counts(other.offset, other.counts)
        self.zero_count += other.zero_count
        self.count += other.count
        self.errors += other.errors
        self.sum += other.sum
        self.min = min(self.min, other.min)
        self.max = max(self.max, other.max)
        return self

    def copy(self) -> LatencyHistogram:
        return LatencyHistogram(self.scale).merge(self)

    def subtract(self, older: LatencyHistogram) -> LatencyHistogram:
        """The observations added since ``older``: ``self - older`` as a new histogram.

        ``self`` and ``older`` are two snapshots of one cumulative histogram (``older``
        taken first). Counts, zero count, errors and sum are exact differences. The scale
        is the coarser of the two (an OpenTelemetry SDK may lower its scale between
        snapshots). ``min``/``max`` of a window are not recoverable from two snapshots;
        they are set to the populated bucket edges, tightened by ``self.min``/``self.max``,
        so quantiles keep the ``relative_accuracy`` guarantee.

        Raises ``StatsError`` when ``older`` is not an earlier state of ``self`` (some count
        would become negative): usually the process restarted and the counters reset.
        """
        newer = self
        if older.scale != newer.scale:
            common = min(older.scale, newer.scale)
            newer, older = newer.downscaled(common), older.downscaled(common)
        for field in ("count", "zero_count", "errors"):
            if getattr(older, field) > getattr(newer, field):
                raise StatsError(
                    f"cannot subtract: older snapshot has {field}={getattr(older, field)} > "
                    f"{getattr(newer, field)} in the newer one (counter reset?)"
                )
        out = LatencyHistogram(newer.scale)
        older_counts, older_offset = older._trimmed()
        if older_counts.size:
            start = older_offset - newer.offset
            stop = start + older_counts.size
            if start < 0 or stop > newer.counts.size:
                raise StatsError(
                    "cannot subtract: older snapshot has buckets the newer one does not (counter reset?)"
                )
            diff = newer.counts.copy()
            diff[start:stop] -= older_counts
            if (diff[start:stop] < 0).any():
                bad = int(np.flatnonzero(diff < 0)[0]) + newer.offset
                raise StatsError(
                    f"cannot subtract: bucket {bad} would be negative (older snapshot is not an "
                    "earlier state of the newer one; counter reset?)"
                )
        else:
            diff = newer.counts.copy()
        out._add_counts(newer.offset, diff)
        out._compact()
        out.zero_count = newer.zero_count - older.zero_count
        out.count = newer.count - older.count
        out.errors = newer.errors - older.errors
        if out.count == 0:
            return out
        out.sum = newer.sum - older.sum
        if out.zero_count:
            out.min = newer.min
        else:
            out.min = max(newer.min, float(lower_bound(out.offset, out.scale)))
        if out.counts.size:
            top = float(lower_bound(out.offset + out.counts.size, out.scale))
            out.max = min(newer.max, top)
        else:
            out.max = min(newer.max, ZERO_THRESHOLD)
        out.min = min(out.min, out.max)
        return out

    # -- reading --------------------------------------------------------------------------

    @property
    def mean(self) -> float:
        return self.sum / self.count if self.count else math.nan

    @property
    def error_rate(self) -> float:
        return self.errors / self.count if self.count else math.nan

    @property
    def nbytes(self) -> int:
        """Bytes this histogram holds: the object, its counts array and its scalars.

        Dense counts cost 8 bytes per bucket between the lowest and the highest populated
        bucket; 1 ms .. 10 s at scale 6 is about 7 kB in all.
        """
        counts = self.counts
        size = sys.getsizeof(self) + sys.getsizeof(counts)
        if counts.base is not None:  # a view: getsizeof left out the data it points at
            size += counts.nbytes
        return size + sum(sys.getsizeof(getattr(self, name)) for name in self.__slots__ if name != "counts")

    def quantile(self, q: float) -> float:
        """The ``q``-quantile (0..1) within ``relative_accuracy(scale)``; NaN when empty."""
        return float(self.quantiles([q])[0])

    def quantiles(self, qs: Sequence[float]) -> np.ndarray:
        """Quantiles ``qs`` (0..1), estimated as numpy's default (``method="linear"``) would from
        the raw values: the order statistic of continuous rank ``q * (count - 1)``.

        Within a bucket the ``c`` values are taken as spread evenly in log space, the i-th at
        ``(i + 0.5) / c`` of the way (log-linear interpolation, as Prometheus does for native
        histograms), so the estimate moves smoothly with the data instead of jumping from bucket
        to bucket: a threshold of +10 % acts as +10 %, not as the next power of
        ``2 ** (2 ** -scale)``. Always inside the bucket of the wanted order statistic, so within
        ``2 ** (2 ** -scale) - 1`` (1.09 % at scale 6) of it at worst; clipped to min..max.
        """
        qs = np.asarray(qs, dtype=np.float64)
        if ((qs < 0) | (qs > 1)).any():
            raise ValueError("quantiles must be within 0..1")
        if self.count == 0:
            return np.full(qs.shape, np.nan)
        ranks = qs * (self.count - 1)
        below_zero, pos = self._locate(np.floor(ranks))
        before = np.cumsum(self.counts) - self.counts + self.zero_count  # values below bucket pos
        inside = np.maximum(self.counts[pos], 1) if self.counts.size else np.ones(pos.shape)
        start = before[pos] if self.counts.size else np.zeros(pos.shape)
        fraction = np.clip((ranks - start + 0.5) / inside, 0.0, 1.0)
        values = lower_bound(self.offset + pos + fraction, self.scale)
        values = np.clip(values, self.min, self.max)
        return np.where(below_zero, max(self.min, 0.0), values)

    def bucket_values(self, indices: Sequence[int] | np.ndarray) -> np.ndarray:
        """The value reported for bucket ``indices``: the point of ``(b**i, b**(i+1)]`` with the
        smallest worst-case relative error, ``2 * b**(i+1) / (1 + b)``, clipped to min..max."""
        base = 2.0 ** (2.0**-self.scale)
        estimates = lower_bound(np.asarray(indices), self.scale) * 2.0 * base / (1.0 + base)
        return np.clip(estimates, self.min, self.max)

    def order_statistic_bounds(self, ranks: Sequence[float] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Bounds ``lo <= x_(r) <= hi`` on the order statistics of 0-based ``ranks``.

        Exact bounds, not estimates: the edges of the bucket holding each order statistic,
        tightened by ``min``/``max``. ``hi / lo <= 2 ** (2 ** -scale)`` (1.09 % at scale 6)
        outside the zero bucket. The significance tests in ``stats.significance`` use these.
        """
        ranks = np.asarray(ranks, dtype=np.float64)
        if self.count == 0:
            return np.full(ranks.shape, np.nan), np.full(ranks.shape, np.nan)
        if ((ranks < 0) | (ranks > self.count - 1)).any():
            raise ValueError(f"ranks must be within 0..{self.count - 1}")
        below_zero, pos = self._locate(ranks)
        lo = np.maximum(lower_bound(self.offset + pos, self.scale), self.min)
        hi = np.minimum(lower_bound(self.offset + pos + 1, self.scale), self.max)
        lo = np.where(below_zero, self.min, lo)
        hi = np.where(below_zero, min(self.max, ZERO_THRESHOLD), hi)
        return lo, hi

    def _locate(self, ranks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For 0-based ranks: (in the zero bucket?, position in ``counts`` otherwise)."""
        below_zero = ranks < self.zero_count
        cumulative = np.cumsum(self.counts) + self.zero_count
        pos = np.searchsorted(cumulative, ranks, side="right")
        pos = np.minimum(pos, max(self.counts.size - 1, 0))
        return below_zero, pos

    def bucket_counts_for(self, upper_bounds: Sequence[float]) -> np.ndarray:
        """Counts per ``le`` bucket (``len(upper_bounds) + 1`` values, last is +Inf), not cumulative.

        Exact when every bound is a bucket boundary of this scale; otherwise a fine bucket
        is attributed to the ``le`` bucket holding its upper edge (error below one fine
        bucket width, ``relative_accuracy`` * 2).
        """
        bounds = np.asarray(upper_bounds, dtype=np.float64)
        out = np.zeros(bounds.size + 1, dtype=np.int64)
        if self.zero_count:
            out[int(np.searchsorted(bounds, 0.0, side="left"))] += self.zero_count
        if self.counts.size:
            uppers = lower_bound(self.offset + 1 + np.arange(self.counts.size), self.scale)
            # Guard against exp2 rounding a boundary a hair above the bound it equals.
            slot = np.searchsorted(bounds * (1 + 1e-12), uppers, side="left")
            np.add.at(out, slot, self.counts)
        return out

    def downscaled(self, scale: int) -> LatencyHistogram:
        """The same data at a coarser ``scale`` (fewer, wider buckets); exact."""
        if scale > self.scale:
            raise ValueError("can only reduce the scale")
        shift = self.scale - scale
        out = LatencyHistogram(scale)
        if self.counts.size:
            idx = (self.offset + np.arange(self.counts.size)) >> shift
            lo = int(idx[0])
            out._add_counts(lo, np.bincount(idx - lo, weights=self.counts).astype(np.int64))
        out.zero_count, out.count, out.errors = self.zero_count, self.count, self.errors
        out.sum, out.min, out.max = self.sum, self.min, self.max
        return out

    def _trimmed(self) -> tuple[np.ndarray, int]:
        """(counts without leading/trailing zero buckets, their offset)."""
        nonzero = np.flatnonzero(self.counts)
        if nonzero.size == 0:
            return np.zeros(0, dtype=np.int64), 0
        first, last = int(nonzero[0]), int(nonzero[-1])
        return self.counts[first : last + 1], self.offset + first

    def _compact(self) -> None:
        """Drop leading/trailing zero buckets (own copy, so no big array is kept alive)."""
        counts, offset = self._trimmed()
        self.counts, self.offset = counts.copy(), offset

    # -- files and wire formats -----------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict (ints, finite floats, ``None``), read back by ``from_dict``.

        Layout version ``DICT_VERSION``; counts are dense between the first and last
        populated bucket. ``min``/``max`` are ``None`` for an empty histogram.
        """
        counts, offset = self._trimmed()
        empty = self.count == 0
        return {
            "version": DICT_VERSION,
            "scale": int(self.scale),
            "offset": int(offset),
            "counts": [int(c) for c in counts],
            "zero_count": int(self.zero_count),
            "count": int(self.count),
            "errors": int(self.errors),
            "sum": float(self.sum),
            "min": None if empty else float(self.min),
            "max": None if empty else float(self.max),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, where: str = "histogram") -> LatencyHistogram:
        """Read a ``to_dict`` dict back, validating every field.

        Raises ``StatsError`` naming ``where`` (e.g. the baseline file) and the field on:
        a version other than ``DICT_VERSION``, missing or unknown keys, wrong types,
        negative counts, ``count != zero_count + sum(counts)``, ``errors > count``,
        non-finite ``sum``/``min``/``max`` or ``min > max``.
        """
        if not isinstance(data, Mapping):
            raise StatsError(f"{where}: expected a JSON object, got {type(data).__name__}")
        expected = set(_DICT_FIELDS)
        if "version" not in data:
            raise StatsError(f"{where}: field 'version' is missing")
        version = data["version"]
        if not _is_int(version) or version != DICT_VERSION:
            raise StatsError(
                f"{where}: field 'version' is {version!r}; this nethical-otel reads version "
                f"{DICT_VERSION} (regenerate the file with this release)"
            )
        missing = sorted(expected - set(data))
        if missing:
            raise StatsError(f"{where}: field {missing[0]!r} is missing")
        unknown = sorted(str(key) for key in set(data) - expected)
        if unknown:
            raise StatsError(f"{where}: unknown field {unknown[0]!r}")
        scale = _check_scale(data["scale"], f"{where}: field 'scale'")

        def integer(field: str, minimum: int | None = 0) -> int:
            value = data[field]
            if not _is_int(value):
                raise StatsError(f"{where}: field {field!r} must be an integer, got {value!r}")
            if minimum is not None and value < minimum:
                raise StatsError(f"{where}: field {field!r} must be >= {minimum}, got {value}")
            return int(value)

        def real(field: str) -> float:
            value = data[field]
            if not _is_real(value) or not math.isfinite(value):
                raise StatsError(f"{where}: field {field!r} must be a finite number, got {value!r}")
            return float(value)

        offset = integer("offset", minimum=None)
        raw_counts = data["counts"]
        if not isinstance(raw_counts, (list, tuple)):
            kind = type(raw_counts).__name__
            raise StatsError(f"{where}: field 'counts' must be a list of integers, got {kind}")
        for i, c in enumerate(raw_counts):
            if not _is_int(c):
                raise StatsError(f"{where}: field 'counts'[{i}] must be an integer, got {c!r}")
            if c < 0:
                raise StatsError(f"{where}: field 'counts'[{i}] is {c}, must be >= 0")
        limit = (1100 << scale) if scale >= 0 else 1100
        if not -limit <= offset <= limit or offset + len(raw_counts) > limit:
            raise StatsError(f"{where}: field 'offset' is {offset}, beyond float64 range at scale {scale}")
        counts = np.array(raw_counts, dtype=np.int64)
        zero_count = integer("zero_count")
        count = integer("count")
        errors = integer("errors")
        held = zero_count + int(counts.sum())
        if count != held:
            raise StatsError(f"{where}: field 'count' is {count} but zero_count + sum(counts) is {held}")
        if errors > count:
            raise StatsError(f"{where}: field 'errors' is {errors}, more than count {count}")
        total = real("sum")
        hist = cls(scale)
        if count == 0:
            for field in ("min", "max"):
                if data[field] is not None:
                    raise StatsError(f"{where}: field {field!r} must be null for an empty histogram")
        else:
            low, high = real("min"), real("max")
            if low > high:
                raise StatsError(f"{where}: field 'min' ({low}) is greater than 'max' ({high})")
            hist.min, hist.max = low, high
        hist._add_counts(offset, counts)
        hist.zero_count, hist.count, hist.errors, hist.sum = zero_count, count, errors, total
        return hist

    def to_otel_exponential(self, max_size: int = 160) -> tuple[int, int, np.ndarray]:
        """``(scale, offset, counts)`` of the positive buckets, downscaled until
        ``len(counts) <= max_size`` (160 is the OpenTelemetry SDK default).

        Every halving of resolution (scale - 1) doubles the relative error bound; the
        returned scale says which bound holds (``relative_accuracy(scale)``).
        """
        if max_size < 1:
            raise ValueError(f"max_size must be >= 1, got {max_size}")
        counts, offset = self._trimmed()
        if counts.size == 0:
            return self.scale, 0, counts.copy()
        first, last = offset, offset + counts.size - 1
        shift = 0
        while self.scale - shift > MIN_SCALE and (last >> shift) - (first >> shift) + 1 > max_size:
            shift += 1
        scale = self.scale - shift
        if scale == self.scale:
            return scale, offset, counts.copy()
        coarse, coarse_offset = self.downscaled(scale)._trimmed()
        return scale, coarse_offset, coarse.copy()

    @classmethod
    def from_otel_exponential(
        cls, point: Any, *, scale: int = DEFAULT_SCALE, errors: int = 0
    ) -> LatencyHistogram:
        """Histogram of an OpenTelemetry ``ExponentialHistogramDataPoint`` (SDK or OTLP).

        Lossless when ``point.scale <= scale``: the result keeps ``point.scale`` (finer
        buckets cannot be invented; its accuracy is ``relative_accuracy(point.scale)``, and
        merging it with finer histograms needs ``downscaled`` or ``merge_all``). When
        ``point.scale > scale`` it is downscaled to ``scale``, exactly. Negative buckets
        (negative durations: a clock stepped back) are counted as zero, as in
        ``record_many``. ``errors`` is not part of the point; pass it if you know it.
        Raises ``StatsError`` on negative counts or ``count`` not matching the buckets.
        """
        target = _check_scale(scale)
        point_scale = _check_scale(point.scale, "exponential histogram point: 'scale'")
        positive = _bucket_array(point.positive.bucket_counts, "positive.bucket_counts")
        negative = point.negative.bucket_counts if point.negative is not None else []
        negative_total = int(_bucket_array(negative, "negative.bucket_counts").sum())
        zero_count = int(point.zero_count)
        if zero_count < 0:
            raise StatsError(f"exponential histogram point: 'zero_count' is {zero_count}, must be >= 0")
        count = int(point.count)
        if count != zero_count + negative_total + int(positive.sum()):
            raise StatsError(
                f"exponential histogram point: 'count' is {count} but its buckets hold "
                f"{zero_count + negative_total + int(positive.sum())}"
            )
        hist = cls(point_scale)
        hist._add_counts(int(point.positive.offset), positive)
        hist._compact()
        hist.zero_count = zero_count + negative_total
        hist.count = count
        hist.errors = int(errors)
        if count:
            hist.sum = float(point.sum)
            hist.min, hist.max = _min_max(hist, getattr(point, "min", None), getattr(point, "max", None))
        return hist.downscaled(target) if point_scale > target else hist

    @classmethod
    def from_explicit_buckets(
        cls,
        upper_bounds: Sequence[float],
        bucket_counts: Sequence[int],
        sum: float,
        count: int | None = None,
        *,
        cumulative: bool = False,
        min: float | None = None,
        max: float | None = None,
        errors: int = 0,
        scale: int = DEFAULT_SCALE,
    ) -> LatencyHistogram:
        """Histogram of explicit buckets: an OpenTelemetry ``HistogramDataPoint``
        (``explicit_bounds``, ``bucket_counts`` with one more entry for +Inf, not
        cumulative) or Prometheus ``le`` buckets (``cumulative=True``; the last bound may
        be ``+Inf`` or left out).

        Each explicit bucket ``(lo, hi]``'s count is spread over the fine buckets inside
        it, log-uniformly (proportional to the log-length each fine bucket shares with
        ``(lo, hi]``), rounded so that every explicit bucket keeps its exact count. So a
        quantile read from the result lies in ``[lo / b, hi * b]`` for the explicit bucket
        holding the true quantile (``b = 2 ** (2 ** -scale)``): the error is at most the
        width of that explicit bucket, ``hi / lo - 1``, plus one fine bucket. Bounds that
        are fine-bucket boundaries (powers of ``2 ** (1 / 2**k)``, ``k <= scale``) lose
        nothing at those bounds.

        Open-ended buckets: the first one, ``(-inf, hi]``, is spread over
        ``(max(min, hi / step), hi]`` with ``step`` the ratio of the next two bounds; the
        +Inf one sits at its lower bound (as Prometheus' ``histogram_quantile`` answers),
        or is spread up to ``max`` when given. Buckets at or below ``ZERO_THRESHOLD``
        count as zero. ``min``/``max`` tighten every bucket when given.
        """
        scale = _check_scale(scale)
        bounds = [float(b) for b in upper_bounds]
        raw = [c for c in bucket_counts]
        for i, c in enumerate(raw):
            if not _is_int(c) and not (isinstance(c, float) and c.is_integer()):
                raise StatsError(f"explicit histogram: bucket_counts[{i}] must be an integer, got {c!r}")
        if len(raw) == len(bounds) + 1:
            bounds.append(math.inf)
        elif not (len(raw) == len(bounds) and bounds and bounds[-1] == math.inf):
            raise StatsError(
                f"explicit histogram: {len(raw)} bucket counts for {len(bounds)} bounds; expected one "
                "more count than bounds, or a last bound of +Inf"
            )
        for i in range(1, len(bounds)):
            if not bounds[i] > bounds[i - 1]:
                raise StatsError(
                    f"explicit histogram: upper_bounds[{i}] = {bounds[i]} is not above {bounds[i - 1]}"
                )
        if any(math.isnan(b) for b in bounds):
            raise StatsError("explicit histogram: an upper bound is NaN")
        counts = np.array([int(c) for c in raw], dtype=np.int64)
        if cumulative:
            steps = np.diff(counts, prepend=0)
            if (steps < 0).any():
                i = int(np.flatnonzero(steps < 0)[0])
                raise StatsError(
                    f"explicit histogram: cumulative bucket_counts[{i}] = {counts[i]} is below the "
                    f"previous {counts[i - 1]}; pass cumulative=False for per-bucket counts"
                )
            counts = steps
        elif (counts < 0).any():
            i = int(np.flatnonzero(counts < 0)[0])
            raise StatsError(f"explicit histogram: bucket_counts[{i}] is {counts[i]}, must be >= 0")
        total = int(counts.sum())
        if count is not None and int(count) != total:
            raise StatsError(f"explicit histogram: 'count' is {count} but the buckets hold {total}")

        hist = cls(scale)
        hist.count = total
        hist.errors = int(errors)
        if total == 0:
            return hist
        hist.sum = float(sum)
        low_v = float(min) if min is not None and math.isfinite(min) else None
        high_v = float(max) if max is not None and math.isfinite(max) else None
        base = 2.0 ** (2.0**-scale)
        finite = [b for b in bounds if math.isfinite(b) and b > ZERO_THRESHOLD]
        step = finite[1] / finite[0] if len(finite) > 1 else 2.0
        for i, c in enumerate(counts):
            if c == 0:
                continue
            lo, hi = (bounds[i - 1] if i else -math.inf), bounds[i]
            if hi <= ZERO_THRESHOLD:
                hist.zero_count += int(c)
                continue
            if lo <= ZERO_THRESHOLD:  # open below: down to min, else one bucket step below hi
                lo = low_v if low_v is not None and ZERO_THRESHOLD < low_v < hi else hi / step
            elif low_v is not None and lo < low_v < hi:
                lo = low_v
            if math.isinf(hi):  # open above: up to max, else at the last bound (Prometheus' answer)
                hi = high_v if high_v is not None and high_v > lo else lo * base
            elif high_v is not None and lo < high_v < hi:
                hi = high_v
            if not (math.isfinite(lo) and math.isfinite(hi)):
                raise StatsError("explicit histogram: no finite bound to place the values; pass min and max")
            first, weights = _log_uniform_weights(lo, hi, scale)
            hist._add_counts(first, _split_count(int(c), weights))
        hist._compact()
        hist.min, hist.max = _min_max(hist, low_v, high_v)
        return hist

    def __repr__(self) -> str:
        if not self.count:
            return f"LatencyHistogram(scale={self.scale}, empty)"
        p50, p95, p99 = self.quantiles([0.5, 0.95, 0.99])
        return (
            f"LatencyHistogram(n={self.count}, errors={self.errors}, "
            f"p50={p50 * 1e3:.3f}ms, p95={p95 * 1e3:.3f}ms, p99={p99 * 1e3:.3f}ms)"
        )


def merge_all(histograms: Iterable[LatencyHistogram]) -> LatencyHistogram:
    """One histogram of all of ``histograms``, at the coarsest scale among them (exact).

    Use it where scales can differ (OpenTelemetry points downscale on their own);
    ``LatencyHistogram.merge`` insists on equal scales.
    """
    items = list(histograms)
    if not items:
        return LatencyHistogram()
    scale = min(h.scale for h in items)
    out = LatencyHistogram(scale)
    for h in items:
        out.merge(h if h.scale == scale else h.downscaled(scale))
    return out


# -- helpers -----------------------------------------------------------------------------


def _accumulate(acc: np.ndarray, acc_base: int, part: np.ndarray, part_base: int) -> tuple[np.ndarray, int]:
    """acc (counts for keys acc_base..) += part (counts for keys part_base..)."""
    if acc.size == 0:
        return part.astype(np.int64, copy=True), part_base
    lo = min(acc_base, part_base)
    hi = max(acc_base + acc.size, part_base + part.size)
    if lo != acc_base or hi != acc_base + acc.size:
        grown = np.zeros(hi - lo, dtype=np.int64)
        grown[acc_base - lo : acc_base - lo + acc.size] = acc
        acc, acc_base = grown, lo
    acc[part_base - acc_base : part_base - acc_base + part.size] += part
    return acc, acc_base


def _log_uniform_weights(lo: float, hi: float, scale: int) -> tuple[int, np.ndarray]:
    """(first fine index, share of log-length of (lo, hi] in each fine bucket from there)."""
    first, last = (int(i) for i in index_of(np.array([lo, hi]), scale))
    # lo belongs to the bucket below (lo, hi]; start at the bucket holding values just above it.
    edges = np.arange(first, last + 2, dtype=np.float64) / 2.0**scale  # log2 of bucket edges
    log_lo, log_hi = math.log2(lo), math.log2(hi)
    overlap = np.clip(np.minimum(edges[1:], log_hi) - np.maximum(edges[:-1], log_lo), 0.0, None)
    if overlap.sum() <= 0:  # (lo, hi] inside one fine bucket, narrower than float noise
        overlap = np.zeros(last - first + 1)
        overlap[-1] = 1.0
    return first, overlap / overlap.sum()


def _split_count(count: int, weights: np.ndarray) -> np.ndarray:
    """Integers proportional to ``weights`` summing to ``count`` exactly (cumulative rounding)."""
    cumulative = np.rint(np.cumsum(weights) * count).astype(np.int64)
    cumulative[-1] = count
    return np.diff(cumulative, prepend=0)


def _min_max(hist: LatencyHistogram, low: Any, high: Any) -> tuple[float, float]:
    """min/max as given when they are finite, else the populated bucket edges."""
    counts, offset = hist._trimmed()
    populated = counts.size and not hist.zero_count
    edge_low = float(lower_bound(offset, hist.scale)) if populated else 0.0
    edge_high = float(lower_bound(offset + counts.size, hist.scale)) if counts.size else ZERO_THRESHOLD
    low_ok = low is not None and _is_real(low) and math.isfinite(low)
    high_ok = high is not None and _is_real(high) and math.isfinite(high)
    out_low = float(low) if low_ok else edge_low
    out_high = float(high) if high_ok else edge_high
    return out_low, max(out_high, out_low)


def _bucket_array(values: Sequence[int], field: str) -> np.ndarray:
    counts = np.asarray(list(values), dtype=np.int64)
    if counts.ndim != 1:
        raise StatsError(f"exponential histogram point: {field!r} must be a list of integers")
    if (counts < 0).any():
        i = int(np.flatnonzero(counts < 0)[0])
        raise StatsError(f"exponential histogram point: {field}[{i}] is {counts[i]}, must be >= 0")
    return counts


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _is_real(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
