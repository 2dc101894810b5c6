"""LatencyHistogram: each documented guarantee checked against exact numpy results.

Rank convention: ``quantile(q)`` answers the order statistic of 0-based rank
``floor(q * (n - 1))``, which is ``np.quantile(x, q, method="lower")``.
"""

from __future__ import annotations

import copy
import json
import math
import re

import numpy as np
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    Buckets,
    ExponentialHistogramDataPoint,
    InMemoryMetricReader,
)
from opentelemetry.sdk.metrics.view import (
    ExplicitBucketHistogramAggregation,
    ExponentialBucketHistogramAggregation,
    View,
)

from nethical_otel.stats import (
    DEFAULT_SCALE,
    LatencyHistogram,
    StatsError,
    index_of,
    lower_bound,
    merge_all,
    relative_accuracy,
)

# float32 log2 at scales -5..10 may move a value within 1e-6 of a boundary by one bucket.
MAPPING_FUZZ = 2e-6
QS = np.array([0.5, 0.95, 0.99])
QS_GRID = np.linspace(0.01, 0.99, 99)


def latencies(kind: str, n: int, seed: int) -> np.ndarray:
    """Latency-shaped samples in seconds."""
    rng = np.random.default_rng(seed)
    if kind == "lognormal":
        return rng.lognormal(math.log(0.02), 0.5, n)
    if kind == "pareto":  # heavy tail, alpha 1.5: p99 is ~20x the median
        return 0.005 * (1.0 + rng.pareto(1.5, n))
    if kind == "bimodal":  # cache hits around 5 ms, misses around 100 ms
        hits = rng.random(n) < 0.8
        return np.where(hits, rng.lognormal(math.log(0.005), 0.2, n), rng.lognormal(math.log(0.1), 0.3, n))
    raise ValueError(kind)


def assert_quantiles_accurate(hist: LatencyHistogram, values: np.ndarray, qs: np.ndarray) -> None:
    """Each estimate lies in the bucket of the order statistic of rank floor(q * (n - 1)):
    within one bucket width, ``2 ** (2 ** -scale) - 1``, of it (interpolation inside the
    bucket gives up the bucket's best single point, ``relative_accuracy``, for smoothness)."""
    exact = np.quantile(values, qs, method="lower")
    got = hist.quantiles(qs)
    error = np.abs(got / exact - 1)
    bound = 2.0 ** (2.0**-hist.scale) - 1 + MAPPING_FUZZ
    worst = int(np.argmax(error))
    assert error.max() <= bound, f"q={qs[worst]}: {got[worst]} vs exact {exact[worst]} ({error[worst]:.3%})"


def same_buckets(a: LatencyHistogram, b: LatencyHistogram) -> bool:
    da, db = a.to_dict(), b.to_dict()
    return all(da[k] == db[k] for k in ("scale", "offset", "counts", "zero_count", "count", "errors"))


# -- accuracy --------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["lognormal", "pareto", "bimodal"])
@pytest.mark.parametrize("n", [1_000, 10_000, 100_000, 1_000_000])
def test_p50_p95_p99_within_relative_accuracy(kind: str, n: int) -> None:
    values = latencies(kind, n, seed=n)
    hist = LatencyHistogram.from_samples(values)
    assert hist.scale == DEFAULT_SCALE
    assert_quantiles_accurate(hist, values, QS)


@pytest.mark.parametrize("scale", [-3, 0, 3, 6, 8, 10, 11, 14, 20])
@pytest.mark.parametrize("kind", ["lognormal", "pareto", "bimodal"])
def test_every_percentile_within_accuracy_at_every_scale(kind: str, scale: int) -> None:
    values = latencies(kind, 20_000, seed=scale + 100)
    assert_quantiles_accurate(LatencyHistogram.from_samples(values, scale=scale), values, QS_GRID)


def test_default_scale_is_better_than_one_percent() -> None:
    assert relative_accuracy(DEFAULT_SCALE) < 0.0055
    assert relative_accuracy(7) == pytest.approx(relative_accuracy(6) / 2, rel=1e-3)


