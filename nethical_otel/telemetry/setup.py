"""``Telemetry``: OpenTelemetry for a service, built from ``Settings``.

Builds the tracer and meter providers from ``Settings`` (OTLP and Prometheus exporters,
sampler, resource), makes them the pipeline that ``@instrument`` records into, and by
default installs them as the global OpenTelemetry providers so other instrumentations in
the service share them. Exports run on background threads: a collector that is down or
slow costs the service nothing but the dropped telemetry, and the process exit at most
``SHUTDOWN_TIMEOUT_S`` (the SDK's own exit handlers are replaced by one bounded ``shutdown``).

Exporters are chosen as the SDK's auto-configuration chooses them, from ``OTEL_TRACES_EXPORTER``
and ``OTEL_METRICS_EXPORTER`` (the ``traces_exporter`` / ``metrics_exporter`` settings):
comma-separated ``otlp``, ``console``, ``none`` or any installed exporter entry point; for
metrics ``prometheus`` is our own ``/metrics`` (on or off by ``prometheus_enabled``). A name
that is not installed is a WARNING, not an error. Unset, OTLP is exported exactly when an
endpoint is configured (the SDK would default to ``otlp`` on localhost).

After ``fork()`` the child keeps recording: its series start empty, the SDK restarts its
export threads, and ``/metrics`` moves to a new port (see ``telemetry/prometheus.py``).
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Sequence

from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricExporter, MetricReader, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    ParentBased,
    Sampler,
    TraceIdRatioBased,
)

from nethical_otel._version import __version__
from nethical_otel.config import Settings
from nethical_otel.errors import ConfigError
from nethical_otel.names import SCOPE
from nethical_otel.telemetry.bridge import HistogramBridge, LeLayout
from nethical_otel.telemetry.instrument import STATE
from nethical_otel.telemetry.pipeline import HandoffIdGenerator, HeadSampler, Pipeline
from nethical_otel.telemetry.recorder import RecorderRegistry

_log = logging.getLogger(__name__)

# What shutdown(), or an exit without it, waits for exporters at most: the process is gone
# within 5 s even when the collector is down.
SHUTDOWN_TIMEOUT_S = 4.0


class _OncePerMinute(logging.Filter):
    """The SDK logs one warning per dropped span; one line a minute says the same."""

    def __init__(self) -> None:
        super().__init__()
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        key = str(record.msg)
        now = time.monotonic()
        if now - self._last.get(key, -60.0) < 60.0:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return False
        self._last[key] = now
        skipped = self._suppressed.pop(key, 0)
        if skipped:
            record.msg = f"{record.msg} ({skipped} more like this in the last minute)"
        return True


_DROP_FILTER = _OncePerMinute()
for _name in (
    "opentelemetry.sdk._shared_internal",
    "opentelemetry.exporter.otlp.proto.grpc.exporter",
    "opentelemetry.exporter.otlp.proto.http.trace_exporter",
    "opentelemetry.exporter.otlp.proto.http.metric_exporter",
):
    logging.getLogger(_name).addFilter(_DROP_FILTER)


def _sampler(settings: Settings) -> Sampler:
    fixed = {"always_on": ALWAYS_ON, "always_off": ALWAYS_OFF}
    root = fixed.get(settings.traces_sampler.removeprefix("parentbased_"))
    if root is None:
        root = TraceIdRatioBased(settings.traces_sampler_arg)
    return ParentBased(root) if settings.parent_based else root


# What OTEL_TRACES_EXPORTER / OTEL_METRICS_EXPORTER may name for OTLP, and the protocol each means
# (None: the `otlp_protocol` setting). Without an endpoint, the SDK's default one (localhost).
_OTLP = {"otlp": None, "otlp_proto_grpc": "grpc", "otlp_proto_http": "http/protobuf"}
OTLP_DEFAULT_ENDPOINTS = {"grpc": "http://localhost:4317", "http/protobuf": "http://localhost:4318"}
PROMETHEUS_EXPORTER = "prometheus"  # our /metrics endpoint, switched by `prometheus_enabled`


def _exporter_names(value: str | None) -> list[str] | None:
    """The exporters a comma-separated ``OTEL_*_EXPORTER`` value names, ``none`` dropped; None if unset.

    Unset keeps what nethical-otel did before it read these variables (OTLP exactly when an
    endpoint is configured), where the SDK's own auto-configuration would default to ``otlp``.
    """
    if value is None:
        return None
    names: list[str] = []
    for name in (part.strip() for part in value.split(",")):
        if name and name.lower() != "none" and name not in names:
            names.append(name)
    return names


def _otlp_exporter(settings: Settings, signal: str, protocol: str | None):
    """The OTLP span (``signal="traces"``) or metric exporter for the settings' endpoint."""
    protocol = protocol or settings.otlp_protocol
    endpoint = (settings.otlp_endpoint or OTLP_DEFAULT_ENDPOINTS[protocol]).rstrip("/")
    headers = dict(settings.otlp_headers) or None
    timeout = settings.otlp_timeout_s
    if protocol == "grpc":
        if signal == "traces":
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as Exporter
        else:
            from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter as Exporter
        insecure = not endpoint.startswith("https://")
        return Exporter(endpoint=endpoint, insecure=insecure, headers=headers, timeout=timeout)
    if signal == "traces":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as Exporter
    else:
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter as Exporter
    return Exporter(endpoint=f"{endpoint}/v1/{signal}", headers=headers, timeout=timeout)


