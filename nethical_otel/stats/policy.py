"""The threshold policy: what counts as a regression, for the detector, ``compare`` in CI,
budgets, the PR comment, and the generated Prometheus rules and dashboard thresholds.

``Policy`` holds the thresholds (defaults from the regression guide in DESIGN.md);
``PolicyBook`` is a default policy plus per-series overrides, read from the one YAML layout
the agent and CI share; ``evaluate`` applies a policy to a baseline/current pair with the
comparisons of ``stats.significance``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from nethical_otel.stats.histogram import LatencyHistogram, StatsError
from nethical_otel.stats.significance import (
    DEFAULT_CONFIDENCE,
    DEFAULT_MIN_SAMPLES,
    Comparison,
    Reference,
    Verdict,
    _pct,
    _ratio,
    compare_error_rate,
    compare_quantiles,
    compare_throughput,
    quantile_name,
)

SEVERITIES = ("info", "warning", "critical")
MATCH_KEYS = ("service", "action", "cohort")


# -- policy --------------------------------------------------------------------------------


@dataclass(frozen=True)
class QuantileRule:
    """Alert when quantile ``quantile`` rises by more than ``threshold`` (0.15 = 15 %)."""

    quantile: float
    threshold: float
    severity: str = "warning"

    @property
    def name(self) -> str:
        return quantile_name(self.quantile)

    @property
    def ratio_limit(self) -> float:
        """The current/baseline ratio above which the rule is breached (1.15 for +15 %)."""
        return 1.0 + self.threshold


DEFAULT_QUANTILE_RULES = (
    QuantileRule(0.50, 0.10, "warning"),
    QuantileRule(0.95, 0.15, "warning"),
    QuantileRule(0.99, 0.20, "info"),
)


@dataclass(frozen=True)
class Policy:
    """Thresholds and severities; the defaults are the regression guide's (DESIGN.md).

    p50 +10 % warning, p95 +15 % warning, p99 +20 % info, error rate +1 percentage point
    critical, throughput -30 % warning; 99 % confidence, at least 100 observations a side.
    """

    quantiles: tuple[QuantileRule, ...] = DEFAULT_QUANTILE_RULES
    error_rate_pp: float = 1.0
    error_rate_severity: str = "critical"
    throughput_drop: float = 0.30
    throughput_severity: str = "warning"
    confidence: float = DEFAULT_CONFIDENCE
    min_samples: int = DEFAULT_MIN_SAMPLES
    _qs: np.ndarray = field(init=False, repr=False, compare=False)
    _thresholds: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "quantiles", tuple(self.quantiles))
        names = [rule.name for rule in self.quantiles]
        if len(set(names)) != len(names):
            raise StatsError(f"policy: quantile rules repeat a quantile: {names}")
        for rule in self.quantiles:
            if not 0 < rule.quantile < 1:
                raise StatsError(f"policy: {rule.name}: quantile must be strictly between 0 and 1")
            if not (math.isfinite(rule.threshold) and rule.threshold >= 0):
                raise StatsError(f"policy: {rule.name}: threshold must be >= 0, got {rule.threshold!r}")
            _check_severity(rule.severity, f"policy: {rule.name}: severity")
        _check_severity(self.error_rate_severity, "policy: error_rate severity")
        _check_severity(self.throughput_severity, "policy: throughput severity")
        if not (math.isfinite(self.error_rate_pp) and self.error_rate_pp >= 0):
            raise StatsError(f"policy: error_rate threshold_pp must be >= 0, got {self.error_rate_pp!r}")
        if not 0 <= self.throughput_drop < 1:
            raise StatsError(f"policy: throughput drop must be in [0, 1), got {self.throughput_drop!r}")
        if not 0.5 <= self.confidence < 1:
            raise StatsError(f"policy: confidence must be in [0.5, 1), got {self.confidence!r}")
        min_samples = self.min_samples
        if isinstance(min_samples, bool) or not isinstance(min_samples, int) or min_samples < 1:
            raise StatsError(f"policy: min_samples must be an integer >= 1, got {self.min_samples!r}")
        # Kept as arrays so evaluate() does no per-call conversion.
        object.__setattr__(self, "_qs", np.array([r.quantile for r in self.quantiles], dtype=float))
        object.__setattr__(self, "_thresholds", np.array([r.threshold for r in self.quantiles], dtype=float))

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any] | None, *, where: str = "policy") -> Policy:
        """A policy from a config mapping; anything left out keeps its default.

        Layout (every key optional)::

            quantiles: {p50: {threshold: 0.10, severity: warning}, p99: null, p99.9: {threshold: 0.5}}
            error_rate: {threshold_pp: 1.0, severity: critical}
            throughput: {drop: 0.30, severity: warning}
            confidence: 0.99
            min_samples: 100

        Quantile rules merge by name over the defaults; ``null`` removes one. Raises
        ``StatsError`` naming ``where`` and the key on any unknown key or bad value.
        """
        if data is None:
            return cls()
        if not isinstance(data, Mapping):
            raise StatsError(f"{where}: expected a mapping, got {type(data).__name__}")
        _only_keys(data, {"quantiles", "error_rate", "throughput", "confidence", "min_samples"}, where)
        changes: dict[str, Any] = {}
        if "quantiles" in data:
            rules = {rule.name: rule for rule in DEFAULT_QUANTILE_RULES}
            given = data["quantiles"]
            if not isinstance(given, Mapping):
                raise StatsError(f"{where}.quantiles: expected a mapping like {{p95: {{threshold: 0.15}}}}")
            for key, spec in given.items():
                q = _parse_quantile_name(str(key), f"{where}.quantiles")
                name = quantile_name(q)
                if spec is None:
                    rules.pop(name, None)
                    continue
                if not isinstance(spec, Mapping):
                    raise StatsError(f"{where}.quantiles.{key}: expected {{threshold: ..., severity: ...}}")
                _only_keys(spec, {"threshold", "severity"}, f"{where}.quantiles.{key}")
                old = rules.get(name, QuantileRule(q, 0.0))
                rules[name] = QuantileRule(
                    q,
                    _number(spec.get("threshold", old.threshold), f"{where}.quantiles.{key}.threshold"),
                    str(spec.get("severity", old.severity)),
                )
            changes["quantiles"] = tuple(sorted(rules.values(), key=lambda r: r.quantile))
        sections = {
            "error_rate": {"threshold_pp": "error_rate_pp", "severity": "error_rate_severity"},
            "throughput": {"drop": "throughput_drop", "severity": "throughput_severity"},
        }
        for key, attrs in sections.items():
            if key not in data:
                continue
            spec = data[key]
            if not isinstance(spec, Mapping):
                raise StatsError(f"{where}.{key}: expected a mapping with {sorted(attrs)}")
            _only_keys(spec, set(attrs), f"{where}.{key}")
            for sub, attr in attrs.items():
                if sub in spec:
                    value, path = spec[sub], f"{where}.{key}.{sub}"
                    changes[attr] = str(value) if sub == "severity" else _number(value, path)
        if "confidence" in data:
            changes["confidence"] = _number(data["confidence"], f"{where}.confidence")
        if "min_samples" in data:
            value = data["min_samples"]
            if isinstance(value, bool) or not isinstance(value, int):
                raise StatsError(f"{where}.min_samples: expected an integer, got {value!r}")
            changes["min_samples"] = value
        try:
            return cls(**changes)
        except StatsError as exc:
            raise StatsError(str(exc).replace("policy:", f"{where}:", 1)) from None

    def replace(self, **changes: Any) -> Policy:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    @property
    def error_rate_limit(self) -> float:
        """The rise of the error *fraction* beyond which the error-rate rule is breached (0.01
        for 1 percentage point): what a Prometheus rule compares ``current - baseline`` with."""
        return self.error_rate_pp / 100

    @property
    def throughput_floor(self) -> float:
        """The current/baseline throughput ratio below which the rule is breached (0.70)."""
        return 1.0 - self.throughput_drop

    def describe(self) -> str:
        """``"p50 +10 % warning, p95 +15 % warning, p99 +20 % info, error rate +1 pp critical,
        throughput -30 % warning"``."""
        rules = [f"{r.name} +{_percent(r.threshold)} {r.severity}" for r in self.quantiles]
        rules.append(f"error rate +{self.error_rate_pp:g} pp {self.error_rate_severity}")
        rules.append(f"throughput -{_percent(self.throughput_drop)} {self.throughput_severity}")
        return ", ".join(rules)

    def to_mapping(self) -> dict[str, Any]:
        """This policy in the layout of ``from_mapping``, every key spelled out, so that
        ``Policy.from_mapping(p.to_mapping()) == p`` (a default quantile rule the policy
        dropped appears as ``null``)."""
        quantiles: dict[str, Any] = {rule.name: None for rule in DEFAULT_QUANTILE_RULES}
        quantiles.update(
            {rule.name: {"threshold": rule.threshold, "severity": rule.severity} for rule in self.quantiles}
        )
        return {
            "quantiles": quantiles,
            "error_rate": {"threshold_pp": self.error_rate_pp, "severity": self.error_rate_severity},
            "throughput": {"drop": self.throughput_drop, "severity": self.throughput_severity},
            "confidence": self.confidence,
            "min_samples": self.min_samples,
        }


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
        self._cache: dict[Any, Policy] = {}

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any] | None, where: str = "policy") -> PolicyBook:
        """A book from the layout above (without the ``policy:`` key); ``StatsError`` naming
        ``where`` and the key on anything wrong."""
        if data is not None and not isinstance(data, Mapping):
            raise StatsError(f"{where}: expected a mapping, got {type(data).__name__}")
        data = dict(data or {})
        raw_overrides = data.pop("overrides", []) or []
        default = Policy.from_mapping(data, where=where)
        if not isinstance(raw_overrides, list):
            raise StatsError(f"{where}.overrides: expected a list")
        overrides = []
        for i, item in enumerate(raw_overrides):
            here = f"{where}.overrides[{i}]"
            if not isinstance(item, Mapping) or not isinstance(item.get("match"), Mapping):
                raise StatsError(f"{here}: expected a mapping with `match: {{action: ...}}`")
            match = {str(k): str(v) for k, v in item["match"].items()}
            unknown = set(match) - set(MATCH_KEYS)
            if unknown:
                raise StatsError(
                    f"{here}.match: unknown key {sorted(unknown)[0]!r} (service, action, cohort)"
                )
            rest = {k: v for k, v in item.items() if k != "match"}
            overrides.append((match, Policy.from_mapping({**data, **rest}, where=here)))
        return cls(default, overrides)

    def policy_for(self, key: Any) -> Policy:
        """The policy for a series; ``key.labels()`` gives its service/action/cohort."""
        policy = self._cache.get(key)
        if policy is None:
            labels = key.labels()
            policy = next(
                (p for match, p in self._overrides if all(labels[k] == v for k, v in match.items())),
                self.default,
            )
            self._cache[key] = policy
        return policy