def test_quantile_of_tiny_and_empty_histograms() -> None:
    assert math.isnan(LatencyHistogram().quantile(0.5))
    one = LatencyHistogram.from_samples([0.0123])
    assert one.quantiles(QS) == pytest.approx([0.0123] * 3)  # clipped to min == max
    with pytest.raises(ValueError):
        one.quantile(1.5)


def test_zero_and_negative_values_count_as_zero() -> None:
    hist = LatencyHistogram.from_samples([0.0, -1e-3, 1e-12, 0.01, 0.02])
    assert hist.zero_count == 3
    assert hist.counts.sum() == 2
    assert hist.min == -1e-3
    assert hist.quantile(0.0) == 0.0  # below zero is reported as 0, not as a negative latency
    assert hist.quantile(1.0) == pytest.approx(0.02, rel=relative_accuracy(6))


def test_order_statistic_bounds_contain_the_exact_order_statistics() -> None:
    values = latencies("bimodal", 5_000, seed=3)
    hist = LatencyHistogram.from_samples(np.concatenate([values, [0.0, 0.0]]))
    ranks = np.arange(0, hist.count, 7)
    exact = np.sort(np.concatenate([values, [0.0, 0.0]]))[ranks]
    lo, hi = hist.order_statistic_bounds(ranks)
    assert (lo <= exact).all() and (exact <= hi).all()
    inside = exact > 0
    assert (hi[inside] / lo[inside] <= 2 ** (2**-hist.scale) * (1 + 1e-12)).all()


# -- mapping ---------------------------------------------------------------------------------


@pytest.mark.parametrize("scale", [-10, -5, -1, 0, 1, 6, 10, 11, 20])
def test_powers_of_two_are_exact(scale: int) -> None:
    k = np.arange(-29, 31)
    powers = np.exp2(k.astype(np.float64))
    # 2**k is in bucket ceil(k * 2**scale) - 1: the inclusive upper edge when that is whole.
    expected = np.ceil(k * 2.0**scale).astype(np.int64) - 1
    assert np.array_equal(index_of(powers, scale), expected)
    if scale >= 0:  # just above an upper edge is the next bucket (beyond the float32 fuzz)
        above = powers * (1 + min(1e-5, (2 ** (2.0**-scale) - 1) / 4))
        assert np.array_equal(index_of(above, scale), expected + 1)


@pytest.mark.parametrize("scale", [2, 6, 10, 12, 16])
def test_mapping_agrees_with_exact_log_except_within_fuzz_of_a_boundary(scale: int) -> None:
    values = np.random.default_rng(scale).lognormal(-4, 2.5, 200_000)
    y = np.log2(values) * 2.0**scale
    exact = np.ceil(y).astype(np.int64) - 1
    got = index_of(values, scale)
    differ = got != exact
    assert (np.abs(got - exact) <= 1).all()
    # Any disagreement is a value within 1e-6 (relative; 1.5e-6 in log2) of a boundary.
    distance_in_log2 = np.abs(y[differ] - np.round(y[differ])) / 2.0**scale
    assert (distance_in_log2 < 1.5e-6).all()
    assert differ.mean() <= 2 * 1.5e-6 * 2.0**scale


def test_bucket_edges_hold_their_values() -> None:
    values = latencies("pareto", 50_000, seed=9)
    idx = index_of(values, 6)
    assert (lower_bound(idx, 6) * (1 - MAPPING_FUZZ) < values).all()
    assert (values <= lower_bound(idx + 1, 6) * (1 + MAPPING_FUZZ)).all()


def test_record_many_places_values_as_index_of_does() -> None:
    rng = np.random.default_rng(5)
    # zeros, negatives and values beyond 2**32 s send some chunks down the slow path
    values = np.concatenate([latencies("lognormal", 70_000, 1), [0.0, -2.0, 5e9, 3e19, 1e-300]])
    rng.shuffle(values)
    hist = LatencyHistogram.from_samples(values)
    positive = values[values > 1e-9]
    idx = index_of(positive, DEFAULT_SCALE)
    expected = np.bincount(idx - idx.min())
    counts, offset = hist.counts, hist.offset
    assert offset == idx.min()
    assert np.array_equal(counts, expected)
    assert hist.zero_count == 3
    assert hist.count == values.size
    assert hist.min == -2.0 and hist.max == 3e19
    assert hist.sum == pytest.approx(values.sum())


