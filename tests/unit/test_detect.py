"""Detector pieces without servers: alert life cycle, baselines, windows, synthetic streams."""

from __future__ import annotations

import json
import logging
import os
import time
import typing

import numpy as np
import pytest

from nethical_otel import names
from nethical_otel.detect.alerts import AlertBook, State, Timing
from nethical_otel.detect.baseline import Baseline, BaselineError, BaselineSet, SeriesKey
from nethical_otel.detect.detector import Detector, PolicyBook
from nethical_otel.detect.sources import RollingWindows, Window
from nethical_otel.errors import ConfigError
from nethical_otel.stats import LatencyHistogram, StatsError

KEY = SeriesKey("governance", "query", "control")
LABELS = {"alertname": "NethicalLatencyRegression", "service": "governance"}


# -- alert life cycle --------------------------------------------------------------------------


def test_pending_then_firing_after_for_then_resolved_after_keep_firing_for():
    book = AlertBook(Timing(for_s=20, keep_firing_for_s=30))
    states = []
    timeline = [(0, True), (10, True), (20, True), (30, False), (50, False), (60, False), (70, False)]
    for t, condition in timeline:
        states.append(book.observe(LABELS, condition, {"summary": "slow"}, t).state)
    assert states == [
        State.PENDING,
        State.PENDING,
        State.FIRING,
        State.FIRING,  # false for 10 s < 30 s: keeps firing
        State.RESOLVED,  # false for 30 s since last true (t=20)
        State.RESOLVED,
        State.RESOLVED,
    ]
    alert = book.alerts()[0]
    assert (alert.fired_at, alert.resolved_at) == (20, 50)


def test_pending_that_clears_never_fires():
    book = AlertBook(Timing(for_s=20, keep_firing_for_s=30))
    for t, condition in [(0, True), (10, False), (20, True), (30, False), (40, True)]:
        alert = book.observe(LABELS, condition, {}, t)
        assert alert.state is not State.FIRING
    assert alert.active_since == 40


def test_hovering_series_does_not_flap():
    book = AlertBook(Timing(for_s=0, keep_firing_for_s=60))
    transitions = 0
    previous = State.INACTIVE
    for t in range(0, 600, 10):
        state = book.observe(LABELS, t % 20 == 0, {}, t).state  # true every other step
        transitions += state is not previous
        previous = state
    assert previous is State.FIRING and transitions == 1


def test_inconclusive_holds_the_state():
    book = AlertBook(Timing(for_s=0, keep_firing_for_s=10))
    book.observe(LABELS, True, {}, 0)
    for t in (100, 200, 300):
        assert book.observe(LABELS, None, {}, t).state is State.FIRING


# -- baselines ---------------------------------------------------------------------------------


def baseline(seed=1, n=5000, scale_s=0.01, errors=0) -> Baseline:
    rng = np.random.default_rng(seed)
    hist = LatencyHistogram.from_samples(rng.lognormal(np.log(scale_s), 0.4, n), errors=errors)
    return Baseline(KEY, hist, window_s=60.0, source="test", version="abc123")


def test_baseline_file_round_trip(tmp_path):
    path = tmp_path / "baselines.json"
    original = baseline(errors=7)
    BaselineSet([original]).save(path)
    (loaded,) = BaselineSet.load(path)
    assert loaded.key == KEY and loaded.version == "abc123" and loaded.source == "test"
    assert loaded.histogram.count == 5000 and loaded.histogram.errors == 7
    assert loaded.histogram.quantile(0.95) == original.histogram.quantile(0.95)
    assert loaded.throughput_rps == pytest.approx(5000 / 60)
    assert not list(tmp_path.glob(".*tmp")), "no temp file left behind"


