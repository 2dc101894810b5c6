"""Learned baselines that go on learning (detect/learning.py), and the minimum detectable
effect on alerts and on the agent's /metrics."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from nethical_otel.config import Settings
from nethical_otel.detect import detector as detector_module
from nethical_otel.detect.alerts import State, Timing
from nethical_otel.detect.baseline import Baseline, BaselineSet, SeriesKey
from nethical_otel.detect.detector import Detector, PolicyBook, min_detectable_effect_text
from nethical_otel.detect.learning import SEGMENTS, BaselineLearner
from nethical_otel.detect.sources import RollingWindows, Window
from nethical_otel.errors import ConfigError
from nethical_otel.stats import LatencyHistogram

KEY = SeriesKey("governance", "query", "control")
OTHER = SeriesKey("governance", "generate", "control")
WINDOW_S, STEP_S = 60.0, 10.0


def hist(n: int, low: float = 0.010, high: float = 0.011, seed: int = 0) -> LatencyHistogram:
    return LatencyHistogram.from_samples(np.random.default_rng(seed).uniform(low, high, n))


class Feeder:
    """Drives a BaselineLearner as the detector does: one call per step, the baseline it
    returns handed back as ``current`` next time."""

    def __init__(self, learner: BaselineLearner, key: SeriesKey = KEY, current: Baseline | None = None):
        self.learner, self.key, self.current = learner, key, current
        self.published: list[tuple[float, Baseline]] = []

    def step(
        self, now: float, window: LatencyHistogram, *, alerting: bool = False, seconds: float = WINDOW_S
    ):
        baseline = self.learner.update(
            self.key, Window(window, seconds), now, self.current, alerting=alerting, min_samples=100
        )
        if baseline is not None:
            self.current = baseline
            self.published.append((now, baseline))
        return baseline


# -- the ring, step by step ------------------------------------------------------------------------


def test_first_full_window_is_published_then_clean_windows_join_after_their_quarantine():
    learner = BaselineLearner(WINDOW_S, 3600.0)
    feeder = Feeder(learner)
    assert feeder.step(30.0, hist(500), seconds=30.0) is None, "a window not yet full is no baseline"
    first = feeder.step(60.0, hist(500))
    assert first is not None and first.histogram.count == 500 and first.window_s == 60.0
    assert first.source == "learned" and learner.warming(first)
    for now in np.arange(70.0, 1200.0 + 1, STEP_S):
        feeder.step(float(now), hist(500, seed=int(now)))
        # Windows end every 60 s. While the baseline warms up (under 3 windows) they join at
        # once; from then on 2 windows (120 s) after their end.
        warm = sum(end <= now for end in (60, 120, 180))
        joined = warm + sum(end + 120 <= now for end in range(240, 1201, 60))
        assert feeder.current.histogram.count == 500 * joined, now
        assert feeder.current.window_s == pytest.approx(60.0 * joined)
        assert learner.warming(feeder.current) == (now < 180)


def test_a_quiet_series_starts_once_its_windows_hold_min_samples():
    feeder = Feeder(BaselineLearner(WINDOW_S, 3600.0))
    published = [feeder.step(60.0 * i, hist(40, seed=i)) for i in range(1, 5)]
    assert published[:2] == [None, None], "80 calls: not enough to judge anything against"
    assert published[2] is not None and published[2].histogram.count == 120 and published[2].window_s == 180
    assert published[2].throughput_rps == pytest.approx(40 / 60)


def test_while_warming_up_a_window_judged_a_regression_stays_out():
    feeder = Feeder(BaselineLearner(WINDOW_S, 3600.0))
    feeder.step(60.0, hist(500))
    feeder.learner.update(
        KEY,
        Window(hist(500, 0.02, 0.021), WINDOW_S),
        120.0,
        feeder.current,
        alerting=True,
        regressed=True,
        min_samples=100,
    )
    assert feeder.current.histogram.count == 500
    feeder.step(180.0, hist(500, seed=3), alerting=True)  # pending, but this window itself is fine
    assert feeder.current.histogram.count == 1000 and feeder.current.histogram.max < 0.0111


def test_windows_around_a_pending_or_firing_alert_never_join():
    feeder = Feeder(BaselineLearner(WINDOW_S, 3600.0))
    for now in (60.0, 120.0, 180.0):  # warmed up: 3 windows
        feeder.step(now, hist(500, seed=int(now)))
    # An alert is pending at t = 290 only: after the end of [180, 240], inside its quarantine.
    for now in np.arange(190.0, 720.0 + 1, STEP_S):
        feeder.step(float(now), hist(500, seed=int(now)), alerting=now == 290.0)
    joined_at = [round(t) for t, _ in feeder.published]
    # [180,240] and [240,300] overlap [their start, t=290]: dropped. [300,360] starts after the
    # alert and is the first to join, at 360 + 120 = 480.
    assert joined_at[:4] == [60, 120, 180, 480]
    clean_ends = [end for end in range(360, 721, 60) if end + 120 <= 720]
    assert feeder.current.window_s == 60.0 * (3 + len(clean_ends))


def test_a_firing_alert_freezes_the_baseline_until_it_is_over():
    feeder = Feeder(BaselineLearner(WINDOW_S, 3600.0))
    feeder.step(60.0, hist(500))
    for now in np.arange(70.0, 3000.0 + 1, STEP_S):
        firing = 600.0 <= now <= 2000.0
        # What the windows hold during the alert is slow: it must never show in the baseline.
        slow = 590.0 <= now <= 2010.0
        feeder.step(
            float(now), hist(500, 0.030, 0.031, seed=int(now)) if slow else hist(500), alerting=firing
        )
        assert feeder.current.histogram.max < 0.0111, now
    frozen = [t for t, _ in feeder.published if 600 <= t <= 2000 + 120]
    assert frozen == [], "nothing joins while the alert fires, nor in the quarantine after it"
    assert feeder.published[-1][0] > 2120, "clean windows join again afterwards"


def test_the_ring_is_bounded_and_rolls_over_the_horizon():
    horizon = 600.0
    learner = BaselineLearner(WINDOW_S, horizon)
    feeder = Feeder(learner)
    sizes = {}
    for i in range(1, 301):  # 5 hours of windows, one step per window
        n = 100 + i % 7
        sizes[60.0 * i] = n
        feeder.step(60.0 * i, hist(n, seed=i))
        stats = learner.stats(KEY)
        assert stats["segments"] <= SEGMENTS + 2 and stats["quarantined"] <= 3
        if i > 20:
            assert horizon <= feeder.current.window_s <= horizon + horizon / SEGMENTS + WINDOW_S
    # The baseline is exactly the newest windows that have left quarantine (ends <= now - 120).
    now = 60.0 * 300
    held = round(feeder.current.window_s / WINDOW_S)
    ends = sorted(end for end in sizes if end + 120 <= now)[-held:]
    assert feeder.current.histogram.count == sum(sizes[end] for end in ends)


def test_rolling_follows_a_slow_change_once_the_old_data_is_past_the_horizon():
    feeder = Feeder(BaselineLearner(WINDOW_S, 600.0))
    for i in range(1, 200):
        low = 0.010 if i < 50 else 0.0105  # +5 %: below every threshold, so never an alert
        feeder.step(60.0 * i, hist(300, low, low * 1.04, seed=i))
    assert feeder.current.histogram.min >= 0.0105 * 0.99, "the old level has rolled out"


def test_a_quiet_night_does_not_wipe_the_latency_baseline():
    learner = BaselineLearner(WINDOW_S, 3600.0)
    feeder = Feeder(learner)
    for i in range(1, 61):
        feeder.step(60.0 * i, hist(300, seed=i))
    for i in range(61, 61 + 8 * 60):  # eight hours at one call a minute: 60 calls an hour
        feeder.step(60.0 * i, hist(1, seed=i))
        assert feeder.current.histogram.count >= 100, "the horizon alone would hold only 60"
        assert learner.stats(KEY)["segments"] <= learner.max_segments + 1
    assert feeder.current.window_s > 3600.0 and feeder.current.throughput_rps < 0.05


def test_a_learned_baseline_from_a_file_seeds_the_ring_and_rolls_out():
    seed = Baseline(KEY, hist(20_000, 0.020, 0.021), window_s=3600.0, source="learned", version="v1")
    feeder = Feeder(BaselineLearner(WINDOW_S, 3600.0), current=seed)
    feeder.step(60.0, hist(500))
    assert feeder.published == [], "a new window waits out its quarantine first"
    feeder.step(180.0, hist(500))
    grown = feeder.current
    assert grown.histogram.count == 20_500 and grown.window_s == 3660.0 and grown.version == "v1"
    for i in range(4, 80):
        feeder.step(60.0 * i, hist(500, seed=i))
    assert feeder.current.histogram.max < 0.012, "an hour of new windows pushed the seed out"
    assert feeder.current.window_s >= 3600.0


def test_a_clock_that_jumps_back_does_not_stop_learning():
    feeder = Feeder(BaselineLearner(WINDOW_S, 3600.0))
    for i in range(1, 11):
        feeder.step(10_000.0 + 60.0 * i, hist(500, seed=i))
    count = feeder.current.histogram.count
    for i in range(1, 11):  # an hour earlier, as a wall clock stepped back would say
        feeder.step(6_400.0 + 60.0 * i, hist(500, seed=100 + i))
    assert feeder.current.histogram.count > count


def test_memory_stays_bounded_under_series_churn():
    learner = BaselineLearner(WINDOW_S, 600.0)
    for i in range(100):
        key = SeriesKey("svc", f"action-{i}", "")
        Feeder(learner, key).step(60.0 * i, hist(200, seed=i))
        learner.forget_idle(60.0 * i)
    assert len(learner) <= 600 / 60 + 2


def test_after_fork_the_child_keeps_published_baselines_but_not_the_parents_windows():
    learner = BaselineLearner(WINDOW_S, 3600.0)
    published = Feeder(learner, KEY)
    for i in range(1, 6):  # 3 windows to warm up, 2 in quarantine
        published.step(60.0 * i, hist(500, seed=i))
    quiet = Feeder(learner, OTHER)
    quiet.step(60.0, hist(30))  # 30 calls: accumulating, not published
    assert learner.stats(KEY)["quarantined"] == 2 and learner.stats(OTHER)["count"] == 30
    count = published.current.histogram.count

    learner.reset_after_fork()
    assert learner.stats(OTHER) == {}, "an unpublished start is the parent's traffic"
    assert learner.stats(KEY)["quarantined"] == 0 and learner.stats(KEY)["count"] == count
    # The child's own clean windows go on joining the kept baseline.
    published.step(1000.0, hist(500, seed=9))
    published.step(1120.0, hist(500, seed=10))
    assert published.current.histogram.count == count + 500


# -- in the detector -------------------------------------------------------------------------------


class StepSource:
    """A cumulative stream windowed like InProcessSource: ``per_step`` uniform latencies per
    step, times ``factor``."""

    window_s = WINDOW_S

    def __init__(self, per_step: int = 300, low: float = 0.010, high: float = 0.011, seed: int = 3):
        self.rng = np.random.default_rng(seed)
        self.per_step, self.low, self.high = per_step, low, high
        self.factor = 1.0
        self.cumulative = LatencyHistogram()
        self.windows = RollingWindows(WINDOW_S)

    def read(self, now):
        self.cumulative.record_many(self.rng.uniform(self.low, self.high, self.per_step) * self.factor)
        return self.windows.update(now, {KEY: self.cumulative.copy()})


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Firing:
    def __init__(self) -> None:
        self.episodes = set()

    def update(self, alert, now):
        if alert.state is State.FIRING:
            self.episodes.add((alert.key, alert.fired_at))

    def close(self, timeout_s=5.0):
        pass


def make(source, baselines=None, **kwargs):
    clock, sink = Clock(), Firing()
    learned, refreshed = [], []
    detector = Detector(
        source,
        baselines if baselines is not None else BaselineSet(),
        PolicyBook.from_mapping({}),
        [sink],
        timing=Timing(for_s=30.0, keep_firing_for_s=60.0),
        clock=clock,
        on_learn=learned.append,
        on_refresh=refreshed.append,
        **kwargs,
    )
    return detector, clock, sink, learned, refreshed


def run(detector, clock, until_s, *, every=None):
    while clock.now <= until_s:
        detector.step()
        if every is not None:
            every()
        clock.now += STEP_S


def test_the_detector_learns_once_then_grows_its_baseline_from_clean_windows():
    source = StepSource()
    detector, clock, sink, learned, refreshed = make(source)
    run(detector, clock, 1200.0)
    assert len(learned) == 1 and learned[0].histogram.count == 1800
    baseline = detector.baselines.get(KEY)
    assert baseline is refreshed[-1] and baseline.source == "learned"
    assert baseline.histogram.count == 1800 * round(baseline.window_s / WINDOW_S)
    assert baseline.window_s == 60.0 * (1 + (1200 - 120) // 60 - 1)
    assert not sink.episodes


def test_the_detector_never_takes_a_regression_into_its_baseline():
    source = StepSource()
    detector, clock, sink, _, refreshed = make(source)
    maxima = []

    def check():
        source.factor = 2.0 if 600.0 <= clock.now < 1200.0 else 1.0
        maxima.append(detector.baselines.get(KEY).histogram.max if detector.baselines.get(KEY) else 0.0)

    run(detector, clock, 2400.0, every=check)
    assert sink.episodes, "the slowdown fired"
    assert max(maxima) < 0.0111, "no slow call ever reached the baseline"
    assert detector.baselines.get(KEY).window_s > refreshed[0].window_s, "clean windows joined afterwards"


def test_an_unlucky_first_window_does_not_lock_the_baseline():
    source = StepSource(low=0.0100, high=0.0104)
    detector, clock, _, _, _ = make(source)
    # Window k's level, as luck would have it: the first 10 % fast, then around 1.0. Against
    # the first, windows 2 and 4 are +15 %: regressions, and their alerts go pending.
    levels = {1: 0.90, 2: 1.04, 3: 0.96, 4: 1.03, 5: 0.97}
    after = (1.02, 0.98, 1.01, 0.99)

    def lucky_levels():
        window = math.ceil((clock.now + STEP_S) / WINDOW_S)  # the window the next read falls in
        source.factor = levels.get(window, after[window % len(after)])

    run(detector, clock, 900.0, every=lucky_levels)
    baseline = detector.baselines.get(KEY)
    assert not detector.learner.warming(baseline), "the windows that looked normal joined"
    assert not detector.book.alerts(State.PENDING, State.FIRING), "and the false alerts ended"


def test_a_slowdown_right_after_learning_is_caught_in_full_and_kept_out():
    source = StepSource()
    detector, clock, _, _, _ = make(source)

    def slow_after_the_first_window():
        source.factor = 1.5 if clock.now >= 60.0 else 1.0

    run(detector, clock, 600.0, every=slow_after_the_first_window)
    baseline = detector.baselines.get(KEY)
    assert baseline.window_s == 60.0 and baseline.histogram.max < 0.0111, "no slow window joined"
    firing = [a for a in detector.book.alerts(State.FIRING) if a.labels.get("quantile") == "0.5"]
    assert firing and 40 < float(firing[0].annotations["change_pct"]) < 60


def test_a_baseline_from_a_file_stays_fixed():
    fixed = Baseline(KEY, hist(5000), window_s=300.0, source="prometheus")
    detector, clock, _, learned, refreshed = make(StepSource(), BaselineSet([fixed]))
    run(detector, clock, 900.0)
    assert detector.baselines.get(KEY) is fixed and learned == refreshed == []
    assert len(detector.learner) == 0


def test_with_learning_off_even_a_learned_baseline_stays_as_it_is():
    loaded = Baseline(KEY, hist(5000), window_s=300.0, source="learned")
    detector, clock, _, learned, refreshed = make(StepSource(), BaselineSet([loaded]), learn=False)
    run(detector, clock, 900.0)
    assert detector.baselines.get(KEY) is loaded and learned == refreshed == []


def test_a_failing_baseline_callback_does_not_lose_the_baseline(caplog):
    def broken(_):
        raise OSError("disk full")

    clock = Clock()
    detector = Detector(
        StepSource(), BaselineSet(), PolicyBook.from_mapping({}), [], on_learn=broken, clock=clock
    )
    for now in (0.0, 10.0, 20.0, 30.0, 40.0, 50.0, 60.0):
        clock.now = now
        (report,) = detector.step()
    assert report.learned and detector.baselines.get(KEY) is report.baseline
    assert any("disk full" in r.getMessage() for r in caplog.records)


def test_detector_reset_after_fork_drops_the_parents_window_state():
    detector, clock, _, _, _ = make(StepSource())
    run(detector, clock, 300.0)
    assert detector.learner.stats(KEY)["quarantined"] > 0
    count = detector.baselines.get(KEY).histogram.count
    detector.reset_after_fork()
    assert detector.learner.stats(KEY)["quarantined"] == 0
    assert detector.baselines.get(KEY).histogram.count == count


def test_build_detector_saves_the_first_baseline_at_once_and_grown_ones_now_and_then(tmp_path, monkeypatch):
    from nethical_otel.detect import build

    path = tmp_path / "baselines.json"
    settings = Settings(baseline_file=str(path), detector_baseline_s=1800.0)
    detector = build.build_detector(settings, StepSource())
    assert detector.learner.horizon_s == 1800.0
    detector.clock = clock = Clock()
    run(detector, clock, 60.0)
    (saved,) = BaselineSet.load(path)
    assert saved.histogram.count == 1800
    run(detector, clock, 600.0)
    assert next(iter(BaselineSet.load(path))).histogram.count == 1800, "not every window rewrites the file"
    monkeypatch.setattr(build, "REFRESH_SAVE_INTERVAL_S", 0.0)
    run(detector, clock, 700.0)
    assert next(iter(BaselineSet.load(path))).histogram.count == detector.baselines.get(KEY).histogram.count


def test_baseline_horizon_setting_is_checked():
    assert Settings().detector_baseline_s == 3600.0
    with pytest.raises(ConfigError, match="detector_baseline_s"):
        Settings(detector_baseline_s=0.0)
    with pytest.raises(ConfigError, match="detector_baseline_s must be at least detector_window_s"):
        Settings(detector_baseline_s=30.0)


# -- minimum detectable effect ---------------------------------------------------------------------


def with_mde(mde_by_metric):
    """``evaluate`` as the statistics give it, each comparison's ``mde`` replaced."""
    real = detector_module.evaluate

    def evaluate(*args, **kwargs):
        findings = real(*args, **kwargs)
        return [
            f
            if f.verdict == "inconclusive"  # too few calls: the statistics leave it NaN
            else dataclasses.replace(
                f, comparison=dataclasses.replace(f.comparison, mde=mde_by_metric.get(f.metric, math.nan))
            )
            for f in findings
        ]

    return evaluate


