"""Fleet quantiles from Prometheus, native (Prometheus 3) against classic (Prometheus 2.x).

The same 50,000 known latencies (lognormal, seeded) are recorded by a real service pipeline
(`nethical_otel.setup`, the instrumentation's own series recorder) and exported over OTLP to
the real Collector:

1. native: `collector/config.yaml` (otlp_http) -> Prometheus 3's OTLP receiver, the service on
   `base2_exponential_bucket_histogram`: `histogram_quantile(0.95, sum(increase(...)))` is
   within 1 % of the exact p95 (numpy on the same values), the transport loses no call, and an
   instant query of `sum by (...) (increase(nethical_action_duration_seconds[1m]))` answers a
   native histogram (`histogram` with exponential buckets), one series per label set.
2. classic: `collector/config-classic.yaml` (prometheus exporter :8889) scraped by Prometheus
   2.42, the service on its default explicit buckets: the quantile is within the width of the
   `le` bucket holding the exact value (2 ** (1/4): 19 % wide, +-9 % around its middle).

Both print their figures; when both run, the classic test prints the two side by side.

Method: one value is recorded and exported first, and Prometheus holds it before the 50,000
follow. `increase` over a window that starts at that first sample is then exactly the 50,000
(Prometheus extrapolates the whole histogram by one factor, which leaves its quantiles alone).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pytest

from nethical_otel.telemetry.bridge import explicit_bounds
from tests.servers import (
    COLLECTOR_CONFIG,
    COLLECTOR_CONFIG_CLASSIC,
    query,
    start_collector,
    start_prometheus,
    start_prometheus_with,
    wait_for_query,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

N = 50_000
CHUNKS = 10  # exported one after another: the histogram grows over several samples
ACTION, COHORT = "query", "control"
METRIC = "nethical_action_duration_seconds"
WINDOW = "10m"  # longer than the test: every sample of the run is in it
CLASSIC_BUCKET_RATIO = 2 ** (1 / 4)  # the service's default `le` layout, 4 bounds per doubling

FIGURES: dict[str, dict[str, float]] = {}


def _latencies() -> np.ndarray:
    """Lognormal around 12 ms, a tail to ~150 ms: a service's latency, in seconds."""
    return np.random.default_rng(20261202).lognormal(mean=math.log(0.012), sigma=0.6, size=N)


@dataclass
class Run:
    exact_p95: float
    prometheus_p95: float
    instant: list[dict]  # the `sum by (...) (increase(...[1m]))` answer (native run)

    @property
    def error(self) -> float:
        return self.prometheus_p95 / self.exact_p95 - 1


def _selector(service: str) -> str:
    return f'{{job="{service}", nethical_action="{ACTION}", nethical_cohort="{COHORT}"}}'


def _record(make_telemetry, collector, service: str, native: bool, count_query: str, prometheus_url: str):
    """The service records one value, Prometheus stores it, then the N values follow."""
    tel = make_telemetry(
        service_name=service, otlp_endpoint=collector.otlp_grpc_endpoint, otlp_protocol="grpc",
        metric_export_interval_ms=500, traces_enabled=False,
        histogram_aggregation="base2_exponential_bucket_histogram" if native else "explicit_bucket_histogram")
    values = _latencies()
    series = tel.registry.series(ACTION, COHORT)
    series.observe(float(np.median(values)))
    assert tel.force_flush() is True
    wait_for_query(prometheus_url, f"{count_query} == 1", timeout_s=40)
    for chunk in np.array_split(values, CHUNKS):
        for value in chunk.tolist():
            series.observe(value)
        assert tel.force_flush() is True
    wait_for_query(prometheus_url, f"{count_query} == {N + 1}", timeout_s=40)
    return values