@dataclass(frozen=True)
class Finding:
    """One metric's comparison under a policy, with the severity the policy gives it."""

    metric: str
    severity: str
    comparison: Comparison

    @property
    def verdict(self) -> Verdict:
        return self.comparison.verdict

    @property
    def regressed(self) -> bool:
        return self.comparison.verdict == "regression"

    @property
    def beyond_threshold(self) -> bool:
        """The point estimate moved past the threshold, either way, significant or not (an
        "ok" verdict beyond it is noise: a change the data cannot tell from chance)."""
        c = self.comparison
        if c.interval == "difference_pp":
            return abs(c.difference * 100) > c.threshold
        return math.isfinite(c.ratio) and abs(c.ratio - 1) > c.threshold


def evaluate(
    policy: Policy,
    baseline_hist: LatencyHistogram | Reference,
    current_hist: LatencyHistogram | Reference,
    baseline_rps: float | None = None,
    current_rps: float | None = None,
) -> list[Finding]:
    """Every statistic the policy names, compared: one ``Finding`` per quantile rule, one
    for the error rate, and one for throughput when both rates are given.

    Findings come back whatever their verdict (the alert state machine needs "ok" to
    resolve); ``[f for f in findings if f.regressed]`` are the alerts. Throughput is tested
    for significance with the histograms' counts, so each rate must be measured over the
    same window as its histogram. Either histogram may come as a ``Reference``
    (``stats.significance``): the baseline's keeps its side of the quantile comparisons for
    the next call, current ones from ``prepare_many`` come with theirs computed.
    """
    reference = baseline_hist if isinstance(baseline_hist, Reference) else Reference(baseline_hist)
    now = current_hist if isinstance(current_hist, Reference) else Reference(current_hist)
    baseline_hist, current_hist = reference.histogram, now.histogram
    findings = []
    if policy.quantiles:
        comparisons = compare_quantiles(
            reference,
            now,
            policy._qs,
            policy._thresholds,
            confidence=policy.confidence,
            min_samples=policy.min_samples,
        )
        findings = [
            Finding(rule.name, rule.severity, comparison)
            for rule, comparison in zip(policy.quantiles, comparisons, strict=True)
        ]
    return findings + _rate_findings(
        policy,
        baseline_hist,
        current_hist,
        (baseline_hist.count, current_hist.count),
        baseline_rps,
        current_rps,
    )


