"""Exemplars of sampled calls (OTLP points, OpenMetrics) and sub-steps recorded per parent."""

from __future__ import annotations

import asyncio
import math
import os
import random

import pytest
from opentelemetry.trace import SpanContext
from prometheus_client.openmetrics.parser import text_string_to_metric_families

import nethical_otel
from nethical_otel.names import ACTION, COHORT, DURATION_METRIC, ERROR_TYPE, PARENT, TRACE_ID_LABEL
from nethical_otel.telemetry.bridge import LeLayout
from nethical_otel.telemetry.prometheus import HistogramText
from tests.unit.test_instrument import Pipeline


@pytest.fixture
def otel(request):
    pipeline = Pipeline(**getattr(request, "param", {}))
    yield pipeline
    pipeline.telemetry.shutdown()


def _work(seconds: float) -> None:
    pass


def test_sampled_calls_give_exemplars_once_per_reader(otel):
    @nethical_otel.instrument
    def call(i):
        return i

    for i in range(50):
        call(i)
    (point,) = otel.points()
    spans = {(s.context.trace_id, s.context.span_id) for s in otel.finished()}
    assert point.exemplars, "sampled calls leave exemplars"
    assert {(e.trace_id, e.span_id) for e in point.exemplars} <= spans
    assert all(point.min <= e.value <= point.max for e in point.exemplars)
    (again,) = otel.points()
    assert again.exemplars == [], "an exemplar is sent once"
    call(51)
    (later,) = otel.points()
    newest = otel.finished()[-1].context
    assert [(e.trace_id, e.span_id) for e in later.exemplars] == [(newest.trace_id, newest.span_id)]


def test_the_reservoir_keeps_one_per_bucket_whatever_the_traffic(otel):
    registry = otel.telemetry.registry
    layout = LeLayout(0.0005, 60.0, 4)  # the default bucket settings
    rng = random.Random(3)
    recorder = registry.series("load", None)
    for i in range(20_000):
        recorder.offer(10 ** rng.uniform(-6, 3), SpanContext(i + 1, i + 1, is_remote=False))  # 1 us .. 1000 s
    assert len(recorder.exemplars) <= len(layout.bounds) + 1
    bounds = layout.bounds
    assert set(recorder.exemplars) == set(range(len(bounds) + 1)), "1 us .. 1000 s: every bucket, once"
    for slot, (value, *_) in recorder.exemplars.items():  # each in the le bucket it belongs to
        assert slot == 0 or value > bounds[slot - 1]
        assert slot == len(bounds) or value <= bounds[slot]
    slot = layout.exemplar_slots()
    assert [slot(v) for v in (0.0, -1.0, math.nan, math.inf, 1e9)] == [0, 0, 0, len(bounds), len(bounds)]
    assert slot(bounds[5]) == 5 and slot(bounds[5] * 1.001) == 6


@pytest.mark.parametrize(
    "otel",
    [{"traces_sampler": "always_off"}, {"traces_enabled": False}, {"exemplar_filter": "always_off"}],
    indirect=True,
    ids=["unsampled", "metrics-only", "filter-off"],
)
def test_no_exemplars_for_unsampled_metrics_only_or_filtered_calls(otel):
    @nethical_otel.instrument
    def call():
        return None

    for _ in range(20):
        call()
    (point,) = otel.points()
    assert point.count == 20 and point.exemplars == []
    assert all(not r.exemplars for r in otel.telemetry.registry.recorders())


@pytest.mark.parametrize(
    "otel", [{"histogram_aggregation": "base2_exponential_bucket_histogram"}], indirect=True
)
def test_exponential_points_carry_exemplars_too(otel):
    nethical_otel.instrument(_work)(0.0)
    (point,) = otel.points()
    assert len(point.exemplars) == 1 and point.exemplars[0].trace_id == otel.finished()[0].context.trace_id


def test_openmetrics_buckets_carry_the_exemplars_and_text_0_0_4_does_not(otel):
    @nethical_otel.instrument(name="db.fetch")
    def fetch():
        return None

    for _ in range(30):
        fetch()
    layout = LeLayout(0.0005, 60.0, 4)
    text = HistogramText(otel.telemetry.registry, layout)
    plain = b"".join(text.render(False)).decode()
    assert "# {" not in plain
    body = b"".join(text.render(True)).decode() + "# EOF\n"
    (family,) = [f for f in text_string_to_metric_families(body) if f.name == DURATION_METRIC]
    exemplars = [s for s in family.samples if s.exemplar is not None]
    assert exemplars, body[:500]
    traces = {f"{s.context.trace_id:032x}" for s in otel.finished()}
    for sample in exemplars:
        assert sample.exemplar.labels[TRACE_ID_LABEL] in traces
        assert sample.exemplar.value <= float(sample.labels["le"])


