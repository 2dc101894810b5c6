"""The test receivers on their own: the plain OTel SDK exporters talk to them over both transports.

If these fail, the OTLP export tests of nethical-otel prove nothing; if they pass, what a
receiver reports is what an exporter sent.
"""

from __future__ import annotations

import time

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.trace import Status, StatusCode

from tests.otlp_receiver import GrpcReceiver, HttpReceiver

pytestmark = pytest.mark.integration


def _exporters(receiver: GrpcReceiver | HttpReceiver, gzip: bool = False):
    if isinstance(receiver, GrpcReceiver):
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
            Compression as GrpcCompression,
        )
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        options = {"insecure": True, "timeout": 1, "compression": GrpcCompression.Gzip if gzip else None}
        return (OTLPSpanExporter(endpoint=receiver.endpoint, **options),
                OTLPMetricExporter(endpoint=receiver.endpoint, **options))
    from opentelemetry.exporter.otlp.proto.http import Compression
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    compression = Compression.Gzip if gzip else Compression.NoCompression
    return (OTLPSpanExporter(endpoint=receiver.traces_url, timeout=1, compression=compression),
            OTLPMetricExporter(endpoint=receiver.metrics_url, timeout=1, compression=compression))


@pytest.mark.parametrize("gzip", [False, True], ids=["plain", "gzip"])
def test_sdk_spans_and_histogram_arrive_decoded(otlp_receiver, gzip: bool) -> None:
    span_exporter, metric_exporter = _exporters(otlp_receiver, gzip)
    resource = Resource.create({"service.name": "receiver-selftest"})
    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(SimpleSpanProcessor(span_exporter))
    reader = PeriodicExportingMetricReader(metric_exporter, export_interval_millis=60_000)
    meter_provider = MeterProvider(resource=resource, metric_readers=[reader])
    try:
        tracer = tracer_provider.get_tracer("selftest")
        with tracer.start_as_current_span("parent"), tracer.start_as_current_span(
                "child", attributes={"nethical.action": "summarize", "n": 3, "ok": True, "ratio": 0.5,
                                     "tags": ["a", "b"]}) as span:
            span.add_event("retry", {"attempt": 2})
            span.set_status(Status(StatusCode.ERROR, "boom"))
        meter = meter_provider.get_meter("selftest")
        histogram = meter.create_histogram("nethical.action.duration", unit="s")
        for value in (0.001, 0.002, 0.004):
            histogram.record(value, {"nethical.action": "summarize"})
        assert meter_provider.force_flush(5_000)

        otlp_receiver.wait_for(lambda: len(otlp_receiver.spans()) == 2, what="two spans")
        spans = {s.name: s for s in otlp_receiver.spans()}
        child, parent = spans["child"], spans["parent"]
        assert child.attributes == {"nethical.action": "summarize", "n": 3, "ok": True, "ratio": 0.5,
                                    "tags": ["a", "b"]}
        assert (child.status_code, child.status_message) == ("ERROR", "boom")
        assert [(e.name, e.attributes) for e in child.events] == [("retry", {"attempt": 2})]
        assert child.parent_span_id == parent.span_id and child.trace_id == parent.trace_id
        assert child.resource["service.name"] == "receiver-selftest"
        assert child.scope == "selftest"

        otlp_receiver.wait_for(lambda: otlp_receiver.histogram_points("nethical.action.duration"),
                               what="histogram point")
        assert "nethical.action.duration" in otlp_receiver.metric_names()
        [point] = otlp_receiver.histogram_points("nethical.action.duration")
        assert point.attributes == {"nethical.action": "summarize"}
        assert point.count == 3 and point.sum == pytest.approx(0.007)
        assert point.unit == "s" and not point.exponential
        assert sum(point.bucket_counts) == 3 and len(point.bucket_counts) == len(point.explicit_bounds) + 1
    finally:
        tracer_provider.shutdown()
        meter_provider.shutdown()


def test_receiver_stops_and_restarts_on_the_same_port(otlp_receiver) -> None:
    span_exporter, _ = _exporters(otlp_receiver)
    tracer_provider = TracerProvider()
    tracer = tracer_provider.get_tracer("selftest")
    port = otlp_receiver.port
    try:
        def export_one(name: str) -> SpanExportResult:
            with tracer.start_as_current_span(name) as span:
                pass
            return span_exporter.export([span])

        assert export_one("before") is SpanExportResult.SUCCESS
        otlp_receiver.stop()
        started = time.monotonic()
        assert export_one("while-down") is SpanExportResult.FAILURE
        assert time.monotonic() - started < 3.0, "export to a stopped receiver must give up at its timeout"
        otlp_receiver.start()
        assert otlp_receiver.port == port
        deadline = time.monotonic() + 10
        while export_one("after") is not SpanExportResult.SUCCESS:  # gRPC may sit in reconnect backoff
            assert time.monotonic() < deadline, "exporter never reached the restarted receiver"
        names = [s.name for s in otlp_receiver.spans()]
        assert names[0] == "before" and "after" in names and "while-down" not in names
    finally:
        span_exporter.shutdown()
        tracer_provider.shutdown()
