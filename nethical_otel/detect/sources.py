"""Where live latency windows come from.

A source answers one question each step: for every series, the latency histogram of the
last ``window_s`` seconds. ``InProcessSource`` reads this process' own recorders
(embedded mode) and windows them as the difference of cumulative snapshots;
``PrometheusSource`` asks Prometheus for ``increase(...[window])`` of the fleet-wide
histograms summed over instances, so counter resets and instance churn are Prometheus'
problem, solved the standard way. On Prometheus 3 fed over OTLP the histogram is *native*:
one query a step returns every series' exact buckets (schema = our scale, mapped bucket for
bucket). On Prometheus 2.x it is *classic*: ``le`` buckets, three queries a step, and buckets
19 % apart read at the scale they resolve.
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import httpx
import numpy as np

from nethical_otel.config import PROMETHEUS_HISTOGRAMS
from nethical_otel.detect.baseline import SeriesKey
from nethical_otel.detect.shard import Shard
from nethical_otel.errors import (
    ConfigError,
    FailureLog,
    NethicalOtelError,
    quiet_http_logging,
    redact_text,
    redact_url,
)
from nethical_otel.exemplar import Exemplar
from nethical_otel.names import (
    ACTION,
    ACTION_LABEL,
    COHORT,
    COHORT_LABEL,
    DURATION_METRIC,
    ERROR_TYPE_LABEL,
    JOB_LABEL,
    PARENT,
    PARENT_LABEL,
    SERVICE_NAME_LABEL,
    SPAN_ID_LABEL,
    TRACE_ID_LABEL,
)
from nethical_otel.stats import LatencyHistogram, StatsError
from nethical_otel.stats.histogram import merge_all
from nethical_otel.stats.wire import from_native_many, scale_for_bounds

_log = logging.getLogger(__name__)

_ABANDONED: list[httpx.Client] = []  # a forked child's copies of the parent's clients


@dataclass(frozen=True)
class Window:
    histogram: LatencyHistogram
    seconds: float  # how much time the histogram covers

    @property
    def throughput_rps(self) -> float:
        return self.histogram.count / self.seconds if self.seconds > 0 else math.nan


class Source(Protocol):
    """Sub-steps (``SeriesKey.parent``) come with the rest; a source may also have
    ``exemplars(key, start, end) -> list`` (objects with ``value``, ``trace_id_hex``,
    ``time_ns``): the sampled calls of a series in that time, slowest first."""

    window_s: float

    def read(self, now: float) -> dict[SeriesKey, Window]: ...


class RollingWindows:
    """Windows of ``window_s`` over cumulative histograms, as ``latest - snapshot then``.

    Keeps one snapshot per step for the window's length: memory per series is bounded
    by ``window_s / step`` histograms, whatever the traffic. A counter that went back
    (a restarted process) starts the series' window afresh instead of failing.
    The histograms given to ``update`` are kept as they are: pass snapshots, not objects
    that go on changing.
    """

    def __init__(self, window_s: float) -> None:
        _check_window(window_s)
        self.window_s = window_s
        self._snapshots: deque[tuple[float, dict[SeriesKey, LatencyHistogram]]] = deque()

    def update(self, now: float, cumulative: Mapping[SeriesKey, LatencyHistogram]) -> dict[SeriesKey, Window]:
        previous = self._snapshots[-1][0] if self._snapshots else now
        self._snapshots.append((now, dict(cumulative)))
        # Keep the newest snapshot that is at least window_s old, and everything after it.
        while len(self._snapshots) > 1 and now - self._snapshots[1][0] >= self.window_s:
            self._snapshots.popleft()
        started, oldest = self._snapshots[0]
        windows: dict[SeriesKey, Window] = {}
        for key, hist in cumulative.items():
            before = oldest.get(key)
            if before is None:  # not there yet at the window's start: it had no calls then
                windows[key] = Window(hist, now - started)
                continue
            try:
                windows[key] = Window(hist.subtract(before), now - started)
            except StatsError:
                _log.info("nethical-otel: %s was reset; its window starts again", key)
                for _, snapshot in self._snapshots:
                    snapshot.pop(key, None)
                windows[key] = Window(hist, now - previous)
        return windows


class InProcessSource:
    """This process' own series (embedded mode), keyed by the service name and labels.

    A call made inside another instrumented call is in its sub-step series
    (``SeriesKey.parent``), not in the action's own: the parent's alert names it, and no
    second alert pages for the same slowdown.
    """

    def __init__(
        self,
        histograms: Callable[[], Iterable[tuple[Mapping[str, str], LatencyHistogram]]],
        service: str,
        window_s: float,
        exemplars: Callable[[], Iterable[tuple[Mapping[str, str], list[Any]]]] | None = None,
    ) -> None:
        self._histograms = histograms
        self._exemplars = exemplars
        self.service = service
        self.window_s = window_s
        self._windows = RollingWindows(window_s)

    def _key(self, attributes: Mapping[str, str]) -> SeriesKey | None:
        action = attributes.get(ACTION)
        if action is None:  # the overflow series (otel.metric.overflow): a mix, no baseline
            return None
        return SeriesKey(self.service, action, attributes.get(COHORT, ""), attributes.get(PARENT, ""))

    def cumulative(self) -> dict[SeriesKey, LatencyHistogram]:
        merged: dict[SeriesKey, LatencyHistogram] = {}
        for attributes, hist in self._histograms():
            key = self._key(attributes)
            if key is None:
                continue
            if key in merged:
                merged[key].merge(hist)
            else:
                merged[key] = hist
        return merged

    def exemplars(self, key: SeriesKey, start: float, end: float) -> list[Any]:
        """The series' exemplars recorded between ``start`` and ``end`` (Unix seconds), slowest first."""
        if self._exemplars is None:
            return []
        lo, hi = start * 1e9, end * 1e9
        found = [
            e
            for attributes, exemplars in self._exemplars()
            if self._key(attributes) == key
            for e in exemplars
            if lo <= e.time_ns <= hi
        ]
        return sorted(found, key=lambda e: -e.value)

    def read(self, now: float) -> dict[SeriesKey, Window]:
        return self._windows.update(now, self.cumulative())

    def reset_after_fork(self) -> None:
        """A forked child's windows start empty, as its series do."""
        self._windows = RollingWindows(self.window_s)


