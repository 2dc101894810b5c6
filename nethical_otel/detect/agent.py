"""``nethical-otel agent``: the detector as its own process (fleet mode).

Reads fleet-wide histograms from Prometheus, compares them with baselines, sends alerts,
and serves its own ``/metrics`` (current and baseline values per series and quantile,
their ratio, the smallest change each comparison could detect, alerts by state, evaluation
time) and ``/healthz`` (200 while evaluations succeed on schedule, 503 otherwise).
SIGTERM or SIGINT stops it cleanly: the current step finishes and pending alert deliveries
get a few seconds to go out.
"""

from __future__ import annotations

import gc
import logging
import math
import signal
import threading
import time
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, make_wsgi_app

from nethical_otel.config import Settings
from nethical_otel.detect.alerts import State
from nethical_otel.detect.build import build_detector
from nethical_otel.detect.detector import Detector, SeriesReport
from nethical_otel.detect.shard import Shard
from nethical_otel.detect.sources import PrometheusSource
from nethical_otel.errors import ConfigError, FailureLog, quiet_http_logging, redact_text
from nethical_otel.names import (
    DETECTOR_ALERTS,
    DETECTOR_BASELINE,
    DETECTOR_BASELINE_ERRORS,
    DETECTOR_BASELINE_RPS,
    DETECTOR_CURRENT,
    DETECTOR_CURRENT_ERRORS,
    DETECTOR_CURRENT_RPS,
    DETECTOR_EVALUATION_DURATION,
    DETECTOR_EVALUATIONS,
    DETECTOR_MDE,
    DETECTOR_RATIO,
)
from nethical_otel.stats import Comparison

_log = logging.getLogger(__name__)
SERIES = ("service", "action", "cohort")


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # scrapes are not news
        return None


class _ThreadingServer(WSGIServer):
    daemon_threads = True

    def process_request(self, request, client_address):  # one thread per request
        threading.Thread(target=self._handle, args=(request, client_address), daemon=True).start()

    def _handle(self, request, client_address):
        try:
            self.finish_request(request, client_address)
        finally:
            self.shutdown_request(request)


def _mde_ratio(c: Comparison) -> float:
    """``c.mde`` for the gauge: +inf when it cannot be bounded, and also when the comparison was
    inconclusive without computing one (too few calls: nothing could be proven); NaN (left
    out) when the statistics did not compute one for a decided comparison."""
    if math.isnan(c.mde) and c.verdict == "inconclusive":
        return math.inf
    return c.mde


