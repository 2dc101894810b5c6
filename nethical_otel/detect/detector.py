"""The regression detector: live windows against baselines, through one policy, into alerts.

Each ``step()``: read every series' window from the source, compare it with its baseline
(``nethical_otel.stats.evaluate``: p50/p95/p99, error rate, throughput, each with a
distribution-free confidence interval), advance the alert state machine, hand firing and
resolved alerts to the sinks. A statistic that cannot be decided (too few samples) holds
its alert's state.

With ``learn`` on, a series with no baseline learns one, and a learned baseline goes on
learning: it is the merge of the series' newest clean windows over ``baseline_s``, never
taking in a window during which one of the series' alerts was pending or firing
(``detect.learning``). Baselines from anywhere else (a file made by ``baseline create``)
stay as they are.

Sub-steps (series with ``SeriesKey.parent``) are evaluated first, with no alerts of their own
(and kept out of their learned baselines while their parent alerts): a parent's latency alert
then names the sub-steps its slowdown is in, and the slowest exemplars of its window
(``detect.attribution``).
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from nethical_otel import names
from nethical_otel.detect import attribution
from nethical_otel.detect.alerts import AlertBook, State, Timing
from nethical_otel.detect.baseline import Baseline, BaselineSet, SeriesKey
from nethical_otel.detect.learning import LEARNED, BaselineLearner
from nethical_otel.detect.sinks import Sink
from nethical_otel.detect.sources import Source, SourceError, Window
from nethical_otel.errors import ConfigError, FailureLog, redact_text
from nethical_otel.stats import Comparison, Finding, LatencyHistogram, Policy, evaluate
from nethical_otel.stats.policy import PolicyBook
from nethical_otel.stats.significance import Reference, prepare_many

_log = logging.getLogger(__name__)

# alertname by the finding's metric; every quantile (p50, p95, ...) is LATENCY_ALERT.
ALERT_NAMES = {"error_rate": names.ERROR_RATE_ALERT, "throughput": names.THROUGHPUT_ALERT}
LATENCY_ALERT = names.LATENCY_ALERT


@dataclass
class SeriesReport:
    """What one step found for one series (for the live view and the agent's metrics)."""

    key: SeriesKey
    window: Window
    baseline: Baseline | None
    findings: list[Finding] = field(default_factory=list)
    learned: bool = False  # this step gave the series its first baseline
    refreshed: bool = False  # this step took a clean window into its learned baseline


def _fmt(metric: str, value: float) -> str:
    if math.isnan(value):
        return "n/a"
    if metric.startswith("p"):
        return f"{value * 1000:.2f} ms"
    if metric == "error_rate":
        return f"{value:.2%}"
    return f"{value:.1f} req/s"


def min_detectable_effect_text(c: Comparison) -> str:
    """``Comparison.mde`` for people: "7.0%" (quantiles, throughput), "0.35 percentage points"
    (error rate), "unbounded" (+inf: the data cannot bound it), "n/a" (not computed)."""
    if math.isnan(c.mde):
        return "n/a"
    if math.isinf(c.mde):
        return "unbounded"
    if c.metric == "error_rate":
        return f"{c.mde:.2f} percentage points"
    return f"{c.mde:.1%}"


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
        runbook_base_url: str | None = names.RUNBOOK_BASE_URL,
        dashboard_url: str | None = None,
        on_learn: Callable[[Baseline], None] | None = None,
        on_refresh: Callable[[Baseline], None] | None = None,
        baseline_s: float = 3600.0,
        clock: Callable[[], float] = time.time,
        trace_url_template: str | None = None,
    ) -> None:
        """``on_learn`` is called with a series' first learned baseline, ``on_refresh`` with
        each later one (every window it grows by: throttle what it does). ``baseline_s`` is
        how much window time a learned baseline covers (``detector_baseline_s``).
        ``trace_url_template``: latency alerts link their slowest exemplar's trace (``{trace_id}``).
        ``runbook_base_url``: alerts link ``<base>/<alertname>.md`` as ``runbook_url``, the
        link the generated Prometheus rules carry; None or empty: no ``runbook_url`` at all."""
        self.source = source
        self.baselines = baselines
        self.policies = policies
        self.sinks = list(sinks)
        self.book = AlertBook(timing or Timing())
        self.learn = learn
        self.runbook_base_url = (runbook_base_url or "").rstrip("/") or None
        self.dashboard_url = dashboard_url
        self.trace_url_template = trace_url_template
        self.on_learn = on_learn
        self.on_refresh = on_refresh
        self.learner = BaselineLearner(source.window_s, baseline_s)
        self.clock = clock
        self.last_reports: list[SeriesReport] = []
        self.last_substeps: dict[SeriesKey, list[SeriesReport]] = {}  # parent key -> its sub-steps
        self._alerting: set[SeriesKey] = set()  # series with a pending or firing alert, this step
        self._where: dict[tuple, object] = {}  # this step's attribution, by series and metric
        self.evaluations = 0
        self.last_duration_s = 0.0
        self.last_error: str | None = None  # why the last step could not read its source
        self._source_log = FailureLog(_log, "reading the live windows")
        self._seen_failures: OrderedDict[tuple, None] = OrderedDict()  # (where, error) logged once
        # Alert labels of this step's findings and of the step before's (only those: bounded).
        self._identities: tuple[dict, dict] = ({}, {})

    def _alert_identity(self, key: SeriesKey, finding: Finding) -> tuple[dict[str, str], tuple]:
        """The alert's labels and ``Alert.key``, kept from the step before: built once per
        series, not once per step for each of its findings."""
        which = (key, finding.metric, finding.severity)
        identity = self._identities[0].get(which)
        if identity is None:
            labels = self._labels(key, finding)
            identity = labels, tuple(sorted(labels.items()))
        self._identities[1][which] = identity
        return identity

    def _labels(self, key: SeriesKey, finding: Finding) -> dict[str, str]:
        labels = {
            "alertname": ALERT_NAMES.get(finding.metric, LATENCY_ALERT),
            "severity": finding.severity,
            **key.labels(),
        }
        if finding.comparison.quantile is not None:
            labels["quantile"] = f"{finding.comparison.quantile:g}"
        return labels

    def _annotations(self, report: SeriesReport, finding: Finding, now: float) -> dict[str, str]:
        key = report.key
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
        mde = min_detectable_effect_text(c)
        if math.isinf(c.mde):
            sensitivity = " This comparison cannot bound the smallest change it would detect."
        elif math.isnan(c.mde):
            sensitivity = ""
        else:
            sensitivity = f" The smallest change it would detect (80 % power) is {mde}."
        where = self._where_it_went(report, finding, now) if c.quantile is not None else {}
        top = where.get("top_substep")
        annotations = {
            "summary": f"{key}: {what} {c.change_pct:+.1f}% vs baseline"
            + (f", mostly in {top}" if top else ""),
            "description": (
                f"{what} of {key} is {_fmt(finding.metric, c.current_value)} against a baseline of "
                f"{_fmt(finding.metric, c.baseline_value)} ({c.change_pct:+.1f}%; "
                f"{c.confidence:.0%} interval {change}; n={c.n_current} vs {c.n_baseline}). {c.reason}"
                f"{sensitivity}"
                + (f" Where the time went, per call: {where['substeps']}." if "substeps" in where else "")
            ),
            "baseline_value": f"{c.baseline_value:.6g}",
            "current_value": f"{c.current_value:.6g}",
            "change_pct": f"{c.change_pct:.2f}",
            "confidence_interval": change,
            "min_detectable_effect": mde,
        }
        if self.runbook_base_url:
            annotations["runbook_url"] = f"{self.runbook_base_url}/{alertname}.md"
        if self.dashboard_url:
            annotations["dashboard_url"] = self.dashboard_url
        annotations.update(where)
        return annotations

    def _where_it_went(self, report: SeriesReport, finding: Finding, now: float) -> dict[str, str]:
        """The sub-step and exemplar annotations of a latency alert, once per series and metric
        each step (the exemplars once per series). A failure here costs the alert these
        annotations only, never the alert."""
        which = (report.key, finding.metric)
        found = self._where.get(which)
        if found is not None:
            return found
        changes, exemplars = [], self._where.get((report.key, "exemplars"))
        try:
            if report.baseline is not None:
                substeps = self.last_substeps.get(report.key, [])
                changes = attribution.rank_substeps(report.window, report.baseline, substeps, finding.metric)
        except Exception as exc:
            self._failed_once(("substeps", report.key), exc, f"ranking the sub-steps of {report.key}")
        if exemplars is None:
            try:
                start = now - report.window.seconds
                exemplars = attribution.slow_exemplars(self.source, report.key, start, now)
            except Exception as exc:
                self._failed_once(("exemplars", report.key), exc, f"reading the exemplars of {report.key}")
                exemplars = []
            self._where[(report.key, "exemplars")] = exemplars
        found = self._where[which] = attribution.annotations(changes, exemplars, self.trace_url_template)
        return found

    def _learn(
        self, key: SeriesKey, window: Window, policy: Policy, report: SeriesReport, alerting: bool, now: float
    ) -> None:
        """Offer this step's window to the series' learned baseline (see ``detect.learning``)."""
        current = report.baseline
        if current is not None and current.source != LEARNED:
            self.learner.discard(key)  # a fixed baseline stays as it is
            return
        regressed = any(f.regressed for f in report.findings)  # this very window, judged
        baseline = self.learner.update(
            key, window, now, current, alerting=alerting, regressed=regressed, min_samples=policy.min_samples
        )
        if baseline is None:
            return
        self.baselines.add(baseline)
        if current is None:
            report.baseline, report.learned = baseline, True
            _log.info("nethical-otel: learned a baseline for %s from %d calls", key, baseline.histogram.count)
            callback = self.on_learn
        else:
            report.refreshed = True
            callback = self.on_refresh
        if callback is not None:
            try:
                callback(baseline)
            except Exception as exc:  # the baseline is learned either way; saving it is not our step
                self._failed_once(("baseline callback", key), exc, f"handing on the baseline of {key}")

    def _failed_once(self, where: object, exc: Exception, what: str) -> None:
        """Log a failure with its context the first time this (place, error) is seen."""
        kind = (where, type(exc).__name__, str(exc)[:200])
        if kind in self._seen_failures:
            return
        self._seen_failures[kind] = None
        while len(self._seen_failures) > 256:
            self._seen_failures.popitem(last=False)
        _log.error(
            "nethical-otel: %s failed (%s: %s); the detector goes on",
            what,
            type(exc).__name__,
            redact_text(exc),
            exc_info=exc,
        )

    def _read(self, now: float) -> dict[SeriesKey, Window]:
        try:
            windows = self.source.read(now)
        except SourceError as exc:
            self._source_log.failed(("source", str(exc)), "nethical-otel: %s; alerts keep their state", exc)
            self.last_error = str(exc)
            return {}
        except Exception as exc:
            self._source_log.failed(
                ("internal", type(exc).__name__, str(exc)),
                "nethical-otel: reading the live windows from %s failed (%s: %s); alerts keep their state",
                type(self.source).__name__,
                type(exc).__name__,
                redact_text(exc),
                level=logging.ERROR,
                exc_info=exc,
            )
            self.last_error = f"reading the live windows failed: {type(exc).__name__}: {redact_text(exc)}"
            return {}
        self.last_error = None
        self._source_log.ok("nethical-otel: the live windows can be read again")
        return windows

    def _prepare(self, items: list[tuple[SeriesKey, Window]]) -> dict[SeriesKey, Reference]:
        """The current windows' side of the quantile comparisons, for every series with a
        baseline in one pass per policy (``stats.significance.prepare_many``)."""
        try:
            groups: dict[int, tuple[Policy, list[tuple[SeriesKey, LatencyHistogram]]]] = {}
            for key, window in items:
                if self.baselines.get(key) is not None:
                    policy = self.policies.policy_for(key)
                    groups.setdefault(id(policy), (policy, []))[1].append((key, window.histogram))
            prepared: dict[SeriesKey, Reference] = {}
            for policy, members in groups.values():
                if policy.quantiles:
                    refs = prepare_many([hist for _, hist in members], policy._qs)
                    prepared.update(zip((key for key, _ in members), refs, strict=True))
            return prepared
        except Exception as exc:  # each series then computes its own
            self._failed_once(("prepare",), exc, "preparing the step's comparisons")
            return {}

    def _evaluate(
        self, key: SeriesKey, window: Window, now: float, prepared: Reference | None = None
    ) -> SeriesReport:
        """Compare the window with the baseline; for a top-level series, advance its alerts and
        learn. A sub-step learns later (``_learn_substep``), once its parent's alerts are known."""
        policy = self.policies.policy_for(key)
        baseline = self.baselines.get(key)
        report = SeriesReport(key, window, baseline)
        alerting = False
        if baseline is not None and window.seconds > 0:
            current = prepared if prepared is not None and prepared.histogram is window.histogram else None
            report.findings = evaluate(
                policy,
                baseline.reference,
                current or window.histogram,
                baseline.throughput_rps,
                window.throughput_rps,
            )
            for finding in report.findings if not key.parent else ():  # a sub-step has no alerts
                condition = {"regression": True, "inconclusive": None}.get(finding.verdict, False)
                # Annotations are only read while the condition holds: not built for the rest.
                annotations = self._annotations(report, finding, now) if condition else {}
                labels, alert_key = self._alert_identity(key, finding)
                alert = self.book.observe(labels, condition, annotations, now, alert_key)
                alerting = alerting or alert.state in (State.PENDING, State.FIRING)
        if alerting:
            self._alerting.add(key)
        if self.learn and not key.parent:
            self._learn(key, window, policy, report, alerting, now)
        return report

    def _learn_substep(self, report: SeriesReport, now: float) -> None:
        """A sub-step learns as its parent does: nothing while the parent alerts (the baseline
        the parent's alert compares it with must not move under it)."""
        key = report.key
        alerting = key.parent_key in self._alerting
        self._learn(key, report.window, self.policies.policy_for(key), report, alerting, now)

    def step(self) -> list[SeriesReport]:
        """One evaluation. Never raises: a failing source, series or sink is logged once and
        the rest of the step goes on (a series that cannot be evaluated keeps its alerts)."""
        started = time.perf_counter()
        now = self.clock()
        windows = self._read(now)
        try:
            items = sorted(windows.items())
        except Exception:
            items = list(windows.items())
        reports = []
        substeps: dict[SeriesKey, list[SeriesReport]] = {}
        prepared = self._prepare(items)
        self._alerting = set()
        self._where = {}
        self.last_substeps = substeps  # filled first: the parents' alerts read them
        for key, window in [*(kw for kw in items if kw[0].parent), *(kw for kw in items if not kw[0].parent)]:
            try:
                report = self._evaluate(key, window, now, prepared.get(key))
            except Exception as exc:
                self._failed_once(("series", key), exc, f"evaluating {key}")
                continue
            if key.parent:
                substeps.setdefault(key.parent_key, []).append(report)
            else:
                reports.append(report)
        for report in (r for group in substeps.values() for r in group) if self.learn else ():
            try:
                self._learn_substep(report, now)
            except Exception as exc:
                self._failed_once(("series", report.key), exc, f"learning {report.key}")
        for alert in self.book.alerts(State.FIRING, State.RESOLVED):
            for sink in self.sinks:
                try:
                    sink.update(alert, now)
                except Exception as exc:
                    self._failed_once(("sink", id(sink)), exc, f"alert sink {type(sink).__name__}")
        self.book.forget_resolved()
        self.learner.forget_idle(now)
        self._identities = (self._identities[1], {})
        self.last_reports = reports
        self.evaluations += 1
        self.last_duration_s = time.perf_counter() - started
        return reports

    def close(self, timeout_s: float = 5.0) -> None:
        """Close every sink; all of them together within ``timeout_s``."""
        deadline = time.monotonic() + max(0.0, timeout_s)
        for sink in self.sinks:
            try:
                sink.close(max(0.0, deadline - time.monotonic()))
            except Exception as exc:
                self._failed_once(("close", id(sink)), exc, f"closing alert sink {type(sink).__name__}")

    def reset_after_fork(self) -> None:
        """In a forked child: the parent's windows and alerts are the parent's. Windows start
        empty (as the child's series do) and every alert inactive; baselines are kept, and
        learned ones go on learning from the child's own clean windows (the parent's windows
        still in quarantine, and a baseline not yet published, are dropped)."""
        self.book = AlertBook(self.book.timing)
        self.learner.reset_after_fork()
        self.last_reports = []
        self.last_substeps = {}
        self._alerting = set()
        self.last_error = None
        self._source_log = FailureLog(_log, "reading the live windows")
        self._seen_failures = OrderedDict()
        reset = getattr(self.source, "reset_after_fork", None)
        if reset is not None:
            reset()


