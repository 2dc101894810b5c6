"""compare / compare_error_rate / compare_throughput / Policy / evaluate.

The claims in ``stats.compare``'s docstring, checked by simulation with seeded generators:
real shifts are flagged, noise is not (false-positive rate at 99 % confidence), small
samples are inconclusive, and the intervals cover the truth as often as they promise.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import binom, norm

from nethical_otel.stats import (
    Comparison,
    LatencyHistogram,
    Policy,
    QuantileRule,
    StatsError,
    compare,
    compare_error_rate,
    compare_quantiles,
    compare_throughput,
    evaluate,
    quantile_interval,
    quantile_name,
)

SIGMA = 0.5  # lognormal shape of the simulated service


def latencies(kind: str, n: int, rng: np.random.Generator, factor: float = 1.0) -> np.ndarray:
    if kind == "lognormal":
        values = rng.lognormal(math.log(0.02), SIGMA, n)
    elif kind == "pareto":
        values = 0.005 * (1.0 + rng.pareto(1.5, n))
    elif kind == "bimodal":
        hits = rng.random(n) < 0.8
        values = np.where(hits, rng.lognormal(math.log(0.005), 0.2, n), rng.lognormal(math.log(0.1), 0.3, n))
    else:
        raise ValueError(kind)
    return values * factor


def hist(kind: str, n: int, seed: int, factor: float = 1.0, errors: int = 0) -> LatencyHistogram:
    return LatencyHistogram.from_samples(
        latencies(kind, n, np.random.default_rng(seed), factor), errors=errors
    )


# -- quantiles -------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["lognormal", "pareto", "bimodal"])
@pytest.mark.parametrize("q", [0.5, 0.95, 0.99])
def test_a_30_percent_slowdown_is_a_regression(kind: str, q: float) -> None:
    # A Pareto(1.5) tail is noisy: its p99 needs more observations to be pinned down.
    n = 50_000 if kind == "pareto" else 10_000
    for seed in range(5):
        base = hist(kind, n, seed)
        slow = hist(kind, n, seed + 1000, factor=1.3)
        result = compare(base, slow, q, threshold=0.15)
        assert result.verdict == "regression", result.reason
        assert 1 < result.ci_low <= result.ratio <= result.ci_high
        assert result.ci_low <= 1.3 <= result.ci_high  # the interval holds the true ratio
        assert result.change_pct == pytest.approx((result.ratio - 1) * 100)
        assert result.n_baseline == result.n_current == n


@pytest.mark.parametrize("kind", ["lognormal", "bimodal"])
def test_a_30_percent_speedup_is_an_improvement(kind: str) -> None:
    result = compare(hist(kind, 10_000, 1), hist(kind, 10_000, 2, factor=0.7), 0.95, 0.15)
    assert result.verdict == "improvement", result.reason
    assert result.ci_high < 1


@pytest.mark.parametrize("kind", ["lognormal", "pareto", "bimodal"])
def test_noise_alone_does_not_page_anyone(kind: str) -> None:
    """Same distribution, 200 seed pairs, 3 quantiles, at threshold 0 (significance alone):
    the interval promises at most 0.5 % false regressions per comparison; with the policy
    thresholds there are none at all."""
    false_significant = false_regressions = 0
    for seed in range(200):
        base, current = hist(kind, 2_000, 2 * seed), hist(kind, 2_000, 2 * seed + 1)
        for q, limit in ((0.5, 0.10), (0.95, 0.15), (0.99, 0.20)):
            false_significant += compare(base, current, q, threshold=0.0).verdict == "regression"
            false_regressions += compare(base, current, q, threshold=limit).verdict == "regression"
    assert false_significant <= 6  # expected <= 3 of 600 at 0.5 %; the interval is conservative
    assert false_regressions == 0


def test_a_shift_just_inside_the_threshold_is_ok_even_when_significant() -> None:
    base, current = hist("lognormal", 100_000, 1), hist("lognormal", 100_000, 2, factor=1.08)
    result = compare(base, current, 0.5, threshold=0.10)
    assert result.ci_low > 1  # significant
    assert result.verdict == "ok" and "within the 10% threshold" in result.reason


def test_a_big_but_unproven_shift_is_ok_with_a_reason() -> None:
    # 150 observations: p99 cannot be bounded from above, so nothing is significant there.
    result = compare(hist("lognormal", 150, 1), hist("lognormal", 150, 2, factor=1.5), 0.99, 0.2)
    assert result.ci_high == math.inf
    assert result.verdict == "ok" and "not significantly" in result.reason


def test_small_samples_are_inconclusive() -> None:
    result = compare(hist("lognormal", 99, 1), hist("lognormal", 10_000, 2, factor=3.0), 0.95, 0.15)
    assert result.verdict == "inconclusive"
    assert "baseline 99" in result.reason and math.isnan(result.ci_low)
    empty = compare(LatencyHistogram(), LatencyHistogram(), 0.5, 0.1, min_samples=0)
    assert empty.verdict == "inconclusive"


@pytest.mark.parametrize("q", [0.5, 0.95, 0.99])
def test_quantile_interval_covers_the_true_quantile(q: float) -> None:
    """Coverage >= 99 % promised; 300 trials must not fall below 97 %."""
    rng = np.random.default_rng(7)
    truth = math.exp(math.log(0.02) + SIGMA * norm.ppf(q))  # the population quantile
    covered = 0
    for _ in range(300):
        low, high = quantile_interval(LatencyHistogram.from_samples(latencies("lognormal", 1_000, rng)), [q])
        covered += bool(low[0] <= truth <= high[0])
    assert covered >= 291


def test_quantile_interval_ranks_follow_the_binomial() -> None:
    # The interval's ends are the bucket edges of the order statistics binom.ppf names.
    values = np.sort(latencies("lognormal", 5_000, np.random.default_rng(3)))
    h = LatencyHistogram.from_samples(values)
    low, high = quantile_interval(h, [0.9], confidence=0.95)
    l_rank = int(binom.ppf(0.025, 5_000, 0.9)) - 1
    u_rank = int(binom.ppf(0.975, 5_000, 0.9))
    assert low[0] <= values[l_rank] <= low[0] * 2 ** (1 / 64) * (1 + 1e-5)
    assert high[0] / 2 ** (1 / 64) * (1 - 1e-5) <= values[u_rank] <= high[0]
    assert low[0] < h.quantile(0.9) < high[0]


def test_ratio_interval_is_built_from_two_intervals_at_sqrt_confidence() -> None:
    base, current = hist("bimodal", 4_000, 1), hist("bimodal", 4_000, 2, factor=1.1)
    result = compare(base, current, 0.95, 0.1, confidence=0.98)
    (b_low,), (b_high,) = quantile_interval(base, [0.95], math.sqrt(0.98))
    (c_low,), (c_high,) = quantile_interval(current, [0.95], math.sqrt(0.98))
    assert result.ci_low == pytest.approx(c_low / b_high)
    assert result.ci_high == pytest.approx(c_high / b_low)


def test_ratio_interval_covers_the_true_ratio() -> None:
    covered = 0
    for seed in range(100):
        rng = np.random.default_rng(seed)
        base = LatencyHistogram.from_samples(latencies("bimodal", 3_000, rng))
        current = LatencyHistogram.from_samples(latencies("bimodal", 3_000, rng, factor=1.2))
        result = compare(base, current, 0.95, 0.15)
        covered += result.ci_low <= 1.2 <= result.ci_high
    assert covered >= 97


def test_bootstrap_agrees_with_the_binomial_interval() -> None:
    base, slow = hist("lognormal", 5_000, 1), hist("lognormal", 5_000, 2, factor=1.3)
    boot = compare(base, slow, 0.95, 0.15, method="bootstrap", resamples=500, rng=3)
    exact = compare(base, slow, 0.95, 0.15)
    assert boot.verdict == exact.verdict == "regression"
    assert exact.ci_low <= boot.ci_low and boot.ci_high <= exact.ci_high  # the binomial box is wider
    again = compare(base, slow, 0.95, 0.15, method="bootstrap", resamples=500, rng=3)
    assert (again.ci_low, again.ci_high) == (boot.ci_low, boot.ci_high)  # seeded
    quiet = [
        compare(hist("lognormal", 2_000, s), hist("lognormal", 2_000, s + 500), 0.95, 0.0,
                method="bootstrap", resamples=400, rng=s).verdict
        for s in range(20)
    ]  # fmt: skip
    assert quiet.count("regression") <= 1


def test_compare_quantiles_matches_compare_one_by_one() -> None:
    base, current = hist("pareto", 5_000, 1), hist("pareto", 5_000, 2, factor=1.1)
    together = compare_quantiles(base, current, [0.5, 0.9, 0.999], [0.1, 0.1, 0.1])
    for result in together:
        alone = compare(base, current, result.quantile, 0.1)
        assert (alone.ci_low, alone.ci_high, alone.verdict) == (result.ci_low, result.ci_high, result.verdict)
    assert [r.metric for r in together] == ["p50", "p90", "p99.9"]


def test_bad_arguments_raise() -> None:
    base = hist("lognormal", 1_000, 1)
    with pytest.raises(ValueError, match="strictly between"):
        compare(base, base, 1.0, 0.1)
    with pytest.raises(ValueError, match="thresholds"):
        compare(base, base, 0.5, -0.1)
    with pytest.raises(ValueError, match="confidence"):
        compare(base, base, 0.5, 0.1, confidence=1.0)
    with pytest.raises(ValueError, match="method"):
        compare(base, base, 0.5, 0.1, method="magic")  # type: ignore[arg-type]


def test_quantile_names() -> None:
    names = [quantile_name(q) for q in (0.5, 0.95, 0.99, 0.999, 0.9999)]
    assert names == ["p50", "p95", "p99", "p99.9", "p99.99"]


# -- error rate ------------------------------------------------------------------------------


def test_newcombe_interval_matches_the_published_example() -> None:
    # Newcombe (1998), Statistics in Medicine 17:873, Table II: 56/70 - 48/80, method 10.
    result = compare_error_rate((48, 80), (56, 70), threshold_pp=0.0, confidence=0.95, min_samples=1)
    assert result.ci_low == pytest.approx(5.24, abs=0.01)
    assert result.ci_high == pytest.approx(33.39, abs=0.01)
    assert result.interval == "difference_pp"


def test_error_rate_rise_is_a_regression() -> None:
    base = hist("lognormal", 5_000, 1, errors=50)  # 1 %
    worse = hist("lognormal", 5_000, 2, errors=250)  # 5 %
    result = compare_error_rate(base, worse)
    assert result.verdict == "regression", result.reason
    assert result.ci_low > 0 and result.difference == pytest.approx(0.04)
    assert "rose 4.00 pp" in result.reason
    assert compare_error_rate(worse, base).verdict == "improvement"


def test_error_rate_rise_below_threshold_or_not_significant_is_ok() -> None:
    small = compare_error_rate((50, 5_000), (75, 5_000))  # +0.5 pp: below 1 pp
    assert small.verdict == "ok" and "within" in small.reason
    unproven = compare_error_rate((1, 200), (5, 200))  # +2 pp from few requests
    assert unproven.verdict == "ok" and "not significantly" in unproven.reason
    assert compare_error_rate((0, 10_000), (0, 10_000)).verdict == "ok"
    assert compare_error_rate((0, 10), (5, 10)).verdict == "inconclusive"


def test_error_rate_false_positive_rate() -> None:
    rng = np.random.default_rng(11)
    flagged = 0
    for _ in range(200):
        a, b = rng.binomial(5_000, 0.02, size=2)
        result = compare_error_rate((int(a), 5_000), (int(b), 5_000), threshold_pp=0.0)
        flagged += result.verdict == "regression"
    assert flagged <= 4  # promised about 0.5 %: 1 of 200


def test_error_rate_bad_input_raises() -> None:
    with pytest.raises(ValueError, match="errors <= total"):
        compare_error_rate((5, 3), (0, 10))


# -- throughput ------------------------------------------------------------------------------


def test_throughput_drop() -> None:
    assert compare_throughput(100.0, 60.0).verdict == "regression"
    assert compare_throughput(100.0, 80.0).verdict == "ok"
    assert compare_throughput(100.0, 140.0).verdict == "improvement"
    assert compare_throughput(0.0, 10.0).verdict == "inconclusive"
    assert compare_throughput(float("nan"), 10.0).verdict == "inconclusive"
    result = compare_throughput(100.0, 60.0, baseline_count=6_000, current_count=3_600)
    assert result.verdict == "regression" and result.ci_high < 1 and result.interval == "ratio"
    assert "fell 40.0%" in result.reason


def test_throughput_drop_from_a_trickle_is_not_significant() -> None:
    result = compare_throughput(1.0, 0.6, baseline_count=10, current_count=6)
    assert result.verdict == "ok" and result.ci_low < 1 < result.ci_high


def test_throughput_interval_covers_the_true_ratio() -> None:
    rng = np.random.default_rng(5)
    covered = 0
    for _ in range(200):
        n_base, n_cur = rng.poisson(500 * 10), rng.poisson(450 * 20)  # 500/s for 10 s, 450/s for 20 s
        result = compare_throughput(n_base / 10, n_cur / 20, baseline_count=n_base, current_count=n_cur)
        covered += result.ci_low <= 0.9 <= result.ci_high
    assert covered >= 195


# -- policy ----------------------------------------------------------------------------------


def test_default_policy_is_the_regression_guide() -> None:
    policy = Policy()
    assert [(r.name, r.threshold, r.severity) for r in policy.quantiles] == [
        ("p50", 0.10, "warning"),
        ("p95", 0.15, "warning"),
        ("p99", 0.20, "info"),
    ]
    assert (policy.error_rate_pp, policy.error_rate_severity) == (1.0, "critical")
    assert (policy.throughput_drop, policy.throughput_severity) == (0.30, "warning")
    assert (policy.confidence, policy.min_samples) == (0.99, 100)


def test_policy_from_mapping_merges_over_the_defaults() -> None:
    policy = Policy.from_mapping(
        {
            "quantiles": {
                "p95": {"threshold": 0.05},
                "p99": None,
                "p99.9": {"threshold": 0.5, "severity": "info"},
            },
            "error_rate": {"threshold_pp": 0.5},
            "throughput": {"drop": 0.5, "severity": "critical"},
            "min_samples": 500,
        }
    )
    assert [(r.name, r.threshold, r.severity) for r in policy.quantiles] == [
        ("p50", 0.10, "warning"),
        ("p95", 0.05, "warning"),
        ("p99.9", 0.5, "info"),
    ]
    assert (policy.error_rate_pp, policy.error_rate_severity) == (0.5, "critical")
    assert (policy.throughput_drop, policy.throughput_severity) == (0.5, "critical")
    assert policy.min_samples == 500
    assert Policy.from_mapping(None) == Policy() == Policy.from_mapping({})


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"quantile": {}}, "unknown key 'quantile'"),
        ({"quantiles": {"q95": {"threshold": 0.1}}}, "'q95' is not a quantile"),
        ({"quantiles": {"p95": {"threshold": "10%"}}}, r"quantiles.p95.threshold: expected a number"),
        ({"quantiles": {"p95": {"severity": "page"}}}, "severity must be one of"),
        ({"quantiles": {"p95": {"treshold": 0.1}}}, "unknown key 'treshold'"),
        ({"error_rate": {"threshold_pp": -1}}, "threshold_pp must be >= 0"),
        ({"throughput": {"drop": 1.5}}, "drop must be in"),
        ({"confidence": 1.2}, "confidence"),
        ({"min_samples": 0}, "min_samples"),
        ({"min_samples": "100"}, "min_samples"),
        ([1, 2], "expected a mapping"),
    ],
)
def test_bad_policies_raise_stats_error_naming_the_key(data, message: str) -> None:
    with pytest.raises(StatsError, match=rf"service\.yaml.*{message}"):
        Policy.from_mapping(data, where="service.yaml")


def test_policy_validates_direct_construction() -> None:
    with pytest.raises(StatsError):
        Policy(quantiles=(QuantileRule(0.95, 0.1), QuantileRule(0.95, 0.2)))
    with pytest.raises(StatsError):
        Policy().replace(confidence=0.3)


def test_evaluate_reports_every_metric_with_its_severity() -> None:
    base = hist("lognormal", 10_000, 1, errors=20)
    current = hist("lognormal", 10_000, 2, factor=1.3, errors=400)
    findings = evaluate(Policy(), base, current, baseline_rps=200.0, current_rps=120.0)
    by_name = {f.metric: f for f in findings}
    assert list(by_name) == ["p50", "p95", "p99", "error_rate", "throughput"]
    assert {name: (f.severity, f.verdict) for name, f in by_name.items()} == {
        "p50": ("warning", "regression"),
        "p95": ("warning", "regression"),
        "p99": ("info", "regression"),
        "error_rate": ("critical", "regression"),
        "throughput": ("warning", "regression"),
    }
    assert all(isinstance(f.comparison, Comparison) and f.regressed for f in findings)


def test_evaluate_on_a_healthy_service_finds_nothing() -> None:
    base, current = hist("bimodal", 20_000, 1, errors=40), hist("bimodal", 20_000, 2, errors=45)
    findings = evaluate(Policy(), base, current)
    assert [f.metric for f in findings] == ["p50", "p95", "p99", "error_rate"]  # no rates: no throughput
    assert [f.verdict for f in findings] == ["ok"] * 4
