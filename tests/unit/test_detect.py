"""Detector pieces without servers: alert life cycle, baselines, windows, synthetic streams."""

from __future__ import annotations

import json

import numpy as np
import pytest

from nethical_otel.detect.alerts import AlertBook, State, Timing
from nethical_otel.detect.baseline import Baseline, BaselineError, BaselineSet, SeriesKey
from nethical_otel.detect.detector import Detector, PolicyBook
from nethical_otel.detect.sources import RollingWindows, Window
from nethical_otel.errors import ConfigError
from nethical_otel.stats import LatencyHistogram

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
def test_bad_policy_is_a_config_error(policy, message):
    with pytest.raises(ConfigError, match=message):
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


def make_detector(source, sink, baselines=None, **timing):
    clock = iter(range(0, 10**9, 10))
    return Detector(
        source,
        baselines or BaselineSet(),
        PolicyBook.from_mapping({}),
        [sink],
        timing=Timing(**({"for_s": 20, "keep_firing_for_s": 30} | timing)),
        clock=lambda: float(next(clock)),
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
    assert annotations["runbook_url"].endswith("NethicalLatencyRegression.md")
    _, _, labels, _ = sink.updates[0]
    assert labels["service"] == "governance" and labels["action"] == "query" and labels["cohort"] == "control"
    assert labels["severity"] in ("warning", "info")

    source.slowdown = 1.0
    for _ in range(6):
        detector.step()
    resolved = [u for u in sink.updates if u[1] is State.RESOLVED]
    assert {u[2]["quantile"] for u in resolved} == set(firing)


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
