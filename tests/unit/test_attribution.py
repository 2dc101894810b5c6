"""Where the time went: sub-steps compared with their parent's alert, and its exemplars."""

from __future__ import annotations

import math

import numpy as np

from nethical_otel.detect.alerts import State
from nethical_otel.detect.attribution import trace_link
from nethical_otel.detect.baseline import Baseline, SeriesKey
from nethical_otel.detect.shard import Shard
from nethical_otel.detect.sources import Window
from nethical_otel.exemplar import Exemplar
from nethical_otel.stats import LatencyHistogram
from nethical_otel.stats.attribution import SubStepChange
from tests.unit.test_detect import RecordingSink, make_detector

PARENT = SeriesKey("governance", "query", "control")
FETCH = SeriesKey("governance", "db.fetch", "control", parent="query")
SCORE = SeriesKey("governance", "score", "control", parent="query")
TRACE_URL = "http://127.0.0.1:16686/trace/{trace_id}"


class NestedSource:
    """Calls of ``query`` made of ``db.fetch`` (6 ms median) then ``score`` (4 ms): the parent's
    latency is their sum. ``slow`` scales one sub-step from now on."""

    window_s = 60.0

    def __init__(self, seed=5, per_window=3000):
        self.rng = np.random.default_rng(seed)
        self.per_window = per_window
        self.slow = {"db.fetch": 1.0, "score": 1.0}
        self.own_s = 0.0002  # the parent's own code, outside its sub-steps
        self.now = 0.0

    def read(self, now):
        self.now = now
        n = self.per_window
        fetch = self.rng.lognormal(np.log(0.006), 0.4, n) * self.slow["db.fetch"]
        score = self.rng.lognormal(np.log(0.004), 0.4, n) * self.slow["score"]
        parent = fetch + score + self.own_s
        self.slowest = parent.max()
        return {
            PARENT: Window(LatencyHistogram.from_samples(parent), self.window_s),
            FETCH: Window(LatencyHistogram.from_samples(fetch), self.window_s),
            SCORE: Window(LatencyHistogram.from_samples(score), self.window_s),
        }

    def exemplars(self, key, start, end):
        assert key == PARENT and start == self.now - self.window_s and end == self.now
        values = [self.slowest, self.slowest / 2, self.slowest / 3, self.slowest / 4]
        return [Exemplar(v, 0xABC0 + i, 0x10 + i, int(end * 1e9)) for i, v in enumerate(values)]


def _firing(sink):
    return {
        labels["quantile"]: annotations
        for _, state, labels, annotations in sink.updates
        if state is State.FIRING and "quantile" in labels
    }


def test_the_alert_names_the_slowed_sub_step_with_its_share_and_exemplars():
    source, sink = NestedSource(), RecordingSink()
    detector = make_detector(source, sink, detector_options={"trace_url_template": TRACE_URL})
    detector.step()
    assert {FETCH, SCORE} <= {b.key for b in detector.baselines}, "sub-steps learn baselines too"
    for _ in range(5):
        detector.step()
    assert sink.updates == []
    assert [r.key for r in detector.last_reports] == [PARENT], "sub-steps are not series of their own"

    source.slow["db.fetch"] = 1.5  # +3 ms per call of query, all of the parent's slowdown
    for _ in range(5):
        detector.step()
    firing = _firing(sink)
    assert "0.5" in firing
    annotations = firing["0.5"]
    assert annotations["top_substep"] == "db.fetch"
    assert annotations["summary"].endswith("mostly in db.fetch")
    first = annotations["substeps"].split("; ")[0]
    assert first.startswith("db.fetch +")
    per_call_ms = float(first.split()[1])
    assert 2.5 < per_call_ms < 3.7, first  # the fetch's mean (6 ms x e^0.08) grew by half
    assert "(significant)" in first and "p50 +" in first
    share = first.split("(")[1].split(")")[0]
    assert share == "all of the slowdown" or 80 <= float(share.split("%")[0]) < 95, first
    assert "score" not in annotations["substeps"] or "db.fetch" in annotations["substeps"].split(";")[0]
    assert "Where the time went, per call: db.fetch" in annotations["description"]
    assert annotations["exemplar_trace_ids"].split(",") == [f"{0xABC0 + i:032x}" for i in range(3)]
    assert annotations["trace_url"] == TRACE_URL.replace("{trace_id}", f"{0xABC0:032x}")
    assert not [u for u in sink.updates if u[2].get("action") in ("db.fetch", "score")], "no sub-step alerts"