def test_existing_file_is_not_replaced_without_overwrite(tmp_path):
    path = tmp_path / "baselines.json"
    BaselineSet([baseline()]).save(path)
    before = path.read_bytes()
    with pytest.raises(BaselineError, match="exists"):
        BaselineSet([baseline(seed=2)]).save(path)
    assert path.read_bytes() == before


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda doc: doc.update(version=99), "format version 99"),
        (lambda doc: doc.update(format="other"), "not a nethical-otel baseline file"),
        (lambda doc: doc["baselines"][0].pop("service"), r"baselines\[0\]: missing 'service'"),
        (lambda doc: doc["baselines"][0].update(window_s=-1), "'window_s' must be > 0"),
        (lambda doc: doc["baselines"][0]["histogram"].update(counts="x"), r"baselines\[0\]: histogram"),
    ],
)
def test_corrupt_baseline_files_are_clear_errors(tmp_path, mutate, message):
    path = tmp_path / "baselines.json"
    BaselineSet([baseline()]).save(path)
    document = json.loads(path.read_text())
    mutate(document)
    path.write_text(json.dumps(document))
    with pytest.raises(BaselineError, match=message):
        BaselineSet.load(path)


def test_truncated_baseline_file(tmp_path):
    path = tmp_path / "baselines.json"
    BaselineSet([baseline()]).save(path)
    path.write_text(path.read_text()[:200])
    with pytest.raises(BaselineError, match="not valid JSON"):
        BaselineSet.load(path)


# -- windows -----------------------------------------------------------------------------------


def test_rolling_window_is_the_difference_of_snapshots():
    windows = RollingWindows(window_s=30)
    rng = np.random.default_rng(5)
    cumulative = LatencyHistogram()
    per_step = []
    for step in range(6):
        batch = rng.lognormal(np.log(0.01 * (step + 1)), 0.2, 1000)
        per_step.append(batch)
        cumulative = cumulative.copy().merge(LatencyHistogram.from_samples(batch))
        result = windows.update(step * 10.0, {KEY: cumulative})
    window = result[KEY]
    assert window.seconds == 30
    expected = LatencyHistogram.from_samples(np.concatenate(per_step[3:]))
    assert window.histogram.count == 3000
    assert window.histogram.quantile(0.5) == pytest.approx(expected.quantile(0.5), rel=0.011)


def test_rolling_window_survives_a_counter_reset():
    windows = RollingWindows(window_s=30)
    big = LatencyHistogram.from_samples(np.full(1000, 0.01))
    small = LatencyHistogram.from_samples(np.full(10, 0.02))
    windows.update(0, {KEY: big})
    windows.update(10, {KEY: big})
    window = windows.update(20, {KEY: small})[KEY]
    assert window.histogram.count == 10 and window.seconds == 10


# -- policy book -------------------------------------------------------------------------------


def test_policy_overrides_most_specific_wins():
    book = PolicyBook.from_mapping(
        {
            "quantiles": {"p95": {"threshold": 0.15}},
            "overrides": [
                {"match": {"action": "generate"}, "quantiles": {"p95": {"threshold": 0.25}}},
                {"match": {"action": "generate", "cohort": "beta"}, "min_samples": 500},
            ],
        }
    )
    p95 = {r.name: r.threshold for r in book.policy_for(SeriesKey("s", "generate", "beta")).quantiles}["p95"]
    assert book.policy_for(SeriesKey("s", "generate", "beta")).min_samples == 500
    assert p95 == 0.15  # the more specific override starts from the default, not from the other override
    generate = book.policy_for(SeriesKey("s", "generate", "alpha"))
    assert {r.name: r.threshold for r in generate.quantiles}["p95"] == 0.25
    assert book.policy_for(KEY) is book.default


@pytest.mark.parametrize(
    ("policy", "message"),
    [
        ({"quantiles": {"p95": {"threshold": -1}}}, "threshold must be >= 0"),
        ({"overrides": [{"match": {"region": "eu"}}]}, r"overrides\[0\].match: unknown key 'region'"),
        ({"overrides": "generate"}, "overrides: expected a list"),
        ({"nonsense": 1}, "nonsense"),
    ],
)
def test_bad_policy_is_a_stats_error(policy, message):
    with pytest.raises(StatsError, match=message):
        PolicyBook.from_mapping(policy)