@pytest.mark.parametrize(
    ("mde", "text", "phrase"),
    [
        (0.07, "7.0%", "smallest change it would detect (80 % power) is 7.0%"),
        (math.inf, "unbounded", "cannot bound the smallest change"),
        (math.nan, "n/a", None),
    ],
)
def test_alerts_carry_the_minimum_detectable_effect(monkeypatch, mde, text, phrase):
    monkeypatch.setattr(detector_module, "evaluate", with_mde({"p95": mde, "p50": mde, "p99": mde}))
    baseline = Baseline(KEY, hist(20_000), window_s=600.0, source="test")
    source = StepSource()
    source.factor = 2.0
    detector, clock, _, _, _ = make(source, BaselineSet([baseline]))
    run(detector, clock, 120.0)
    (alert,) = [a for a in detector.book.alerts(State.FIRING) if a.labels.get("quantile") == "0.95"]
    assert alert.annotations["min_detectable_effect"] == text
    if phrase is None:
        assert "detect" not in alert.annotations["description"].split(").")[-1]
    else:
        assert phrase in alert.annotations["description"]


def test_minimum_detectable_effect_text_per_metric():
    from nethical_otel.stats import compare_error_rate, compare_throughput

    errors = dataclasses.replace(compare_error_rate((1, 1000), (2, 1000)), mde=0.35)
    throughput = dataclasses.replace(compare_throughput(20.0, 19.0), mde=0.12)
    assert min_detectable_effect_text(errors) == "0.35 percentage points"
    assert min_detectable_effect_text(throughput) == "12.0%"


