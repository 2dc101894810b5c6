"""Compare two runs under the threshold policy: what the pull-request comment says.

Every threshold and severity comes from the ``Policy`` (``nethical_otel.stats.policy``), the
one the detector applies; given a ``PolicyBook`` (``--policy`` with per-series
``overrides``), ``compare_runs`` takes the policy of the run's series (``RunSeries``).

With both runs' histograms (the sidecars) everything goes through ``evaluate``
(distribution-free intervals: a change above the threshold but within noise is *not
significant* and raises nothing). Without a histogram on either side ``evaluate_points``
judges the latency quantiles on point estimates against the same thresholds, and the result
says so. Error rate and throughput are always tested, from the request and error counts.

Outcome: every metric gets a status, ``regression`` ones carry the policy's severity, and
``failed`` is true when a regression is at least as severe as ``fail_on`` (default
``critical``: the error rate rose by more than 1 percentage point) or a budget is exceeded.
Each tested comparison also carries its minimum detectable effect (``Comparison.mde``): the
smallest change it would have caught, which the report shows so that "no regression" says
how large a regression could still hide in the noise.

Given the runs' CPU profiles (``cpuprofile.load_profiles``), the comparison carries their
diff (``profile``), or which runs had none (``profile_missing``), for the report's "Where the
time went"; a profile never changes a verdict. So do the runs' instrumented sub-steps
(``bench.substeps``), ranked as the detector's alerts rank them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

from nethical_otel.bench.budget import Budget, BudgetCheck
from nethical_otel.bench.cpuprofile import ProfileDiff, ProfilePair
from nethical_otel.bench.results import RunResult
from nethical_otel.bench.substeps import ParentChanges, diff_substeps
from nethical_otel.stats import Comparison, Finding, Policy, PolicyBook, evaluate, quantile_name
from nethical_otel.stats.policy import SEVERITIES, evaluate_points

Status = Literal["ok", "regression", "improvement", "not_significant", "inconclusive"]

# The table rows the guide's comment always shows, whatever the policy tracks.
TABLE_QUANTILES = (0.50, 0.95, 0.99)
_CSV_QUANTILES = {0.50: "p50_latency_ms", 0.95: "p95_latency_ms", 0.99: "p99_latency_ms"}


@dataclass(frozen=True)
class RunSeries:
    """The series a run measured, as a policy's ``overrides`` match it (``match:
    {service, action, cohort}``). An empty value matches no override that names that key."""

    service: str = ""
    action: str = ""
    cohort: str = ""

    def labels(self) -> dict[str, str]:
        return {"service": self.service, "action": self.action, "cohort": self.cohort}

    def __str__(self) -> str:
        return "/".join(part or "?" for part in (self.service, self.action)) + (
            f"/{self.cohort}" if self.cohort else ""
        )


def run_series(result: RunResult, service: str | None = None, action: str | None = None) -> RunSeries:
    """The series of ``result``: ``service`` and ``action`` when given, else what the run records.

    A results file names its cohort and the target it loaded (``details["target"]``) but not a
    service. The action defaults to the target callable's own name, which is the action name
    ``@instrument`` gives it (``process_action`` for ``module:Class.process_action``); an
    HTTP target names none.
    """
    if action is None:
        target = str(result.details.get("target") or "")
        module, sep, path = target.partition(":")
        action = path.rsplit(".", 1)[-1] if sep and module and " " not in target else ""
    return RunSeries(service or "", action, result.cohort or "")


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

    @property
    def mde(self) -> float:
        """The smallest change this row's test would have caught (``Comparison.mde``: relative
        for latency and throughput, percentage points for the error rate); +inf when the data
        cannot bound it, NaN when not computed (point estimates and untracked rows included)."""
        return self.comparison.mde if self.comparison is not None else math.nan


@dataclass
class RunComparison:
    baseline: RunResult
    current: RunResult
    metrics: list[MetricChange]
    budget: list[BudgetCheck]
    policy: Policy
    fail_on: str = "critical"
    notes: list[str] = field(default_factory=list)
    series: RunSeries = field(default_factory=RunSeries)
    profile: ProfileDiff | None = None
    # The instrumented sub-steps whose time per parent call grew (``bench.substeps``).
    substeps: list[ParentChanges] = field(default_factory=list)
    # Runs without a profile file; empty when both had one or when one was unusable (warned).
    profile_missing: list[str] = field(default_factory=list)

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
    policy: Policy | PolicyBook | None = None,
    budget: Budget | None = None,
    fail_on: str = "critical",
    series: RunSeries | None = None,
    profiles: ProfilePair | None = None,
) -> RunComparison:
    """Apply ``policy`` (default: the guide's thresholds) and ``budget`` to two runs.

    A ``PolicyBook`` gives the policy of ``series`` (default: ``run_series(current)``).
    ``profiles`` (``cpuprofile.load_profiles``) are carried to the report as they are.
    """
    series = series or run_series(current)
    if isinstance(policy, PolicyBook):
        policy = policy.policy_for(series)
    policy = policy or Policy()
    if fail_on not in SEVERITIES:
        raise ValueError(f"fail_on must be one of {SEVERITIES}, got {fail_on!r}")
    notes = []
    if baseline.histogram is not None and current.histogram is not None:
        findings = evaluate(
            policy, baseline.histogram, current.histogram, baseline.throughput_rps, current.throughput_rps
        )
    else:
        missing = [r.source or "a run" for r in (baseline, current) if r.histogram is None]
        notes.append(
            f"Point estimates only: no histogram sidecar for {' and '.join(f'`{m}`' for m in missing)}, "
            "so latency changes are compared with the thresholds without a significance test."
        )
        findings = evaluate_points(
            policy,
            _csv_quantiles(baseline),
            _csv_quantiles(current),
            (_errors(baseline), baseline.requests),
            (_errors(current), current.requests),
            baseline.throughput_rps,
            current.throughput_rps,
        )
    metrics = _latency_rows(baseline, current, findings)
    by_metric = {f.metric: f for f in findings}
    metrics.append(_row("error_rate", "Error Rate", "%", by_metric["error_rate"], 100.0))
    metrics.append(_row("throughput", "Throughput", "req/s", by_metric["throughput"], 1.0))
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
    comparison = RunComparison(baseline, current, metrics, checks, policy, fail_on, notes, series)
    before, after = baseline.details.get("substeps"), current.details.get("substeps")
    comparison.substeps = diff_substeps(before, after, policy, current.source or "the runs")
    if profiles is not None:
        comparison.profile = profiles.diff
        comparison.profile_missing = [] if profiles.warnings else list(profiles.missing)
    return comparison


def _label(q: float) -> str:
    return quantile_name(q).upper() + " Latency"


def _status(finding: Finding, tested: bool) -> Status:
    """The stats verdict, with "ok beyond the threshold" named for what it is: noise."""
    if finding.verdict != "ok":
        return finding.verdict
    return "not_significant" if tested and finding.beyond_threshold else "ok"


def _row(key: str, label: str, unit: str, finding: Finding, scale: float) -> MetricChange:
    """A row from a finding: its values times ``scale`` (s -> ms, fraction -> %)."""
    c = finding.comparison
    tested = c.interval != "none" and c.verdict != "inconclusive"
    return MetricChange(
        key,
        label,
        unit,
        c.baseline_value * scale,
        c.current_value * scale,
        _status(finding, tested),
        finding.severity,
        c.threshold,
        tested,
        c.reason,
        c,
    )


def _latency_rows(baseline: RunResult, current: RunResult, findings: list[Finding]) -> list[MetricChange]:
    """One row per quantile the policy judges, plus the guide's p50/p95/p99 shown untracked."""
    by_q = {f.comparison.quantile: f for f in findings if f.comparison.quantile is not None}
    rows = []
    for q in sorted(set(TABLE_QUANTILES) | set(by_q)):
        name, finding = quantile_name(q), by_q.get(q)
        if finding is None:  # shown in the table, not tracked by the policy
            base, cur = _quantile_ms(baseline, q), _quantile_ms(current, q)
            reason = f"{name} is not tracked by the policy"
            rows.append(MetricChange(name, _label(q), "ms", base, cur, "ok", None, None, False, reason))
            continue
        row = _row(name, _label(q), "ms", finding, 1e3)
        point = finding.comparison.interval == "none"
        if point and (math.isnan(row.baseline) or math.isnan(row.current)):  # not in the CSV row
            row = MetricChange(
                name,
                row.label,
                "ms",
                row.baseline,
                row.current,
                "inconclusive",
                row.severity,
                row.threshold,
                False,
                f"{name} needs the histogram sidecars",
                row.comparison,
            )
        rows.append(row)
    return rows


def _csv_quantiles(result: RunResult) -> dict[float, float]:
    """The CSV row's quantiles, seconds."""
    return {q: getattr(result, column) / 1e3 for q, column in _CSV_QUANTILES.items()}


def _quantile_ms(result: RunResult, q: float) -> float:
    if result.histogram is not None:
        return result.histogram.quantile(q) * 1e3
    column = _CSV_QUANTILES.get(q)
    return getattr(result, column) if column else math.nan


def _errors(result: RunResult) -> int:
    return result.errors if result.errors is not None else round(result.error_rate * result.requests)
