"""Prometheus native histograms (as the query API returns them) read into LatencyHistogram exactly,
and the stable shard hash of sharded agents."""

from __future__ import annotations

import hashlib
from collections import Counter

import numpy as np
import pytest

from nethical_otel.detect.baseline import SeriesKey
from nethical_otel.detect.shard import Shard, series_hash
from nethical_otel.errors import ConfigError
from nethical_otel.stats import LatencyHistogram, StatsError
from nethical_otel.stats.wire import from_native_buckets, from_native_many


def _as_prometheus_json(hist: LatencyHistogram, zero: int = 0) -> list[list[str]]:
    """The buckets as Prometheus 3 prints them: schema s bucket i is (2^((i-1)/2^s), 2^(i/2^s)]."""
    base = 2.0 ** (2.0**-hist.scale)
    counts, offset = hist._trimmed()
    rows = [[3, "-1e-128", "1e-128", str(zero)]] if zero else []
    rows += [
        [0, repr(base ** (offset + k)), repr(base ** (offset + k + 1)), repr(float(c))]
        for k, c in enumerate(counts)
        if c
    ]
    return rows


@pytest.mark.parametrize("scale", [0, 3, 6, 8])
def test_native_buckets_map_bucket_for_bucket(scale: int) -> None:
    rng = np.random.default_rng(scale)
    hist = LatencyHistogram.from_samples(rng.lognormal(np.log(0.03), 0.8, 30_000), scale=scale)
    back = from_native_buckets(_as_prometheus_json(hist, zero=7), total=hist.sum, errors=12.4)
    counts, offset = hist._trimmed()
    assert back.scale == scale and back.offset == offset
    assert (back.counts == counts).all()
    assert back.zero_count == 7 and back.count == hist.count + 7 and back.errors == 12
    qs = [0.5, 0.95, 0.99]
    # Same buckets, so the same quantiles as the histogram pushed (seven more zeros shift ranks).
    np.testing.assert_allclose(
        from_native_buckets(_as_prometheus_json(hist), total=hist.sum).quantiles(qs), hist.quantiles(qs)
    )


def test_extrapolated_counts_are_rounded_and_never_negative() -> None:
    rows = [[0, "1", "2", "2.6"], [0, "2", "4", "-0.2"], [0, "4", "8", "0.4"]]
    hist = from_native_buckets(rows, total=5.0)
    assert hist.scale == 0 and hist.count == 3 and hist.counts.tolist() == [3]


@pytest.mark.parametrize(
    "rows",
    [
        [[0, "0.1", "0.25", "3"], [0, "0.25", "1", "4"]],  # custom buckets (NHCB): no one schema
        [[0, "1", "1.5", "3"]],  # a ratio no exponential schema has
        [[0, "one", "2", "3"]],
        [[0, "1", "2"]],
    ],
)
def test_buckets_of_no_exponential_schema_are_refused(rows) -> None:
    with pytest.raises(StatsError):
        from_native_buckets(rows, total=1.0)


def test_shard_hash_is_prometheus_hashmod() -> None:
    # hashmod: md5 of the source label values joined by ';', last 8 bytes big-endian.
    key = SeriesKey("checkout", "query", "beta")
    digest = hashlib.md5(b"checkout;query;beta").digest()
    assert series_hash(key) == int.from_bytes(digest[8:], "big")


def test_shards_partition_the_series_evenly() -> None:
    keys = [SeriesKey(f"svc{i % 7}", f"a{i}", "c") for i in range(3000)]
    for n in (2, 3):
        owners = Counter()
        for key in keys:
            (owner,) = [i for i in range(n) if Shard(i, n).owns(key)]
            owners[owner] += 1
        assert min(owners.values()) > len(keys) / n * 0.9, owners


@pytest.mark.parametrize("spec", ["2/2", "1", "a/b", "-1/2", "1/0"])
def test_bad_shard_specs_are_a_config_error(spec: str) -> None:
    with pytest.raises(ConfigError, match="agent_shard"):
        Shard.parse(spec)
    assert Shard.parse("") == Shard(0, 1) and Shard.parse(" 1 / 3 ") == Shard(1, 3)


def test_many_series_at_once_as_one_by_one_and_a_bad_one_keeps_the_others() -> None:
    rng = np.random.default_rng(7)
    hists = [
        LatencyHistogram.from_samples(rng.lognormal(np.log(m), 0.5, 2_000), scale=s)
        for m, s in ((0.002, 6), (0.05, 3), (0.3, 8), (0.01, 0))
    ]
    series = [_as_prometheus_json(h, zero=i) for i, h in enumerate(hists)]
    series.insert(2, [[0, "1", "1.5", "3"]])  # no exponential schema
    series.insert(4, [])  # no observation in the window
    totals = [h.sum for h in hists]
    totals[2:2], totals[4:4] = [1.0], [0.0]
    out = from_native_many(series, totals)
    assert isinstance(out[2], StatsError) and out[4].count == 0
    for got, rows, total in zip(
        out[:2] + out[3:4] + out[5:],
        series[:2] + series[3:4] + series[5:],
        totals[:2] + totals[3:4] + totals[5:],
        strict=True,
    ):
        alone = from_native_buckets(rows, total=total)
        assert (got.scale, got.offset, got.zero_count, got.count, got.sum) == (
            alone.scale,
            alone.offset,
            alone.zero_count,
            alone.count,
            alone.sum,
        )
        assert (got.counts == alone.counts).all()
    for got, hist, zero in zip(out[:2] + out[3:4] + out[5:], hists, range(4), strict=True):
        counts, offset = hist._trimmed()
        assert got.scale == hist.scale and got.offset == offset and (got.counts == counts).all()
        assert got.count == hist.count + zero
    # A row of the wrong shape in one series: only that one is refused.
    broken = from_native_many([series[0], [[0, "1", "2"]]], totals[:2])
    assert not isinstance(broken[0], StatsError) and isinstance(broken[1], StatsError)
