"""The one latency-distribution type of nethical-otel.

Guarantee: a ``LatencyHistogram`` at scale ``s`` answers any quantile of the values it
holds with a relative error of at most ``(b - 1) / (b + 1)`` where ``b = 2 ** (2 ** -s)``:
0.54 % at the default scale 6 (if the true p99 is 100 ms the answer is within
99.46 .. 100.54 ms), 0.27 % at scale 7.

The mapping is the OpenTelemetry base-2 exponential one: bucket ``i`` holds the values in
``(b**i, b**(i+1)]``. So a histogram converts losslessly to an OTLP exponential histogram,
and to Prometheus ``le`` buckets exactly when the ``le`` bounds are powers of
``2 ** (1 / 2**k)`` with ``k <= s`` (the default bounds are).

Cost: counts live in one dense ``int64`` array covering only the populated index range;
1 ms .. 10 s at scale 6 is 850 buckets, about 6.8 kB.

Two ideas are kept apart, as in DDSketch: the *mapping* (value -> index, module functions)
and the *store* (``offset`` + ``counts``). Merge is a first-class operation.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

DEFAULT_SCALE = 6
# Values at or below this (seconds) count as zero: below timer resolution.
ZERO_THRESHOLD = 1e-9


def index_of(values: np.ndarray, scale: int) -> np.ndarray:
    """Bucket index of each positive value: ``i`` such that ``b**i < v <= b**(i+1)``."""
    return np.ceil(np.log2(values) * (1 << scale)).astype(np.int64) - 1


def lower_bound(index: int | np.ndarray, scale: int) -> float | np.ndarray:
    """Lower (exclusive) bound of bucket ``index``: ``b ** index``."""
    return np.exp2(np.asarray(index, dtype=np.float64) / (1 << scale))


def relative_accuracy(scale: int) -> float:
    """Worst-case relative error of a quantile answered at ``scale``."""
    base = 2.0 ** (2.0**-scale)
    return (base - 1.0) / (base + 1.0)


class LatencyHistogram:
    """Mergeable log-bucket histogram of latencies in seconds, plus count/sum/min/max/errors.

    ``errors`` counts the observations that ended in an error; their latencies are in the
    buckets like any other (a failed call still took time).
    """

    __slots__ = ("count", "counts", "errors", "max", "min", "offset", "scale", "sum", "zero_count")

    def __init__(self, scale: int = DEFAULT_SCALE) -> None:
        if not -10 <= scale <= 20:
            raise ValueError(f"scale must be in -10..20, got {scale}")
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
        values = np.asarray(seconds, dtype=np.float64).ravel()
        if values.size == 0:
            self.errors += errors
            return
        if not np.isfinite(values).all():
            raise ValueError("latencies must be finite")
        positive = values[values > ZERO_THRESHOLD]
        self.zero_count += int(values.size - positive.size)
        if positive.size:
            idx = index_of(positive, self.scale)
            lo = int(idx.min())
            self._add_counts(lo, np.bincount(idx - lo))
        self.count += int(values.size)
        self.errors += errors
        self.sum += float(values.sum())
        self.min = min(self.min, float(values.min()))
        self.max = max(self.max, float(values.max()))

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

    # -- reading --------------------------------------------------------------------------

    @property
    def mean(self) -> float:
        return self.sum / self.count if self.count else math.nan

    @property
    def error_rate(self) -> float:
        return self.errors / self.count if self.count else math.nan

    def quantile(self, q: float) -> float:
        """The ``q``-quantile (0..1) within ``relative_accuracy(scale)``; NaN when empty."""
        return float(self.quantiles([q])[0])

    def quantiles(self, qs: Sequence[float]) -> np.ndarray:
        qs = np.asarray(qs, dtype=np.float64)
        if ((qs < 0) | (qs > 1)).any():
            raise ValueError("quantiles must be within 0..1")
        if self.count == 0:
            return np.full(qs.shape, np.nan)
        # Rank of the wanted order statistic (0-based), as numpy's "lower" convention.
        ranks = np.floor(qs * (self.count - 1))
        below_zero = ranks < self.zero_count
        cumulative = np.cumsum(self.counts) + self.zero_count
        pos = np.searchsorted(cumulative, ranks, side="right")
        pos = np.minimum(pos, max(self.counts.size - 1, 0))
        base = 2.0 ** (2.0**-self.scale)
        # The point of (b^i, b^(i+1)] with the smallest worst-case relative error.
        estimates = lower_bound(self.offset + pos, self.scale) * 2.0 * base / (1.0 + base)
        estimates = np.clip(estimates, self.min, self.max)
        return np.where(below_zero, max(self.min, 0.0), estimates)

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

    def __repr__(self) -> str:
        if not self.count:
            return f"LatencyHistogram(scale={self.scale}, empty)"
        p50, p95, p99 = self.quantiles([0.5, 0.95, 0.99])
        return (
            f"LatencyHistogram(n={self.count}, errors={self.errors}, "
            f"p50={p50 * 1e3:.3f}ms, p95={p95 * 1e3:.3f}ms, p99={p99 * 1e3:.3f}ms)"
        )