# -- the detector on a synthetic stream ----------------------------------------------------------


class SyntheticSource:
    """Windows of seeded lognormal latencies; ``slowdown`` scales them from now on."""

    window_s = 60.0

    def __init__(self, seed=11, per_window=3000, median_s=0.01):
        self.rng = np.random.default_rng(seed)
        self.per_window = per_window
        self.median_s = median_s
        self.slowdown = 1.0

    def read(self, now):
        samples = self.rng.lognormal(np.log(self.median_s), 0.5, self.per_window) * self.slowdown
        return {KEY: Window(LatencyHistogram.from_samples(samples), self.window_s)}


class RecordingSink:
    def __init__(self):
        self.updates = []

    def update(self, alert, now):
        self.updates.append((now, alert.state, dict(alert.labels), dict(alert.annotations)))

    def close(self, timeout_s=5.0):
        pass


def make_detector(source, sink, baselines=None, detector_options=None, **timing):
    clock = iter(range(0, 10**9, 10))
    return Detector(
        source,
        baselines or BaselineSet(),
        PolicyBook.from_mapping({}),
        [sink],
        timing=Timing(**({"for_s": 20, "keep_firing_for_s": 30} | timing)),
        clock=lambda: float(next(clock)),
        **(detector_options or {}),
    )


def test_detector_learns_then_fires_then_resolves():
    source, sink = SyntheticSource(), RecordingSink()
    detector = make_detector(source, sink)
    (report,) = detector.step()
    assert report.learned and detector.baselines.get(KEY) is not None
    for _ in range(50):
        detector.step()
    assert sink.updates == [], "steady stream, no alert"

    source.slowdown = 1.3
    for _ in range(5):
        detector.step()
    firing = {labels["quantile"]: (state, annotations) for _, state, labels, annotations in sink.updates}
    assert set(firing) >= {"0.5", "0.95"}, "p50 (+10%) and p95 (+15%) both breached by +30%"
    state, annotations = firing["0.95"]
    assert state is State.FIRING
    assert 20 < float(annotations["change_pct"]) < 40
    assert annotations["runbook_url"] == f"{names.RUNBOOK_BASE_URL}/{names.LATENCY_ALERT}.md"
    _, _, labels, _ = sink.updates[0]
    assert labels["service"] == "governance" and labels["action"] == "query" and labels["cohort"] == "control"
    assert labels["severity"] in ("warning", "info")

    source.slowdown = 1.0
    for _ in range(6):
        detector.step()
    resolved = [u for u in sink.updates if u[1] is State.RESOLVED]
    assert {u[2]["quantile"] for u in resolved} == set(firing)


@pytest.mark.parametrize(
    ("options", "runbook_url"),
    [
        ({}, f"{names.RUNBOOK_BASE_URL}/{names.LATENCY_ALERT}.md"),  # the default: clickable, absolute
        (
            {"runbook_base_url": "https://wiki.example.com/sre/"},
            "https://wiki.example.com/sre/NethicalLatencyRegression.md",
        ),
        ({"runbook_base_url": None}, None),  # unset: no runbook_url rather than a broken one
        ({"runbook_base_url": ""}, None),
    ],
    ids=["default", "elsewhere", "none", "empty"],
)
def test_runbook_url_from_the_configured_base_or_none(options, runbook_url):
    source, sink = SyntheticSource(), RecordingSink()
    detector = make_detector(source, sink, detector_options=options, for_s=0)
    detector.step()
    source.slowdown = 1.5
    detector.step()
    [annotations, *_] = [a for _, state, _, a in sink.updates if state is State.FIRING]
    assert annotations.get("runbook_url") == runbook_url
    assert "dashboard_url" not in annotations


