"""A small web service instrumented with nethical-otel and OpenTelemetry's WSGI instrumentation.

    pip install opentelemetry-instrumentation-wsgi   # the one package besides nethical-otel
    python examples/web/app.py --port 8080
    curl -s -X POST http://127.0.0.1:8080/v1/actions -H 'content-type: application/json' \
        -d '{"agent_id": "agent-1", "action": "summarise the report", "action_type": "query"}'
    curl -s http://127.0.0.1:9464/metrics | grep nethical_action_duration_seconds_count

``POST /v1/actions`` takes ``{agent_id, action, cohort?, action_type?}`` (what
``nethical-otel load --url`` sends) and calls the example governance engine's
``process_action``, which carries ``@nethical_otel.instrument``. The HTTP layer is contrib's
``OpenTelemetryMiddleware``: it continues the caller's trace (W3C ``traceparent``), makes the
SERVER span and records ``http.server.request.duration``. The engine's span nests inside it,
with no glue code, because the SERVER span is current while the handler runs:

    span "POST /v1/actions" (SERVER, the WSGI middleware)  ->  child span "process_action"
    http.server.request.duration{http.request.method, http.response.status_code, ...}
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
from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from opentelemetry import metrics, trace
from opentelemetry.instrumentation.wsgi import OpenTelemetryMiddleware
from opentelemetry.semconv.attributes.http_attributes import HTTP_ROUTE

import nethical_otel
from nethical_otel.example import PROFILES, GovernanceError, IntegratedGovernance

ROUTE = "/v1/actions"
ROUTES = (ROUTE, "/healthz")
# The stable HTTP semantic conventions: with it the middleware records http.server.request.duration
# in seconds; without it, the old http.server.duration in milliseconds.
SEMCONV_OPT_IN = ("OTEL_SEMCONV_STABILITY_OPT_IN", "http")


class BadRequest(ValueError):
    """The request body is not what POST /v1/actions takes (answered with 400)."""


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


Reply = tuple[int, bytes]  # HTTP status, JSON body


def _reply(status: int, payload: dict[str, Any]) -> Reply:
    return status, json.dumps(payload).encode()


def make_app(
    governance: IntegratedGovernance,
    tracer_provider: trace.TracerProvider | None = None,
    meter_provider: metrics.MeterProvider | None = None,
) -> Callable:
    """The WSGI application, inside contrib's ``OpenTelemetryMiddleware``.

    Providers default to the global ones (what ``setup()`` installs). The middleware reads
    ``OTEL_SEMCONV_STABILITY_OPT_IN`` once per process, when the first one is made: ``main()``
    sets it to ``http`` unless the environment says otherwise.
    """

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
            return _reply(503, {"error": str(exc)})
        return _reply(200, dataclasses.asdict(decision))

    def app(environ: dict, start_response: Callable) -> Iterable[bytes]:
        method, path = environ["REQUEST_METHOD"], environ.get("PATH_INFO") or "/"
        if path in ROUTES:  # the middleware knows no routes; the app does (never a raw path)
            trace.get_current_span().set_attribute(HTTP_ROUTE, path)
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        status, payload = process(method, path, body)
        start_response(
            f"{status} {HTTPStatus(status).phrase}",
            [("Content-Type", "application/json"), ("Content-Length", str(len(payload)))],
        )
        return [payload]

    return OpenTelemetryMiddleware(app, tracer_provider=tracer_provider, meter_provider=meter_provider)


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

    os.environ.setdefault("OTEL_SERVICE_NAME", "governance-web")  # defaults the environment can change
    os.environ.setdefault(*SEMCONV_OPT_IN)
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
