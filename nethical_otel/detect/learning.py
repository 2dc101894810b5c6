"""Learned baselines that go on learning: the merge of a series' newest *clean* windows.

One window is a poor baseline: at 20 req/s a 60 s window holds ~1,200 calls, and the
baseline's own noise is then as large as the live window's, which halves what the test can
prove. A learned baseline here is the merge of many windows, covering ``horizon_s``
(``detector_baseline_s``, 1 h by default: ~72,000 calls at 20 req/s).

How it grows and what it refuses:

- **Windows back to back.** One full window per ``window_s`` is taken (no overlap, so no
  call is counted twice); partial windows (a restart, a counter reset) are not.
- **Clean only.** Once the baseline has warmed up (below), a window enters it only once it
  has aged ``quarantine_windows`` (2) windows past its end, and only if no alert of its
  series was pending or firing at any evaluation from the window's start until then. A
  regression that alerts within two windows of starting therefore never reaches the
  baseline, not even the part of it that came before its alert went pending; a firing alert
  freezes the baseline until it resolves.
- **Rolling.** The oldest data leaves once the newer data covers ``horizon_s`` on its own
  and still holds ``min_samples`` calls: the baseline follows slow changes (daily patterns)
  but never shrinks below the horizon once it has reached it, and a quiet night does not
  wipe a quiet series' latency baseline. A slow creep that never alerts is absorbed by
  design: catch it with a fixed baseline (``nethical-otel baseline create``), which never
  changes.
- **Start.** The baseline is published, and detection starts, as soon as it holds
  ``min_samples`` calls: the first full window at >= 100 calls per window (a quieter series
  accumulates a few). Against a young baseline the statistics widen their intervals, so
  early alerts need bigger changes; they get sharper as the baseline grows.
- **Warm-up.** Until the baseline spans ``WARMUP_WINDOWS`` (3) windows, a window joins at
  once unless its own comparison (the one evaluation of exactly that window) found a
  regression; the alert history does not count yet. Why: each comparison against one
  window is honest, but they all share that window's luck. A first window 9 % fast (one of
  ten seeded starts of a heavy-tailed 20 req/s series) makes later windows look slow; under
  the full clean-only rule every pending flicker keeps the correcting windows out, and the
  baseline locked on its own error for 25 minutes of false p50 alerts in the detection
  benchmark. Judged one by one, the windows that look normal join, and three windows cut
  the first one's luck by sqrt(3) (false quantile episodes at 20 req/s, heavy-tailed and
  lognormal, 10 seeds x 6 h: 10 -> 2). A regression right after the start still stays out:
  its windows are judged regressions.
- **Bounded.** Windows are merged into segments of ``horizon_s / segments`` (6): per series
  at most 8 segment histograms, the quarantined windows (2-3) and the published merge, about
  a dozen histograms, 35-50 kB in all at 50 req/s, whatever the traffic (a quiet series
  keeps up to 24 segments, small ones). Series not seen for ``horizon_s`` are forgotten
  here (their published baseline stays in the ``BaselineSet`` and seeds the ring again if
  they come back).
- **Seeds.** A published learned baseline the ring does not hold (loaded from the baseline
  file, or kept after its series was forgotten) becomes the ring's oldest segment and rolls
  out like any other.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

from nethical_otel.detect.baseline import Baseline, SeriesKey
from nethical_otel.detect.sources import Window
from nethical_otel.stats import LatencyHistogram, merge_all

LEARNED = "learned"  # Baseline.source of the baselines this module makes (and rolls)
SEGMENTS = 6
QUARANTINE_WINDOWS = 2.0
WARMUP_WINDOWS = 3  # below this many windows, a window's own comparison decides if it joins


@dataclass
class _Segment:
    histogram: LatencyHistogram
    seconds: float  # window time it covers (gaps between windows not counted)


@dataclass
class _SeriesState:
    published: Baseline | None
    closed: deque[_Segment] = field(default_factory=deque)
    open: _Segment | None = None
    quarantine: deque[tuple[float, float, LatencyHistogram]] = field(default_factory=deque)  # start, end
    last_end: float = -math.inf  # end of the last window taken
    alerting_at: float = -math.inf  # last evaluation with a pending or firing alert
    seen_at: float = -math.inf

    @property
    def segments(self) -> list[_Segment]:
        return [*self.closed, *([self.open] if self.open else [])]

    @property
    def seconds(self) -> float:
        return sum(s.seconds for s in self.segments)

    @property
    def calls(self) -> int:
        return sum(s.histogram.count for s in self.segments)


def _added(into: LatencyHistogram, part: LatencyHistogram) -> LatencyHistogram:
    if into.scale == part.scale:
        return into.merge(part)
    return merge_all([into, part])  # an SDK lowered its scale: the coarser one, exactly


class BaselineLearner:
    """The rolling learned baselines of a detector, one ring of clean windows per series."""

    def __init__(
        self,
        window_s: float,
        horizon_s: float,
        *,
        segments: int = SEGMENTS,
        quarantine_windows: float = QUARANTINE_WINDOWS,
    ) -> None:
        if not (math.isfinite(horizon_s) and horizon_s > 0):
            raise ValueError(f"detector_baseline_s must be a finite number > 0, got {horizon_s!r}")
        self.window_s = float(window_s)
        self.horizon_s = float(horizon_s)
        self.segment_s = self.horizon_s / segments
        self.max_segments = 4 * segments  # the most a quiet series keeps (its segments are small)
        self.quarantine_s = quarantine_windows * self.window_s
        self._slack = 0.05 * self.window_s  # steps are not exactly window_s apart
        self._series: dict[SeriesKey, _SeriesState] = {}

    def __len__(self) -> int:
        return len(self._series)

    def update(
        self,
        key: SeriesKey,
        window: Window,
        now: float,
        current: Baseline | None,
        *,
        alerting: bool,
        regressed: bool = False,
        min_samples: int,
    ) -> Baseline | None:
        """Take this step's window of ``key`` and return its new baseline, or None when the
        baseline did not change (or is not big enough yet).

        ``current`` is the series' baseline now (None before the first; a learned one);
        ``alerting``: an alert of the series is pending or firing after this evaluation;
        ``regressed``: this evaluation (of this very window) found a regression.
        """
        state = self._series.get(key)
        if state is None or state.published is not current:
            state = self._series[key] = self._seeded(current)
        state.seen_at = now
        if alerting:
            state.alerting_at = now
        if now < state.last_end - self._slack:  # the clock went back: times before now mean nothing
            state.quarantine.clear()
            state.last_end = -math.inf
            state.alerting_at = min(state.alerting_at, now)
        changed = False
        start = now - window.seconds
        if window.seconds >= self.window_s * 0.999 and start >= state.last_end - self._slack:
            histogram = window.histogram.copy()  # the source's object may go on changing
            state.last_end = now
            if current is None or self.warming(current):  # judged by its own comparison
                if not regressed:
                    self._admit(state, histogram, window.seconds, min_samples)
                    changed = True
            else:
                state.quarantine.append((start, now, histogram))
        while state.quarantine and now >= state.quarantine[0][1] + self.quarantine_s - self._slack:
            q_start, q_end, histogram = state.quarantine.popleft()
            if state.alerting_at < q_start:  # no pending/firing alert from its start until now
                self._admit(state, histogram, q_end - q_start, min_samples)
                changed = True
        if not changed:
            return None
        merged = merge_all(s.histogram for s in state.segments)
        if current is None and merged.count < max(min_samples, 1):
            return None
        state.published = Baseline(
            key, merged, state.seconds, source=LEARNED, version=current.version if current else ""
        )
        return state.published

    def warming(self, baseline: Baseline) -> bool:
        """A learned baseline still warming up (see "Warm-up" above)."""
        return baseline.source == LEARNED and baseline.window_s < WARMUP_WINDOWS * self.window_s - self._slack

    def _seeded(self, current: Baseline | None) -> _SeriesState:
        state = _SeriesState(published=current)
        if current is not None:
            state.closed.append(_Segment(current.histogram.copy(), current.window_s))
        return state

    def _admit(
        self, state: _SeriesState, histogram: LatencyHistogram, seconds: float, min_samples: int
    ) -> None:
        if state.open is None:
            state.open = _Segment(histogram, seconds)
        else:
            state.open.histogram = _added(state.open.histogram, histogram)
            state.open.seconds += seconds
        if state.open.seconds >= self.segment_s - self._slack:
            state.closed.append(state.open)
            state.open = None
        # The oldest segment goes once the rest covers the horizon and still holds min_samples
        # calls (a quiet night does not wipe the latency baseline), or the ring is at its cap.
        seconds, calls = state.seconds, state.calls
        while state.closed:
            oldest = state.closed[0]
            covered = seconds - oldest.seconds >= self.horizon_s - self._slack
            enough = calls - oldest.histogram.count >= min_samples
            if not (covered and enough) and len(state.closed) <= self.max_segments:
                break
            state.closed.popleft()
            seconds, calls = seconds - oldest.seconds, calls - oldest.histogram.count

    def discard(self, key: SeriesKey) -> None:
        """Forget ``key`` (its baseline became a fixed one)."""
        self._series.pop(key, None)

    def forget_idle(self, now: float) -> None:
        """Drop the state of series not seen for ``horizon_s`` (memory stays bounded under
        churn; a published baseline stays where it is and seeds the ring again)."""
        idle = [key for key, state in self._series.items() if now - state.seen_at > self.horizon_s]
        for key in idle:
            del self._series[key]

    def reset_after_fork(self) -> None:
        """A forked child keeps the published baselines (and the segments they are made of)
        but not the parent's window state: the windows waiting in quarantine were judged by
        the parent's alerts, and an unpublished start is the parent's traffic."""
        for key in [k for k, s in self._series.items() if s.published is None]:
            del self._series[key]
        for state in self._series.values():
            state.quarantine.clear()
            state.last_end = state.alerting_at = -math.inf

    def stats(self, key: SeriesKey) -> dict[str, float]:
        """What the ring holds for ``key`` (for tests and troubleshooting)."""
        state = self._series.get(key)
        if state is None:
            return {}
        return {
            "segments": len(state.segments),
            "quarantined": len(state.quarantine),
            "seconds": state.seconds,
            "count": state.calls,
        }