def test_no_false_alerts_over_many_steady_windows():
    source, sink = SyntheticSource(seed=3), RecordingSink()
    detector = make_detector(source, sink, for_s=0)  # no `for` grace: every window counts
    for _ in range(300):
        detector.step()
    assert sink.updates == []


def test_too_few_samples_never_alert():
    source, sink = SyntheticSource(per_window=20), RecordingSink()
    detector = make_detector(source, sink, baselines=BaselineSet([baseline(n=5000, scale_s=0.01)]), for_s=0)
    source.slowdown = 3.0
    for _ in range(10):
        detector.step()
    names = {labels["alertname"] for _, _, labels, _ in sink.updates}
    # 20 calls a minute against 5000 is a real throughput drop; 3x slower latency on 20
    # samples is not evidence enough to page.
    assert names == {"NethicalThroughputDrop"}


def test_error_rate_increase_is_critical():
    class ErrorSource(SyntheticSource):
        def read(self, now):
            windows = super().read(now)
            windows[KEY].histogram.errors = int(0.05 * self.per_window)  # 5 % errors
            return windows

    source, sink = ErrorSource(), RecordingSink()
    detector = make_detector(source, sink, baselines=BaselineSet([baseline(seed=4, scale_s=0.01)]), for_s=0)
    detector.step()
    names = {(labels["alertname"], labels["severity"]) for _, _, labels, _ in sink.updates}
    assert ("NethicalErrorRateIncrease", "critical") in names


# -- the detector thread never dies and never raises ---------------------------------------------


def test_infinite_step_is_refused_instead_of_killing_the_thread():
    from nethical_otel.detect.detector import DetectorThread

    detector = make_detector(SyntheticSource(), RecordingSink())
    for step_s in (float("inf"), float("nan"), 0.0):
        with pytest.raises(ConfigError, match="detector_step_s must be a finite number > 0"):
            DetectorThread(detector, step_s)


class FlakySource(SyntheticSource):
    """Raises what a bug or a hostile answer would raise, ``failures`` times, then works."""

    def __init__(self, failures, **kwargs):
        super().__init__(**kwargs)
        self.failures = failures

    def read(self, now):
        if self.failures:
            self.failures -= 1
            raise ZeroDivisionError("a bug in the source")
        return super().read(now)


def test_a_failing_source_is_logged_once_and_the_detector_goes_on(caplog):
    from nethical_otel.detect.detector import DetectorThread

    caplog.set_level(logging.WARNING, logger="nethical_otel")
    source, sink = FlakySource(failures=20), RecordingSink()
    detector = make_detector(source, sink)
    runner = DetectorThread(detector, 0.01).start()
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not detector.baselines.get(KEY):
            time.sleep(0.01)
        assert detector.baselines.get(KEY) is not None, "the detector went on after the failures"
        assert runner._thread.is_alive()
    finally:
        runner.stop(timeout_s=2)
    failures = [r for r in caplog.records if "ZeroDivisionError" in r.getMessage()]
    assert len(failures) == 1 and failures[0].exc_info is not None  # once, with its traceback
    assert sum("can be read again" in r.getMessage() for r in caplog.records) == 1


def test_step_reports_a_failing_source_instead_of_raising():
    detector = make_detector(FlakySource(failures=1), RecordingSink())
    assert detector.step() == []
    assert detector.last_error == "reading the live windows failed: ZeroDivisionError: a bug in the source"
    detector.step()
    assert detector.last_error is None


def test_one_series_that_cannot_be_evaluated_does_not_stop_the_others(caplog):
    broken = SeriesKey("governance", "broken", "control")

    class OneBrokenSeries(SyntheticSource):
        def read(self, now):
            windows = super().read(now)
            windows[broken] = Window(histogram=None, seconds=60.0)  # what a bug would hand over
            return windows

    caplog.set_level(logging.ERROR, logger="nethical_otel")
    source, sink = OneBrokenSeries(), RecordingSink()
    detector = make_detector(source, sink)
    for _ in range(3):
        reports = detector.step()
    assert [r.key for r in reports] == [KEY] and detector.baselines.get(KEY) is not None
    errors = [r.getMessage() for r in caplog.records if "evaluating governance/broken" in r.getMessage()]
    assert len(errors) == 1, errors