def evaluate_points(
    policy: Policy,
    baseline_quantiles: Mapping[float, float],
    current_quantiles: Mapping[float, float],
    baseline_errors: tuple[int, int],
    current_errors: tuple[int, int],
    baseline_rps: float | None = None,
    current_rps: float | None = None,
) -> list[Finding]:
    """``evaluate`` for summaries without histograms (a results row): quantiles (seconds, by
    quantile) judged on point estimates alone; error rate (``(errors, total)`` pairs) and
    throughput tested from the counts as ``evaluate`` does.

    A quantile verdict here is the threshold alone: ``"regression"`` when the current value
    exceeds ``baseline * (1 + threshold)``, ``"improvement"`` below ``1 - threshold``. There
    is no interval (``interval == "none"``), so noise can pass for a change; whoever shows it
    must say so. ``"inconclusive"`` when a quantile is missing on either side or either side
    has fewer than ``min_samples`` calls.
    """
    base_by_name = {quantile_name(q): v for q, v in baseline_quantiles.items()}
    cur_by_name = {quantile_name(q): v for q, v in current_quantiles.items()}
    n_base, n_cur = int(baseline_errors[1]), int(current_errors[1])
    findings = []
    for rule in policy.quantiles:
        name = rule.name
        base = float(base_by_name.get(name, math.nan))
        cur = float(cur_by_name.get(name, math.nan))
        ratio = math.nan if math.isnan(base) or math.isnan(cur) else _ratio(cur, base)
        limit = rule.threshold
        change = f"({base * 1e3:.3g} -> {cur * 1e3:.3g} ms)"
        verdict: Verdict
        if math.isnan(ratio):
            verdict, reason = "inconclusive", f"no point estimate of {name} on both sides"
        elif n_base < policy.min_samples or n_cur < policy.min_samples:
            verdict = "inconclusive"
            reason = (
                f"too few observations to judge: baseline {n_base}, current {n_cur}, "
                f"need {policy.min_samples} each"
            )
        elif ratio > rule.ratio_limit:
            verdict = "regression"
            reason = f"{name} rose {_pct(ratio)} {change}, above the {limit:.0%} threshold"
        elif ratio < 1 - limit:
            verdict, reason = "improvement", f"{name} fell {_pct(ratio)} {change}"
        else:
            verdict = "ok"
            reason = f"{name} changed {_pct(ratio)} {change}, within the {limit:.0%} threshold"
        comparison = Comparison(
            metric=name,
            quantile=rule.quantile,
            baseline_value=base,
            current_value=cur,
            ratio=ratio,
            ci_low=math.nan,
            ci_high=math.nan,
            change_pct=(ratio - 1) * 100,
            verdict=verdict,
            n_baseline=n_base,
            n_current=n_cur,
            reason=reason if verdict == "inconclusive" else reason + " (point estimates, not tested)",
            threshold=limit,
            confidence=policy.confidence,
            interval="none",
        )
        findings.append(Finding(name, rule.severity, comparison))
    return findings + _rate_findings(
        policy, baseline_errors, current_errors, (n_base, n_cur), baseline_rps, current_rps
    )


