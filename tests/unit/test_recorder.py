"""The recorder's bounds: attribute values made safe, the series limit, exact `le` re-bucketing."""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest

from nethical_otel.names import ACTION, COHORT, ERROR_TYPE, ERROR_TYPE_OTHER, OVERFLOW
from nethical_otel.stats import LatencyHistogram
from nethical_otel.telemetry.bridge import LeLayout
from nethical_otel.telemetry.recorder import RecorderRegistry
from nethical_otel.text import MAX_VALUE_LENGTH, clean


class _BadStr:
    def __str__(self) -> str:
        raise RuntimeError("no")


class _StrSubclass(str):
    def __str__(self) -> str:
        raise RuntimeError("no")


@pytest.mark.parametrize(
    "value, expected",
    [
        ("plain", "plain"),
        ("bad\udcff", "bad\ufffd"),  # os.fsdecode(b"bad\xff")
        (b"by\xfftes", "by\ufffdtes"),
        (float("nan"), "nan"),
        (12, "12"),
        ([1, 2], "[1, 2]"),
        (_BadStr(), "<unprintable _BadStr>"),
        (_StrSubclass("sub"), "sub"),
        ("é" * 300, "é" * MAX_VALUE_LENGTH),
        ("x" * 1000, "x" * MAX_VALUE_LENGTH),
    ],
)
def test_clean_makes_any_value_an_exportable_string(value: object, expected: str) -> None:
    out = clean(value)
    assert out == expected and type(out) is str
    out.encode("utf-8")  # never raises


def test_series_limit_sends_the_rest_to_two_overflow_series(caplog: pytest.LogCaptureFixture) -> None:
    registry = RecorderRegistry(scale=6, max_attribute_values=100, max_series=10)
    with caplog.at_level(logging.WARNING):
        for a in range(20):
            for c in range(20):
                registry.series(f"a{a}", f"c{c}").observe(0.01)
        registry.series("a0", "c0", "ValueError").observe(0.02)  # a new series, refused too
        registry.series("a0", "c0").observe(0.03)  # an existing one keeps recording
    histograms = {tuple(sorted(attrs.items())): h for attrs, h in registry.histograms()}
    regular = [k for k in histograms if (OVERFLOW, "true") not in k]
    assert len(regular) == 10
    overflow = histograms[((OVERFLOW, "true"),)]
    failed_overflow = histograms[((ERROR_TYPE, ERROR_TYPE_OTHER), (OVERFLOW, "true"))]
    assert overflow.count == 400 - 10 and overflow.errors == 0
    assert failed_overflow.count == 1 and failed_overflow.errors == 1
    assert histograms[((ACTION, "a0"), (COHORT, "c0"))].count == 2
    assert sum(h.count for h in histograms.values()) == 402  # nothing lost
    assert sum(f"{OVERFLOW}=true" in r.getMessage() for r in caplog.records) == 1


def test_error_types_are_capped_like_other_attributes() -> None:
    registry = RecorderRegistry(scale=6, max_attribute_values=3, max_series=100)
    for i in range(10):
        registry.series("a", None, f"Error{i}").observe(0.01)
    types = sorted(attrs[ERROR_TYPE] for attrs, _ in registry.histograms())
    assert types == ["Error0", "Error1", "Error2", ERROR_TYPE_OTHER]


@pytest.mark.parametrize("scale", [2, 3, 6, 9])
@pytest.mark.parametrize("per_octave", [1, 4, 8])
def test_le_layout_equals_the_general_rebucketing(scale: int, per_octave: int) -> None:
    rng = np.random.default_rng(scale * 10 + per_octave)
    values = np.concatenate([rng.lognormal(math.log(0.02), 2.0, 20_000), [0.0, 1e-12, 500.0, 2.0**-3]])
    hist = LatencyHistogram.from_samples(values, scale=scale)
    layout = LeLayout(0.0005, 60.0, per_octave)
    counts = layout.counts(hist)
    assert counts.tolist() == hist.bucket_counts_for(layout.bounds).tolist()
    assert layout.cumulative(hist)[-1] == hist.count
    if 2**scale < per_octave:
        return  # bounds finer than the histogram's buckets: approximate, as documented
    # And against the raw values, exactly: a value goes to the first bound >= it.
    exact = np.bincount(np.searchsorted(layout.bounds, values, side="left"), minlength=len(layout.bounds) + 1)
    assert np.abs(counts - exact).sum() <= 2  # values within 1e-6 of a boundary (histogram.py)