@pytest.mark.parametrize("scale", [6, 14])
def test_merge_equals_histogram_of_the_concatenation(scale: int) -> None:
    a = latencies("lognormal", 40_000, 1)
    b = latencies("pareto", 70_001, 2) * 10  # a wider, shifted range
    c = np.concatenate([latencies("bimodal", 1_000, 3), [0.0]])
    merged = LatencyHistogram.from_samples(a, errors=3, scale=scale)
    merged.merge(LatencyHistogram.from_samples(b, errors=4, scale=scale))
    merged.merge(LatencyHistogram.from_samples(c, scale=scale))
    whole = LatencyHistogram.from_samples(np.concatenate([a, b, c]), errors=7, scale=scale)
    assert same_buckets(merged, whole)
    assert merged.sum == pytest.approx(whole.sum, rel=1e-12)
    assert (merged.min, merged.max) == (whole.min, whole.max)


def test_record_in_pieces_equals_record_at_once() -> None:
    values = latencies("bimodal", 100_000, 11)
    pieces = LatencyHistogram()
    rng = np.random.default_rng(0)
    cuts = np.sort(rng.choice(values.size, 20, replace=False))
    for part in np.split(values, cuts):
        pieces.record_many(part)
    for v in values[:50]:
        pieces.record(float(v), error=True)
    once = LatencyHistogram.from_samples(np.concatenate([values, values[:50]]), errors=50)
    assert same_buckets(pieces, once)


def test_record_many_is_all_or_nothing() -> None:
    hist = LatencyHistogram.from_samples(latencies("lognormal", 1000, 1))
    before = hist.to_dict()
    bad = latencies("lognormal", 100_000, 2)
    bad[90_000] = np.nan
    with pytest.raises(ValueError, match="finite"):
        hist.record_many(bad)
    with pytest.raises(ValueError, match="finite"):
        hist.record_many([0.1, math.inf])
    assert hist.to_dict() == before


def test_non_contiguous_and_float32_input() -> None:
    values = latencies("lognormal", 30_000, 4)
    strided = LatencyHistogram.from_samples(values[::3])
    assert same_buckets(strided, LatencyHistogram.from_samples(values[::3].copy()))
    as32 = values.astype(np.float32)
    widened = LatencyHistogram.from_samples(as32.astype(float))
    assert same_buckets(LatencyHistogram.from_samples(as32), widened)


# -- windows ---------------------------------------------------------------------------------


def test_subtract_gives_the_window_between_two_snapshots() -> None:
    first, window = latencies("lognormal", 20_000, 1), latencies("pareto", 5_000, 2)
    older = LatencyHistogram.from_samples(first, errors=10)
    newer = older.copy()
    newer.record_many(window, errors=7)
    diff = newer.subtract(older)
    expected = LatencyHistogram.from_samples(window, errors=7)
    assert same_buckets(diff, expected)
    assert diff.sum == pytest.approx(window.sum(), rel=1e-9)
    assert diff.min <= window.min() * (1 + MAPPING_FUZZ) and diff.max >= window.max() * (1 - MAPPING_FUZZ)
    assert_quantiles_accurate(diff, window, QS_GRID)
    assert newer.count == 25_000  # unchanged


def test_subtract_across_a_scale_change_uses_the_coarser_scale() -> None:
    first, window = latencies("lognormal", 3_000, 1), latencies("lognormal", 3_000, 2)
    older = LatencyHistogram.from_samples(first, scale=8)
    newer = LatencyHistogram.from_samples(np.concatenate([first, window]), scale=5)
    diff = newer.subtract(older)
    assert diff.scale == 5
    assert same_buckets(diff, LatencyHistogram.from_samples(window, scale=5))


