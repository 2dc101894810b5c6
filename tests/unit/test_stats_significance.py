"""compare / compare_error_rate / compare_throughput / Policy / evaluate.

The claims in ``stats.significance``'s docstring, checked by simulation with seeded generators:
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
from nethical_otel.stats.significance import Reference, _side_distribution, min_count, prepare_many

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


def _aa_rates(kind: str, n: int, trials: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A/A over ``trials`` pairs: per quantile (p50, p95, p99), the share whose interval lies
    above 1 (significance alone) and the share called "regression" at the default thresholds."""
    rng = np.random.default_rng(seed)
    above, flagged = np.zeros(3), np.zeros(3)
    for _ in range(trials):
        base = LatencyHistogram.from_samples(latencies(kind, n, rng))
        current = LatencyHistogram.from_samples(latencies(kind, n, rng))
        out = compare_quantiles(base, current, [0.5, 0.95, 0.99], [0.0, 0.0, 0.0])
        above += [c.ci_low > 1 for c in out]
        limits = (0.10, 0.15, 0.20)
        flagged += [c.ratio > 1 + limit and c.ci_low > 1 for c, limit in zip(out, limits, strict=True)]
    return above / trials, flagged / trials


@pytest.mark.parametrize(("kind", "n"), [("lognormal", 600), ("pareto", 2_000), ("bimodal", 1_000)])
def test_noise_alone_pages_at_the_promised_rate_not_below_it(kind: str, n: int) -> None:
    """3,000 A/A pairs a shape: the 99 % interval lies above 1 in at most 0.5 % of them (a
    one-sided error of a central interval), and in more than 0.1 %: the test is calibrated,
    not one at a far stricter level (the old non-overlap of two intervals at sqrt(99 %) was at
    ~0.001 % and fails the second bound). With the policy's thresholds: at most 0.5 %."""
    above, flagged = _aa_rates(kind, n, 3_000, seed=n)
    pooled = above.mean()  # 9,000 comparisons: the standard error at 0.5 % is 0.07 points
    assert pooled <= 0.005 + 0.0015, above
    assert pooled > 0.001, above
    assert (above <= 0.0085).all(), above  # each quantile alone: 3,000 trials, 0.5 % + 2.5 se
    assert (flagged <= 0.005).all(), flagged


def test_power_is_that_of_the_raw_sample_bootstrap() -> None:
    """Lognormal sigma=1, n=2,000 a side, p95 +30 %, threshold 15 %: the raw-sample percentile
    bootstrap flags ~84 % of trials (benchmarks/power.py); the comparison before issue 10 flagged
    40 %. At least 70 % of 200 seeded trials here."""
    rng = np.random.default_rng(5)
    flagged = 0
    for _ in range(200):
        base = LatencyHistogram.from_samples(rng.lognormal(math.log(0.01), 1.0, 2_000))
        slow = LatencyHistogram.from_samples(rng.lognormal(math.log(0.01), 1.0, 2_000) * 1.3)
        flagged += compare(base, slow, 0.95, 0.15).regressed
    assert flagged >= 140


def test_a_shift_just_inside_the_threshold_is_ok_even_when_significant() -> None:
    base, current = hist("lognormal", 100_000, 1), hist("lognormal", 100_000, 2, factor=1.08)
    result = compare(base, current, 0.5, threshold=0.10)
    assert result.ci_low > 1  # significant
    assert result.verdict == "ok" and "within the 10% threshold" in result.reason


def test_an_unproven_shift_the_data_cannot_bound_is_inconclusive_not_ok() -> None:
    # 300 baseline calls cannot bound their p99 at 99 % (more than 0.5 % of the calls must lie
    # above it: 528 calls): a +30 % that is not significant is "inconclusive", not "ok".
    result = compare(hist("lognormal", 300, 1), hist("lognormal", 300, 101, factor=1.3), 0.99, 0.2)
    assert result.ratio > 1.2 and result.ci_low < 1
    assert result.verdict == "inconclusive" and "needs 528" in result.reason, result.reason
    # Within the threshold there is nothing to hold: ok.
    calm = compare(hist("lognormal", 300, 1), hist("lognormal", 300, 3), 0.99, 0.5)
    assert calm.verdict == "ok"


@pytest.mark.parametrize(("q", "smallest"), [(0.5, 8), (0.95, 104), (0.99, 528)])
def test_min_count_is_where_the_top_values_can_bound_a_quantile(q: float, smallest: int) -> None:
    assert min_count(q) == smallest
    assert q**smallest < 0.005 <= q ** (smallest - 1)


def test_p99_fires_from_200_calls_a_side_when_the_counts_prove_it() -> None:
    """The bootstrap's evidence, read from the counts: far fewer calls than min_count suffice
    when the current window's p99 lies well above everything the baseline's tail allows."""
    rng = np.random.default_rng(4)
    fired = 0
    for _ in range(50):
        base = LatencyHistogram.from_samples(rng.lognormal(math.log(0.01), 0.3, 200))
        slow = LatencyHistogram.from_samples(rng.lognormal(math.log(0.01), 0.3, 200) * 1.3)
        fired += compare(base, slow, 0.99, 0.2).regressed
    assert fired >= 15  # the raw-sample bootstrap: ~48 % (benchmarks/power.py); before: never