def test_a_sub_step_learns_nothing_while_its_parent_alerts():
    source, sink = NestedSource(per_window=600), RecordingSink()
    detector = make_detector(source, sink, for_s=0)
    for _ in range(48):  # 8 windows of 60 s, past the learner's warm-up: clean windows only
        detector.step()
    grown = detector.baselines.get(FETCH).histogram.count
    assert grown >= 5 * source.per_window, "steady windows go into the sub-step's baseline"
    source.own_s = 0.004  # the parent's own code got slower; its sub-steps did not
    for _ in range(24):
        detector.step()
    assert any(u[1] is State.FIRING for u in sink.updates)
    assert "substeps" not in _firing(sink)["0.5"], "no sub-step got slower"
    # Steady themselves, the sub-step's windows stay out while the parent alerts: what the
    # parent's alert compares them with must not move under it.
    assert detector.baselines.get(FETCH).histogram.count == grown
    assert detector.baselines.get(SCORE).histogram.count == grown


def test_the_slower_of_two_sub_steps_comes_first():
    source, sink = NestedSource(seed=9), RecordingSink()
    detector = make_detector(source, sink, for_s=0)
    detector.step()
    source.slow.update({"db.fetch": 1.1, "score": 1.9})
    for _ in range(3):
        detector.step()
    annotations = _firing(sink)["0.5"]
    assert annotations["top_substep"] == "score"
    names = [part.split()[0] for part in annotations["substeps"].split("; ")]
    assert names == ["score", "db.fetch"]


def test_no_sub_steps_no_exemplars_no_extra_annotations():
    class Flat(NestedSource):
        def read(self, now):
            return {PARENT: super().read(now)[PARENT]}

        exemplars = None

    source, sink = Flat(), RecordingSink()
    detector = make_detector(source, sink, for_s=0, detector_options={"trace_url_template": TRACE_URL})
    detector.step()
    source.slow["db.fetch"] = 1.6
    detector.step()
    annotations = _firing(sink)["0.5"]
    assert not {"substeps", "top_substep", "exemplar_trace_ids", "trace_url"} & set(annotations)
    assert "mostly in" not in annotations["summary"]


def test_sub_step_text_and_trace_link():
    change = SubStepChange("db.fetch", 0.004, 0.0056, 0.8, "p50", 41.04, True)
    assert change.text() == "db.fetch +1.60 ms per call (80% of the slowdown), p50 +41.0% (significant)"
    everything = SubStepChange("db.fetch", 0.004, 0.0056, 1.45, "p50", 41.04, True)
    assert everything.text().startswith("db.fetch +1.60 ms per call (all of the slowdown), p50")
    unknown = SubStepChange("db.fetch", 0.004, 0.0056, math.nan, "p95", math.nan, False)
    assert unknown.text() == "db.fetch +1.60 ms per call, p95 n/a"
    assert trace_link("https://t/{trace_id}?x={y}", "ab") == "https://t/ab?x={y}"
    assert trace_link(None, "ab") is None


def test_sub_step_series_key_round_trips_and_shards_with_its_parent():
    assert str(FETCH) == "governance/query > db.fetch/control"
    assert FETCH.parent_key == PARENT and PARENT.parent_key is None
    assert FETCH.labels()["parent"] == "query" and "parent" not in PARENT.labels()
    baseline = Baseline(FETCH, LatencyHistogram.from_samples([0.01, 0.02]), 60.0, "learned")
    assert Baseline.from_dict(baseline.to_dict(), "x").key == FETCH
    old = Baseline(PARENT, LatencyHistogram.from_samples([0.01]), 60.0, "learned").to_dict()
    assert "parent" not in old and Baseline.from_dict(old, "x").key == PARENT
    for count in (2, 3, 5):
        for index in range(count):
            shard = Shard(index, count)
            child = SeriesKey("svc", f"child-{index}", "", parent="query")
            assert shard.owns(child) == shard.owns(SeriesKey("svc", "query", ""))


def test_in_process_source_keeps_nested_calls_apart():
    from nethical_otel.detect.sources import InProcessSource
    from nethical_otel.names import ACTION, COHORT
    from nethical_otel.names import PARENT as PARENT_ATTR

    a = LatencyHistogram.from_samples([0.001] * 3)
    b = LatencyHistogram.from_samples([0.002] * 5)
    nested = {ACTION: "db.fetch", COHORT: "control", PARENT_ATTR: "query"}
    alone = {ACTION: "db.fetch", COHORT: "control"}  # called outside any instrumented call
    source = InProcessSource(lambda: [(nested, a.copy()), (alone, b.copy())], "governance", 60)
    merged = source.cumulative()
    assert merged[FETCH].count == 3
    assert merged[SeriesKey("governance", "db.fetch", "control")].count == 5


def test_a_failing_exemplar_source_costs_the_annotations_not_the_alert(caplog):
    class Broken(NestedSource):
        def exemplars(self, key, start, end):
            raise RuntimeError("registry gone")

    source, sink = Broken(), RecordingSink()
    detector = make_detector(source, sink, for_s=0)
    detector.step()
    source.slow["db.fetch"] = 1.6
    detector.step()
    annotations = _firing(sink)["0.5"]
    assert "exemplar_trace_ids" not in annotations
    assert annotations["top_substep"] == "db.fetch", "the sub-steps are named all the same"
    assert "registry gone" in caplog.text and "reading the exemplars of" in caplog.text
