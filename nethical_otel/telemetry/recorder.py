"""The metrics hot path: per-series latency buffers folded into ``LatencyHistogram``\\ s.

Recording is one ``list.append`` (atomic under the GIL, no lock). Every ``DRAIN_AT``
observations, and whenever a reader collects, the buffer is folded into the series'
cumulative histogram in one vectorized step (a few ns per value). So the per-call cost
stays within 2x of ``prometheus_client``'s ``observe`` (benchmarks/overhead.py) while the
histogram keeps 0.54 % quantile accuracy, and memory per series is bounded: the buffer
never holds more than ``DRAIN_AT`` values and the histogram only grows with the latency
*range*, not with traffic.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Iterator

from nethical_otel.stats import LatencyHistogram

_log = logging.getLogger(__name__)

DRAIN_AT = 512
OTHER = "other"

# Attribute keys on metrics (bounded cardinality) and spans.
ACTION = "nethical.action"
COHORT = "nethical.cohort"
AGENT_ID = "nethical.agent.id"
ERROR_TYPE = "error.type"


class SeriesRecorder:
    """Latencies of one metric series: (action, cohort, error.type)."""

    __slots__ = ("_histogram", "_lock", "attributes", "error_type", "pending")

    def __init__(self, attributes: dict[str, str], error_type: str | None, scale: int) -> None:
        self.attributes = attributes
        self.error_type = error_type
        self.pending: list[float] = []
        self._histogram = LatencyHistogram(scale)
        self._lock = threading.Lock()

    def observe(self, seconds: float) -> None:
        pending = self.pending
        pending.append(seconds)
        if len(pending) >= DRAIN_AT:
            self.drain()

    def drain(self) -> None:
        """Fold buffered observations into the histogram. Never raises into the caller."""
        with self._lock:
            pending = self.pending
            n = len(pending)
            if not n:
                return
            batch = pending[:n]
            # Appends racing with us land after index n and survive this delete.
            del pending[:n]
            try:
                self._histogram.record_many(batch, errors=n if self.error_type else 0)
            except Exception:  # a bad value must not break the service
                _log.exception("nethical-otel: dropped %d latency observations", n)

    def snapshot(self) -> LatencyHistogram:
        """A copy of everything recorded so far (cumulative)."""
        self.drain()
        with self._lock:
            return self._histogram.copy()


class _ValueLimiter:
    """Keeps at most ``limit`` distinct values of one attribute; the rest become ``other``."""

    __slots__ = ("_limit", "_seen", "attribute", "folded")

    def __init__(self, attribute: str, limit: int) -> None:
        self.attribute = attribute
        self._limit = limit
        self._seen: set[str] = set()
        self.folded = 0

    def __call__(self, value: str) -> str:
        if value in self._seen:
            return value
        if len(self._seen) < self._limit:
            self._seen.add(value)
            return value
        if not self.folded:
            _log.warning(
                "nethical-otel: more than %d distinct values of %s; the rest are recorded as %r "
                "(raise max_attribute_values if they are bounded)",
                self._limit,
                self.attribute,
                OTHER,
            )
        self.folded += 1
        return OTHER


class RecorderRegistry:
    """All series of one pipeline, found by their raw attribute values."""

    def __init__(
        self,
        *,
        scale: int,
        max_attribute_values: int,
        make_series: Callable[[dict[str, str], str | None], SeriesRecorder] | None = None,
    ) -> None:
        self.scale = scale
        self._make_series = make_series or (
            lambda attrs, error_type: SeriesRecorder(attrs, error_type, scale)
        )
        self._series: dict[tuple[str, str | None, str | None], SeriesRecorder] = {}
        # Raw key -> recorder, including folded ones; bounded so hostile input cannot grow it.
        self._lookup: dict[tuple[str, str | None, str | None], SeriesRecorder] = {}
        self._lookup_limit = 16 * max_attribute_values
        self._actions = _ValueLimiter(ACTION, max_attribute_values)
        self._cohorts = _ValueLimiter(COHORT, max_attribute_values)
        self._lock = threading.Lock()
        self._active: dict[str, deque[None]] = {}  # raw action -> its folded action's calls
        self._active_by_action: dict[str, deque[None]] = {}

    def series(self, action: str, cohort: str | None, error_type: str | None = None) -> SeriesRecorder:
        """The recorder for these raw values (the hot path calls this on a cache miss only)."""
        key = (action, cohort, error_type)
        found = self._lookup.get(key)
        if found is not None:
            return found
        with self._lock:
            folded = (
                self._actions(action),
                None if cohort is None else self._cohorts(cohort),
                error_type,
            )
            recorder = self._series.get(folded)
            if recorder is None:
                attributes = {ACTION: folded[0]}
                if folded[1] is not None:
                    attributes[COHORT] = folded[1]
                if error_type is not None:
                    attributes[ERROR_TYPE] = error_type
                recorder = self._make_series(attributes, error_type)
                self._series[folded] = recorder
            if len(self._lookup) < self._lookup_limit:
                self._lookup[key] = recorder
            return recorder

    def active(self, action: str) -> deque[None]:
        """In-flight calls of ``action``: the hot path appends on entry and pops on exit."""
        calls = self._active.get(action)
        if calls is None:
            with self._lock:
                calls = self._active_by_action.setdefault(self._actions(action), deque())
                if len(self._active) < self._lookup_limit:
                    self._active[action] = calls
        return calls

    def active_counts(self) -> list[tuple[str, int]]:
        with self._lock:
            return [(action, len(calls)) for action, calls in self._active_by_action.items()]

    def recorders(self) -> list[SeriesRecorder]:
        with self._lock:
            return list(self._series.values())

    def histograms(self) -> Iterator[tuple[dict[str, str], LatencyHistogram]]:
        """(attributes, cumulative histogram) of every series we aggregate ourselves."""
        for recorder in self.recorders():
            if isinstance(recorder, SeriesRecorder):
                yield recorder.attributes, recorder.snapshot()