def _quoted(value: str) -> str:
    """A PromQL string literal's inside."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _check_window(window_s: float) -> None:
    if not (isinstance(window_s, (int, float)) and math.isfinite(window_s) and window_s >= 0.001):
        raise ConfigError(f"detector_window_s must be a finite number of seconds >= 0.001, got {window_s!r}")


def _promql_duration(seconds: float) -> str:
    """``60s``, or ``1500ms`` for a window that is not whole seconds."""
    return f"{round(seconds)}s" if seconds == round(seconds) else f"{round(seconds * 1000)}ms"


class SourceError(NethicalOtelError):
    """Prometheus could not be queried (unreachable, bad query, bad answer)."""


class PrometheusSource:
    """Fleet-wide windows from Prometheus' HTTP API, summed over instances."""

    def __init__(
        self,
        url: str,
        window_s: float,
        *,
        metric: str = DURATION_METRIC,
        service_label: str = JOB_LABEL,
        action_label: str = ACTION_LABEL,
        cohort_label: str = COHORT_LABEL,
        parent_label: str = PARENT_LABEL,
        selector: str = "",
        histograms: str = "auto",
        shard: Shard | None = None,
        timeout_s: float = 10.0,
        client: httpx.Client | None = None,
    ) -> None:
        """``histograms``: ``native``, ``classic`` or ``auto`` (whichever Prometheus has: the kind
        that last answered is asked first). ``shard``: read only the series it owns."""
        _check_window(window_s)
        if histograms not in PROMETHEUS_HISTOGRAMS:
            kinds = ", ".join(PROMETHEUS_HISTOGRAMS)
            raise ConfigError(f"prometheus_histograms must be one of {kinds}, got {histograms!r}")
        self.histograms = histograms
        self._kinds = [histograms] if histograms != "auto" else ["native", "classic"]
        self.shard = shard or Shard()
        self.url = url.rstrip("/")
        self.shown_url = redact_url(self.url)
        self.window_s = window_s
        self.metric = metric
        self.labels = (service_label, action_label, cohort_label)
        self.parent_label = parent_label
        self._exemplar_failures = FailureLog(_log, "reading exemplars")
        self.selector = selector
        self._timeout_s = timeout_s
        self._owns_client = client is None
        self._client = client or httpx.Client(timeout=timeout_s)
        quiet_http_logging()

    def reset_after_fork(self) -> None:
        """A forked child gets its own connections (a pool is not fork-safe)."""
        if self._owns_client:
            _ABANDONED.append(self._client)  # the parent's sockets: never used or closed here
            self._client = httpx.Client(timeout=self._timeout_s)

    def _get(self, promql: str, now: float) -> httpx.Response:
        try:
            return self._client.get(f"{self.url}/api/v1/query", params={"query": promql, "time": now})
        except httpx.HTTPError as exc:
            raise SourceError(
                f"cannot reach Prometheus at {self.shown_url}: {type(exc).__name__}: {redact_text(exc)}"
            ) from None

    def _query(self, promql: str, now: float, response: httpx.Response | None = None) -> list[dict]:
        response = response if response is not None else self._get(promql, now)
        try:
            body = response.json()
        except ValueError:
            raise SourceError(
                f"Prometheus at {self.shown_url} answered HTTP {response.status_code}, not JSON"
            ) from None
        if not isinstance(body, dict) or body.get("status") != "success":
            error = body.get("error", body) if isinstance(body, dict) else body
            raise SourceError(
                f"Prometheus at {self.shown_url} rejected {promql!r} "
                f"(HTTP {response.status_code}): {redact_text(error)[:200]}"
            )
        result = body.get("data", {}).get("result") if isinstance(body.get("data"), dict) else None
        if not isinstance(result, list):
            raise SourceError(f"Prometheus at {self.shown_url} answered {promql!r} without a result list")
        return result

    def _native_rows(self, promql: str, now: float) -> Iterable[tuple[Mapping[str, str], Any, float]]:
        """(labels, buckets, sum) of every row, None buckets for a float series: decoded typed
        (``detect.prometheus_answer``), or the general way when the answer does not fit."""
        from nethical_otel.detect.prometheus_answer import DECODER

        response = self._get(promql, now)
        try:
            body = DECODER.decode(response.content)
        except ValueError:  # msgspec's DecodeError and ValidationError are ValueErrors
            body = None
        if body is not None and body.status == "success":
            for row in body.data.result:
                point = row.histogram[1] if row.histogram is not None else None
                yield row.metric, (point.buckets if point else None), (point.sum if point else 0.0)
            return
        for row in self._query(promql, now, response):
            if "histogram" not in row:
                yield row["metric"], None, 0.0
                continue
            point = row["histogram"][1]
            yield row["metric"], point.get("buckets") or [], float(point.get("sum", 0.0))

    def _key(self, labels: Mapping[str, str]) -> SeriesKey:
        service, action, cohort = (labels.get(name, "") for name in self.labels)
        return SeriesKey(service, action, cohort, labels.get(self.parent_label, ""))

    def exemplars(self, key: SeriesKey, start: float, end: float) -> list[Exemplar]:
        """The series' exemplars from ``/api/v1/query_exemplars`` (Prometheus started with
        ``--enable-feature=exemplar-storage``), slowest first; [] when there are none or the
        query fails (logged once: an alert goes out without them rather than not at all)."""
        service, action, cohort = self.labels
        matchers = [f'{service}="{_quoted(key.service)}"', f'{action}="{_quoted(key.action)}"']
        matchers.append(f'{cohort}="{_quoted(key.cohort)}"')
        matchers.append(f'{self.parent_label}="{_quoted(key.parent)}"')  # "": top-level calls only
        if self.selector:
            matchers.append(self.selector)
        metric = self.metric if self._kinds[0] == "native" else f"{self.metric}_bucket"
        query = f"{metric}{{{', '.join(matchers)}}}"
        try:
            response = self._client.get(
                f"{self.url}/api/v1/query_exemplars", params={"query": query, "start": start, "end": end}
            )
            found = [
                Exemplar(
                    float(e["value"]),
                    int(e["labels"][TRACE_ID_LABEL], 16),
                    int(e["labels"].get(SPAN_ID_LABEL, "0"), 16),
                    round(float(e["timestamp"]) * 1e9),
                )
                for series in response.json()["data"]
                for e in series.get("exemplars", [])
                if TRACE_ID_LABEL in e.get("labels", {})
            ]
        except (httpx.HTTPError, ValueError, KeyError, TypeError, AttributeError) as exc:
            self._exemplar_failures.failed(
                (type(exc).__name__,),
                "nethical-otel: exemplars from Prometheus at %s cannot be read (%s: %s); "
                "alerts go without them",
                self.shown_url,
                type(exc).__name__,
                redact_text(exc)[:200],
            )
            return []
        self._exemplar_failures.ok()
        return sorted(found, key=lambda e: -e.value)

    def read(self, now: float) -> dict[SeriesKey, Window]:
        try:
            for kind in list(self._kinds):
                found = self._read_native(now) if kind == "native" else self._read_classic(now)
                if found is not None:
                    if self._kinds[0] != kind:  # auto: ask this kind first from now on
                        self._kinds.remove(kind)
                        self._kinds.insert(0, kind)
                    return found
            return {}
        except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
            raise SourceError(
                f"Prometheus at {self.shown_url} gave an answer of an unexpected shape "
                f"({type(exc).__name__}: {redact_text(exc)[:200]})"
            ) from None

    def _read_native(self, now: float) -> dict[SeriesKey, Window] | None:
        """Every series in one query, with ``error.type`` kept apart to count the errors; None
        when Prometheus has no native histogram of the metric. Sub-steps are series of their
        own (``SeriesKey.parent``)."""
        by = ", ".join((*self.labels, self.parent_label, ERROR_TYPE_LABEL))
        window = _promql_duration(self.window_s)
        query = f"sum by ({by}) (increase({self.metric}{{{self.selector}}}[{window}]))"
        rows = []
        native = False
        for labels, buckets, total in self._native_rows(query, now):
            if buckets is None:  # a float series of that name: not a native histogram
                continue
            native = True
            key = self._key(labels)
            if key.action and self.shard.owns(key):  # no action: the overflow series, a mix
                rows.append((key, labels, buckets, total))
        hists = from_native_many([r[2] for r in rows], [r[3] for r in rows])
        parts: dict[SeriesKey, list[LatencyHistogram]] = {}
        for (key, labels, _, _), hist in zip(rows, hists, strict=True):
            if isinstance(hist, StatsError):
                _log.warning("nethical-otel: skipped %s: Prometheus native buckets unusable (%s)", key, hist)
                continue
            if labels.get(ERROR_TYPE_LABEL):
                hist.errors = hist.count
            parts.setdefault(key, []).append(hist)
        if not native:
            return None
        return {key: Window(merge_all(hists), self.window_s) for key, hists in parts.items()}

    def _read_classic(self, now: float) -> dict[SeriesKey, Window] | None:
        by = ", ".join((*self.labels, self.parent_label))
        window = _promql_duration(self.window_s)

        def increase(suffix: str, extra: str = "", le: bool = False) -> str:
            selector = ", ".join(filter(None, (self.selector, extra)))
            group = f"{by}, le" if le else by
            return f"sum by ({group}) (increase({self.metric}_{suffix}{{{selector}}}[{window}]))"

        buckets: dict[SeriesKey, dict[float, float]] = {}
        for row in self._query(increase("bucket", le=True), now):
            le = float(row["metric"]["le"])
            buckets.setdefault(self._key(row["metric"]), {})[le] = float(row["value"][1])
        sums = {self._key(r["metric"]): float(r["value"][1]) for r in self._query(increase("sum"), now)}
        errors = {
            self._key(r["metric"]): float(r["value"][1])
            for r in self._query(increase("count", extra=f'{ERROR_TYPE_LABEL}!=""'), now)
        }
        if not buckets:
            return None
        windows: dict[SeriesKey, Window] = {}
        for key, by_le in buckets.items():
            if not key.action or not self.shard.owns(key):  # the overflow series: a mix, no baseline
                continue
            bounds = sorted(by_le)
            # increase() extrapolates to fractional counts; round, and keep them monotone.
            counts = np.maximum.accumulate(
                np.rint(np.nan_to_num([by_le[b] for b in bounds])).astype(np.int64)
            )
            finite = [b for b in bounds if math.isfinite(b)]
            total = int(counts[-1])
            try:
                hist = LatencyHistogram.from_explicit_buckets(
                    finite,
                    counts.tolist(),
                    sum=max(sums.get(key, 0.0), 0.0),
                    count=total,
                    cumulative=True,
                    errors=min(round(errors.get(key, 0.0)), total),
                    scale=scale_for_bounds(finite),
                )
            except StatsError as exc:
                _log.warning("nethical-otel: skipped %s: Prometheus buckets unusable (%s)", key, exc)
                continue
            windows[key] = Window(hist, self.window_s)
        return windows