def test_subtract_of_identical_snapshots_is_empty() -> None:
    hist = LatencyHistogram.from_samples(latencies("lognormal", 100, 1))
    empty = hist.subtract(hist.copy())
    assert empty.count == 0 and empty.counts.size == 0 and math.isnan(empty.quantile(0.5))


@pytest.mark.parametrize("case", ["reset", "new_bucket", "more_errors", "negative_bucket"])
def test_subtract_rejects_a_snapshot_that_is_not_earlier(case: str) -> None:
    newer = LatencyHistogram.from_samples([0.01, 0.02, 0.03], errors=1)
    if case == "reset":
        older = LatencyHistogram.from_samples(np.full(10, 0.02))
    elif case == "new_bucket":
        older = LatencyHistogram.from_samples([5.0])
    elif case == "more_errors":
        older = LatencyHistogram.from_samples([0.01, 0.02], errors=2)  # fewer calls, more errors
    else:
        older = LatencyHistogram.from_samples([0.01, 0.01])
    with pytest.raises(StatsError, match="counter reset"):
        newer.subtract(older)


# -- files -----------------------------------------------------------------------------------


@pytest.mark.parametrize("scale", [-2, 6, 12])
def test_to_dict_from_dict_round_trip_through_json(scale: int) -> None:
    values = np.concatenate([latencies("bimodal", 10_000, scale + 50), [0.0]])
    hist = LatencyHistogram.from_samples(values, errors=12, scale=scale)
    text = json.dumps(hist.to_dict(), allow_nan=False)  # JSON-safe: no NaN/Infinity
    back = LatencyHistogram.from_dict(json.loads(text))
    assert same_buckets(back, hist)
    assert (back.sum, back.min, back.max, back.errors) == (hist.sum, hist.min, hist.max, 12)
    assert np.array_equal(back.quantiles(QS_GRID), hist.quantiles(QS_GRID))


def test_empty_round_trip() -> None:
    data = LatencyHistogram().to_dict()
    assert data["min"] is None and data["counts"] == []
    back = LatencyHistogram.from_dict(json.loads(json.dumps(data)))
    assert back.count == 0 and back.min == math.inf


def _good() -> dict:
    return LatencyHistogram.from_samples([0.0, 0.01, 0.011, 0.5], errors=1).to_dict()


CORRUPTIONS = [
    ("version", lambda d: d.update(version=2), "'version'"),
    ("version type", lambda d: d.update(version="1"), "'version'"),
    ("version missing", lambda d: d.pop("version"), "'version'"),
    ("missing", lambda d: d.pop("zero_count"), "'zero_count' is missing"),
    ("unknown", lambda d: d.update(extra=1), "unknown field 'extra'"),
    ("scale", lambda d: d.update(scale=99), "'scale'"),
    ("scale type", lambda d: d.update(scale=6.0), "'scale'"),
    ("offset type", lambda d: d.update(offset=True), "'offset'"),
    ("offset range", lambda d: d.update(offset=10**9), "'offset'"),
    ("counts type", lambda d: d.update(counts="1,2"), "'counts'"),
    ("negative count", lambda d: d["counts"].__setitem__(0, -1), "'counts'[0]"),
    ("float count", lambda d: d["counts"].__setitem__(0, 1.5), "'counts'[0]"),
    ("bool count", lambda d: d["counts"].__setitem__(0, True), "'counts'[0]"),
    ("count mismatch", lambda d: d.update(count=d["count"] + 1), "'count'"),
    ("negative zero_count", lambda d: d.update(zero_count=-1), "'zero_count'"),
    ("errors", lambda d: d.update(errors=99), "'errors'"),
    ("sum nan", lambda d: d.update(sum=float("nan")), "'sum'"),
    ("sum text", lambda d: d.update(sum="0.5"), "'sum'"),
    ("min > max", lambda d: d.update(min=1.0, max=0.5), "'min'"),
    ("min null", lambda d: d.update(min=None), "'min'"),
    ("max inf", lambda d: d.update(max=float("inf")), "'max'"),
]


