"""A small web service instrumented with nethical-otel (standard library + nethical-otel only).

    python examples/web/app.py --port 8080
    curl -s -X POST http://127.0.0.1:8080/v1/actions -H 'content-type: application/json' \
        -d '{"agent_id": "agent-1", "action": "summarise the report", "action_type": "query"}'
    curl -s http://127.0.0.1:9464/metrics | grep nethical_action_duration_seconds_count

``POST /v1/actions`` takes ``{agent_id, action, cohort?, action_type?}`` (what
``nethical-otel load --url`` sends) and calls the example governance engine's
``process_action``, which carries ``@nethical_otel.instrument``. The handler adds what an
HTTP instrumentation would: a SERVER span that continues the caller's trace (W3C
``traceparent``) and the ``http.server.request.duration`` histogram. So every request gives

    span "POST /v1/actions" (SERVER)  ->  child span "process_action"
    http.server.request.duration{http.route, http.response.status_code}
    nethical.action.duration{nethical.action = action_type, nethical.cohort}

``GET /healthz`` answers 200. Settings come from the environment as for any service
(``OTEL_EXPORTER_OTLP_ENDPOINT``, ``NETHICAL_OTEL_DETECTOR_ENABLED``, ...; see
docs/configuration.md). Ctrl-C or SIGTERM stops it and flushes the telemetry.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import signal
import socketserver
import sys
import threading
import time
from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from opentelemetry import metrics, propagate, trace
from opentelemetry.propagators.textmap import Getter
from opentelemetry.trace import SpanKind, Status, StatusCode

import nethical_otel
from nethical_otel.example import PROFILES, GovernanceError, IntegratedGovernance

ROUTE = "/v1/actions"
SCOPE = "examples.web"
# The semantic conventions' advisory buckets for http.server.request.duration, seconds.
HTTP_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10]


class BadRequest(ValueError):
    """The request body is not what POST /v1/actions takes (answered with 400)."""


class _EnvironGetter(Getter[dict]):
    """Reads W3C trace-context headers (``traceparent``) out of a WSGI environ."""

    def get(self, carrier: dict, key: str) -> list[str] | None:
        value = carrier.get("HTTP_" + key.upper().replace("-", "_"))
        return None if value is None else [value]

    def keys(self, carrier: dict) -> list[str]:
        return [k[5:].lower().replace("_", "-") for k in carrier if k.startswith("HTTP_")]


def _action_request(body: bytes) -> dict[str, Any]:
    """The keyword arguments for process_action, checked: labels stay a bounded set."""
    try:
        data = json.loads(body or b"null")
    except ValueError:
        raise BadRequest("body is not JSON") from None
    if not isinstance(data, dict):
        raise BadRequest("body must be a JSON object")
    for name in ("agent_id", "action"):
        if not isinstance(data.get(name), str) or not data[name]:
            raise BadRequest(f"{name!r} must be a non-empty string")
    action_type = data.get("action_type", "query")
    # action_type becomes the nethical.action metric label: accept known values only.
    if action_type not in PROFILES:
        raise BadRequest(f"'action_type' must be one of {', '.join(PROFILES)}")
    cohort = data.get("cohort")
    if cohort is not None and not isinstance(cohort, str):
        raise BadRequest("'cohort' must be a string")
    return {
        "agent_id": data["agent_id"],
        "action": data["action"],
        "cohort": cohort,
        "action_type": action_type,
        "shadow": bool(data.get("shadow", False)),
        "ml_blend": bool(data.get("ml_blend", False)),
    }


Reply = tuple[int, bytes, str | None]  # HTTP status, JSON body, error.type of a failed request


def _reply(status: int, payload: dict[str, Any], error_type: str | None = None) -> Reply:
    return status, json.dumps(payload).encode(), error_type


def make_app(
    governance: IntegratedGovernance,
    tracer_provider: trace.TracerProvider | None = None,
    meter_provider: metrics.MeterProvider | None = None,
) -> Callable:
    """The WSGI application. Providers default to the global ones (what ``setup()`` installs)."""
    tracer = (tracer_provider or trace.get_tracer_provider()).get_tracer(SCOPE)
    meter = (meter_provider or metrics.get_meter_provider()).get_meter(SCOPE)
    duration = meter.create_histogram(
        "http.server.request.duration",
        unit="s",
        description="Duration of HTTP server requests.",
        explicit_bucket_boundaries_advisory=HTTP_BUCKETS,
    )
    getter = _EnvironGetter()

    def process(method: str, path: str, body: bytes) -> Reply:
        if path == "/healthz":
            return _reply(200, {"status": "ok"})
        if path != ROUTE:
            return _reply(404, {"error": f"no route {path}"})
        if method != "POST":
            return _reply(405, {"error": f"{ROUTE} takes POST"})
        try:
            decision = governance.process_action(**_action_request(body))
        except BadRequest as exc:
            return _reply(400, {"error": str(exc)})
        except GovernanceError as exc:  # the engine failed: the caller may retry
            return _reply(503, {"error": str(exc)}, type(exc).__qualname__)
        return _reply(200, dataclasses.asdict(decision))

    def app(environ: dict, start_response: Callable) -> Iterable[bytes]:
        start = time.perf_counter()
        method, path = environ["REQUEST_METHOD"], environ.get("PATH_INFO") or "/"
        route = path if path in (ROUTE, "/healthz") else None  # never an unbounded path as a label
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        attributes: dict[str, Any] = {"http.request.method": method, "url.path": path, "url.scheme": "http"}
        if route:
            attributes["http.route"] = route
        with tracer.start_as_current_span(
            f"{method} {route}" if route else method,
            context=propagate.extract(environ, getter=getter),
            kind=SpanKind.SERVER,
            attributes=attributes,
        ) as span:
            status, payload, error_type = process(method, path, body)
            span.set_attribute("http.response.status_code", status)
            if status >= 500:
                span.set_attribute("error.type", error_type or str(status))
                span.set_status(Status(StatusCode.ERROR, error_type))
        labels: dict[str, Any] = {"http.request.method": method, "http.response.status_code": status}
        if route:
            labels["http.route"] = route
        if status >= 500:
            labels["error.type"] = error_type or str(status)
        duration.record(time.perf_counter() - start, labels)
        start_response(
            f"{status} {HTTPStatus(status).phrase}",
            [("Content-Type", "application/json"), ("Content-Length", str(len(payload)))],
        )
        return [payload]

    return app


class ThreadingWSGIServer(socketserver.ThreadingMixIn, WSGIServer):
    """One thread per request: a slow process_action does not hold up the others."""

    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # one line per request is noise
        return None


def serve(app: Callable, host: str, port: int) -> ThreadingWSGIServer:
    """A server for ``app`` bound to host:port (0 picks a free port); call ``serve_forever()``."""
    return make_server(host, port, app, server_class=ThreadingWSGIServer, handler_class=_QuietHandler)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on [127.0.0.1]")
    parser.add_argument("--port", type=int, default=8080, help="HTTP port, 0 for any free one [8080]")
    parser.add_argument(
        "--metrics-port", type=int, help="port of /metrics [the setting: NETHICAL_OTEL_PROMETHEUS_PORT, 9464]"
    )
    parser.add_argument("--error-rate", type=float, default=0.002, help="simulated failure rate [0.002]")
    parser.add_argument("--seed", type=int, help="seed the simulated latencies")
    args = parser.parse_args(argv)

    os.environ.setdefault("OTEL_SERVICE_NAME", "governance-web")  # a default the environment can change
    overrides = {} if args.metrics_port is None else {"prometheus_port": args.metrics_port}
    try:
        telemetry = nethical_otel.setup(**overrides)
    except nethical_otel.NethicalOtelError as exc:
        print(f"app.py: error: {exc}", file=sys.stderr)
        return 2
    try:
        governance = IntegratedGovernance(seed=args.seed, error_rate=args.error_rate)
        try:
            server = serve(make_app(governance), args.host, args.port)
        except OSError as exc:
            where = f"{args.host}:{args.port}"
            print(f"app.py: error: cannot listen on {where} ({exc.strerror})", file=sys.stderr)
            return 2
        signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
        print(
            f"listening on http://{args.host}:{server.server_port} (POST {ROUTE}, GET /healthz); "
            f"metrics on {telemetry.prometheus_url or 'none (/metrics disabled)'}",
            flush=True,
        )
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            server.server_close()
    finally:
        telemetry.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