def _installed_exporter(signal: str, name: str, kinds: tuple[type, ...]):
    """An instance of the exporter (or metric reader) installed as entry point ``name``, as the
    SDK's auto-configuration makes it; None, with a WARNING, when there is none or it fails."""
    from importlib.metadata import entry_points

    variable, group = f"OTEL_{signal.upper()}_EXPORTER", f"opentelemetry_{signal}_exporter"
    found = list(entry_points(group=group, name=name))
    if not found:
        known = {*_OTLP, "none", *(ep.name for ep in entry_points(group=group))}
        _log.warning(
            "nethical-otel: %s names %r, which is no installed exporter; ignored (known: %s)",
            variable,
            name,
            ", ".join(sorted(known)),
        )
        return None
    try:
        exporter = found[0].load()
        if not (isinstance(exporter, type) and issubclass(exporter, kinds)):
            raise TypeError(f"{found[0].value} is not a {signal} exporter")
        return exporter()
    except Exception as exc:  # someone else's package: it must not stop the service starting
        _log.warning(
            "nethical-otel: %s: exporter %r failed (%s: %s); ignored", variable, name, type(exc).__name__, exc
        )
        return None


def _span_exporters(settings: Settings) -> list[SpanExporter]:
    names = _exporter_names(settings.traces_exporter)
    if names is None:
        names = ["otlp"] if settings.otlp_endpoint else []
    exporters = []
    for name in names:
        if name in _OTLP:
            exporters.append(_otlp_exporter(settings, "traces", _OTLP[name]))
        elif (exporter := _installed_exporter("traces", name, (SpanExporter,))) is not None:
            exporters.append(exporter)
    return exporters


def _metric_readers(settings: Settings) -> list[MetricReader]:
    """Readers for the pushing metric exporters; ``prometheus`` is our /metrics, not one of them."""
    names = _exporter_names(settings.metrics_exporter)
    if names is None:
        names = ["otlp"] if settings.otlp_endpoint else []
    interval = settings.metric_export_interval_ms
    readers = []
    for name in names:
        if name == PROMETHEUS_EXPORTER:
            if not settings.prometheus_enabled:
                _log.warning(
                    "nethical-otel: OTEL_METRICS_EXPORTER names prometheus, but the /metrics endpoint is "
                    "switched off (prometheus_enabled=false, NETHICAL_OTEL_PROMETHEUS_ENABLED)"
                )
        elif name in _OTLP:
            readers.append(
                PeriodicExportingMetricReader(_otlp_exporter(settings, "metrics", _OTLP[name]), interval)
            )
        else:
            found = _installed_exporter("metrics", name, (MetricExporter, MetricReader))
            if isinstance(found, MetricReader):
                readers.append(found)
            elif found is not None:
                readers.append(PeriodicExportingMetricReader(found, interval))
    return readers


