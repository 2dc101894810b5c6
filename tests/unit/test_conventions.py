"""OpenTelemetry's conventions, as contrib instrumentors and the SDK's auto-configuration have them.

- ``NethicalInstrumentor`` records into the ``tracer_provider`` / ``meter_provider`` it is given,
  restores the originals on ``uninstrument``, names the targets it cannot find in one WARNING,
  and never raises into the start of a service over configuration.
- ``setup()`` honours ``OTEL_TRACES_EXPORTER`` / ``OTEL_METRICS_EXPORTER`` (an unknown exporter is a
  WARNING), and a mistyped ``NETHICAL_OTEL_*`` variable is a WARNING, not a failed start.
- The two spellings of each name in ``nethical_otel.names`` are one name: Prometheus' translation
  of the OpenTelemetry one.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
from importlib.metadata import distribution

import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpanExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpanExporter
from opentelemetry.instrumentation.dependencies import get_dist_dependency_conflicts
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import nethical_otel
from nethical_otel import names
from nethical_otel.config import load_settings
from nethical_otel.telemetry.instrument import STATE
from nethical_otel.telemetry.setup import _metric_readers, _span_exporters
from tests.sdk_metrics import data_points


@pytest.fixture
def instrumentor(clean_env: None, monkeypatch: pytest.MonkeyPatch):
    """The (singleton) instrumentor, uninstrumented afterwards; the API path's settings restored."""
    monkeypatch.setattr(STATE, "settings", None)
    instrumentor = nethical_otel.NethicalInstrumentor()
    yield instrumentor
    instrumentor.uninstrument()