def test_forked_child_restarts_the_detector_with_empty_windows_and_no_parent_alerts():
    from nethical_otel.detect.detector import DetectorThread
    from nethical_otel.detect.sources import InProcessSource

    slow = {"value": 1.0}
    rng = np.random.default_rng(5)
    cumulative = LatencyHistogram()

    def histograms():
        cumulative.merge(
            LatencyHistogram.from_samples(rng.lognormal(np.log(0.01), 0.3, 2000) * slow["value"])
        )
        return [({"nethical.action": "query", "nethical.cohort": "control"}, cumulative.copy())]

    class Recorded(InProcessSource):
        reads: typing.ClassVar[list] = []

        def read(self, now):
            windows = super().read(now)
            self.reads.append((os.getpid(), {k: w.seconds for k, w in windows.items()}))
            return windows

    source = Recorded(histograms, "governance", window_s=0.05)
    detector = Detector(
        source,
        BaselineSet(),
        PolicyBook.from_mapping({}),
        [RecordingSink()],
        timing=Timing(for_s=0, keep_firing_for_s=60),
    )
    runner = DetectorThread(detector, 0.02).start()
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not detector.baselines.get(KEY):
            time.sleep(0.01)
        slow["value"] = 2.0
        while time.monotonic() < deadline and not detector.book.alerts(State.FIRING):
            time.sleep(0.01)
        assert detector.book.alerts(State.FIRING), "the parent fires"
        slow["value"] = 1.0  # from now on nothing is slow: a firing alert in the child is the parent's
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                limit = time.monotonic() + 2
                while time.monotonic() < limit and sum(p == os.getpid() for p, _ in source.reads) < 3:
                    time.sleep(0.01)
                mine = [seconds for p, seconds in source.reads if p == os.getpid()]
                ok = len(mine) >= 3 and runner._thread.is_alive()
                ok = ok and all(s == 0 for s in mine[0].values())  # the first window starts empty
                ok = ok and not detector.book.alerts(State.FIRING, State.PENDING)
                code = 0 if ok else 3
                runner.stop(timeout_s=1)
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert detector.book.alerts(State.FIRING) and runner._thread.is_alive(), "the parent is unaffected"
    finally:
        runner.stop(timeout_s=2)


def test_a_malformed_prometheus_answer_is_a_source_error(tmp_path):
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from nethical_otel.detect.sources import PrometheusSource, SourceError

    answers = iter(
        [
            b'{"status": "success", "data": {"result": [{"metric": {}, "value": [0]}]}}',  # no `le`
            b'["not", "a", "mapping"]',
            b'{"status": "success", "data": null}',
        ]
    )

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            body = next(answers, b"{}")
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        source = PrometheusSource(f"http://user:pr0m-pw@127.0.0.1:{server.server_port}", 60.0)
        for _ in range(3):
            with pytest.raises(SourceError, match=r"Prometheus at http://\*\*\*@127\.0\.0\.1") as caught:
                source.read(time.time())
            assert "pr0m-pw" not in str(caught.value)
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("window_s", [float("inf"), float("nan"), 0.0])
def test_sources_refuse_windows_that_cannot_work(window_s):
    from nethical_otel.detect.sources import InProcessSource, PrometheusSource

    with pytest.raises(ConfigError, match="detector_window_s must be a finite number"):
        PrometheusSource("http://127.0.0.1:9", window_s)
    with pytest.raises(ConfigError, match="detector_window_s must be a finite number"):
        InProcessSource(list, "svc", window_s)