class Telemetry:
    """Handle on what ``setup()`` built. ``shutdown()`` flushes and stops it all."""

    def __init__(
        self,
        settings: Settings,
        *,
        span_processors: Sequence[SpanProcessor] = (),
        metric_readers: Sequence[MetricReader] = (),
        set_global: bool = True,
    ) -> None:
        self.settings = settings
        self.tracer_provider: TracerProvider | None = None
        self.meter_provider: MeterProvider | None = None
        self.registry: RecorderRegistry | None = None
        self.prometheus_url: str | None = None
        self._metrics_endpoint = None
        self._bridge: HistogramBridge | None = None
        self._pipeline: Pipeline | None = None
        self._shutdown_hooks: list[Callable[[float], None]] = []
        self.detector = None  # the embedded detector, when nethical_otel.setup() started one
        if settings.sdk_disabled:
            _log.info("nethical-otel: OTEL_SDK_DISABLED is set; instrumented calls run untouched")
            STATE.activate(_DisabledPipeline())
            return
        self._build(span_processors, metric_readers)
        if set_global:
            self._install_globally()
        STATE.activate(self._pipeline)
        atexit.register(self._shutdown_at_exit)
        _LIVE.add(self)

    def _build(
        self, span_processors: Sequence[SpanProcessor], metric_readers: Sequence[MetricReader]
    ) -> None:
        s = self.settings
        resource = Resource.create({**s.resource_attributes, "service.name": s.service_name})
        id_generator = HandoffIdGenerator()
        self.tracer_provider = TracerProvider(
            resource=resource, sampler=_sampler(s), id_generator=id_generator, shutdown_on_exit=False
        )
        for exporter in _span_exporters(s) if s.traces_enabled else ():
            self.tracer_provider.add_span_processor(BatchSpanProcessor(exporter))
        for processor in span_processors:
            self.tracer_provider.add_span_processor(processor)

        exponential = s.histogram_aggregation == "base2_exponential_bucket_histogram"
        # (reader, wants exponential histograms)
        readers = [(reader, exponential) for reader in (*_metric_readers(s), *metric_readers)]
        layout = LeLayout(s.bucket_min_s, s.bucket_max_s, s.buckets_per_octave)
        self.registry = RecorderRegistry(
            scale=s.histogram_scale,
            max_attribute_values=s.max_attribute_values,
            max_series=s.max_series,
            exemplar_slots=layout.exemplar_slots() if s.exemplar_filter != "always_off" else None,
        )
        # /metrics writes our histograms itself; its SDK reader carries only the meters' metrics.
        prometheus_reader = self._start_prometheus(layout) if s.prometheus_enabled else None
        self.meter_provider = MeterProvider(
            resource=resource,
            metric_readers=[r for r, _ in readers] + ([prometheus_reader] if prometheus_reader else []),
            shutdown_on_exit=False,
        )
        self._bridge = HistogramBridge(self.registry, resource, layout)
        for reader, wants_exponential in readers:
            self._bridge.attach(reader, exponential=wants_exponential)

        tracer = None
        head_sampler = None
        if s.traces_enabled:
            tracer = self.tracer_provider.get_tracer(SCOPE, __version__)
            head_sampler = HeadSampler(s.sampling_ratio, s.parent_based, id_generator)
        self._pipeline = Pipeline(
            registry=self.registry,
            tracer=tracer,
            head_sampler=head_sampler,
            meter=self.meter_provider.get_meter(SCOPE, __version__),
            substeps=s.substeps_enabled,
        )

    def _start_prometheus(self, layout: LeLayout) -> MetricReader:
        from opentelemetry.exporter.prometheus import PrometheusMetricReader
        from prometheus_client import CollectorRegistry

        from nethical_otel.telemetry.prometheus import HistogramText, MetricsEndpoint

        sdk_registry = CollectorRegistry(auto_describe=True)
        reader = PrometheusMetricReader(registry=sdk_registry)
        host, port = self.settings.prometheus_host, self.settings.prometheus_port
        try:
            self._metrics_endpoint = MetricsEndpoint(
                sdk_registry, HistogramText(self.registry, layout), host, port
            )
        except OSError as exc:
            raise ConfigError(
                f"cannot serve /metrics on {host}:{port} ({exc.strerror}); "
                "set NETHICAL_OTEL_PROMETHEUS_PORT to a free port, or 0 for any"
            ) from None
        self.prometheus_url = self._metrics_endpoint.url
        _log.info("nethical-otel: serving Prometheus metrics on %s", self.prometheus_url)
        return reader

    def _after_fork_in_child(self) -> None:
        if self._bridge is not None:
            self._bridge.restart_after_fork()
        if self._metrics_endpoint is not None:
            try:
                self._metrics_endpoint.restart_after_fork()
                self.prometheus_url = self._metrics_endpoint.url
                _log.info(
                    "nethical-otel: forked child %d serves /metrics on %s", os.getpid(), self.prometheus_url
                )
            except OSError as exc:
                _log.warning("nethical-otel: forked process %d cannot serve /metrics (%s)", os.getpid(), exc)
                self._metrics_endpoint = None
                self.prometheus_url = None

    def _install_globally(self) -> None:
        if isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
            trace.set_tracer_provider(self.tracer_provider)
        else:
            _log.warning("nethical-otel: a global TracerProvider is already set; leaving it in place")
        if isinstance(metrics.get_meter_provider(), metrics._internal._ProxyMeterProvider):
            metrics.set_meter_provider(self.meter_provider)
        else:
            _log.warning("nethical-otel: a global MeterProvider is already set; leaving it in place")

    def add_shutdown_hook(self, hook: Callable[[float], None]) -> None:
        """Run ``hook(seconds)`` first thing in ``shutdown()`` (last added, first run); it gets
        at most half of the time left."""
        self._shutdown_hooks.append(hook)

    def force_flush(self, timeout_s: float = 10.0) -> bool:
        """Hand buffered spans and metrics to the exporters now; False on a timeout.

        True does not mean the collector accepted them: the SDK does not report export
        results through force_flush (failures are logged instead).
        """
        if self.tracer_provider is None or self.meter_provider is None:
            return True
        if self.registry is not None:
            for recorder in self.registry.recorders():
                recorder.drain()
        millis = int(timeout_s * 1000)
        spans_ok = self.tracer_provider.force_flush(millis)
        metrics_ok = self.meter_provider.force_flush(millis)
        return bool(spans_ok and metrics_ok)

    def shutdown(self, timeout_s: float = SHUTDOWN_TIMEOUT_S) -> None:
        """Flush, stop the exporters and the /metrics server, and stop recording into them.

        Waits at most ``timeout_s`` in all: with the collector unreachable the exporters would
        otherwise retry for their whole timeout each, holding up the service's exit.
        """
        deadline = time.monotonic() + timeout_s
        atexit.unregister(self._shutdown_at_exit)
        _LIVE.discard(self)
        while self._shutdown_hooks:
            hook = self._shutdown_hooks.pop()
            try:  # half of what is left at most: the exporters' flush gets its share too
                hook(max(0.0, deadline - time.monotonic()) / 2)
            except Exception:
                _log.exception("nethical-otel: a shutdown step failed; shutting down the rest")
        STATE.deactivate(self._pipeline)
        if self._metrics_endpoint is not None:
            self._metrics_endpoint.close()
            self._metrics_endpoint = None
        providers = [p for p in (self.tracer_provider, self.meter_provider) if p is not None]
        threads = [
            threading.Thread(target=p.shutdown, name="nethical-otel-shutdown", daemon=True) for p in providers
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        if any(thread.is_alive() for thread in threads):
            _log.warning(
                "nethical-otel: exporters did not finish within %.0f s; unsent telemetry dropped", timeout_s
            )
        self.tracer_provider = self.meter_provider = None

    def _shutdown_at_exit(self) -> None:
        self.shutdown()

    def __enter__(self) -> Telemetry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()


_LIVE: weakref.WeakSet[Telemetry] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for telemetry in list(_LIVE):
        telemetry._after_fork_in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


class _DisabledPipeline:
    """OTEL_SDK_DISABLED: instrumentation binds to nothing and calls run untouched."""

    registry = None
    tracer = None
