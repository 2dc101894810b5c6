"""The regression detector: live windows against baselines, through one policy, into alerts.

Each ``step()``: read every series' window from the source, compare it with its baseline
(``nethical_otel.stats.evaluate``: p50/p95/p99, error rate, throughput, each with a
distribution-free confidence interval), advance the alert state machine, hand firing and
resolved alerts to the sinks. A series with no baseline learns one from its first full
window (when ``learn`` is on). A statistic that cannot be decided (too few samples)
holds its alert's state.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from nethical_otel.detect.alerts import AlertBook, State, Timing
from nethical_otel.detect.baseline import Baseline, BaselineSet, SeriesKey
from nethical_otel.detect.sinks import Sink
from nethical_otel.detect.sources import Source, SourceError, Window
from nethical_otel.errors import ConfigError
from nethical_otel.stats import Finding, Policy, StatsError, evaluate

_log = logging.getLogger(__name__)

ALERT_NAMES = {
    "error_rate": "NethicalErrorRateIncrease",
    "throughput": "NethicalThroughputDrop",
}
LATENCY_ALERT = "NethicalLatencyRegression"
_MATCH_KEYS = ("service", "action", "cohort")


class PolicyBook:
    """The default policy plus per-series overrides, most specific match wins.

    YAML::

        policy:
          quantiles: {p95: {threshold: 0.15}}      # the default, as Policy.from_mapping
          overrides:
            - match: {action: generate}            # any of service / action / cohort
              quantiles: {p95: {threshold: 0.25}}
    """

    def __init__(self, default: Policy, overrides: Sequence[tuple[dict[str, str], Policy]] = ()) -> None:
        self.default = default
        # More keys matched = more specific; stable order among equals keeps file order.
        self._overrides = sorted(overrides, key=lambda o: -len(o[0]))
        self._cache: dict[SeriesKey, Policy] = {}

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any] | None, where: str = "policy") -> PolicyBook:
        data = dict(data or {})
        raw_overrides = data.pop("overrides", []) or []
        try:
            default = Policy.from_mapping(data, where=where)
            if not isinstance(raw_overrides, list):
                raise ConfigError(f"{where}.overrides: expected a list")
            overrides = []
            for i, item in enumerate(raw_overrides):
                here = f"{where}.overrides[{i}]"
                if not isinstance(item, Mapping) or not isinstance(item.get("match"), Mapping):
                    raise ConfigError(f"{here}: expected a mapping with `match: {{action: ...}}`")
                match = {str(k): str(v) for k, v in item["match"].items()}
                unknown = set(match) - set(_MATCH_KEYS)
                if unknown:
                    raise ConfigError(
                        f"{here}.match: unknown key {sorted(unknown)[0]!r} (service, action, cohort)"
                    )
                rest = {k: v for k, v in item.items() if k != "match"}
                overrides.append((match, Policy.from_mapping({**data, **rest}, where=here)))
        except StatsError as exc:
            raise ConfigError(str(exc)) from None
        return cls(default, overrides)

    def policy_for(self, key: SeriesKey) -> Policy:
        policy = self._cache.get(key)
        if policy is None:
            labels = key.labels()
            policy = next(
                (p for match, p in self._overrides if all(labels[k] == v for k, v in match.items())),
                self.default,
            )
            self._cache[key] = policy
        return policy


@dataclass
class SeriesReport:
    """What one step found for one series (for the live view and the agent's metrics)."""

    key: SeriesKey
    window: Window
    baseline: Baseline | None
    findings: list[Finding] = field(default_factory=list)
    learned: bool = False


def _fmt(metric: str, value: float) -> str:
    if math.isnan(value):
        return "n/a"
    if metric.startswith("p"):
        return f"{value * 1000:.2f} ms"
    if metric == "error_rate":
        return f"{value:.2%}"
    return f"{value:.1f} req/s"


class Detector:
    """Compares a source's windows with baselines and drives alerts into sinks."""

    def __init__(
        self,
        source: Source,
        baselines: BaselineSet,
        policies: PolicyBook,
        sinks: Sequence[Sink],
        *,
        timing: Timing | None = None,
        learn: bool = True,
        runbook_base_url: str = "docs/runbooks",
        dashboard_url: str | None = None,
        on_learn: Callable[[Baseline], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.source = source
        self.baselines = baselines
        self.policies = policies
        self.sinks = list(sinks)
        self.book = AlertBook(timing or Timing())
        self.learn = learn
        self.runbook_base_url = runbook_base_url.rstrip("/")
        self.dashboard_url = dashboard_url
        self.on_learn = on_learn
        self.clock = clock
        self.last_reports: list[SeriesReport] = []
        self.evaluations = 0
        self.last_duration_s = 0.0
        self.last_error: str | None = None  # why the last step could not read its source

    def _labels(self, key: SeriesKey, finding: Finding) -> dict[str, str]:
        labels = {
            "alertname": ALERT_NAMES.get(finding.metric, LATENCY_ALERT),
            "severity": finding.severity,
            **key.labels(),
        }
        if finding.comparison.quantile is not None:
            labels["quantile"] = f"{finding.comparison.quantile:g}"
        return labels

    def _annotations(self, key: SeriesKey, finding: Finding) -> dict[str, str]:
        c = finding.comparison
        what = {"error_rate": "error rate", "throughput": "throughput"}.get(
            finding.metric, f"{finding.metric} latency"
        )
        if c.interval == "difference_pp":
            change = f"{c.ci_low:+.2f} .. {c.ci_high:+.2f} percentage points"
        elif c.interval == "ratio":
            change = f"{(c.ci_low - 1) * 100:+.1f}% .. {(c.ci_high - 1) * 100:+.1f}%"
        else:
            change = "n/a"
        alertname = ALERT_NAMES.get(finding.metric, LATENCY_ALERT)
        annotations = {
            "summary": f"{key}: {what} {c.change_pct:+.1f}% vs baseline",
            "description": (
                f"{what} of {key} is {_fmt(finding.metric, c.current_value)} against a baseline of "
                f"{_fmt(finding.metric, c.baseline_value)} ({c.change_pct:+.1f}%; "
                f"{c.confidence:.0%} interval {change}; n={c.n_current} vs {c.n_baseline}). {c.reason}"
            ),
            "baseline_value": f"{c.baseline_value:.6g}",
            "current_value": f"{c.current_value:.6g}",
            "change_pct": f"{c.change_pct:.2f}",
            "confidence_interval": change,
            "runbook_url": f"{self.runbook_base_url}/{alertname}.md",
        }
        if self.dashboard_url:
            annotations["dashboard_url"] = self.dashboard_url
        return annotations

    def _maybe_learn(self, key: SeriesKey, window: Window, policy: Policy) -> Baseline | None:
        if not self.learn or window.seconds < self.source.window_s * 0.999:
            return None
        if window.histogram.count < policy.min_samples:
            return None
        baseline = Baseline(key, window.histogram.copy(), window.seconds, source="learned")
        self.baselines.add(baseline)
        _log.info("nethical-otel: learned a baseline for %s from %d calls", key, window.histogram.count)
        if self.on_learn is not None:
            self.on_learn(baseline)
        return baseline

    def step(self) -> list[SeriesReport]:
        started = time.perf_counter()
        now = self.clock()
        try:
            windows = self.source.read(now)
            self.last_error = None
        except SourceError as exc:
            _log.warning("nethical-otel: %s; alerts keep their state", exc)
            self.last_error = str(exc)
            windows = {}
        reports = []
        for key, window in sorted(windows.items()):
            policy = self.policies.policy_for(key)
            baseline = self.baselines.get(key)
            report = SeriesReport(key, window, baseline)
            reports.append(report)
            if baseline is None:
                report.baseline = self._maybe_learn(key, window, policy)
                report.learned = report.baseline is not None
                continue
            if window.seconds <= 0:
                continue
            report.findings = evaluate(
                policy, baseline.histogram, window.histogram, baseline.throughput_rps, window.throughput_rps
            )
            for finding in report.findings:
                condition = {"regression": True, "inconclusive": None}.get(finding.verdict, False)
                self.book.observe(self._labels(key, finding), condition, self._annotations(key, finding), now)
        for alert in self.book.alerts(State.FIRING, State.RESOLVED):
            for sink in self.sinks:
                try:
                    sink.update(alert, now)
                except Exception:
                    _log.exception("nethical-otel: alert sink %r failed", sink)
        self.book.forget_resolved()
        self.last_reports = reports
        self.evaluations += 1
        self.last_duration_s = time.perf_counter() - started
        return reports

    def close(self, timeout_s: float = 5.0) -> None:
        for sink in self.sinks:
            sink.close(timeout_s)


class DetectorThread:
    """Runs ``detector.step()`` every ``step_s`` on a daemon thread (embedded mode)."""

    def __init__(self, detector: Detector, step_s: float) -> None:
        self.detector = detector
        self.step_s = step_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="nethical-detector", daemon=True)

    def start(self) -> DetectorThread:
        self._thread.start()
        return self

    def _run(self) -> None:
        next_at = time.monotonic()
        while not self._stop.is_set():
            try:
                self.detector.step()
            except Exception:
                _log.exception("nethical-otel: detector step failed; trying again next step")
            next_at += self.step_s
            self._stop.wait(max(0.0, next_at - time.monotonic()))

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        self._thread.join(timeout=timeout_s)
        self.detector.close(timeout_s)
