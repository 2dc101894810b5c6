"""Compare two runs under the threshold policy: what the pull-request comment says.

All statistics are ``nethical_otel.stats``': with both runs' histograms (the sidecars) the
quantiles go through ``evaluate`` (distribution-free intervals: a change above the threshold
but within noise is *not significant* and raises nothing). Without a histogram on either
side the latency quantiles are compared as point estimates against the thresholds, and the
result says so. Error rate and throughput are always tested, from the request and error
counts in the CSV row (``compare_error_rate``, ``compare_throughput``).

Outcome: every metric gets a status, ``regression`` ones carry the policy's severity, and
``failed`` is true when a regression is at least as severe as ``fail_on`` (default
``critical``: the error rate rose by more than 1 percentage point) or a budget is exceeded.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

from nethical_otel.bench.budget import Budget, BudgetCheck
from nethical_otel.bench.results import RunResult
from nethical_otel.stats import (
    Comparison,
    Policy,
    compare_error_rate,
    compare_throughput,
    evaluate,
    quantile_name,
)
from nethical_otel.stats.policy import SEVERITIES

Status = Literal["ok", "regression", "improvement", "not_significant", "inconclusive"]

# The table rows the guide's comment always shows, whatever the policy tracks.
TABLE_QUANTILES = (0.50, 0.95, 0.99)
_CSV_QUANTILES = {0.50: "p50_latency_ms", 0.95: "p95_latency_ms", 0.99: "p99_latency_ms"}


@dataclass(frozen=True)
class MetricChange:
    """One row of the comparison.

    Values are in display units: ms for latencies, requests/s, and percent for the error
    rate (whose ``threshold`` is in percentage points). ``tested`` says whether the
    verdict rests on a significance test or on point estimates alone.
    """

    key: str  # "p50", "p99.9", "throughput", "error_rate"
    label: str  # "P50 Latency"
    unit: str
    baseline: float
    current: float
    status: Status
    severity: str | None  # the policy's, None when the policy has no rule for it
    threshold: float | None
    tested: bool
    reason: str
    comparison: Comparison | None = field(default=None, repr=False)

    @property
    def change_pct(self) -> float:
        if self.baseline > 0:
            return (self.current / self.baseline - 1) * 100
        return 0.0 if self.current <= 0 else math.inf

    @property
    def change_pp(self) -> float:
        return self.current - self.baseline


@dataclass
class RunComparison:
    baseline: RunResult
    current: RunResult
    metrics: list[MetricChange]
    budget: list[BudgetCheck]
    policy: Policy
    fail_on: str = "critical"
    notes: list[str] = field(default_factory=list)

    @property
    def regressions(self) -> list[MetricChange]:
        return [m for m in self.metrics if m.status == "regression"]

    @property
    def budget_exceeded(self) -> list[BudgetCheck]:
        return [b for b in self.budget if b.exceeded]

    @property
    def regressed(self) -> bool:
        """Any threshold breached (any severity) or budget exceeded: the ⚠️ comment."""
        return bool(self.regressions or self.budget_exceeded)

    @property
    def failing(self) -> list[MetricChange]:
        rank = SEVERITIES.index(self.fail_on)
        return [m for m in self.regressions if m.severity and SEVERITIES.index(m.severity) >= rank]

    @property
    def failed(self) -> bool:
        return bool(self.failing or self.budget_exceeded)

    @property
    def exit_code(self) -> int:
        """0: no regression, or only ones below ``fail_on``; 1: a failing condition."""
        return 1 if self.failed else 0

    @property
    def point_estimates_only(self) -> bool:
        return not (self.baseline.has_histogram and self.current.has_histogram)


def compare_runs(
    baseline: RunResult,
    current: RunResult,
    policy: Policy | None = None,
    budget: Budget | None = None,
    fail_on: str = "critical",
) -> RunComparison:
    """Apply ``policy`` (default: the guide's thresholds) and ``budget`` to two runs."""
    policy = policy or Policy()
    if fail_on not in SEVERITIES:
        raise ValueError(f"fail_on must be one of {SEVERITIES}, got {fail_on!r}")
    notes = []
    if baseline.histogram is not None and current.histogram is not None:
        metrics = _tested_metrics(baseline, current, policy)
    else:
        missing = [r.source or "a run" for r in (baseline, current) if r.histogram is None]
        notes.append(
            f"Point estimates only: no histogram sidecar for {' and '.join(f'`{m}`' for m in missing)}, "
            "so latency changes are compared with the thresholds without a significance test."
        )
        metrics = _point_metrics(baseline, current, policy)
    metrics.append(_error_rate(baseline, current, policy))
    metrics.append(_throughput(baseline, current, policy))
    differences = [
        f"{name} {getattr(baseline, attr)!s} vs {getattr(current, attr)!s}"
        for name, attr in (
            ("agents", "agents"),
            ("target RPS", "target_rps"),
            ("duration", "duration_s"),
            ("cohort", "cohort"),
        )
        if getattr(baseline, attr) is not None
        and getattr(current, attr) is not None
        and getattr(baseline, attr) != getattr(current, attr)
    ]
    if differences:
        notes.append(
            "The runs were configured differently (" + "; ".join(differences) + "): compare with care."
        )
    checks = budget.check(current) if budget else []
    return RunComparison(baseline, current, metrics, checks, policy, fail_on, notes)


def _label(q: float) -> str:
    return quantile_name(q).upper() + " Latency"


def _status(comparison: Comparison, threshold: float) -> Status:
    """The stats verdict, with "ok beyond the threshold" named for what it is: noise."""
    if comparison.verdict != "ok":
        return comparison.verdict
    beyond = (
        abs(comparison.difference * 100) > threshold
        if comparison.interval == "difference_pp"
        else (math.isfinite(comparison.ratio) and abs(comparison.ratio - 1) > threshold)
    )
    return "not_significant" if beyond else "ok"


def _tested_metrics(baseline: RunResult, current: RunResult, policy: Policy) -> list[MetricChange]:
    findings = [f for f in evaluate(policy, baseline.histogram, current.histogram) if f.comparison.quantile]
    by_q = {f.comparison.quantile: f for f in findings}
    rows = []
    for q in sorted(set(TABLE_QUANTILES) | set(by_q)):
        finding = by_q.get(q)
        if finding is None:  # shown in the table, not tracked by the policy
            base, cur = baseline.histogram.quantile(q) * 1e3, current.histogram.quantile(q) * 1e3
            rows.append(
                MetricChange(
                    quantile_name(q),
                    _label(q),
                    "ms",
                    base,
                    cur,
                    "ok",
                    None,
                    None,
                    False,
                    f"{quantile_name(q)} is not tracked by the policy",
                )
            )
            continue
        c = finding.comparison
        rows.append(
            MetricChange(
                quantile_name(q),
                _label(q),
                "ms",
                c.baseline_value * 1e3,
                c.current_value * 1e3,
                _status(c, c.threshold),
                finding.severity,
                c.threshold,
                True,
                c.reason,
                c,
            )
        )
    return rows


def _point_metrics(baseline: RunResult, current: RunResult, policy: Policy) -> list[MetricChange]:
    rules = {rule.quantile: rule for rule in policy.quantiles}
    rows = []
    for q in sorted(set(TABLE_QUANTILES) | set(rules)):
        name, rule = quantile_name(q), rules.get(q)
        column = _CSV_QUANTILES.get(q)
        if column is None:
            rows.append(
                MetricChange(
                    name,
                    _label(q),
                    "ms",
                    math.nan,
                    math.nan,
                    "inconclusive",
                    rule.severity,
                    rule.threshold,
                    False,
                    f"{name} needs the histogram sidecars",
                )
            )
            continue
        base, cur = getattr(baseline, column), getattr(current, column)
        ratio = cur / base if base > 0 else (1.0 if cur <= 0 else math.inf)
        if rule is None:
            status: Status = "ok"
            reason = f"{name} is not tracked by the policy"
        elif ratio > 1 + rule.threshold:
            status = "regression"
            reason = (
                f"{name} rose {(ratio - 1):+.1%} ({base:.3g} -> {cur:.3g} ms), "
                f"above the {rule.threshold:.0%} threshold"
            )
        elif ratio < 1 - rule.threshold:
            status = "improvement"
            reason = f"{name} fell {(ratio - 1):+.1%} ({base:.3g} -> {cur:.3g} ms)"
        else:
            status = "ok"
            reason = f"{name} changed {(ratio - 1):+.1%}, within the {rule.threshold:.0%} threshold"
        rows.append(
            MetricChange(
                name,
                _label(q),
                "ms",
                base,
                cur,
                status,
                rule.severity if rule else None,
                rule.threshold if rule else None,
                False,
                reason + " (point estimates)",
            )
        )
    return rows


def _error_rate(baseline: RunResult, current: RunResult, policy: Policy) -> MetricChange:
    c = compare_error_rate(
        (_errors(baseline), baseline.requests),
        (_errors(current), current.requests),
        policy.error_rate_pp,
        policy.confidence,
        min_samples=policy.min_samples,
    )
    return MetricChange(
        "error_rate",
        "Error Rate",
        "%",
        c.baseline_value * 100,
        c.current_value * 100,
        _status(c, policy.error_rate_pp),
        policy.error_rate_severity,
        policy.error_rate_pp,
        c.verdict != "inconclusive",
        c.reason,
        c,
    )


def _throughput(baseline: RunResult, current: RunResult, policy: Policy) -> MetricChange:
    c = compare_throughput(
        baseline.throughput_rps,
        current.throughput_rps,
        policy.throughput_drop,
        baseline_count=baseline.requests or None,
        current_count=current.requests or None,
        confidence=policy.confidence,
    )
    # A throughput *rise* is an improvement; only a drop is a regression (compare_throughput's verdicts).
    return MetricChange(
        "throughput",
        "Throughput",
        "req/s",
        c.baseline_value,
        c.current_value,
        _status(c, policy.throughput_drop),
        policy.throughput_severity,
        policy.throughput_drop,
        c.interval == "ratio",
        c.reason,
        c,
    )


def _errors(result: RunResult) -> int:
    return result.errors if result.errors is not None else round(result.error_rate * result.requests)