def test_native_histogram_p95_is_exact_on_prometheus3(tmp_path, make_telemetry) -> None:
    service = "native-histograms"
    with start_prometheus(tmp_path, [], version=3) as prometheus, \
            start_collector(tmp_path, COLLECTOR_CONFIG, prometheus_url=prometheus.url) as collector:
        selector = _selector(service)
        values = _record(make_telemetry, collector, service, True,
                         f"histogram_count(sum({METRIC}{selector}))", prometheus.url)
        [sample] = query(prometheus.url,
                         f"histogram_quantile(0.95, sum(increase({METRIC}{selector}[{WINDOW}])))")
        instant = query(prometheus.url, f"sum by (job, nethical_action, nethical_cohort) "
                                        f"(increase({METRIC}{selector}[1m]))")
        # No classic series beside the native one: one series per histogram.
        classic = query(prometheus.url,
                        f'count({{__name__=~"{METRIC}_(bucket|count|sum)", job="{service}"}})')
        labels = query(prometheus.url, f"{METRIC}{selector}")
    run = Run(float(np.quantile(values, 0.95)), float(sample["value"][1]), instant)

    assert classic == [], f"classic series next to the native histogram: {classic}"
    [stored] = labels
    assert set(stored["metric"]) == {"__name__", "job", "instance", "nethical_action", "nethical_cohort"}
    assert "histogram" in stored and "value" not in stored

    [answer] = run.instant
    assert "histogram" in answer and "value" not in answer, answer
    histogram = answer["histogram"][1]
    buckets = histogram["buckets"]  # [boundary_rule, lower, upper, count]
    assert len(buckets) > 20
    ratios = {round(float(upper) / float(lower), 9) for _, lower, upper, _ in buckets if float(lower) > 0}
    [ratio] = ratios  # one schema: every bucket the same relative width
    schema = -math.log2(math.log2(ratio))
    assert schema == pytest.approx(round(schema), abs=1e-6) and 0 <= round(schema) <= 8, ratio
    assert sum(float(b[3]) for b in buckets) == pytest.approx(float(histogram["count"]), rel=1e-9)

    FIGURES["native"] = {"exact": run.exact_p95, "prometheus": run.prometheus_p95, "error": run.error,
                         "bucket_ratio": ratio, "schema": round(schema)}
    print(f"\nnative (Prometheus 3, schema {round(schema)}, buckets {100 * (ratio - 1):.2f} % wide, "
          f"{len(buckets)} in 1 series): p95 {run.prometheus_p95 * 1e3:.4f} ms, exact "
          f"{run.exact_p95 * 1e3:.4f} ms, error {100 * run.error:+.3f} %")
    assert abs(run.error) <= 0.01, f"native p95 {run.prometheus_p95} vs exact {run.exact_p95}"


def test_classic_buckets_p95_is_within_its_bucket_on_prometheus2(tmp_path, make_telemetry) -> None:
    service = "classic-histograms"
    with start_collector(tmp_path, COLLECTOR_CONFIG_CLASSIC) as collector:
        # As deploy/prometheus/prometheus-classic.yml: honor_labels keeps the service's job.
        config = {"global": {"scrape_interval": "1s", "scrape_timeout": "1s"},
                  "scrape_configs": [{"job_name": "otel-collector", "honor_labels": True,
                                      "static_configs": [{"targets": [collector.metrics_target]}]}]}
        with start_prometheus_with(tmp_path, config) as prometheus:
            selector = _selector(service)
            values = _record(make_telemetry, collector, service, False,
                             f"sum({METRIC}_count{selector})", prometheus.url)
            [sample] = query(prometheus.url, f"histogram_quantile(0.95, sum by (le) "
                                             f"(increase({METRIC}_bucket{selector}[{WINDOW}])))")
            series = query(prometheus.url, f"count({METRIC}_bucket{selector})")
    run = Run(float(np.quantile(values, 0.95)), float(sample["value"][1]), [])
    bounds = explicit_bounds(0.0005, 60.0, 4)
    upper = next(b for b in bounds if b >= run.exact_p95)
    lower = upper / CLASSIC_BUCKET_RATIO
    le_series = int(series[0]["value"][1])

    FIGURES["classic"] = {"exact": run.exact_p95, "prometheus": run.prometheus_p95, "error": run.error,
                          "bucket_ratio": CLASSIC_BUCKET_RATIO, "series": le_series}
    print(f"\nclassic (Prometheus 2.42, `le` buckets {100 * (CLASSIC_BUCKET_RATIO - 1):.1f} % wide, "
          f"{le_series} series): p95 {run.prometheus_p95 * 1e3:.4f} ms, exact {run.exact_p95 * 1e3:.4f} ms "
          f"(bucket {lower * 1e3:.3f} .. {upper * 1e3:.3f} ms), error {100 * run.error:+.3f} %")
    native = FIGURES.get("native")
    if native:
        print(f"{'':10}{'exact p95':>14}{'Prometheus p95':>16}{'error':>10}{'bucket width':>14}")
        for name, f in (("native", native), ("classic", FIGURES["classic"])):
            print(f"{name:10}{f['exact'] * 1e3:>11.4f} ms{f['prometheus'] * 1e3:>13.4f} ms"
                  f"{100 * f['error']:>+9.3f}%{100 * (f['bucket_ratio'] - 1):>13.2f}%")
    assert lower < run.exact_p95 <= upper
    assert abs(run.prometheus_p95 - run.exact_p95) <= upper - lower, (
        f"classic p95 {run.prometheus_p95} further than a bucket ({lower}..{upper}) from {run.exact_p95}")
