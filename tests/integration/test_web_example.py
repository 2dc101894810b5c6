"""examples/web/app.py, the example of docs/web-service.md, over real HTTP on loopback.

The HTTP layer is the real contrib ``OpenTelemetryMiddleware`` (opentelemetry-instrumentation-wsgi).

(a) Run as the docs say (``python examples/web/app.py --port P``): requests are answered,
    its /metrics counts every process_action call per action type and every HTTP request
    per method and status (``http.server.request.duration``, from the middleware's scope),
    and SIGTERM stops it with status 0.
(b) In-process against the SDK's in-memory exporter and reader: the middleware's SERVER span
    continues the caller's trace and is the parent of the ``process_action`` span; a failing
    call is an ERROR on both spans, a 503, and a ``nethical.action.duration`` point with
    ``error.type``.
"""

from __future__ import annotations

import importlib.util
import os
import re
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from opentelemetry.instrumentation._semconv import _OpenTelemetrySemanticConventionStability
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

import nethical_otel
from nethical_otel.example import IntegratedGovernance
from nethical_otel.example.governance import SUBSTEPS
from nethical_otel.names import (
    ACTION,
    ACTION_LABEL,
    AGENT_ID,
    COHORT,
    COHORT_LABEL,
    DURATION,
    DURATION_METRIC,
    ERROR_TYPE,
    ERROR_TYPE_LABEL,
    PARENT,
    PARENT_LABEL,
)
from tests.sdk_metrics import data_points
from tests.servers import LOOPBACK, ServerProcess, free_port

APP = Path(__file__).parents[2] / "examples" / "web" / "app.py"
ACTIONS = {"query": 6, "tool_call": 4, "generate": 2}
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
WSGI_SCOPE = "opentelemetry.instrumentation.wsgi"  # the contrib middleware's instrumentation scope
HTTP_DURATION = "http.server.request.duration"


def _load_app_module():
    spec = importlib.util.spec_from_file_location("web_example_app", APP)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _body(action_type: str, n: int) -> dict:
    return {
        "agent_id": f"agent-{n}",
        "action": "read the report",
        "cohort": "web",
        "action_type": action_type,
    }


def _samples(exposition: str, name: str) -> list[tuple[dict[str, str], float]]:
    out = []
    for line in exposition.splitlines():
        match = re.fullmatch(rf"{name}\{{(.*)\}} (\S+)", line)
        if match:
            labels = dict(re.findall(r'(\w+)="([^"]*)"', match.group(1)))
            out.append((labels, float(match.group(2))))
    return out


def test_app_script_serves_and_exports_metrics(tmp_path: Path) -> None:
    port, metrics_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "NETHICAL_OTEL_"))}
    args = [sys.executable, APP, "--port", port, "--metrics-port", metrics_port, "--error-rate", "0"]
    base = f"http://{LOOPBACK}:{port}"
    with ServerProcess(args, tmp_path, f"{base}/healthz", name="web-app", env=env) as server:
        with httpx.Client(base_url=base, timeout=10) as client:
            n = 0
            for action_type, count in ACTIONS.items():
                for _ in range(count):
                    n += 1
                    response = client.post("/v1/actions", json=_body(action_type, n))
                    assert response.status_code == 200, response.text
                    assert response.json()["action_type"] == action_type
            assert (
                client.post(
                    "/v1/actions", json={"agent_id": "a", "action": "x", "action_type": "x"}
                ).status_code
                == 400
            )
            assert client.post("/v1/actions", content=b"not json").status_code == 400
            assert client.get("/v1/actions").status_code == 405
            assert client.get("/nowhere").status_code == 404
        exposition = httpx.get(f"http://{LOOPBACK}:{metrics_port}/metrics", timeout=10).text

        calls, steps = Counter(), Counter()
        for labels, value in _samples(exposition, f"{DURATION_METRIC}_count"):
            assert labels[COHORT_LABEL] == "web"  # the sub-steps' too: their parent's cohort
            assert ERROR_TYPE_LABEL not in labels
            if PARENT_LABEL in labels:
                steps[(labels[ACTION_LABEL], labels[PARENT_LABEL])] += value
            else:
                calls[labels[ACTION_LABEL]] += value
        assert calls == ACTIONS  # exactly one observation per process_action call
        # and one of each sub-step per call, under its parent's action
        assert steps == {(step, action): n for action, n in ACTIONS.items() for step in SUBSTEPS}

        requests = {}
        for labels, value in _samples(exposition, "http_server_request_duration_seconds_count"):
            assert labels["otel_scope_name"] == WSGI_SCOPE  # recorded by the contrib middleware
            requests[(labels["http_request_method"], labels["http_response_status_code"])] = value
        assert requests[("POST", "200")] == sum(ACTIONS.values())
        assert requests[("POST", "400")] == 2
        assert requests[("GET", "405")] == 1
        assert requests[("GET", "404")] == 1
        assert requests[("GET", "200")] >= 1  # ServerProcess polled /healthz

        server.proc.terminate()
        assert server.proc.wait(timeout=15) == 0, server.log_tail()


