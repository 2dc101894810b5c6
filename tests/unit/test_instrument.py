"""@instrument, action() and the instrumentor against the SDK's in-memory exporter and reader."""

from __future__ import annotations

import asyncio

import pytest
from opentelemetry import trace
from opentelemetry.sdk.metrics.export import (
    ExponentialHistogramDataPoint,
    HistogramDataPoint,
    InMemoryMetricReader,
)
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

import nethical_otel
from nethical_otel.example import GovernanceError, IntegratedGovernance
from nethical_otel.example.governance import SUBSTEPS
from nethical_otel.names import ACTION, ACTIVE, AGENT_ID, COHORT, DURATION, ERROR_TYPE, OTHER, PARENT
from tests.sdk_metrics import data_points


class Pipeline:
    def __init__(self, **settings):
        self.spans = InMemorySpanExporter()
        self.reader = InMemoryMetricReader()
        self.telemetry = nethical_otel.setup(
            span_processors=[SimpleSpanProcessor(self.spans)],
            metric_readers=[self.reader],
            set_global=False,
            prometheus_enabled=False,
            **settings,
        )

    def finished(self):
        return self.spans.get_finished_spans()

    def points(self, name=DURATION):
        return data_points(self.reader, name)


@pytest.fixture
def otel(request):
    pipeline = Pipeline(**getattr(request, "param", {}))
    yield pipeline
    pipeline.telemetry.shutdown()


def test_span_and_histogram_per_call(otel):
    @nethical_otel.instrument
    def process_action(agent_id, action, cohort=None):
        return f"{agent_id}:{action}"

    for i in range(5):
        assert process_action(f"agent-{i}", "read", cohort="control") == f"agent-{i}:read"

    spans = otel.finished()
    assert [s.name for s in spans] == ["process_action"] * 5
    assert spans[0].attributes == {
        ACTION: "process_action",
        COHORT: "control",
        AGENT_ID: "agent-0",
    }
    assert all(s.status.status_code is StatusCode.UNSET for s in spans)
    (point,) = otel.points()
    assert isinstance(point, HistogramDataPoint)
    assert point.count == 5 and sum(point.bucket_counts) == 5
    # The agent id is unbounded: a span attribute, never a metric label.
    assert dict(point.attributes) == {ACTION: "process_action", COHORT: "control"}
    assert 0 < point.min <= point.max < 0.01


def test_exception_recorded_and_reraised_unchanged(otel):
    boom = GovernanceError("policy store down")

    @nethical_otel.instrument(name="process_action")
    def judge():
        raise boom

    with pytest.raises(GovernanceError) as caught:
        judge()
    assert caught.value is boom

    (span,) = otel.finished()
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes[ERROR_TYPE] == "GovernanceError"
    (event,) = span.events
    assert event.name == "exception"
    assert event.attributes["exception.message"] == "policy store down"
    (point,) = otel.points()
    assert point.attributes[ERROR_TYPE] == "GovernanceError" and point.count == 1


def test_example_service_labels_by_action_type(otel):
    gov = IntegratedGovernance(seed=3, error_rate=0.0, latency_scale=0.05)
    for action_type in ("query", "query", "tool_call"):
        gov.process_action("agent-1", "summarize", cohort="treatment", action_type=action_type)
    counts = {(p.attributes[ACTION], p.attributes.get(PARENT)): p.count for p in otel.points()}
    steps = {(step, parent): n for parent, n in (("query", 2), ("tool_call", 1)) for step in SUBSTEPS}
    assert counts == {("query", None): 2, ("tool_call", None): 1, **steps}
    assert {p.attributes[COHORT] for p in otel.points()} == {"treatment"}, "sub-steps take the parent's"
    top = [s for s in otel.finished() if s.name == "process_action"]
    assert {s.attributes[ACTION] for s in top} == {"query", "tool_call"}


async def test_async_function(otel):
    @nethical_otel.instrument
    async def score(agent_id):
        await asyncio.sleep(0.002)
        return 42

    assert await asyncio.gather(score("a"), score("b")) == [42, 42]
    spans = otel.finished()
    assert sorted(s.attributes[AGENT_ID] for s in spans) == ["a", "b"]
    (point,) = otel.points()
    assert point.count == 2 and point.min >= 0.0015


