"""Push latency histograms straight to Prometheus 3's OTLP receiver, as the Collector would.

Tests and ``benchmarks/agent_step.py`` use it to put exactly known histograms into a real
Prometheus: each series is one OTLP exponential-histogram data point (cumulative, our
``LatencyHistogram`` buckets at its own scale) under the names the service records
(``nethical.action.duration``, attributes ``nethical.action`` / ``nethical.cohort`` /
``error.type``, resource ``service.name``). Prometheus stores each as a native histogram.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import httpx
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.metrics.v1 import metrics_pb2
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

from nethical_otel import names
from nethical_otel.detect.baseline import SeriesKey
from nethical_otel.stats import LatencyHistogram


@dataclass(frozen=True)
class Point:
    key: SeriesKey
    histogram: LatencyHistogram  # cumulative since ``start``
    error_type: str = ""


def _attributes(values: Mapping[str, str]) -> list[KeyValue]:
    return [KeyValue(key=k, value=AnyValue(string_value=v)) for k, v in values.items() if v]


def request(points: Iterable[Point], at: float, start: float) -> ExportMetricsServiceRequest:
    """One export request holding ``points`` (grouped by service) stamped ``at`` (epoch s)."""
    by_service: dict[str, list[Point]] = {}
    for point in points:
        by_service.setdefault(point.key.service, []).append(point)
    body = ExportMetricsServiceRequest()
    for service, group in by_service.items():
        resource_metrics = body.resource_metrics.add()
        resource_metrics.resource.CopyFrom(Resource(attributes=_attributes({"service.name": service})))
        scope = resource_metrics.scope_metrics.add()
        scope.scope.name = names.SCOPE
        metric = scope.metrics.add()
        metric.name, metric.unit = names.DURATION, "s"
        metric.exponential_histogram.aggregation_temporality = metrics_pb2.AGGREGATION_TEMPORALITY_CUMULATIVE
        for point in group:
            hist = point.histogram
            scale, offset, counts = hist.to_otel_exponential()
            data = metric.exponential_histogram.data_points.add()
            data.attributes.extend(
                _attributes(
                    {
                        names.ACTION: point.key.action,
                        names.COHORT: point.key.cohort,
                        names.ERROR_TYPE: point.error_type,
                    }
                )
            )
            data.start_time_unix_nano = int(start * 1e9)
            data.time_unix_nano = int(at * 1e9)
            data.count, data.sum, data.zero_count = hist.count, hist.sum, hist.zero_count
            data.scale = scale
            data.positive.offset = offset
            data.positive.bucket_counts.extend(int(c) for c in counts)
    return body


def push(prometheus_url: str, points: Iterable[Point], at: float | None = None, start: float = 0.0) -> None:
    """POST ``points`` to ``prometheus_url``'s OTLP receiver; raises on a refusal."""
    at = time.time() if at is None else at
    body = request(points, at, start or at - 3600)
    response = httpx.post(
        f"{prometheus_url}/api/v1/otlp/v1/metrics",
        content=body.SerializeToString(),
        headers={"Content-Type": "application/x-protobuf"},
        timeout=60,
    )
    response.raise_for_status()