InProcess = tuple[str, InMemorySpanExporter, InMemoryMetricReader, IntegratedGovernance]


@pytest.fixture
def in_process(clean_env: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[InProcess]:
    """The app on a free loopback port, recording into the SDK's in-memory exporter and reader."""
    web = _load_app_module()
    # The middleware reads the semantic-conventions opt-in once per process (as main() sets it):
    # start from scratch, as contrib's own tests do, and restore what was there afterwards.
    monkeypatch.setenv(*web.SEMCONV_OPT_IN)
    semconv = _OpenTelemetrySemanticConventionStability
    monkeypatch.setattr(semconv, "_initialized", False)
    monkeypatch.setattr(semconv, "_OTEL_SEMCONV_STABILITY_SIGNAL_MAPPING", {})
    spans, reader = InMemorySpanExporter(), InMemoryMetricReader()
    telemetry = nethical_otel.setup(
        span_processors=[SimpleSpanProcessor(spans)],
        metric_readers=[reader],
        set_global=False,
        prometheus_enabled=False,
        service_name="governance-web",
    )
    governance = IntegratedGovernance(seed=7, error_rate=0.0, latency_scale=0.1)
    app = web.make_app(governance, telemetry.tracer_provider, telemetry.meter_provider)
    server = web.serve(app, LOOPBACK, free_port())
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{LOOPBACK}:{server.server_port}", spans, reader, governance
    finally:
        server.shutdown()
        server.server_close()
        telemetry.shutdown()


def _finished(spans: InMemorySpanExporter, *names: str) -> dict:
    """The finished spans by name, once all of ``names`` are there: the middleware ends the SERVER
    span after the body is sent, so the client may see the answer a moment before."""
    deadline = time.monotonic() + 10
    while True:
        finished = {span.name: span for span in spans.get_finished_spans()}
        if set(names) <= set(finished) or time.monotonic() > deadline:
            return finished
        time.sleep(0.01)


def test_request_span_is_the_parent_of_process_action(in_process) -> None:
    base, spans, reader, _ = in_process
    traceparent = f"00-{TRACE_ID}-00f067aa0ba902b7-01"
    response = httpx.post(
        f"{base}/v1/actions", json=_body("tool_call", 1), headers={"traceparent": traceparent}, timeout=10
    )
    assert response.status_code == 200

    finished = _finished(spans, "POST /v1/actions", "process_action")
    server, call = finished["POST /v1/actions"], finished["process_action"]
    assert server.kind is SpanKind.SERVER
    assert server.instrumentation_scope.name == WSGI_SCOPE
    assert format(server.context.trace_id, "032x") == TRACE_ID  # continues the caller's trace
    assert server.parent.span_id == 0x00F067AA0BA902B7
    assert server.attributes["http.route"] == "/v1/actions"
    assert server.attributes["http.response.status_code"] == 200
    assert call.parent.span_id == server.context.span_id
    assert call.context.trace_id == server.context.trace_id
    assert dict(call.attributes) == {ACTION: "tool_call", COHORT: "web", AGENT_ID: "agent-1"}

    (point,) = [p for p in data_points(reader, DURATION) if PARENT not in p.attributes]
    assert dict(point.attributes) == {ACTION: "tool_call", COHORT: "web"}
    assert point.count == 1
    (http_point,) = data_points(reader, HTTP_DURATION, scope=WSGI_SCOPE)
    assert http_point.attributes["http.request.method"] == "POST"
    assert http_point.attributes["http.response.status_code"] == 200
    assert http_point.count == 1
    assert len(data_points(reader, HTTP_DURATION)) == 1  # and from nowhere else


def test_failing_call_is_an_error_span_and_a_503(in_process) -> None:
    base, spans, reader, governance = in_process
    governance.error_rate = 1.0
    response = httpx.post(f"{base}/v1/actions", json=_body("query", 2), timeout=10)
    assert response.status_code == 503
    assert "policy store unavailable" in response.json()["error"]

    finished = _finished(spans, "POST /v1/actions", "process_action")
    server, call = finished["POST /v1/actions"], finished["process_action"]
    assert call.parent.span_id == server.context.span_id
    assert server.status.status_code is StatusCode.ERROR
    assert server.attributes[ERROR_TYPE] == "503"  # HTTP semantic conventions: the status code
    assert call.status.status_code is StatusCode.ERROR
    assert call.attributes[ERROR_TYPE] == "GovernanceError"
    assert [event.name for event in call.events] == ["exception"]

    (point,) = [p for p in data_points(reader, DURATION) if PARENT not in p.attributes]
    assert point.attributes[ERROR_TYPE] == "GovernanceError"
    assert point.count == 1
    (http_point,) = data_points(reader, HTTP_DURATION, scope=WSGI_SCOPE)
    assert http_point.attributes[ERROR_TYPE] == "503"