@pytest.mark.parametrize(("name", "corrupt", "field"), CORRUPTIONS, ids=[c[0] for c in CORRUPTIONS])
def test_corrupt_dicts_raise_stats_error_naming_the_field(name: str, corrupt, field: str) -> None:
    data = copy.deepcopy(_good())
    LatencyHistogram.from_dict(copy.deepcopy(data))  # the uncorrupted one loads
    corrupt(data)
    with pytest.raises(StatsError, match=f"baseline.json: .*{re.escape(field)}"):
        LatencyHistogram.from_dict(data, where="baseline.json")


def test_from_dict_rejects_non_mappings_and_empty_with_min() -> None:
    with pytest.raises(StatsError, match="JSON object"):
        LatencyHistogram.from_dict([1, 2])  # type: ignore[arg-type]
    empty = LatencyHistogram().to_dict()
    empty["min"] = 0.1
    with pytest.raises(StatsError, match="'min' must be null"):
        LatencyHistogram.from_dict(empty)
    assert issubclass(StatsError, ValueError)


def test_nbytes_counts_the_dense_bucket_array() -> None:
    small = LatencyHistogram.from_samples(np.geomspace(0.001, 0.002, 100))
    wide = LatencyHistogram.from_samples(np.geomspace(0.001, 10.0, 10_000))  # 1 ms .. 10 s
    assert wide.counts.size == pytest.approx(13.3 * 64, abs=3)
    assert wide.nbytes >= wide.counts.nbytes
    assert wide.nbytes - small.nbytes == (wide.counts.size - small.counts.size) * 8
    assert wide.nbytes < 16 * 1024


# -- OpenTelemetry ---------------------------------------------------------------------------


def sdk_points(*batches: np.ndarray, max_size: int = 160) -> list:
    """One cumulative exponential-histogram point per batch, from the real SDK."""
    reader = InMemoryMetricReader()
    aggregation = ExponentialBucketHistogramAggregation(max_size=max_size, max_scale=20)
    provider = MeterProvider(
        metric_readers=[reader], views=[View(instrument_name="latency", aggregation=aggregation)]
    )
    instrument = provider.get_meter("test").create_histogram("latency", unit="s")
    points = []
    for batch in batches:
        for value in batch.tolist():
            instrument.record(value)
        data = reader.get_metrics_data()
        points.append(data.resource_metrics[0].scope_metrics[0].metrics[0].data.data_points[0])
    provider.shutdown()
    return points


def assert_nearly_same_buckets(a: LatencyHistogram, b: LatencyHistogram, moved: float = 1e-3) -> None:
    """Same scale and count; bucket counts equal but for values a boundary's fuzz apart."""
    assert a.scale == b.scale and a.count == b.count and a.zero_count == b.zero_count
    lo = min(a.offset, b.offset)
    size = max(a.offset + a.counts.size, b.offset + b.counts.size) - lo
    dense = np.zeros((2, size), dtype=np.int64)
    for row, h in enumerate((a, b)):
        dense[row, h.offset - lo : h.offset - lo + h.counts.size] = h.counts
    assert np.abs(np.cumsum(dense[0] - dense[1])).max() <= max(2, moved * a.count)


def test_from_otel_exponential_matches_our_own_histogram() -> None:
    values = latencies("lognormal", 20_000, 21)
    (point,) = sdk_points(values)
    hist = LatencyHistogram.from_otel_exponential(point, errors=5)
    assert hist.scale == min(point.scale, DEFAULT_SCALE)
    assert hist.count == 20_000 and hist.errors == 5
    assert hist.sum == pytest.approx(values.sum())
    assert (hist.min, hist.max) == (values.min(), values.max())
    assert_nearly_same_buckets(hist, LatencyHistogram.from_samples(values, scale=hist.scale))
    assert_quantiles_accurate(hist, values, QS_GRID)