def test_nested_calls_are_sub_steps_of_their_parent_with_its_cohort(otel):
    @nethical_otel.instrument(name="db.fetch")
    def fetch():
        return None

    @nethical_otel.instrument(action_arg="kind")
    def handle(kind, cohort=None):
        fetch()
        with nethical_otel.action("render"):
            fetch()

    handle("query", cohort="beta")
    fetch()  # at the top level: its own series
    series = {
        (p.attributes[ACTION], p.attributes.get(PARENT), p.attributes.get(COHORT)): p.count
        for p in otel.points()
    }
    assert series == {
        ("query", None, "beta"): 1,
        ("db.fetch", "query", "beta"): 1,
        ("render", "query", "beta"): 1,
        ("db.fetch", "render", "beta"): 1,
        ("db.fetch", None, None): 1,
    }


async def test_tasks_started_inside_a_call_are_its_sub_steps(otel):
    @nethical_otel.instrument(name="db.fetch")
    async def fetch():
        await asyncio.sleep(0)

    @nethical_otel.instrument
    async def handle():
        await asyncio.gather(fetch(), fetch())

    await asyncio.gather(handle(), fetch())
    series = {(p.attributes[ACTION], p.attributes.get(PARENT)): p.count for p in otel.points()}
    assert series == {("handle", None): 1, ("db.fetch", "handle"): 2, ("db.fetch", None): 1}


def test_a_failing_sub_step_keeps_its_parent_and_the_context_is_restored(otel):
    @nethical_otel.instrument(name="db.fetch")
    def fetch():
        raise TimeoutError("slow store")

    @nethical_otel.instrument
    def handle():
        with pytest.raises(TimeoutError):
            fetch()

    handle()
    fetch_outside = nethical_otel.instrument(name="after")(_work)
    fetch_outside(0.0)
    series = {(a[ACTION], a.get(PARENT), a.get(ERROR_TYPE)) for a in (p.attributes for p in otel.points())}
    assert series == {("handle", None, None), ("db.fetch", "handle", "TimeoutError"), ("after", None, None)}


@pytest.mark.parametrize("otel", [{"max_attribute_values": 3}], indirect=True)
def test_parent_names_are_bounded_like_actions(otel):
    @nethical_otel.instrument(name="child")
    def child():
        return None

    @nethical_otel.instrument(action_arg="name")
    def parent(name):
        child()

    for i in range(50):
        parent(f"hostile-{i}")
    parents = {p.attributes.get(PARENT) for p in otel.points() if p.attributes[ACTION] == "child"}
    assert len(parents) <= 4 and "other" in parents
    assert len(otel.telemetry.registry.recorders()) <= 8


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_a_forked_child_starts_without_the_parents_exemplars(otel):
    nethical_otel.instrument(name="call")(_work)(0.0)
    [recorder] = [r for r in otel.telemetry.registry.recorders() if r.exemplars]
    pid = os.fork()
    if pid == 0:  # the child: its reservoir is empty, and fills with its own calls
        ok = not recorder.exemplars
        nethical_otel.instrument(name="call")(_work)(0.0)
        os._exit(0 if ok and len(recorder.exemplars) == 1 else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert len(recorder.exemplars) == 1, "the parent keeps its own"


def test_a_call_left_in_another_context_than_it_began_in_never_raises(otel):
    import contextvars

    block = nethical_otel.action("moved")
    contextvars.copy_context().run(block.__enter__)  # entered in a copy of the context ...
    block.__exit__(None, None, None)  # ... left in this one: the token does not belong here
    nethical_otel.instrument(name="after")(_work)(0.0)
    series = {(p.attributes[ACTION], p.attributes.get(PARENT)) for p in otel.points()}
    assert series == {("moved", None), ("after", None)}


@pytest.mark.parametrize("otel", [{"substeps_enabled": False}], indirect=True)
def test_without_sub_steps_nested_calls_are_series_of_their_own(otel):
    @nethical_otel.instrument(name="db.fetch")
    def fetch():
        return None

    @nethical_otel.instrument
    def handle(cohort=None):
        fetch()

    handle(cohort="beta")
    series = {(a[ACTION], a.get(PARENT), a.get(COHORT)) for a in (p.attributes for p in otel.points())}
    assert series == {("handle", None, "beta"), ("db.fetch", None, None)}
