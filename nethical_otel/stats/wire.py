"""Wire formats of the latency histogram: the versioned JSON dict (baseline files, run
sidecars), OTLP exponential histogram points, Prometheus native histograms (as the query API
returns them), and explicit ``le`` buckets (Prometheus classic histograms, OTLP explicit-bucket
points). ``LatencyHistogram``'s ``to_dict``/``from_dict``/
``to_otel_exponential``/``from_otel_exponential``/``from_explicit_buckets`` call these.

Bad input from outside raises ``StatsError``, a ``ValueError`` whose message names the field.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from nethical_otel.stats.histogram import ZERO_THRESHOLD, LatencyHistogram, StatsError, _check_scale, _is_int
from nethical_otel.stats.mapping import DEFAULT_SCALE, MIN_SCALE, index_of, lower_bound

# Version of the ``to_dict`` layout; ``from_dict`` refuses any other.
DICT_VERSION = 1
_DICT_FIELDS = ("version", "scale", "offset", "counts", "zero_count", "count", "errors", "sum", "min", "max")


def to_dict(hist: LatencyHistogram) -> dict[str, Any]:
    """A JSON-safe dict (ints, finite floats, ``None``), read back by ``from_dict``.

    Layout version ``DICT_VERSION``; counts are dense between the first and last
    populated bucket. ``min``/``max`` are ``None`` for an empty histogram.
    """
    counts, offset = hist._trimmed()
    empty = hist.count == 0
    return {
        "version": DICT_VERSION,
        "scale": int(hist.scale),
        "offset": int(offset),
        "counts": [int(c) for c in counts],
        "zero_count": int(hist.zero_count),
        "count": int(hist.count),
        "errors": int(hist.errors),
        "sum": float(hist.sum),
        "min": None if empty else float(hist.min),
        "max": None if empty else float(hist.max),
    }


def from_dict(data: Mapping[str, Any], *, where: str = "histogram") -> LatencyHistogram:
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
    hist = LatencyHistogram(scale)
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


def to_otel_exponential(hist: LatencyHistogram, max_size: int = 160) -> tuple[int, int, np.ndarray]:
    """``(scale, offset, counts)`` of the positive buckets, downscaled until
    ``len(counts) <= max_size`` (160 is the OpenTelemetry SDK default).

    Every halving of resolution (scale - 1) doubles the relative error bound; the
    returned scale says which bound holds (``relative_accuracy(scale)``).
    """
    if max_size < 1:
        raise ValueError(f"max_size must be >= 1, got {max_size}")
    counts, offset = hist._trimmed()
    if counts.size == 0:
        return hist.scale, 0, counts.copy()
    first, last = offset, offset + counts.size - 1
    shift = 0
    while hist.scale - shift > MIN_SCALE and (last >> shift) - (first >> shift) + 1 > max_size:
        shift += 1
    scale = hist.scale - shift
    if scale == hist.scale:
        return scale, offset, counts.copy()
    coarse, coarse_offset = hist.downscaled(scale)._trimmed()
    return scale, coarse_offset, coarse.copy()


def from_otel_exponential(point: Any, *, scale: int = DEFAULT_SCALE, errors: int = 0) -> LatencyHistogram:
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
    hist = LatencyHistogram(point_scale)
    hist._add_counts(int(point.positive.offset), positive)
    hist._compact()
    hist.zero_count = zero_count + negative_total
    hist.count = count
    hist.errors = int(errors)
    if count:
        hist.sum = float(point.sum)
        hist.min, hist.max = _min_max(hist, getattr(point, "min", None), getattr(point, "max", None))
    return hist.downscaled(target) if point_scale > target else hist


# Prometheus' native-histogram schemas that are exponential (schema = OTel scale); -53 is
# "custom buckets", which have no scale.
NATIVE_SCHEMAS = range(-4, 9)


def from_native_buckets(
    buckets: Sequence[Sequence[Any]], *, total: float, errors: float = 0
) -> LatencyHistogram:
    """Histogram of a Prometheus native histogram as ``/api/v1/query`` returns it.

    ``buckets``: ``[boundary_rule, lower, upper, count]`` rows (strings or numbers), as in the
    JSON; ``total``: its ``sum``. An exponential schema's buckets are exactly this histogram's
    buckets at scale = schema: each row maps to its index, nothing is interpolated. The zero
    bucket (lower <= 0) and negative buckets go to ``zero_count``. Counts from ``increase()``
    are extrapolated (fractional): they are rounded, and the count is what the buckets hold.
    Raises ``StatsError`` on rows that are not the buckets of one exponential schema (e.g.
    custom-bucket native histograms).
    """
    (hist,) = from_native_many([buckets], [total])
    if isinstance(hist, StatsError):
        raise hist
    hist.errors = min(max(round(errors), 0), hist.count)
    return hist


def from_native_many(
    series: Sequence[Sequence[Sequence[Any]]], totals: Sequence[float]
) -> list[LatencyHistogram | StatsError]:
    """``from_native_buckets`` of many native histograms at once (errors left at 0): one
    histogram per series, or the ``StatsError`` that series' rows raise.

    A fleet step reads tens of thousands of series, a million rows: they are converted and
    mapped in a few numpy passes over all of them, not series by series.
    """
    if len(series) != len(totals):
        raise ValueError("one total per series")
    try:
        every_row = itertools.chain.from_iterable(series)
        if (np.fromiter(map(len, every_row), dtype=np.int64) != 4).any():
            raise ValueError
        # numpy reads the numbers' strings (the JSON answer) as well as numbers (a typed decoder).
        values = itertools.chain.from_iterable(itertools.chain.from_iterable(series))
        flat = np.fromiter(values, dtype=np.float64)
    except (TypeError, ValueError, OverflowError):
        if len(series) > 1:  # find the series at fault, keep the others
            return [from_native_many([rows], [total])[0] for rows, total in zip(series, totals, strict=True)]
        bad = next((r for r in series[0] if not _is_native_row(r)), None)
        return [StatsError(f"native histogram: bucket {bad!r} is not [rule, lower, upper, count]")]
    sizes = np.fromiter(map(len, series), dtype=np.int64, count=len(series))
    rows = flat.reshape(-1, 4)
    which = np.repeat(np.arange(len(series)), sizes)  # the series of each row
    lower, upper, n = rows[:, 1], rows[:, 2], rows[:, 3]
    failed: dict[int, str] = {}
    for i in np.unique(which[~np.isfinite(n)]).tolist():
        failed[i] = "native histogram: a bucket count is not a finite number"
    n = np.maximum(np.rint(np.nan_to_num(n)), 0.0)
    positive = (lower > 0) & np.isfinite(upper)
    zeros = np.bincount(which[~positive], weights=n[~positive], minlength=len(series))
    which, lower, upper, n = which[positive], lower[positive], upper[positive], n[positive]
    # The schema of each series from its first positive row; every row must be of it.
    with np.errstate(divide="ignore", invalid="ignore"):
        widths = np.log2(upper / lower)
        row_schema = np.rint(-np.log2(widths))
    starts = np.flatnonzero(np.r_[True, which[1:] != which[:-1]]) if which.size else np.zeros(0, np.int64)
    schema = np.full(len(series), DEFAULT_SCALE, dtype=np.float64)
    schema[which[starts]] = row_schema[starts]
    known = (schema >= NATIVE_SCHEMAS.start) & (schema < NATIVE_SCHEMAS.stop)
    step = 2.0 ** -np.where(known, schema, 0.0)
    fits = known[which] & (np.abs(widths - step[which]) <= 1e-6 * step[which])
    for i in np.unique(which[~fits]).tolist():
        failed.setdefault(i, "native histogram: buckets are not those of one exponential schema")
    # Our index of (base^i, base^(i+1)] is i, its upper bound's exponent minus one; rows
    # whose rounded count is 0 take no room.
    held = fits & (n > 0)
    which, n = which[held], n[held]
    index = np.rint(np.log2(upper[held]) * 2.0 ** schema[which]).astype(np.int64) - 1
    low = np.full(len(series), np.iinfo(np.int64).max, dtype=np.int64)
    high = np.full(len(series), np.iinfo(np.int64).min, dtype=np.int64)
    np.minimum.at(low, which, index)
    np.maximum.at(high, which, index)
    held_any = high >= low
    low, high = np.where(held_any, low, 0), np.where(held_any, high, -1)  # none held: empty at 0
    width = np.maximum(high - low + 1, 0)
    base = np.concatenate([[0], np.cumsum(width)])
    slot = base[which] + index - low[which]
    counts = np.bincount(slot, weights=n, minlength=int(base[-1])).astype(np.int64)
    out: list[LatencyHistogram | StatsError] = []
    for i in range(len(series)):
        if i in failed:
            out.append(StatsError(failed[i]))
            continue
        hist = LatencyHistogram(int(schema[i]))
        if width[i]:
            hist.offset, hist.counts = int(low[i]), counts[base[i] : base[i + 1]].copy()
        hist.zero_count = int(zeros[i])
        hist.count = int(hist.counts.sum()) + hist.zero_count
        if hist.count:
            hist.sum = max(float(totals[i]), 0.0)
            hist.min, hist.max = _min_max(hist, None, None)
        out.append(hist)
    return out


def _is_native_row(row: Any) -> bool:
    try:
        _, lower, upper, n = row
        float(lower), float(upper), float(n)
    except (TypeError, ValueError, OverflowError):
        return False
    return True


def scale_for_bounds(upper_bounds: Sequence[float]) -> int:
    """The finest scale whose buckets are no narrower than the widest gap between
    ``upper_bounds``: what a histogram read from those ``le`` buckets really resolves.

    ``2 ** (k / 4)`` bounds (ours, 19 % apart) give scale 2. Spread over finer buckets, a
    comparison would take the log-uniform spreading for data and claim precision the
    buckets never had; at this scale its intervals keep the buckets' width.
    """
    finite = sorted(float(b) for b in upper_bounds if math.isfinite(b) and b > ZERO_THRESHOLD)
    if len(finite) < 2:
        return DEFAULT_SCALE
    widest = max(hi / lo for lo, hi in itertools.pairwise(finite))
    if widest <= 1.0:
        return DEFAULT_SCALE
    scale = math.floor(-math.log2(math.log2(widest)) + 1e-9)
    return max(MIN_SCALE, min(DEFAULT_SCALE, scale))


def from_explicit_buckets(
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

    hist = LatencyHistogram(scale)
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


# -- helpers -----------------------------------------------------------------------------


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


def _is_real(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