def test_finer_otel_points_are_downscaled_to_the_target() -> None:
    values = np.random.default_rng(3).uniform(0.010, 0.0104, 5_000)  # narrow: the SDK keeps a fine scale
    (point,) = sdk_points(values)
    assert point.scale > DEFAULT_SCALE
    hist = LatencyHistogram.from_otel_exponential(point)
    assert hist.scale == DEFAULT_SCALE
    assert_nearly_same_buckets(hist, LatencyHistogram.from_samples(values))
    finer = LatencyHistogram.from_otel_exponential(point, scale=20)
    assert finer.scale == point.scale


def test_to_otel_exponential_picks_the_scale_the_sdk_picks() -> None:
    values = latencies("pareto", 20_000, 22)
    (point,) = sdk_points(values)
    scale, offset, counts = LatencyHistogram.from_samples(values).to_otel_exponential(max_size=160)
    assert len(counts) <= 160 and counts.sum() == values.size
    assert scale == point.scale
    ours = LatencyHistogram(scale)
    ours._add_counts(offset, counts)
    ours.count = int(counts.sum())
    theirs = LatencyHistogram.from_otel_exponential(point, scale=scale)
    theirs.zero_count = 0
    assert_nearly_same_buckets(ours, theirs)


@pytest.mark.parametrize("max_size", [1, 2, 20, 160, 10_000])
def test_to_otel_exponential_uses_the_finest_scale_that_fits(max_size: int) -> None:
    hist = LatencyHistogram.from_samples(latencies("bimodal", 5_000, 8))
    scale, _, counts = hist.to_otel_exponential(max_size)
    assert 1 <= len(counts) <= max_size and counts.sum() == hist.counts.sum()
    assert counts[0] > 0 and counts[-1] > 0
    if scale < hist.scale:  # one step finer would not fit
        finer = hist.downscaled(scale + 1)
        nonzero = np.flatnonzero(finer.counts)
        assert nonzero[-1] - nonzero[0] + 1 > max_size


def test_cumulative_otel_snapshots_subtract_to_the_window() -> None:
    first, second = latencies("lognormal", 4_000, 30), latencies("pareto", 4_000, 31)
    p1, p2 = sdk_points(first, second)
    window = LatencyHistogram.from_otel_exponential(p2).subtract(LatencyHistogram.from_otel_exponential(p1))
    assert window.count == 4_000
    assert_nearly_same_buckets(window, LatencyHistogram.from_samples(second, scale=window.scale))
    assert_quantiles_accurate(window, second, QS)


def test_otel_negative_buckets_count_as_zero_and_bad_points_raise() -> None:
    point = ExponentialHistogramDataPoint(
        attributes={}, start_time_unix_nano=0, time_unix_nano=1, count=7, sum=0.5, scale=3,
        zero_count=1, positive=Buckets(offset=-40, bucket_counts=[1, 0, 3]),
        negative=Buckets(offset=0, bucket_counts=[2]), flags=0, min=-1.0, max=0.4,
    )  # fmt: skip
    hist = LatencyHistogram.from_otel_exponential(point)
    assert hist.zero_count == 3 and hist.count == 7 and hist.offset == -40
    bad = copy.copy(point)
    object.__setattr__(bad, "count", 8)
    with pytest.raises(StatsError, match="'count' is 8"):
        LatencyHistogram.from_otel_exponential(bad)
    negative = copy.copy(point)
    object.__setattr__(negative, "positive", Buckets(offset=0, bucket_counts=[1, -1, 3]))
    with pytest.raises(StatsError, match=r"positive.bucket_counts\[1\]"):
        LatencyHistogram.from_otel_exponential(negative)


# -- explicit buckets ------------------------------------------------------------------------

PROMETHEUS_DEFAULT = [0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0]


def le_counts(values: np.ndarray, bounds: list[float]) -> np.ndarray:
    """Exact per-bucket counts of ``v <= le`` buckets, +Inf last."""
    slots = np.searchsorted(np.asarray(bounds), values, side="left")
    return np.bincount(slots, minlength=len(bounds) + 1)


