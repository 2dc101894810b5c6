"""Fleet mode on a real Prometheus 3: native histograms read exactly, in one query, and sharded agents.

Histograms of known content are pushed to Prometheus 3's OTLP receiver (as the Collector does;
``tests/otlp_push.py``), stored as native histograms, and read back by ``PrometheusSource``:

- the buckets come back exactly (schema = our scale, bucket for bucket), errors from the
  ``error_type`` series, in a single query per step;
- ``auto`` settles on native there (and on classic on 2.42, which the end-to-end tests run);
- two sharded detectors (``0/2``, ``1/2``) over one Prometheus evaluate every series exactly
  once between them and raise the same alerts as one unsharded detector.
"""

from __future__ import annotations

import time

import httpx
import numpy as np
import pytest

from nethical_otel.detect.alerts import State, Timing
from nethical_otel.detect.baseline import Baseline, BaselineSet, SeriesKey
from nethical_otel.detect.detector import Detector
from nethical_otel.detect.shard import Shard
from nethical_otel.detect.sources import PrometheusSource
from nethical_otel.stats import LatencyHistogram
from nethical_otel.stats.policy import PolicyBook
from nethical_otel.stats.wire import from_native_buckets
from tests.otlp_push import Point, push
from tests.servers import query, start_prometheus, wait_until

pytestmark = pytest.mark.integration

WINDOW_S = 60.0


def _lognormal(rng: np.random.Generator, n: int, median_s: float, sigma: float = 0.4) -> np.ndarray:
    return rng.lognormal(np.log(median_s), sigma, n)


@pytest.fixture
def prometheus3(tmp_path):
    with start_prometheus(tmp_path, [], version=3) as server:
        yield server


def _two_pushes(url: str, series: dict[tuple[SeriesKey, str], tuple[LatencyHistogram, LatencyHistogram]]):
    """Push each series' first histogram 40 s ago and first + second 5 s ago (cumulative):
    ``increase(...[60s])`` is then the second, scaled by Prometheus' extrapolation."""
    now = time.time()
    start = now - 3600
    push(url, [Point(k, first, e) for (k, e), (first, _) in series.items()], at=now - 40, start=start)
    push(
        url,
        [Point(k, first.copy().merge(second), e) for (k, e), (first, second) in series.items()],
        at=now - 5,
        start=start,
    )
    return now


def test_native_buckets_come_back_exactly_in_one_query(prometheus3) -> None:
    rng = np.random.default_rng(12)
    key = SeriesKey("checkout", "query", "beta")
    ok1, ok2 = (LatencyHistogram.from_samples(_lognormal(rng, 20_000, 0.02)) for _ in range(2))
    failed1, failed2 = (LatencyHistogram.from_samples(_lognormal(rng, 400, 0.05)) for _ in range(2))
    now = _two_pushes(prometheus3.url, {(key, ""): (ok1, ok2), (key, "TimeoutError"): (failed1, failed2)})

    # What Prometheus holds is what was pushed, bucket for bucket (no interpolation).
    stored = wait_until(
        lambda: query(prometheus3.url, 'nethical_action_duration_seconds{error_type=""}'),
        20,
        "the native histogram in Prometheus",
    )
    (row,) = stored
    assert {"job": "checkout", "nethical_action": "query", "nethical_cohort": "beta"}.items() <= row[
        "metric"
    ].items()
    point = row["histogram"][1]
    back = from_native_buckets(point["buckets"], total=float(point["sum"]))
    pushed = ok1.copy().merge(ok2)
    scale, _, _ = pushed.to_otel_exponential()  # the scale the push used (the SDK's 160 buckets)
    pushed = pushed.downscaled(scale)
    assert back.scale == pushed.scale
    assert (back._trimmed()[0] == pushed._trimmed()[0]).all() and back.offset == pushed._trimmed()[1]
    assert back.count == pushed.count == int(float(point["count"]))

    # The source: one query per step, the exact buckets of the window (up to extrapolation,
    # which scales every bucket alike and so leaves the quantiles where they are), errors
    # from the error_type series.
    requests: list[str] = []
    client = httpx.Client(timeout=10, event_hooks={"request": [lambda r: requests.append(str(r.url))]})
    source = PrometheusSource(prometheus3.url, WINDOW_S, client=client)
    windows = source.read(now)
    assert len(requests) == 1, requests
    assert source._kinds[0] == "native"
    window = windows[key].histogram
    expected = ok2.copy().merge(failed2)
    got, want = window.quantiles([0.5, 0.95, 0.99]), expected.quantiles([0.5, 0.95, 0.99])
    print(f"\nnative window p50/p95/p99 {got * 1e3} ms vs pushed {want * 1e3} ms; calls {window.count}")
    np.testing.assert_allclose(got, want, rtol=0.01)
    assert window.errors / window.count == pytest.approx(failed2.count / expected.count, rel=0.02)
    source.read(now)
    assert len(requests) == 2  # and again one on the next step