def test_a_wide_shift_between_finite_bounds_is_ok_not_significantly() -> None:
    result = compare(hist("pareto", 1_000, 1), hist("pareto", 1_000, 2, factor=1.25), 0.99, 0.2)
    assert 0 < result.ci_low < 1 < result.ci_high < math.inf
    assert result.verdict == "ok" and "not significantly" in result.reason


def test_the_point_estimate_is_not_quantised() -> None:
    """The same draws, 10 % slower: the interpolated ratio is 1.10 within a few tenths of a
    percent, above 1.10 in about half of the seeds (bucket-value estimates gave powers of
    2 ** (1/64): 1.0915 or 1.1024, "regression" at an exact +10 % in 16 of 20 trials)."""
    ratios = []
    for seed in range(40):
        x = latencies("lognormal", 20_000, np.random.default_rng(seed))
        ratios.append(
            compare(LatencyHistogram.from_samples(x), LatencyHistogram.from_samples(x * 1.1), 0.5, 0.1).ratio
        )
    ratios = np.array(ratios)
    assert np.abs(ratios - 1.1).max() < 0.004
    assert 10 <= (ratios > 1.1).sum() <= 30


def test_the_minimum_detectable_effect_is_what_gets_proven() -> None:
    """mde from an A/A comparison at n=2,000: a slowdown of that size is proven (interval
    above 1) in about 80 % of runs, one of half that size in few; mde shrinks with n."""
    rng = np.random.default_rng(9)

    def sample(n: int, factor: float = 1.0) -> LatencyHistogram:
        return LatencyHistogram.from_samples(rng.lognormal(math.log(0.01), 1.0, n) * factor)

    mde = compare(sample(2_000), sample(2_000), 0.95, 0.15).mde
    assert 0.1 < mde < 0.4
    assert compare(sample(20_000), sample(20_000), 0.95, 0.15).mde < mde / 2
    proven = sum(compare(sample(2_000), sample(2_000, 1 + mde), 0.95, 0.0).ci_low > 1 for _ in range(150))
    half = sum(compare(sample(2_000), sample(2_000, 1 + mde / 2), 0.95, 0.0).ci_low > 1 for _ in range(150))
    assert 0.65 * 150 <= proven <= 0.95 * 150, proven
    assert half <= 0.35 * 150, half


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


def test_ratio_interval_covers_the_true_ratio() -> None:
    covered = 0
    for seed in range(100):
        rng = np.random.default_rng(seed)
        base = LatencyHistogram.from_samples(latencies("bimodal", 3_000, rng))
        current = LatencyHistogram.from_samples(latencies("bimodal", 3_000, rng, factor=1.2))
        result = compare(base, current, 0.95, 0.15)
        covered += result.ci_low <= 1.2 <= result.ci_high
    assert covered >= 97


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


def test_a_reference_compares_as_its_histogram_and_forgets_when_it_changes() -> None:
    rng = np.random.default_rng(41)
    base = LatencyHistogram.from_samples(rng.lognormal(np.log(0.02), 0.5, 20_000))
    coarse = LatencyHistogram.from_samples(rng.lognormal(np.log(0.025), 0.5, 3_000), scale=3)
    fine = LatencyHistogram.from_samples(rng.lognormal(np.log(0.02), 0.5, 3_000))
    qs, limits = [0.5, 0.95, 0.99], [0.1, 0.1, 0.1]
    reference = Reference(base)
    for _ in range(2):  # the second time from what the reference kept
        for current in (coarse, fine):  # at the current's coarser scale, and at the baseline's
            plain = compare_quantiles(base, current, qs, limits)
            assert compare_quantiles(reference, current, qs, limits) == plain
    before = compare_quantiles(reference, fine, qs, limits)
    # Changed in place, the baseline is compared by its new data, not by what was kept.
    base.merge(LatencyHistogram.from_samples(rng.lognormal(np.log(0.03), 0.5, 20_000)))
    again = compare_quantiles(reference, fine, qs, limits)
    assert again == compare_quantiles(base.copy(), fine, qs, limits)
    assert again[0].baseline_value > before[0].baseline_value


def test_prepared_together_the_figures_are_those_of_one_histogram_at_a_time() -> None:
    rng = np.random.default_rng(43)
    hists = []
    for i in range(120):
        n = (1, 2, 150, 3_000, 20_000)[i % 5]
        sigma = rng.uniform(0.1, 1.5)
        hist = LatencyHistogram.from_samples(
            rng.lognormal(np.log(rng.uniform(1e-3, 1)), sigma, n), scale=(0, 3, 5, 6, 8)[i % 4]
        )
        if i % 7 == 0:  # values in the zero bucket too
            hist.zero_count += 5
            hist.count += 5
        hists.append(hist)
    hists.append(LatencyHistogram())  # empty: left to compute its own (nothing)
    qs = np.array([0.5, 0.95, 0.99, 0.999])
    refs = prepare_many(hists, qs)
    assert [r.histogram for r in refs] == hists
    for hist, ref in zip(hists[:-1], refs, strict=False):
        assert ref._memo, "prepared"
        np.testing.assert_array_equal(ref.quantiles(qs), hist.quantiles(qs))
        for got, alone in zip(
            ref.side_distribution(qs, hist.scale), _side_distribution(hist, qs), strict=True
        ):
            assert (got[0], got[2], got[3]) == (alone[0], alone[2], alone[3])
            np.testing.assert_array_equal(got[1], alone[1])