_THREADS: weakref.WeakSet = weakref.WeakSet()  # weak: registering for fork keeps nothing alive


def _after_fork_in_child() -> None:
    for thread in list(_THREADS):
        try:
            thread._after_fork_in_child()
        except Exception:  # the child must go on whatever happens here
            _log.exception("nethical-otel: could not restart the detector after fork")


if hasattr(os, "register_at_fork"):  # after the sinks' handler (imported above): they are fresh first
    os.register_at_fork(after_in_child=_after_fork_in_child)


class DetectorThread:
    """Runs ``detector.step()`` every ``step_s`` on a daemon thread (embedded mode).

    The thread survives any failing step (logged once per kind) and restarts in a forked
    child, with empty windows and no alerts of the parent's.
    """

    def __init__(self, detector: Detector, step_s: float) -> None:
        if not (isinstance(step_s, (int, float)) and math.isfinite(step_s) and step_s > 0):
            raise ConfigError(f"detector_step_s must be a finite number > 0, got {step_s!r}")
        self.detector = detector
        self.step_s = float(step_s)
        self._started = False
        self._fresh()
        _THREADS.add(self)

    def _fresh(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="nethical-detector", daemon=True)
        self._errors = FailureLog(_log, "the detector")

    def start(self) -> DetectorThread:
        self._started = True
        self._thread.start()
        return self

    def _run(self) -> None:
        stop = self._stop  # this thread's own, even if a fork replaces it
        next_at = time.monotonic()
        while not stop.is_set():
            try:
                self.detector.step()
                self._errors.ok()
            except Exception as exc:
                self._errors.failed(
                    (type(exc).__name__, str(exc)[:200]),
                    "nethical-otel: detector step failed (%s: %s); trying again next step",
                    type(exc).__name__,
                    redact_text(exc),
                    level=logging.ERROR,
                    exc_info=exc,
                )
            now = time.monotonic()
            next_at = max(next_at + self.step_s, now)  # after a stall: no burst of catch-up steps
            stop.wait(min(next_at - now, 3600.0))

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop the thread and close the sinks, all within ``timeout_s``."""
        deadline = time.monotonic() + max(0.0, timeout_s)
        self._stop.set()
        if self._thread.ident is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=max(0.0, deadline - time.monotonic()))
        self.detector.close(max(0.0, deadline - time.monotonic()))

    def _after_fork_in_child(self) -> None:
        running = self._started and not self._stop.is_set()
        self._fresh()
        self.detector.reset_after_fork()
        if running:
            self._thread.start()
