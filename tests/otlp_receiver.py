"""OTLP receivers on loopback for tests: what an exporter really sent, decoded.

Two transports, one collection API: ``GrpcReceiver`` (the generated TraceService /
MetricsService servicers) and ``HttpReceiver`` (POST /v1/traces, /v1/metrics with
``application/x-protobuf`` bodies, gzip aware). Requests are decoded with the official
``opentelemetry-proto`` classes and kept under a lock; ``spans()``, ``metric_names()`` and
``histogram_points(name)`` flatten them for assertions. ``stop()`` / ``start()`` take the
receiver down and bring it back on the same port, to play a collector that goes away.
"""

from __future__ import annotations

import gzip
import threading
import time
import zlib
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Status

from tests.servers import LOOPBACK, free_port

TraceRequest = trace_service_pb2.ExportTraceServiceRequest
MetricsRequest = metrics_service_pb2.ExportMetricsServiceRequest


def decode_value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [decode_value(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return decode_attributes(value.kvlist_value.values)
    return getattr(value, kind)


def decode_attributes(attributes: Any) -> dict[str, Any]:
    return {kv.key: decode_value(kv.value) for kv in attributes if isinstance(kv, KeyValue)}


@dataclass
class ReceivedEvent:
    name: str
    attributes: dict[str, Any]


@dataclass
class ReceivedSpan:
    name: str
    attributes: dict[str, Any]
    status_code: str  # "UNSET" | "OK" | "ERROR", as opentelemetry.trace.StatusCode names them
    status_message: str
    events: list[ReceivedEvent]
    resource: dict[str, Any]
    scope: str
    trace_id: str
    span_id: str
    parent_span_id: str
    duration_s: float


@dataclass
class HistogramPoint:
    """One data point of an explicit-bucket or exponential histogram."""

    attributes: dict[str, Any]
    count: int
    sum: float
    time_unix_nano: int
    start_time_unix_nano: int
    unit: str
    temporality: int  # AggregationTemporality enum value: 1 delta, 2 cumulative
    exponential: bool
    explicit_bounds: list[float] = field(default_factory=list)
    bucket_counts: list[int] = field(default_factory=list)
    scale: int | None = None
    zero_count: int = 0
    positive_offset: int = 0
    positive_counts: list[int] = field(default_factory=list)


class _Collector:
    """The decoded requests, shared by a transport's handler threads and the test."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._traces: list[TraceRequest] = []
        self._metrics: list[MetricsRequest] = []

    def _add_traces(self, request: TraceRequest) -> None:
        with self._lock:
            self._traces.append(request)

    def _add_metrics(self, request: MetricsRequest) -> None:
        with self._lock:
            self._metrics.append(request)

    def trace_requests(self) -> list[TraceRequest]:
        with self._lock:
            return list(self._traces)

    def metrics_requests(self) -> list[MetricsRequest]:
        with self._lock:
            return list(self._metrics)

    def clear(self) -> None:
        with self._lock:
            self._traces.clear()
            self._metrics.clear()

    def spans(self) -> list[ReceivedSpan]:
        out = []
        for request in self.trace_requests():
            for resource_spans in request.resource_spans:
                resource = decode_attributes(resource_spans.resource.attributes)
                for scope_spans in resource_spans.scope_spans:
                    for span in scope_spans.spans:
                        out.append(ReceivedSpan(
                            name=span.name,
                            attributes=decode_attributes(span.attributes),
                            status_code=Status.StatusCode.Name(span.status.code).removeprefix("STATUS_CODE_"),
                            status_message=span.status.message,
                            events=[ReceivedEvent(e.name, decode_attributes(e.attributes))
                                    for e in span.events],
                            resource=resource,
                            scope=scope_spans.scope.name,
                            trace_id=span.trace_id.hex(),
                            span_id=span.span_id.hex(),
                            parent_span_id=span.parent_span_id.hex(),
                            duration_s=(span.end_time_unix_nano - span.start_time_unix_nano) / 1e9,
                        ))
        return out

    def _metrics_named(self, name: str | None = None) -> list[tuple[dict[str, Any], Any]]:
        found = []
        for request in self.metrics_requests():
            for resource_metrics in request.resource_metrics:
                resource = decode_attributes(resource_metrics.resource.attributes)
                for scope_metrics in resource_metrics.scope_metrics:
                    for metric in scope_metrics.metrics:
                        if name is None or metric.name == name:
                            found.append((resource, metric))
        return found

    def metric_names(self) -> set[str]:
        return {metric.name for _, metric in self._metrics_named()}

    def histogram_points(self, name: str) -> list[HistogramPoint]:
        """Every data point received for histogram ``name``, in arrival order."""
        points = []
        for _, metric in self._metrics_named(name):
            kind = metric.WhichOneof("data")
            if kind == "histogram":
                for p in metric.histogram.data_points:
                    points.append(HistogramPoint(
                        attributes=decode_attributes(p.attributes), count=p.count, sum=p.sum,
                        time_unix_nano=p.time_unix_nano, start_time_unix_nano=p.start_time_unix_nano,
                        unit=metric.unit, temporality=metric.histogram.aggregation_temporality,
                        exponential=False, explicit_bounds=list(p.explicit_bounds),
                        bucket_counts=list(p.bucket_counts)))
            elif kind == "exponential_histogram":
                for p in metric.exponential_histogram.data_points:
                    points.append(HistogramPoint(
                        attributes=decode_attributes(p.attributes), count=p.count, sum=p.sum,
                        time_unix_nano=p.time_unix_nano, start_time_unix_nano=p.start_time_unix_nano,
                        unit=metric.unit, temporality=metric.exponential_histogram.aggregation_temporality,
                        exponential=True, scale=p.scale, zero_count=p.zero_count,
                        positive_offset=p.positive.offset, positive_counts=list(p.positive.bucket_counts)))
            else:
                raise AssertionError(f"metric {name!r} is a {kind}, not a histogram")
        return points

    def wait_for(self, condition: Callable[[], bool], timeout_s: float = 10.0, what: str = "") -> None:
        """Poll ``condition()`` until true; fail with ``what`` and what did arrive."""
        deadline = time.monotonic() + timeout_s
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"receiver: {what or 'condition'} not met after {timeout_s:.0f} s; got "
                    f"{len(self.trace_requests())} trace and {len(self.metrics_requests())} metrics "
                    f"requests, span names {sorted({s.name for s in self.spans()})}, "
                    f"metric names {sorted(self.metric_names())}")
            time.sleep(0.05)


class _Receiver(_Collector):
    protocol = ""

    def __init__(self, port: int | None = None) -> None:
        super().__init__()
        self.port = port or free_port()

    @property
    def endpoint(self) -> str:
        """The base URL to give an exporter (OTEL_EXPORTER_OTLP_ENDPOINT style)."""
        return f"http://{LOOPBACK}:{self.port}"

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> _Receiver:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


class GrpcReceiver(_Receiver):
    """OTLP/gRPC on 127.0.0.1: TraceService and MetricsService ``Export``."""

    protocol = "grpc"

    def __init__(self, port: int | None = None) -> None:
        super().__init__(port)
        self._server: grpc.Server | None = None

    def start(self) -> None:
        if self._server is not None:
            return
        collector = self

        class Traces(trace_service_pb2_grpc.TraceServiceServicer):
            def Export(self, request, context):
                collector._add_traces(request)
                return trace_service_pb2.ExportTraceServiceResponse()

        class Metrics(metrics_service_pb2_grpc.MetricsServiceServicer):
            def Export(self, request, context):
                collector._add_metrics(request)
                return metrics_service_pb2.ExportMetricsServiceResponse()

        # so_reuseport off: binding a port someone else holds must fail, not share it.
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4), options=[("grpc.so_reuseport", 0)])
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Traces(), server)
        metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(Metrics(), server)
        if server.add_insecure_port(f"{LOOPBACK}:{self.port}") != self.port:
            raise RuntimeError(f"gRPC receiver could not bind {LOOPBACK}:{self.port}")
        server.start()
        self._server = server

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop(grace=None).wait(5)
            self._server = None


class _OtlpHttpHandler(BaseHTTPRequestHandler):
    server: _OtlpHttpServer

    def do_POST(self) -> None:
        routes = {
            "/v1/traces": (TraceRequest, self.server.collector._add_traces,
                           trace_service_pb2.ExportTraceServiceResponse),
            "/v1/metrics": (MetricsRequest, self.server.collector._add_metrics,
                            metrics_service_pb2.ExportMetricsServiceResponse),
        }
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.path not in routes:
            return self._reply(404, b"unknown path")
        if self.headers.get("Content-Type", "").split(";")[0].strip() != "application/x-protobuf":
            return self._reply(415, b"expected application/x-protobuf")
        encoding = self.headers.get("Content-Encoding", "").strip().lower()
        try:
            if encoding == "gzip":
                body = gzip.decompress(body)
            elif encoding == "deflate":
                body = zlib.decompress(body)
            request_type, add, response_type = routes[self.path]
            add(request_type.FromString(body))
        except Exception as exc:  # a malformed body is the exporter's bug: say so with a 400
            return self._reply(400, f"cannot decode: {exc}".encode())
        self._reply(200, response_type().SerializeToString(), "application/x-protobuf")

    def _reply(self, status: int, body: bytes, content_type: str = "text/plain") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # quiet: tests read the collector
        pass


class _OtlpHttpServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True  # restart on the same port while old sockets sit in TIME_WAIT

    def __init__(self, address: tuple[str, int], collector: _Collector) -> None:
        self.collector = collector
        super().__init__(address, _OtlpHttpHandler)


class HttpReceiver(_Receiver):
    """OTLP/HTTP protobuf on 127.0.0.1: POST /v1/traces and /v1/metrics."""

    protocol = "http/protobuf"

    def __init__(self, port: int | None = None) -> None:
        super().__init__(port)
        self._server: _OtlpHttpServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def traces_url(self) -> str:
        return f"{self.endpoint}/v1/traces"

    @property
    def metrics_url(self) -> str:
        return f"{self.endpoint}/v1/metrics"

    def start(self) -> None:
        if self._server is not None:
            return
        self._server = _OtlpHttpServer((LOOPBACK, self.port), self)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"otlp-http-{self.port}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            assert self._thread is not None
            self._thread.join(5)
            self._server = self._thread = None


def make_receiver(protocol: str, port: int | None = None) -> GrpcReceiver | HttpReceiver:
    """A receiver for an ``otlp_protocol`` setting value: ``grpc`` or ``http/protobuf``."""
    if protocol == "grpc":
        return GrpcReceiver(port)
    if protocol == "http/protobuf":
        return HttpReceiver(port)
    raise ValueError(f"unknown OTLP protocol {protocol!r}")