class AgentMetrics:
    """The agent's own Prometheus metrics, refreshed after every step."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        q = (*SERIES, "quantile")
        self.baseline_seconds = Gauge(DETECTOR_BASELINE, "Baseline quantile.", q, registry=r)
        self.current_seconds = Gauge(DETECTOR_CURRENT, "Live window quantile.", q, registry=r)
        self.ratio = Gauge(DETECTOR_RATIO, "Live / baseline quantile.", q, registry=r)
        self.min_detectable_effect = Gauge(
            DETECTOR_MDE,
            "Smallest relative rise of the quantile the last comparison would have detected "
            "(80 % power at the policy's confidence; 0.07 = 7 %). +Inf: too few calls to prove any.",
            q,
            registry=r,
        )
        self.baseline_errors = Gauge(DETECTOR_BASELINE_ERRORS, "Baseline error ratio.", SERIES, registry=r)
        self.current_errors = Gauge(DETECTOR_CURRENT_ERRORS, "Live window error ratio.", SERIES, registry=r)
        self.baseline_rps = Gauge(DETECTOR_BASELINE_RPS, "Baseline throughput.", SERIES, registry=r)
        self.current_rps = Gauge(DETECTOR_CURRENT_RPS, "Live window throughput.", SERIES, registry=r)
        self.alerts = Gauge(
            DETECTOR_ALERTS,
            "1 per pending or firing alert.",
            ("alertname", "severity", "state", *SERIES, "quantile"),
            registry=r,
        )
        self.duration = Histogram(
            DETECTOR_EVALUATION_DURATION,
            "Time one evaluation step takes.",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=r,
        )
        self.evaluations = Counter(DETECTOR_EVALUATIONS, "Evaluation steps run.", registry=r)
        self._gauges = (
            self.baseline_seconds,
            self.current_seconds,
            self.ratio,
            self.min_detectable_effect,
            self.baseline_errors,
            self.current_errors,
            self.baseline_rps,
            self.current_rps,
            self.alerts,
        )

    def update(self, detector: Detector, reports: list[SeriesReport]) -> None:
        for gauge in self._gauges:
            gauge.clear()  # series that went away must not linger at their last value
        for report in reports:
            labels = report.key.labels()
            if report.baseline is not None:
                self.baseline_errors.labels(**labels).set(report.baseline.error_rate)
                self.baseline_rps.labels(**labels).set(report.baseline.throughput_rps)
            if report.window.histogram.count:
                self.current_errors.labels(**labels).set(report.window.histogram.error_rate)
            self.current_rps.labels(**labels).set(report.window.throughput_rps)
            for finding in report.findings:
                c = finding.comparison
                if c.quantile is None:
                    continue
                q = f"{c.quantile:g}"
                self.baseline_seconds.labels(**labels, quantile=q).set(c.baseline_value)
                self.current_seconds.labels(**labels, quantile=q).set(c.current_value)
                self.ratio.labels(**labels, quantile=q).set(c.ratio)
                mde = _mde_ratio(c)
                if not math.isnan(mde):
                    self.min_detectable_effect.labels(**labels, quantile=q).set(mde)
        for alert in detector.book.alerts(State.PENDING, State.FIRING):
            labels = {name: alert.labels.get(name, "") for name in ("severity", *SERIES, "quantile")}
            self.alerts.labels(alertname=alert.name, state=alert.state.value, **labels).set(1)
        self.duration.observe(detector.last_duration_s)
        self.evaluations.inc()


# Allocations between two young-generation collections in the agent's process (Python: 700).
AGENT_GC_THRESHOLD = 50_000


def tune_gc_for_the_agent() -> None:
    """The agent's own process only (``nethical-otel agent``), never a service's: a step
    allocates some hundred short-lived objects per series (findings, comparisons, labels), so
    at the default threshold the collector runs every few series and scans what survived;
    every 50,000 allocations instead, a 10,000-series step is 15-25 % shorter
    (``benchmarks/agent_step.py``, which does the same). Cycles are still collected, a
    little later."""
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(AGENT_GC_THRESHOLD, older, oldest)


class Agent:
    def __init__(self, settings: Settings) -> None:
        if not settings.prometheus_url:
            raise ConfigError("the agent reads fleet-wide histograms from Prometheus: set prometheus_url")
        quiet_http_logging()  # their INFO lines carry full URLs, secrets included
        self.settings = settings
        self._errors = FailureLog(_log, "the agent's evaluation")
        self.shard = Shard.parse(settings.agent_shard)
        source = PrometheusSource(
            settings.prometheus_url,
            settings.detector_window_s,
            service_label=settings.prometheus_service_label,
            histograms=settings.prometheus_histograms,
            shard=self.shard,
        )
        self.detector = build_detector(settings, source)
        self.metrics = AgentMetrics()
        self.stop_event = threading.Event()
        self.last_ok: float | None = None
        self.url: str | None = None
        self._server: WSGIServer | None = None

    def _app(self, environ, start_response):
        if environ.get("PATH_INFO") == "/healthz":
            step = self.settings.detector_step_s
            healthy = self.last_ok is not None and time.monotonic() - self.last_ok < 3 * step + 5
            status = "200 OK" if healthy else "503 Service Unavailable"
            start_response(status, [("Content-Type", "text/plain; charset=utf-8")])
            return [b"ok\n" if healthy else b"no successful evaluation recently\n"]
        return self._metrics_app(environ, start_response)

    def serve(self) -> str:
        """Start /metrics and /healthz; returns the base URL."""
        self._metrics_app = make_wsgi_app(self.metrics.registry)
        host, port = self.settings.agent_host, self.settings.agent_port
        try:
            self._server = make_server(
                host, port, self._app, server_class=_ThreadingServer, handler_class=_Quiet
            )
        except OSError as exc:
            raise ConfigError(
                f"cannot serve the agent on {host}:{port} ({exc.strerror}); set agent_port"
            ) from None
        threading.Thread(target=self._server.serve_forever, name="nethical-agent-http", daemon=True).start()
        self.url = f"http://{host}:{self._server.server_port}"
        return self.url

    def run(self, *, max_steps: int | None = None) -> None:
        """Evaluate every step until stopped (SIGTERM/SIGINT, ``stop_event`` or ``max_steps``)."""
        step_s = self.settings.detector_step_s
        next_at = time.monotonic()
        steps = 0
        while not self.stop_event.is_set() and (max_steps is None or steps < max_steps):
            try:
                reports = self.detector.step()
                self.metrics.update(self.detector, reports)
                if self.detector.last_error is None:  # Prometheus answered
                    self.last_ok = time.monotonic()
                    self._errors.ok()
            except Exception as exc:
                # Logged once per kind; --once reports it through last_error.
                self.detector.last_error = f"evaluation failed: {type(exc).__name__}: {redact_text(exc)}"
                self._errors.failed(
                    (type(exc).__name__, str(exc)[:200]),
                    "nethical-otel agent: evaluation failed (%s: %s); trying again next step",
                    type(exc).__name__,
                    redact_text(exc),
                    level=logging.ERROR,
                    exc_info=exc,
                )
            steps += 1
            if max_steps is not None and steps >= max_steps:
                break
            now = time.monotonic()
            next_at = max(next_at + step_s, now)  # after a stall: no burst of catch-up steps
            self.stop_event.wait(min(next_at - now, 3600.0))

    def close(self, timeout_s: float = 5.0) -> None:
        self.detector.close(timeout_s)
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def install_signal_handlers(self) -> None:
        def stop(signum, frame):
            _log.info("nethical-otel agent: %s received, stopping", signal.Signals(signum).name)
            self.stop_event.set()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
