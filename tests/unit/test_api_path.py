"""Without setup(): instrumentation records through whatever SDK the service configured."""

from __future__ import annotations

import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    from opentelemetry import metrics, trace
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    import nethical_otel

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

    names = sorted({s.name for s in spans.get_finished_spans()})
    points = {
        (m.name, tuple(sorted(p.attributes.items()))): getattr(p, "count", getattr(p, "value", None))
        for rm in reader.get_metrics_data().resource_metrics
        for sm in rm.scope_metrics
        for m in sm.metrics
        for p in m.data.data_points
    }
    bounds = [
        p.explicit_bounds
        for rm in reader.get_metrics_data().resource_metrics
        for sm in rm.scope_metrics
        for m in sm.metrics
        if m.name == "nethical.action.duration"
        for p in m.data.data_points
    ][0]
    print(names)
    print(sorted(points.items()))
    print(len(bounds), bounds[0] < 0.001 < bounds[-1])
    """
)


def test_service_configured_sdk_receives_spans_and_histogram():
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    names, points, bounds = out.stdout.splitlines()
    assert names == "['fails', 'process_action']"
    assert (
        "('nethical.action.duration', (('nethical.action', 'process_action'), ('nethical.cohort', 'c'))), 7)"
        in points
    )
    assert "(('error.type', 'ValueError'), ('nethical.action', 'fails'))), 1)" in points
    assert "('nethical.action.active', (('nethical.action', 'process_action'),)), 0)" in points
    # Our advisory boundaries replace the SDK's millisecond-scaled defaults.
    count, spans_ms = bounds.split()
    assert int(count) > 40 and spans_ms == "True"
