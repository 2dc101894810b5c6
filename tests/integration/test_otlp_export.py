"""OTLP export over both transports, decoded by a real protobuf receiver on loopback.

1. Spans (with the nethical attributes) and the `nethical.action.duration` histogram leave
   the process and arrive after `force_flush()`.
2. The collector goes away mid-run and comes back: every instrumented call still returns its
   value, nothing is raised into the caller, calls are not slowed by the dead endpoint, and
   telemetry flows again once it is back.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

import nethical_otel
from nethical_otel.example import IntegratedGovernance

pytestmark = pytest.mark.integration

DURATION = "nethical.action.duration"
CUMULATIVE = 2  # AggregationTemporality.AGGREGATION_TEMPORALITY_CUMULATIVE


@nethical_otel.instrument
def unit_of_work(i: int, cohort: str | None = None) -> int:
    time.sleep(0.0005)
    return 2 * i


@nethical_otel.instrument(name="rejects")
def failing_work() -> None:
    raise ValueError("expected by the test")


def _otlp_telemetry(make_telemetry, receiver, service_name: str):
    return make_telemetry(service_name=service_name, otlp_endpoint=receiver.endpoint,
                          otlp_protocol=receiver.protocol, otlp_timeout_s=1, metric_export_interval_ms=500,
                          traces_sampler="parentbased_always_on", set_global=False)


def _latest_count(receiver, **attributes: str) -> int:
    """Count of the newest cumulative point whose attributes are exactly ``attributes``."""
    points = [p for p in receiver.histogram_points(DURATION) if p.attributes == attributes]
    return max((p.count for p in points), default=0)


def test_spans_and_duration_histogram_arrive(otlp_receiver, make_telemetry) -> None:
    tel = _otlp_telemetry(make_telemetry, otlp_receiver, "otlp-export")
    gov = IntegratedGovernance(seed=1)
    for _ in range(5):
        gov.process_action(agent_id="agent-1", action="summarize the ticket", cohort="control",
                           action_type="query")
    with pytest.raises(ValueError):
        failing_work()
    assert tel.force_flush() is True

    otlp_receiver.wait_for(lambda: len(otlp_receiver.spans()) >= 6, timeout_s=5, what="6 spans")
    spans = otlp_receiver.spans()
    processed = [s for s in spans if s.name == "process_action"]
    assert len(processed) == 5
    for span in processed:
        assert span.attributes["nethical.action"] == "query"
        assert span.attributes["nethical.agent.id"] == "agent-1"
        assert span.attributes["nethical.cohort"] == "control"
        assert span.status_code != "ERROR"
        assert span.resource["service.name"] == "otlp-export"
    [rejected] = [s for s in spans if s.name == "rejects"]
    assert rejected.status_code == "ERROR"
    assert rejected.attributes["error.type"] == "ValueError"
    assert "exception" in [e.name for e in rejected.events]

    otlp_receiver.wait_for(lambda: _latest_count(otlp_receiver, **{"nethical.action": "rejects",
                                                                   "error.type": "ValueError"}) == 1,
                           timeout_s=5, what="the failed call's histogram point")
    assert _latest_count(otlp_receiver, **{"nethical.action": "query", "nethical.cohort": "control"}) == 5
    points = otlp_receiver.histogram_points(DURATION)
    assert {p.unit for p in points} == {"s"}
    assert {p.temporality for p in points} == {CUMULATIVE}
    assert "nethical.action.active" in otlp_receiver.metric_names()


class _Load:
    """Calls ``unit_of_work`` in a loop on a thread, tagging each call with the current phase."""

    def __init__(self) -> None:
        self.phase = "up"
        self.calls: list[tuple[str, float, bool]] = []  # (phase, seconds, returned the right value)
        self.errors: list[BaseException] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="otlp-load")

    def _run(self) -> None:
        i = 0
        while not self._stop.is_set():
            phase = self.phase
            started = time.perf_counter()
            try:
                result = unit_of_work(i, cohort=phase)
            except BaseException as exc:
                self.errors.append(exc)
                return
            self.calls.append((phase, time.perf_counter() - started, result == 2 * i))
            i += 1

    def __enter__(self) -> _Load:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def latencies(self, phase: str) -> np.ndarray:
        return np.array([seconds for p, seconds, _ in self.calls if p == phase])


def test_collector_down_mid_run_costs_the_caller_nothing(otlp_receiver, make_telemetry) -> None:
    tel = _otlp_telemetry(make_telemetry, otlp_receiver, "otlp-outage")
    with _Load() as load:
        time.sleep(2.0)
        otlp_receiver.stop()
        load.phase = "down"
        time.sleep(4.0)  # several metric exports (every 0.5 s) and span batches hit the dead port
        otlp_receiver.start()
        load.phase = "after"
        time.sleep(2.0)
    assert not load.errors, f"instrumentation raised into the caller: {load.errors!r}"
    assert load.calls and all(ok for _, _, ok in load.calls), "a call did not return its value"

    up, down = load.latencies("up"), load.latencies("down")
    assert len(up) > 100 and len(down) > 100, (len(up), len(down))
    up_median, down_median = float(np.median(up)), float(np.median(down))
    print(f"{otlp_receiver.protocol}: {len(up)} calls up, median {up_median * 1e3:.3f} ms; {len(down)} down, "
          f"median {down_median * 1e3:.3f} ms, max {down.max() * 1e3:.1f} ms")
    assert down_median <= 2 * up_median + 0.0005, (
        f"calls slowed by the dead collector: median {down_median * 1e3:.3f} ms down vs "
        f"{up_median * 1e3:.3f} ms up")
    assert down.max() < 0.5, f"a call waited {down.max():.2f} s: something blocked on the export"

    # Telemetry flows again once the collector is back (gRPC may first wait out a reconnect backoff).
    deadline = time.monotonic() + 15
    while not (any(s.attributes.get("nethical.cohort") == "after" for s in otlp_receiver.spans())
               and _latest_count(otlp_receiver, **{"nethical.action": "unit_of_work",
                                                   "nethical.cohort": "after"}) > 0):
        assert time.monotonic() < deadline, "no span or histogram point arrived after the restart"
        tel.force_flush(timeout_s=2)
        time.sleep(0.2)
