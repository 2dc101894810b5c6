"""The service's Prometheus ``/metrics`` endpoint.

The latency histograms are written straight from the recorders: per series, the ``le``
buckets come from one vectorized re-bucketing (``LeLayout``) and the lines from label
prefixes formatted once per series, so a scrape costs about half of what
``prometheus_client`` spends on the same series x buckets (``benchmarks/cardinality.py``).
Everything else the service's meters record (the in-flight gauge, ``target_info``, its own
instruments) still goes through the SDK's ``PrometheusMetricReader``.

One collection at a time: a scrape that arrives while another is being collected waits for
that one and gets the same body, so overlapping scrapes (a slow Prometheus, several of
them, a curl loop) cost one collection, not one each. Text format 0.0.4 or OpenMetrics by
``Accept``; gzip by ``Accept-Encoding`` (level 1: a tenth of the time of level 9 for 80 %
of its savings on this text). In OpenMetrics, each ``le`` bucket line carries its series'
newest exemplar in that bucket (``# {trace_id="...",span_id="..."} value timestamp``), which a
Prometheus with ``--enable-feature=exemplar-storage`` keeps; the 0.0.4 text format has no
exemplars.

The server binds ``prometheus_host`` (127.0.0.1 by default). In a forked child (gunicorn
``--preload``, multiprocessing) the parent's socket is closed and the child serves its own
series on a new ephemeral port, logged and in ``Telemetry.prometheus_url``.
"""

from __future__ import annotations

import itertools
import logging
import threading
import zlib
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from prometheus_client.exposition import choose_encoder, gzip_accepted
from prometheus_client.registry import CollectorRegistry
from prometheus_client.utils import floatToGoString

from nethical_otel._version import __version__
from nethical_otel.names import DURATION_METRIC, SCOPE, SPAN_ID_LABEL, TRACE_ID_LABEL
from nethical_otel.telemetry.bridge import DURATION_DESCRIPTION, LeLayout
from nethical_otel.telemetry.recorder import RecorderRegistry, SeriesRecorder

_log = logging.getLogger(__name__)

_SCOPE_LABELS = f'otel_scope_name="{SCOPE}",otel_scope_version="{__version__}"'


def _label_name(key: str) -> str:
    return "".join(c if c.isascii() and (c.isalnum() or c == "_") else "_" for c in key)


def _label_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def labels_of(attributes: dict[str, str]) -> str:
    """Prometheus labels of a series, sorted, our scope's labels included."""
    pairs = sorted((_label_name(k), _label_value(v)) for k, v in attributes.items())
    return ",".join([*(f'{k}="{v}"' for k, v in pairs), _SCOPE_LABELS])


class HistogramText:
    """The ``DURATION_METRIC`` family (``nethical_action_duration_seconds``) of one registry, as text."""

    def __init__(self, registry: RecorderRegistry, layout: LeLayout) -> None:
        self.registry = registry
        self.layout = layout
        self._le = [f'{floatToGoString(b)}"}} ' for b in layout.bounds] + ['+Inf"} ']
        self._labels: dict[int, tuple[SeriesRecorder, str]] = {}  # id(recorder) -> labels
        self._failed = False

    def _labels_for(self, recorder: SeriesRecorder) -> str:
        found = self._labels.get(id(recorder))
        if found is None or found[0] is not recorder:
            found = self._labels[id(recorder)] = (recorder, labels_of(recorder.attributes))
        return found[1]

    def render(self, openmetrics: bool) -> Iterator[bytes]:
        """The family in UTF-8 chunks, one per series (so a big scrape is never one big copy)."""
        head = f"# HELP {DURATION_METRIC} {DURATION_DESCRIPTION}\n# TYPE {DURATION_METRIC} histogram\n"
        yield (head + f"# UNIT {DURATION_METRIC} seconds\n" if openmetrics else head).encode()
        for recorder in self.registry.recorders():
            try:
                chunk = self._series_text(recorder, openmetrics)
            except Exception:  # one bad series must not cost the scrape the others
                if not self._failed:
                    self._failed = True
                    _log.exception("nethical-otel: a series was left out of /metrics (logged once)")
                continue
            if chunk:
                yield chunk

    def _series_text(self, recorder: SeriesRecorder, openmetrics: bool = False) -> bytes:
        hist = recorder.snapshot()
        if not hist.count:
            return b""
        labels = self._labels_for(recorder)
        family = DURATION_METRIC
        bucket = f'{family}_bucket{{{labels},le="'
        counts = self.layout.cumulative(hist)
        lines = [f"{bucket}{b}{c}\n" for b, c in zip(self._le, counts, strict=True)]
        if openmetrics and recorder.exemplars:
            for slot, (value, context, at_ns) in list(recorder.exemplars.items()):
                if 0 <= slot < len(lines) and counts[slot]:  # an exemplar is of a counted call
                    lines[slot] = (
                        f"{lines[slot][:-1]} # {{{TRACE_ID_LABEL}=\"{context.trace_id:032x}\","
                        f"{SPAN_ID_LABEL}=\"{context.span_id:016x}\"}} {value!r} {at_ns / 1e9:.3f}\n"
                    )
        lines.append(f"{family}_count{{{labels}}} {hist.count}\n{family}_sum{{{labels}}} {hist.sum!r}\n")
        return "".join(lines).encode()


