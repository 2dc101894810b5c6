"""Without setup(): instrumentation records through whatever SDK the service configured."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

import nethical_otel
from nethical_otel.names import ACTION, ACTIVE, COHORT, DURATION, ERROR_TYPE

SCRIPT = textwrap.dedent(
    """
    import json

    from opentelemetry import metrics, trace
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    import nethical_otel
    from nethical_otel.names import DURATION

    spans, reader = InMemorySpanExporter(), InMemoryMetricReader()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    trace.set_tracer_provider(provider)
    metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))

    @nethical_otel.instrument
    def process_action(agent_id, cohort=None):
        return agent_id

    for i in range(7):
        process_action(f"agent-{i}", cohort="c")
    try:
        with nethical_otel.action("fails"):
            raise ValueError
    except ValueError:
        pass

    data = reader.get_metrics_data()
    print(json.dumps({
        "spans": sorted({s.name for s in spans.get_finished_spans()}),
        "points": [
            [m.name, dict(p.attributes), getattr(p, "count", getattr(p, "value", None))]
            for rm in data.resource_metrics
            for sm in rm.scope_metrics
            for m in sm.metrics
            for p in m.data.data_points
        ],
        "bounds": [
            list(p.explicit_bounds)
            for rm in data.resource_metrics
            for sm in rm.scope_metrics
            for m in sm.metrics
            if m.name == DURATION
            for p in m.data.data_points
        ][0],
    }))
    """
)


def run_api_path(**environ: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "NETHICAL_OTEL_"))}
    env.update(environ)
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60, env=env)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_service_configured_sdk_receives_spans_and_histogram():
    found = run_api_path()
    assert found["spans"] == ["fails", "process_action"]
    points = found["points"]
    assert [DURATION, {ACTION: "process_action", COHORT: "c"}, 7] in points
    assert [DURATION, {ERROR_TYPE: "ValueError", ACTION: "fails"}, 1] in points
    assert [ACTIVE, {ACTION: "process_action"}, 0] in points


@pytest.mark.parametrize(
    "environ",
    [{}, {"NETHICAL_OTEL_BUCKETS_PER_OCTAVE": "2", "NETHICAL_OTEL_BUCKET_MAX_S": "10"}],
    ids=["defaults", "configured"],
)
def test_api_path_and_sdk_path_have_one_bucket_layout(make_telemetry, monkeypatch, environ) -> None:
    """The advisory bounds of the API path are the ``le`` bounds setup() exports, from Settings."""
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    reader = InMemoryMetricReader()
    make_telemetry(metric_readers=[reader])
    nethical_otel.instrument(lambda: None, name="layout")()
    (sdk_bounds,) = {
        tuple(p.explicit_bounds)
        for rm in reader.get_metrics_data().resource_metrics
        for sm in rm.scope_metrics
        for m in sm.metrics
        if m.name == DURATION
        for p in m.data.data_points
    }
    api_bounds = tuple(run_api_path(**environ)["bounds"])
    assert api_bounds == sdk_bounds
    if not environ:  # the documented default: 2 ** (k / 4) seconds, 0.49 ms to 64 s
        assert (api_bounds[0], api_bounds[-1]) == (2.0**-11, 64.0)
        assert len(api_bounds) == 4 * 17 + 1
    else:
        assert (api_bounds[0], api_bounds[-1]) == (2.0**-11, 2.0**3.5)