def _rate_findings(
    policy: Policy,
    baseline_sample: LatencyHistogram | tuple[int, int],
    current_sample: LatencyHistogram | tuple[int, int],
    counts: tuple[int, int],
    baseline_rps: float | None,
    current_rps: float | None,
) -> list[Finding]:
    """The error-rate finding, and the throughput one when both rates are given."""
    findings = [
        Finding(
            "error_rate",
            policy.error_rate_severity,
            compare_error_rate(
                baseline_sample,
                current_sample,
                policy.error_rate_pp,
                policy.confidence,
                min_samples=policy.min_samples,
            ),
        )
    ]
    if baseline_rps is not None and current_rps is not None:
        findings.append(
            Finding(
                "throughput",
                policy.throughput_severity,
                compare_throughput(
                    baseline_rps,
                    current_rps,
                    policy.throughput_drop,
                    baseline_count=counts[0],
                    current_count=counts[1],
                    confidence=policy.confidence,
                ),
            )
        )
    return findings


# -- helpers -------------------------------------------------------------------------------


def _percent(fraction: float) -> str:
    """``0.15 -> "15 %"``, ``0.125 -> "12.5 %"``."""
    return f"{round(fraction * 100, 6):g} %"


def _check_severity(severity: str, where: str) -> None:
    if severity not in SEVERITIES:
        raise StatsError(f"{where} must be one of {', '.join(SEVERITIES)}, got {severity!r}")


def _only_keys(data: Mapping[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(str(k) for k in data if k not in allowed)
    if unknown:
        raise StatsError(f"{where}: unknown key {unknown[0]!r} (known: {', '.join(sorted(allowed))})")


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise StatsError(f"{where}: expected a number, got {value!r}")
    return float(value)


def _parse_quantile_name(key: str, where: str) -> float:
    """``"p95" -> 0.95``, ``"p99.9" -> 0.999``."""
    try:
        if not key.startswith("p"):
            raise ValueError
        q = float(key[1:]) / 100
    except ValueError:
        raise StatsError(f"{where}: {key!r} is not a quantile name like p50, p95, p99.9") from None
    if not 0 < q < 1:
        raise StatsError(f"{where}: {key!r} is not a quantile between p0 and p100")
    return q