def test_two_sharded_detectors_split_the_series_and_raise_one_detectors_alerts(prometheus3) -> None:
    rng = np.random.default_rng(7)
    keys = [SeriesKey(f"svc{i % 4}", f"action{i}", "prod") for i in range(24)]
    slowed = set(keys[::5])
    series = {}
    baselines = []
    for key in keys:
        median = 0.005 + 0.001 * keys.index(key)
        baselines.append(
            Baseline(key, LatencyHistogram.from_samples(_lognormal(rng, 6_000, median)), 300.0, source="test")
        )
        factor = 1.5 if key in slowed else 1.0
        first, second = (
            LatencyHistogram.from_samples(_lognormal(rng, 1_500, median * factor)) for _ in range(2)
        )
        series[(key, "")] = (first, second)
    now = _two_pushes(prometheus3.url, series)
    wait_until(lambda: len(query(prometheus3.url, "nethical_action_duration_seconds")) == len(keys), 20,
               "every series in Prometheus")

    def detector(shard: Shard) -> Detector:
        source = PrometheusSource(prometheus3.url, WINDOW_S, histograms="native", shard=shard)
        return Detector(
            source, BaselineSet(baselines), PolicyBook.from_mapping({}), [], timing=Timing(for_s=0.0),
            learn=False, clock=lambda: now,
        )

    def outcome(d: Detector) -> tuple[set[SeriesKey], set[tuple]]:
        reports = d.step()
        alerts = {tuple(sorted(a.labels.items())) for a in d.book.alerts(State.FIRING)}
        return {r.key for r in reports}, alerts

    whole_keys, whole_alerts = outcome(detector(Shard()))
    (keys0, alerts0), (keys1, alerts1) = outcome(detector(Shard(0, 2))), outcome(detector(Shard(1, 2)))
    print(f"\nshard 0/2: {len(keys0)} series, {len(alerts0)} alerts; shard 1/2: {len(keys1)} series, "
          f"{len(alerts1)} alerts; one agent: {len(whole_keys)} series, {len(whole_alerts)} alerts")
    assert whole_keys == set(keys)
    assert keys0 | keys1 == whole_keys and not keys0 & keys1  # every series by exactly one replica
    assert keys0 and keys1  # and both have work
    assert alerts0 | alerts1 == whole_alerts and not alerts0 & alerts1
    fired = {dict(labels)["action"] for labels in whole_alerts}
    assert fired == {k.action for k in slowed}  # the slowed series alert, and only they


def test_agent_replicas_from_the_command_line_split_the_series(prometheus3, tmp_path) -> None:
    """`nethical-otel agent --once --shard i/2`, as two replicas would run: each prints only
    its own series, together all of them, once."""
    import os
    import subprocess
    import sys

    rng = np.random.default_rng(3)
    keys = [SeriesKey("svc", f"action{i}", "prod") for i in range(12)]
    series = {(k, ""): tuple(LatencyHistogram.from_samples(_lognormal(rng, 300, 0.01)) for _ in range(2))
              for k in keys}
    _two_pushes(prometheus3.url, series)
    wait_until(lambda: len(query(prometheus3.url, "nethical_action_duration_seconds")) == len(keys), 20,
               "every series in Prometheus")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "NETHICAL_OTEL_"))}
    env.update(NETHICAL_OTEL_PROMETHEUS_URL=prometheus3.url, NETHICAL_OTEL_DETECTOR_WINDOW_S="60",
               NETHICAL_OTEL_AGENT_PORT="0")
    printed = []
    for index in (0, 1):
        result = subprocess.run(
            [sys.executable, "-m", "nethical_otel.cli", "agent", "--once", "--shard", f"{index}/2"],
            capture_output=True, text=True, timeout=60, env=env, cwd=tmp_path,
        )
        assert result.returncode == 0, result.stderr
        printed.append({line.split(":")[0] for line in result.stdout.splitlines() if line.startswith("svc/")})
    assert printed[0] and printed[1] and not printed[0] & printed[1]
    assert printed[0] | printed[1] == {str(k) for k in keys}
    bad = subprocess.run(
        [sys.executable, "-m", "nethical_otel.cli", "agent", "--once", "--shard", "2/2"],
        capture_output=True, text=True, timeout=60, env=env, cwd=tmp_path,
    )
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1 and "2/2" in bad.stderr
