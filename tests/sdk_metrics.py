"""What the OpenTelemetry SDK recorded, read back from its ``InMemoryMetricReader``."""

from __future__ import annotations

from opentelemetry.sdk.metrics.export import InMemoryMetricReader


def data_points(reader: InMemoryMetricReader, name: str, scope: str | None = None) -> list:
    """The data points of every metric named ``name`` the reader collects now (a collection
    per call), in every scope or only in instrumentation scope ``scope``; [] before any."""
    data = reader.get_metrics_data()
    return [
        point
        for rm in (data.resource_metrics if data else [])
        for sm in rm.scope_metrics
        if scope is None or sm.scope.name == scope
        for metric in sm.metrics
        if metric.name == name
        for point in metric.data.data_points
    ]