async def test_async_exception(otel):
    @nethical_otel.instrument
    async def fails():
        raise KeyError("x")

    with pytest.raises(KeyError):
        await fails()
    assert otel.finished()[0].attributes[ERROR_TYPE] == "KeyError"


def test_method_arguments_found_past_self(otel):
    class Engine:
        @nethical_otel.instrument(action_arg="kind")
        def run(self, agent_id, kind, cohort=None):
            return self, kind

    engine = Engine()
    assert engine.run("agent-9", "tool_call", cohort="c1") == (engine, "tool_call")
    assert engine.run(agent_id="agent-8", kind="query") == (engine, "query")
    first, second = otel.finished()
    assert first.name == "run"
    assert first.attributes == {
        ACTION: "tool_call",
        COHORT: "c1",
        AGENT_ID: "agent-9",
    }
    assert second.attributes == {ACTION: "query", AGENT_ID: "agent-8"}


def test_action_context_manager_and_nesting(otel):
    with nethical_otel.action("checkout", cohort="beta", region="eu"), nethical_otel.action("payment"):
        pass
    with pytest.raises(ValueError), nethical_otel.action("checkout", cohort="beta", region="eu"):
        raise ValueError("card declined")

    payment, checkout, failed = otel.finished()
    assert (payment.name, checkout.name) == ("payment", "checkout")
    assert payment.parent.span_id == checkout.context.span_id
    assert payment.context.trace_id == checkout.context.trace_id
    assert checkout.attributes["region"] == "eu" and checkout.attributes[COHORT] == "beta"
    assert failed.status.status_code is StatusCode.ERROR
    counts = {(p.attributes[ACTION], p.attributes.get(ERROR_TYPE)): p.count for p in otel.points()}
    assert counts == {("checkout", None): 1, ("payment", None): 1, ("checkout", "ValueError"): 1}


def test_in_flight_counter_sees_the_running_call(otel):
    seen = []

    @nethical_otel.instrument
    def slow():
        seen.extend(p.value for p in otel.points(ACTIVE))

    slow()
    assert seen == [1]
    assert [p.value for p in otel.points(ACTIVE)] == [0]


@pytest.mark.parametrize("otel", [{"max_attribute_values": 3}], indirect=True)
def test_cardinality_is_capped(otel):
    @nethical_otel.instrument
    def act(cohort):
        return cohort

    for i in range(10):
        act(f"cohort-{i}")
    cohorts = sorted(p.attributes[COHORT] for p in otel.points())
    assert cohorts == ["cohort-0", "cohort-1", "cohort-2", OTHER]
    assert sum(p.count for p in otel.points()) == 10


@pytest.mark.parametrize(
    "otel", [{"histogram_aggregation": "base2_exponential_bucket_histogram"}], indirect=True
)
def test_exponential_histograms_on_request(otel):
    @nethical_otel.instrument
    def act():
        return None

    for _ in range(50):
        act()
    (point,) = otel.points()
    assert isinstance(point, ExponentialHistogramDataPoint)
    assert point.count == 50 == point.zero_count + sum(point.positive.bucket_counts)
    assert len(point.positive.bucket_counts) <= 160


def test_instrumentation_failure_never_reaches_the_caller(otel, monkeypatch, caplog):
    @nethical_otel.instrument
    def work(x):
        return x * 2

    def broken(*args, **kwargs):
        raise RuntimeError("recorder exploded")

    class BrokenBuffer(list):
        append = broken

    work(1)  # bind first, then break the bound series and the lookup of new ones
    monkeypatch.setattr(otel.telemetry.registry.series("work", None), "pending", BrokenBuffer())
    monkeypatch.setattr(otel.telemetry.registry, "series", broken)
    assert [work(i) for i in range(3)] == [0, 2, 4]
    assert "failed; the call goes on without it" in caplog.text


@pytest.mark.parametrize("otel", [{"sdk_disabled": True}], indirect=True)
def test_sdk_disabled_runs_functions_untouched(otel):
    @nethical_otel.instrument
    def work():
        return "done"

    assert work() == "done"
    assert otel.telemetry.tracer_provider is None


