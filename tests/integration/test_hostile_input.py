"""Hostile attribute values never reach the caller, never break /metrics, never stop alerting.

The corpus goes through ``@instrument``, ``action()``, the instrumentor, the detector and
the Alertmanager sink; afterwards ``/metrics`` still serves every series, the spans still
encode for OTLP, and alerts (one of them about a hostile-named series) reach a real
Alertmanager.
"""

from __future__ import annotations

import time
import urllib.request

import httpx
import numpy as np
import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client.parser import text_string_to_metric_families

import nethical_otel
from nethical_otel.detect.alerts import Alert, State, Timing
from nethical_otel.detect.baseline import Baseline, BaselineSet, SeriesKey
from nethical_otel.detect.detector import Detector, PolicyBook
from nethical_otel.detect.sinks import AlertmanagerSink
from nethical_otel.detect.sources import InProcessSource
from nethical_otel.stats import LatencyHistogram
from nethical_otel.telemetry.instrumentor import NethicalInstrumentor
from tests.servers import start_alertmanager

pytestmark = pytest.mark.integration


class BadStr:
    def __str__(self) -> str:
        raise RuntimeError("__str__ failed")


class Weird(Exception):
    def __str__(self) -> str:
        raise ZeroDivisionError("no message either")


Weird.__qualname__ = "Weird\udcff"

SURROGATE = "bad\udcff"  # what os.fsdecode(b"bad\xff") gives
CORPUS = [
    SURROGATE,
    b"by\xfftes",
    "x" * 100_000,
    BadStr(),
    float("nan"),
    [1, 2],
    {"k": [1]},
    'quote" back\\slash\nnewline',
    "\x00nul",
    "é" * 10,
    "",
    12,
    None,
]


class Engine:
    def process_action(self, agent_id, action, cohort=None, action_type="query"):
        if action_type == "boom":
            raise Weird()
        return action


def scrape(url: str) -> dict[tuple, float]:
    """(action, cohort, error_type, overflow) -> count of every duration series served."""
    text = urllib.request.urlopen(url, timeout=10).read().decode("utf-8")
    counts = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "nethical_action_duration_seconds_count":
                labels = sample.labels
                key = (labels.get("nethical_action"), labels.get("nethical_cohort"), labels.get("error_type"))
                counts[key] = sample.value
    return counts


def test_hostile_corpus_through_everything(make_telemetry, tmp_path) -> None:
    spans = InMemorySpanExporter()
    telemetry = make_telemetry(
        service_name="svc",
        prometheus_enabled=True,
        prometheus_port=0,
        span_processors=[SimpleSpanProcessor(spans)],
    )

    @nethical_otel.instrument(action_arg="action", attributes={"static": BadStr(), "ok": [1, "a\udcff"]})
    def work(action, cohort=None, agent_id=None, fail=False):
        if fail:
            raise Weird()
        return "done"

    instrumentor = NethicalInstrumentor()
    instrumentor.instrument(targets=[(Engine, "process_action")])
    try:
        engine = Engine()
        calls = 0
        for value in CORPUS:
            assert work(value, cohort=value, agent_id=value) == "done"
            with pytest.raises(Weird):
                work(value, cohort=value, fail=True)
            with nethical_otel.action(value, cohort=value, agent_id=value, tags=[1], obj=BadStr(), d={1: 2}):
                pass
            with pytest.raises(Weird), nethical_otel.action("block", cohort=value):
                raise Weird()
            assert engine.process_action(value, value, cohort=value, action_type=value) is value
            with pytest.raises(Weird):
                engine.process_action(value, value, cohort=value, action_type="boom")
            calls += 6
    finally:
        instrumentor.uninstrument()

    # /metrics serves every series the registry holds, and nothing is lost.
    served = scrape(telemetry.prometheus_url)
    held = {
        (a.get("nethical.action"), a.get("nethical.cohort"), a.get("error.type")): h.count
        for a, h in telemetry.registry.histograms()
    }
    assert served == held
    assert sum(served.values()) == calls
    assert (SURROGATE.replace("\udcff", "\ufffd"), SURROGATE.replace("\udcff", "\ufffd"), None) in served
    assert all(len(action or "") <= 256 for action, _, _ in served)

    # Every span still encodes for OTLP (a lone surrogate used to break the whole batch).
    finished = spans.get_finished_spans()
    assert len(finished) == calls
    assert encode_spans(finished).SerializeToString()
    failed = [s for s in finished if s.status.description]
    assert failed and all(s.status.description.startswith("Weird\ufffd: <unprintable") for s in failed)

    with start_alertmanager(tmp_path) as am:
        sink = AlertmanagerSink(am.url, resend_interval_s=60, timeout_s=5)
        try:
            # 1. An alert whose labels hold what the sink must not choke on; then a plain one.
            now = time.time()
            for name, action in (("HostileLabels", SURROGATE), ("AfterHostile", "plain")):
                sink.update(
                    Alert(
                        labels={"alertname": name, "severity": "info", "action": action},
                        annotations={"summary": f"about {action}"},
                        state=State.FIRING,
                        fired_at=now - 1,
                    ),
                    now,
                )
            # 2. The detector over the hostile series: a 3x slowdown against its baseline fires.
            key = SeriesKey("svc", "bad\ufffd", "bad\ufffd")
            rng = np.random.default_rng(1)
            fast = LatencyHistogram.from_samples(rng.lognormal(np.log(0.01), 0.3, 3000))
            baseline = Baseline(key, fast, 30, "test")
            clock = [1000.0]
            detector = Detector(
                InProcessSource(telemetry.registry.histograms, "svc", 30),
                BaselineSet([baseline]),
                PolicyBook.from_mapping(None),
                [sink],
                timing=Timing(for_s=0),
                learn=False,
                clock=lambda: clock[0],
            )
            detector.step()
            series = telemetry.registry.series(SURROGATE, SURROGATE)
            for v in rng.lognormal(np.log(0.03), 0.3, 3000):
                series.observe(float(v))
            clock[0] += 30
            detector.step()

            deadline = time.monotonic() + 10
            names: dict[str, dict] = {}
            while time.monotonic() < deadline:
                alerts = httpx.get(f"{am.url}/api/v2/alerts", timeout=5).json()
                names = {a["labels"]["alertname"]: a["labels"] for a in alerts}
                if {"HostileLabels", "AfterHostile", "NethicalLatencyRegression"} <= set(names):
                    break
                time.sleep(0.2)
            assert {"HostileLabels", "AfterHostile", "NethicalLatencyRegression"} <= set(names), names
            assert names["HostileLabels"]["action"] == "bad\ufffd"
            assert names["NethicalLatencyRegression"]["action"] == "bad\ufffd"
        finally:
            sink.close(timeout_s=5)
