"""The bucket mapping: value -> bucket index, and back. The store (``stats.histogram``) and
the wire formats (``stats.wire``) are built on it; kept apart as DDSketch keeps mapping and
store apart.

It is the OpenTelemetry base-2 exponential mapping: at scale ``s``, with ``b = 2 ** (2 ** -s)``,
bucket ``i`` holds the values in ``(b**i, b**(i+1)]``. So a histogram converts losslessly to an
OTLP exponential histogram (and a Prometheus native histogram: its schema is the scale), and to
Prometheus ``le`` buckets exactly when the ``le`` bounds are powers of ``2 ** (1 / 2**k)`` with
``k <= s``. Powers of two are placed exactly; a value within 1e-6 (relative) of another bucket
boundary may land on its other side (the log is taken in float32 at scales -5..10, for speed),
but always on the same side: the mapping is a pure function of the value, so merging is exact.
At scale 6 about 2 values in 100,000 land in a different bucket than an exact float64 mapping
would put them.
"""

from __future__ import annotations

import math
import threading

import numpy as np

DEFAULT_SCALE = 6
MIN_SCALE = -10
MAX_SCALE = 20
# Values per pass of the ingest loop: three 256 KiB buffers stay in the L2 cache.
_CHUNK = 1 << 15


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