@pytest.mark.parametrize("kind", ["lognormal", "pareto", "bimodal"])
@pytest.mark.parametrize("bounds", ["prometheus", "dense"])
def test_explicit_buckets_quantiles_within_the_explicit_bucket(kind: str, bounds: str) -> None:
    values = latencies(kind, 50_000, 40)
    edges = PROMETHEUS_DEFAULT if bounds == "prometheus" else list(np.geomspace(1e-3, 30, 60))
    counts = le_counts(values, edges)
    cumulative = np.cumsum(counts).tolist()
    hist = LatencyHistogram.from_explicit_buckets(
        [*edges, math.inf], cumulative, values.sum(), values.size, cumulative=True
    )
    assert hist.count == values.size and hist.sum == pytest.approx(values.sum())
    b = 2 ** (2**-hist.scale)
    ext = [edges[0] / (edges[1] / edges[0]), *edges, edges[-1] * b]
    for q in QS_GRID:
        exact = float(np.quantile(values, q, method="lower"))
        i = int(np.searchsorted(edges, exact, side="left"))
        lo, hi = ext[i], ext[i + 1]
        got = hist.quantile(q)
        assert lo / b * (1 - MAPPING_FUZZ) <= got <= hi * b * (1 + MAPPING_FUZZ), (q, lo, got, hi)
    if bounds == "dense":  # 60 log-spaced bounds: ratio 1.2 per bucket
        step = edges[1] / edges[0]
        exact = np.quantile(values, QS, method="lower")
        assert (np.abs(hist.quantiles(QS) / exact - 1) <= step * b - 1).all()


def test_explicit_buckets_on_fine_boundaries_lose_nothing_at_the_bounds() -> None:
    values = latencies("lognormal", 20_000, 41)
    bounds = list(2.0 ** (np.arange(-11 * 4, 1) / 4))  # powers of 2**(1/4): the scale-2 edges
    direct = LatencyHistogram.from_samples(values)
    per_bucket = direct.bucket_counts_for(bounds)
    # Exact but for a value within the mapping's fuzz (1e-6) of a bound; here at most two.
    assert np.abs(np.cumsum(per_bucket - le_counts(values, bounds))).max() <= 2
    rebuilt = LatencyHistogram.from_explicit_buckets(bounds, per_bucket.tolist(), values.sum())
    assert np.array_equal(rebuilt.bucket_counts_for(bounds), per_bucket)
    assert np.array_equal(rebuilt.downscaled(2).counts, direct.downscaled(2).counts)


def test_explicit_buckets_from_a_real_otel_histogram_point() -> None:
    values = latencies("lognormal", 5_000, 42)
    reader = InMemoryMetricReader()
    aggregation = ExplicitBucketHistogramAggregation(boundaries=PROMETHEUS_DEFAULT)
    provider = MeterProvider(
        metric_readers=[reader], views=[View(instrument_name="latency", aggregation=aggregation)]
    )
    instrument = provider.get_meter("test").create_histogram("latency", unit="s")
    for value in values.tolist():
        instrument.record(value)
    point = reader.get_metrics_data().resource_metrics[0].scope_metrics[0].metrics[0].data.data_points[0]
    provider.shutdown()
    assert len(point.bucket_counts) == len(point.explicit_bounds) + 1
    hist = LatencyHistogram.from_explicit_buckets(
        point.explicit_bounds, point.bucket_counts, point.sum, point.count, min=point.min, max=point.max
    )
    assert hist.count == 5_000 and (hist.min, hist.max) == (values.min(), values.max())
    b = 2 ** (2**-hist.scale)
    for q in QS:
        exact = float(np.quantile(values, q, method="lower"))
        i = int(np.searchsorted(PROMETHEUS_DEFAULT, exact, side="left"))
        lo = max(PROMETHEUS_DEFAULT[i - 1] if i else 0.0, values.min())
        hi = min(PROMETHEUS_DEFAULT[i], values.max())
        assert lo / b <= hist.quantile(q) <= hi * b