class _Flight:
    __slots__ = ("body", "done", "error")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.body: bytes | None = None
        self.error: BaseException | None = None


class SharedCollection:
    """Runs ``produce(key)`` one at a time; callers arriving meanwhile share the running result."""

    def __init__(self, produce: Callable[[tuple], bytes]) -> None:
        self._produce = produce
        self._lock = threading.Lock()
        self._collecting = threading.Lock()
        self._flights: dict[tuple, _Flight] = {}

    def get(self, key: tuple) -> bytes:
        with self._lock:
            flight = self._flights.get(key)
            leader = flight is None
            if leader:
                flight = self._flights[key] = _Flight()
        if leader:
            try:
                with self._collecting:
                    flight.body = self._produce(key)
            except BaseException as exc:
                flight.error = exc
            finally:
                with self._lock:
                    del self._flights[key]
                flight.done.set()
        else:
            flight.done.wait()
        if flight.error is not None:
            raise flight.error
        return flight.body

    def reset_after_fork(self) -> None:
        self._lock = threading.Lock()
        self._collecting = threading.Lock()
        self._flights = {}


class MetricsEndpoint:
    """``/metrics`` for the SDK's registry plus our histograms, on a background HTTP server."""

    def __init__(
        self, sdk_registry: CollectorRegistry, histograms: HistogramText, host: str, port: int
    ) -> None:
        self.sdk_registry = sdk_registry
        self.histograms = histograms
        self.host = host
        self._shared = SharedCollection(self._collect)
        self._server = self._serve(port)

    @property
    def url(self) -> str:
        shown = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{shown}:{self._server.server_port}/metrics"

    def body(self, accept: str, accept_encoding: str) -> tuple[bytes, str, bool]:
        """(body, content type, gzipped?) for a request with these headers."""
        encoder, content_type = choose_encoder(accept)
        gzipped = gzip_accepted(accept_encoding)
        openmetrics = content_type.startswith("application/openmetrics-text")
        return self._shared.get((content_type, openmetrics, gzipped, encoder)), content_type, gzipped

    def _collect(self, key: tuple) -> bytes:
        _content_type, openmetrics, gzipped, encoder = key
        sdk = encoder(self.sdk_registry)
        chunks = itertools.chain(
            [sdk.removesuffix(b"# EOF\n") if openmetrics else sdk],
            self.histograms.render(openmetrics),
            [b"# EOF\n"] if openmetrics else [],
        )
        if not gzipped:
            return b"".join(chunks)
        # Compressed as it is written: the uncompressed body never exists whole.
        compressor = zlib.compressobj(1, zlib.DEFLATED, 16 + zlib.MAX_WBITS)  # gzip framing
        out = [compressor.compress(chunk) for chunk in chunks]
        out.append(compressor.flush())
        return b"".join(out)

    def _serve(self, port: int) -> ThreadingHTTPServer:
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            timeout = 30  # a stuck client must not hold its thread forever

            def do_GET(self) -> None:
                if urlsplit(self.path).path not in ("/metrics", "/"):
                    self.send_error(404)
                    return
                try:
                    body, content_type, gzipped = endpoint.body(
                        self.headers.get("Accept", ""), self.headers.get("Accept-Encoding", "")
                    )
                except Exception:
                    _log.exception("nethical-otel: collecting /metrics failed")
                    self.send_error(500)
                    return
                self.send_response(200)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                if gzipped:
                    self.send_header("Content-Encoding", "gzip")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                return None  # the service's stderr is not ours

        class Server(ThreadingHTTPServer):
            daemon_threads = True

        server = Server((self.host, port), Handler)
        threading.Thread(target=server.serve_forever, name="nethical-metrics-http", daemon=True).start()
        return server

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def restart_after_fork(self) -> None:
        """In a forked child: drop the parent's socket (no thread serves it here), serve anew."""
        self._server.socket.close()
        self._shared.reset_after_fork()
        if hasattr(self.sdk_registry, "_lock"):  # held if the parent forked mid-scrape
            self.sdk_registry._lock = threading.Lock()
        self._server = self._serve(0)