def test_agent_metrics_export_the_minimum_detectable_effect(monkeypatch):
    from nethical_otel.detect.agent import AgentMetrics

    monkeypatch.setattr(detector_module, "evaluate", with_mde({"p50": 0.03, "p95": 0.07, "p99": math.inf}))
    baseline = Baseline(KEY, hist(20_000), window_s=600.0, source="test")
    quiet = Baseline(OTHER, hist(20_000), window_s=600.0, source="test")

    class TwoSeries(StepSource):
        def read(self, now):
            windows = super().read(now)
            windows[OTHER] = Window(hist(20), WINDOW_S)  # too few calls: inconclusive, no mde
            return windows

    detector, clock, _, _, _ = make(TwoSeries(), BaselineSet([baseline, quiet]))
    metrics = AgentMetrics()
    run(detector, clock, 60.0)
    metrics.update(detector, detector.last_reports)
    name = "nethical_detector_min_detectable_effect_ratio"

    def value(key, q):
        return metrics.registry.get_sample_value(name, {**key.labels(), "quantile": q})

    assert (value(KEY, "0.5"), value(KEY, "0.95"), value(KEY, "0.99")) == (0.03, 0.07, math.inf)
    assert value(OTHER, "0.95") == math.inf, "too few calls to prove anything: shown as +Inf"

    monkeypatch.setattr(detector_module, "evaluate", with_mde({}))  # statistics without an mde
    detector.step()
    metrics.update(detector, detector.last_reports)
    assert value(KEY, "0.95") is None, "decided but not computed: left out rather than a made-up value"
    assert value(OTHER, "0.95") == math.inf