def test_explicit_buckets_use_min_and_max_when_given() -> None:
    hist = LatencyHistogram.from_explicit_buckets([0.1, 1.0], [0, 10, 5], sum=10.0, min=0.2, max=3.0)
    assert hist.quantile(0.0) >= 0.2 * (1 - relative_accuracy(6))
    assert hist.max == 3.0 and 1.0 < hist.quantile(1.0) <= 3.0
    top = LatencyHistogram.from_explicit_buckets([0.1, 1.0], [0, 10, 5], sum=10.0)
    assert top.quantile(1.0) <= 1.0 * 2 ** (1 / 64)  # +Inf bucket sits at its lower bound


@pytest.mark.parametrize(
    ("bounds", "counts", "kwargs", "message"),
    [
        ([0.1, 0.2], [1, 2], {}, "2 bucket counts for 2 bounds"),
        ([0.2, 0.1], [1, 2, 3], {}, r"upper_bounds\[1\]"),
        ([0.1, 0.2, math.inf], [5, 3, 9], {"cumulative": True}, r"bucket_counts\[1\] = 3"),
        ([0.1, 0.2], [1, -2, 3], {}, r"bucket_counts\[1\] is -2"),
        ([0.1, 0.2], [1, 2, 3], {"count": 7}, "'count' is 7"),
        ([0.1, 0.2], [1, "2", 3], {}, r"bucket_counts\[1\]"),
        ([math.inf], [4], {}, "no finite bound"),
    ],
)
def test_bad_explicit_buckets_raise(bounds, counts, kwargs, message) -> None:
    with pytest.raises(StatsError, match=message):
        LatencyHistogram.from_explicit_buckets(bounds, counts, 1.0, **kwargs)


# -- scales ----------------------------------------------------------------------------------


def test_merge_all_goes_to_the_coarsest_scale() -> None:
    a, b = latencies("lognormal", 3_000, 1), latencies("pareto", 3_000, 2)
    merged = merge_all([LatencyHistogram.from_samples(a, scale=7), LatencyHistogram.from_samples(b, scale=4)])
    assert merged.scale == 4
    assert same_buckets(merged, LatencyHistogram.from_samples(np.concatenate([a, b]), scale=4))
    with pytest.raises(ValueError):
        LatencyHistogram(7).merge(LatencyHistogram(4))


def test_downscaled_is_exact() -> None:
    values = latencies("bimodal", 20_000, 7)
    for coarse in (5, 2, 0, -3):
        assert same_buckets(
            LatencyHistogram.from_samples(values).downscaled(coarse),
            LatencyHistogram.from_samples(values, scale=coarse),
        )


@pytest.mark.parametrize("errors", [-1, 201, 2.5, True, "3"])
def test_record_many_rejects_errors_outside_0_to_count_and_keeps_the_histogram(errors) -> None:
    hist = LatencyHistogram.from_samples([0.01] * 10, errors=3)
    before = hist.to_dict()
    with pytest.raises(ValueError, match=re.escape("errors must be an integer within 0..200")):
        hist.record_many(np.full(200, 0.02), errors=errors)
    assert hist.to_dict() == before


def test_record_many_accepts_every_error_count_from_0_to_count() -> None:
    hist = LatencyHistogram()
    hist.record_many([0.01, 0.02], errors=2)
    hist.record_many([], errors=0)
    hist.record_many([0.03], errors=0)
    assert (hist.count, hist.errors) == (3, 2)
    with pytest.raises(ValueError):
        hist.record_many([], errors=1)


def test_le_buckets_are_read_at_the_scale_they_resolve() -> None:
    """Our 2 ** (k/4) le buckets resolve scale 2; Prometheus' defaults (up to 2.5x apart)
    scale -1; fine bounds keep the default. Spread finer, a comparison would take the
    log-uniform spreading for data."""
    from nethical_otel.stats.wire import scale_for_bounds

    assert scale_for_bounds([2 ** (k / 4) for k in range(-44, 25)]) == 2
    assert scale_for_bounds([0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]) == -1
    assert scale_for_bounds([1e-3 * 2 ** (k / 64) for k in range(100)]) == DEFAULT_SCALE
    assert scale_for_bounds([0.1]) == DEFAULT_SCALE