@pytest.fixture
def engine_module(tmp_path, monkeypatch: pytest.MonkeyPatch) -> str:
    """An importable module ``convention_engine`` with ``Engine.process_action``."""
    (tmp_path / "convention_engine.py").write_text(
        textwrap.dedent(
            """
            class Engine:
                def process_action(self, agent_id, action, cohort=None, action_type="query"):
                    return action_type

                class Nested:
                    def run(self):
                        return "ran"
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    return "convention_engine"


# -- NethicalInstrumentor ------------------------------------------------------------------------


def test_instrumentor_records_into_the_providers_it_is_given(instrumentor, make_telemetry) -> None:
    # setup()'s pipeline is active too: the given providers must win over it, as in contrib.
    own_spans = InMemorySpanExporter()
    telemetry = make_telemetry(span_processors=[SimpleSpanProcessor(own_spans)])
    spans, reader = InMemorySpanExporter(), InMemoryMetricReader()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    meter_provider = MeterProvider(metric_readers=[reader])

    class Governance:
        def process_action(self, agent_id, action, cohort=None, action_type="query"):
            return action_type

    original = Governance.__dict__["process_action"]
    instrumentor.instrument(
        targets=[(Governance, "process_action")],
        tracer_provider=tracer_provider,
        meter_provider=meter_provider,
    )
    try:
        assert Governance().process_action("a1", "x", cohort="c", action_type="generate") == "generate"
    finally:
        instrumentor.uninstrument()
    assert Governance.__dict__["process_action"] is original

    (span,) = spans.get_finished_spans()
    assert span.name == "process_action"
    assert span.instrumentation_scope.name == names.SCOPE
    assert dict(span.attributes) == {names.ACTION: "generate", names.COHORT: "c", names.AGENT_ID: "a1"}
    (point,) = data_points(reader, names.DURATION)
    assert dict(point.attributes) == {names.ACTION: "generate", names.COHORT: "c"}
    assert point.count == 1
    assert [p.value for p in data_points(reader, names.ACTIVE)] == [0]
    # ... and nothing into setup()'s pipeline.
    assert own_spans.get_finished_spans() == ()
    assert list(telemetry.registry.histograms()) == []
    tracer_provider.shutdown()
    meter_provider.shutdown()


def test_instrumentor_declares_no_dependency_that_would_get_it_skipped() -> None:
    # What opentelemetry-instrument checks before it loads an instrumentor: a conflict skips it.
    assert get_dist_dependency_conflicts(distribution("nethical-otel")) is None
    assert nethical_otel.NethicalInstrumentor()._check_dependency_conflicts() is None


def test_targets_not_found_are_named_in_one_warning(instrumentor, engine_module, monkeypatch, caplog) -> None:
    specs = [
        f"{engine_module}:Engine.process_action",
        f"{engine_module}:Engine.Nested.run",
        "no_such_module_here:Engine.process_action",
        f"{engine_module}:Missing.process_action",
        f"{engine_module}:Engine.no_such_method",
        "not-a-spec",
    ]
    monkeypatch.setenv("NETHICAL_OTEL_INSTRUMENT_TARGETS", ", ".join(specs))
    with caplog.at_level(logging.WARNING):
        instrumentor.instrument()
    (record,) = [r for r in caplog.records if r.levelno >= logging.WARNING]
    message = record.getMessage()
    for spec in specs[2:]:
        assert spec in message
    assert "No module named 'no_such_module_here'" in message
    assert "NETHICAL_OTEL_INSTRUMENT_TARGETS=module:Class.method" in message
    assert specs[0] not in message and specs[1] not in message

    import convention_engine

    assert hasattr(convention_engine.Engine.process_action, "__nethical_site__")
    assert hasattr(convention_engine.Engine.Nested.run, "__nethical_site__")
    instrumentor.uninstrument()
    assert not hasattr(convention_engine.Engine.process_action, "__nethical_site__")


def test_found_targets_log_no_warning(instrumentor, engine_module, monkeypatch, caplog) -> None:
    monkeypatch.setenv("NETHICAL_OTEL_INSTRUMENT_TARGETS", f"{engine_module}:Engine.process_action")
    with caplog.at_level(logging.WARNING):
        instrumentor.instrument()
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


def test_bad_configuration_is_a_warning_not_a_failed_start(instrumentor, monkeypatch, caplog) -> None:
    monkeypatch.setenv("NETHICAL_OTEL_PROMETHEUS_PORT", "not-a-port")
    with caplog.at_level(logging.WARNING):
        instrumentor.instrument()  # under opentelemetry-instrument a raise would stop the others too
    assert "nothing instrumented" in caplog.text and "NETHICAL_OTEL_PROMETHEUS_PORT" in caplog.text


def test_mistyped_variable_is_a_warning_for_the_instrumentor(
    instrumentor, engine_module, monkeypatch, caplog
) -> None:
    monkeypatch.setenv("NETHICAL_OTEL_INSTRUMENT_TARGETS", f"{engine_module}:Engine.process_action")
    monkeypatch.setenv("NETHICAL_OTEL_MAX_ATTRIBUTE_VALUE", "5")
    with caplog.at_level(logging.WARNING):
        instrumentor.instrument()
    assert "NETHICAL_OTEL_MAX_ATTRIBUTE_VALUE;" in caplog.text
    assert "did you mean NETHICAL_OTEL_MAX_ATTRIBUTE_VALUES?" in caplog.text
    import convention_engine

    assert hasattr(convention_engine.Engine.process_action, "__nethical_site__")


# -- setup() ---------------------------------------------------------------------------------------


def test_mistyped_variable_is_a_warning_and_setup_starts(make_telemetry, monkeypatch, caplog) -> None:
    monkeypatch.setenv("NETHICAL_OTEL_PROMETHEUS_PROT", "9100")
    with caplog.at_level(logging.WARNING):
        telemetry = make_telemetry(service_name="svc")
    assert telemetry.tracer_provider is not None
    (record,) = [r for r in caplog.records if "NETHICAL_OTEL_PROMETHEUS_PROT" in r.getMessage()]
    assert record.levelno == logging.WARNING
    assert "did you mean NETHICAL_OTEL_PROMETHEUS_PORT?" in record.getMessage()


def _exporters(**environ: str) -> list[type]:
    return [type(e) for e in _span_exporters(load_settings(environ=environ))]


def test_traces_exporter_variable_is_read_as_the_sdk_reads_it(caplog) -> None:
    endpoint = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4317"}
    # Unset: what we always did, OTLP exactly when an endpoint is set.
    assert _exporters() == []
    assert _exporters(**endpoint) == [GrpcSpanExporter]
    # Set: OTLP (the SDK's default endpoint when none is configured), console, none, lists.
    assert _exporters(OTEL_TRACES_EXPORTER="otlp") == [GrpcSpanExporter]
    assert _exporters(OTEL_TRACES_EXPORTER="otlp", OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf") == [
        HttpSpanExporter
    ]
    assert _exporters(OTEL_TRACES_EXPORTER="none", **endpoint) == []
    assert _exporters(OTEL_TRACES_EXPORTER=" console , otlp_proto_http,console") == [
        ConsoleSpanExporter,
        HttpSpanExporter,
    ]
    with caplog.at_level(logging.WARNING):
        assert _exporters(OTEL_TRACES_EXPORTER="consol,console") == [ConsoleSpanExporter]
    (record,) = caplog.records
    assert "OTEL_TRACES_EXPORTER names 'consol'" in record.getMessage()
    assert "console" in record.getMessage()  # the names that would work


def test_metrics_exporter_variable_and_prometheus(caplog) -> None:
    def readers(**environ: str) -> list[str]:
        return [type(r).__name__ for r in _metric_readers(load_settings(environ=environ))]

    assert readers() == []
    assert readers(OTEL_METRICS_EXPORTER="console,otlp") == ["PeriodicExportingMetricReader"] * 2
    assert readers(OTEL_METRICS_EXPORTER="none", OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:4317") == []
    # prometheus is our /metrics endpoint, not a second server: no reader, no warning while it is on.
    with caplog.at_level(logging.WARNING):
        assert readers(OTEL_METRICS_EXPORTER="prometheus") == []
        assert caplog.records == []
        assert readers(OTEL_METRICS_EXPORTER="prometheus", NETHICAL_OTEL_PROMETHEUS_ENABLED="false") == []
    (record,) = caplog.records
    assert "prometheus_enabled=false" in record.getMessage()


def test_console_exporters_print_our_span_and_histogram() -> None:
    # A fresh interpreter: the console exporters write to the sys.stdout of their import.
    script = textwrap.dedent(
        """
        import nethical_otel

        telemetry = nethical_otel.setup(service_name="svc", prometheus_enabled=False)

        @nethical_otel.instrument
        def convention_call():
            return 1

        convention_call()
        telemetry.shutdown()  # flushes both
        """
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "NETHICAL_OTEL_"))}
    env.update(OTEL_TRACES_EXPORTER="console", OTEL_METRICS_EXPORTER="console")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 0, done.stderr
    assert '"name": "convention_call"' in done.stdout
    assert f'"name": "{names.DURATION}"' in done.stdout


def test_unknown_exporter_is_a_warning_not_a_failed_start(make_telemetry, monkeypatch, caplog) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "jaegerr")
    monkeypatch.setenv("OTEL_METRICS_EXPORTER", "otlpp")
    with caplog.at_level(logging.WARNING):
        telemetry = make_telemetry(service_name="svc")
    assert telemetry.tracer_provider is not None
    assert "OTEL_TRACES_EXPORTER names 'jaegerr'" in caplog.text
    assert "OTEL_METRICS_EXPORTER names 'otlpp'" in caplog.text


# -- names -----------------------------------------------------------------------------------------


def test_prometheus_names_are_the_translation_of_the_opentelemetry_ones() -> None:
    def label(attribute: str) -> str:
        return attribute.replace(".", "_")

    assert label(names.DURATION) + "_seconds" == names.DURATION_METRIC  # unit "s" becomes a suffix
    assert label(names.ACTION) == names.ACTION_LABEL
    assert label(names.COHORT) == names.COHORT_LABEL
    assert label(names.ERROR_TYPE) == names.ERROR_TYPE_LABEL
    assert names.DURATION.endswith(".duration")  # semantic conventions: durations are *.duration
    detector = [v for k, v in vars(names).items() if k.startswith("DETECTOR_") and not k.endswith("_ALERT")]
    assert len(detector) > 5 and all(v.startswith(names.DETECTOR_PREFIX) for v in detector)