@dataclass(frozen=True)
class Scrape:
    """Raw cumulative ``le`` counts of one ``/metrics`` scrape, per series."""

    taken_at: float
    buckets: dict[SeriesKey, dict[float, float]]
    sums: dict[SeriesKey, float]
    errors: dict[SeriesKey, float]


def scrape(url: str, metric: str = DURATION_METRIC, timeout_s: float = 10.0) -> Scrape:
    """Read one service's ``/metrics`` directly (no Prometheus needed).

    The service name comes from ``target_info``'s ``service_name``.
    """
    from prometheus_client.parser import text_string_to_metric_families

    quiet_http_logging()
    shown = redact_url(url)
    try:
        response = httpx.get(url, timeout=timeout_s)
        response.raise_for_status()
        families = list(text_string_to_metric_families(response.text))
    except httpx.HTTPError as exc:
        raise SourceError(f"cannot scrape {shown}: {type(exc).__name__}: {redact_text(exc)}") from None
    except ValueError as exc:
        raise SourceError(f"{shown} is not Prometheus text exposition: {redact_text(exc)[:200]}") from None
    service = "unknown_service"
    for family in families:
        if family.name in ("target", "target_info"):
            service = next((s.labels.get(SERVICE_NAME_LABEL, service) for s in family.samples), service)
    result = Scrape(time.time(), {}, {}, {})
    for family in families:
        if family.name != metric:
            continue
        for sample in family.samples:
            labels = sample.labels
            action, cohort = labels.get(ACTION_LABEL, ""), labels.get(COHORT_LABEL, "")
            key = SeriesKey(service, action, cohort, labels.get(PARENT_LABEL, ""))
            if sample.name.endswith("_bucket"):
                by_le = result.buckets.setdefault(key, {})
                le = float(labels["le"])
                by_le[le] = by_le.get(le, 0.0) + sample.value
            elif sample.name.endswith("_sum"):
                result.sums[key] = result.sums.get(key, 0.0) + sample.value
            elif sample.name.endswith("_count") and labels.get(ERROR_TYPE_LABEL):
                result.errors[key] = result.errors.get(key, 0.0) + sample.value
    return result


def window_between(before: Scrape, after: Scrape) -> dict[SeriesKey, Window]:
    """The window between two scrapes: differences of the raw ``le`` counts, then histograms."""
    seconds = after.taken_at - before.taken_at
    windows = {}
    for key, by_le in after.buckets.items():
        old = before.buckets.get(key, {})
        bounds = sorted(by_le)
        counts = [max(by_le[b] - old.get(b, 0.0), 0.0) for b in bounds]
        windows[key] = Window(
            LatencyHistogram.from_explicit_buckets(
                [b for b in bounds if math.isfinite(b)],
                np.maximum.accumulate(np.rint(counts)).astype(np.int64).tolist(),
                sum=max(after.sums.get(key, 0.0) - before.sums.get(key, 0.0), 0.0),
                cumulative=True,
                errors=round(max(after.errors.get(key, 0.0) - before.errors.get(key, 0.0), 0.0)),
                scale=scale_for_bounds(bounds),
            ),
            seconds,
        )
    return windows