def test_shutdown_stops_recording_into_the_old_pipeline():
    first = Pipeline()

    @nethical_otel.instrument
    def work():
        return 1

    work()
    first.telemetry.shutdown()
    second = Pipeline()
    try:
        work()
        assert len(second.finished()) == 1 and sum(p.count for p in second.points()) == 1
        assert len(first.finished()) == 1
    finally:
        second.telemetry.shutdown()


def test_instrumentor_wraps_and_restores():
    class Governance:
        def process_action(self, agent_id, action, cohort=None, action_type="query"):
            return action_type

    original = Governance.__dict__["process_action"]
    pipeline = Pipeline()
    instrumentor = nethical_otel.NethicalInstrumentor()
    try:
        instrumentor.instrument(targets=[(Governance, "process_action")])
        assert Governance.__dict__["process_action"] is not original
        assert Governance().process_action("a1", "x", cohort="c", action_type="generate") == "generate"
        (span,) = pipeline.finished()
        assert span.name == "process_action"
        assert span.attributes[ACTION] == "generate"
        assert span.attributes[AGENT_ID] == "a1"
    finally:
        instrumentor.uninstrument()
        pipeline.telemetry.shutdown()
    assert Governance.__dict__["process_action"] is original


def test_instrumentor_is_registered_as_entry_point():
    from importlib.metadata import entry_points

    (entry,) = [e for e in entry_points(group="opentelemetry_instrumentor") if e.name == "nethical"]
    assert entry.load() is nethical_otel.NethicalInstrumentor


# -- head sampling ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "otel", [{"traces_sampler": "parentbased_traceidratio", "traces_sampler_arg": 0.1}], indirect=True
)
def test_ratio_sampling_keeps_about_the_ratio_and_propagates_context(otel):
    inner_contexts = []

    @nethical_otel.instrument
    def inner():
        inner_contexts.append(trace.get_current_span().get_span_context())

    @nethical_otel.instrument
    def outer():
        outer_context = trace.get_current_span().get_span_context()
        inner()
        return outer_context

    n = 3000
    outer_contexts = [outer() for _ in range(n)]
    sampled = [c for c in outer_contexts if c.trace_flags.sampled]
    # Binomial(3000, 0.1): mean 300, sd 16.4; +-5 sd.
    assert 218 <= len(sampled) <= 382
    # Every call, sampled or not, has a valid trace context that its children inherit.
    assert all(c.is_valid for c in outer_contexts)
    for outer_ctx, inner_ctx in zip(outer_contexts, inner_contexts, strict=True):
        assert inner_ctx.trace_id == outer_ctx.trace_id
        assert inner_ctx.trace_flags.sampled == outer_ctx.trace_flags.sampled
    finished = otel.finished()
    assert len(finished) == 2 * len(sampled)
    # One decision per trace, made on the trace id the SDK then used (no double sampling).
    bound = round(0.1 * 2**64)
    assert all((s.context.trace_id & (2**64 - 1)) < bound for s in finished)
    # Metrics see every call regardless of sampling.
    assert sum(p.count for p in otel.points()) == 2 * n


@pytest.mark.parametrize("otel", [{"traces_sampler": "parentbased_always_off"}], indirect=True)
def test_sampled_remote_parent_is_followed(otel):
    from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

    @nethical_otel.instrument
    def handler():
        return None

    handler()
    assert otel.finished() == ()
    parent = SpanContext(0xABC, 0xDEF, is_remote=True, trace_flags=TraceFlags(TraceFlags.SAMPLED))
    with trace.use_span(NonRecordingSpan(parent)):
        handler()
    (span,) = otel.finished()
    assert span.context.trace_id == 0xABC and span.parent.span_id == 0xDEF


@pytest.mark.parametrize("otel", [{"traces_enabled": False}], indirect=True)
def test_metrics_only(otel):
    @nethical_otel.instrument
    def work():
        return None

    for _ in range(1000):
        work()
    assert otel.finished() == ()
    assert sum(p.count for p in otel.points()) == 1000
