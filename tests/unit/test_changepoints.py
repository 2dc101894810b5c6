"""Change points (nethical_otel.stats.changepoints): each guarantee of the module docstring."""

from __future__ import annotations

import time

import numpy as np
import pytest
from scipy import stats as sps

from nethical_otel.stats import changepoints
from nethical_otel.stats.changepoints import detect


def indices(values, **options) -> list[int]:
    return [p.index for p in detect(values, **options)]


def noise(rng: np.random.Generator, n: int, level: float = 100.0, cv: float = 0.03) -> np.ndarray:
    return level * rng.normal(1.0, cv, n)


# -- where the points are --------------------------------------------------------------------


def test_a_step_is_found_at_the_first_run_of_the_new_level() -> None:
    rng = np.random.default_rng(3)
    values = np.r_[rng.normal(20, 0.6, 15), rng.normal(26, 0.6, 8)]
    points = detect(values)
    assert [p.index for p in points] == [15]
    assert points[0].pvalue < 0.001
    assert points[0].before == pytest.approx(values[:15].mean())
    assert points[0].after == pytest.approx(values[15:].mean())


def test_a_step_in_a_long_history_is_named_to_the_run() -> None:
    for seed in range(4):
        rng = np.random.default_rng(seed)
        at = int(rng.integers(60, 440))
        values = noise(rng, 500) * np.where(np.arange(500) < at, 1.0, 1.10)
        assert indices(values) == [at], seed


def test_two_steps_are_both_found() -> None:
    rng = np.random.default_rng(4)
    values = np.r_[rng.normal(20, 0.5, 12), rng.normal(30, 0.5, 10), rng.normal(24, 0.5, 10)]
    assert indices(values) == [12, 22]


def test_a_short_regression_in_a_long_history_has_both_edges() -> None:
    """+30 % for 10 runs inside 500 (3 % noise): one split over the whole series found neither."""
    for seed in range(4):
        rng = np.random.default_rng(seed)
        at = int(rng.integers(50, 440))
        level = np.where((np.arange(500) >= at) & (np.arange(500) < at + 10), 1.3, 1.0)
        points = detect(noise(rng, 500) * level)
        assert [p.index for p in points] == [at, at + 10], seed
        assert 25 < points[0].change_pct < 35 and -28 < points[1].change_pct < -20


def test_a_thirty_percent_shift_is_found_with_four_runs() -> None:
    rng = np.random.default_rng(6)
    hits = sum(indices(np.r_[noise(rng, 20), noise(rng, 4, 130.0)]) == [20] for _ in range(50))
    assert hits >= 48


def test_an_isolated_outlier_is_not_a_change_point_but_two_runs_are() -> None:
    rng = np.random.default_rng(7)
    values = noise(rng, 200)
    values[80] *= 1.6
    assert indices(values) == []
    values[81] = values[80]  # two runs at the new level: a short regression
    assert indices(values) == [80, 82]
    assert changepoints.isolated_outliers(values).sum() == 0


def test_outliers_do_not_hide_or_move_a_step() -> None:
    rng = np.random.default_rng(8)
    values = noise(rng, 200) * np.where(np.arange(200) < 120, 1.0, 1.15)
    values[[30, 90, 150]] *= 1.8
    points = detect(values)
    assert [p.index for p in points] == [120]
    assert points[0].after == pytest.approx(np.delete(values, 150)[120:].mean())  # outlier set aside


def test_constant_short_and_missing_values() -> None:
    assert detect([5.0] * 10) == []
    assert detect([1.0, 2.0, 3.0]) == []
    assert indices([5.0] * 6 + [9.0] * 6) == [6]
    assert indices([5.0] * 6 + [np.nan] + [9.0] * 6) == [7]  # NaN skipped, index into the input
    assert indices([5.0] * 10 + [9.0] + [5.0] * 10) == []  # one odd run
    with pytest.raises(ValueError, match="min_size"):
        detect([1.0] * 10, min_size=1)


# -- what every point satisfies ------------------------------------------------------------


def test_no_point_below_min_magnitude() -> None:
    """Levels 100 / 104 / 109: the old bottom-up pass kept run 22 at +4.0 % (min 5 %)."""
    rng = np.random.default_rng(22)
    values = np.repeat([100.0, 104.0, 109.0], [22, 8, 7]) * rng.normal(1, 0.005, 37)
    points = detect(values)
    assert points and all(abs(p.change_pct) >= 5 for p in points)
    # And on random staircases: each point, between its neighbours, moves the mean >= 5 %
    # and passes the test; before/after are those segments' means.
    for seed in range(40):
        rng = np.random.default_rng(seed)
        while True:  # levels of two runs or more (one odd run is an outlier)
            edges = np.sort(rng.choice(np.arange(4, 56), 3, replace=False))
            if np.diff(edges).min() >= 2:
                break
        levels = np.cumprod(1 + rng.choice([-1, 1], 4) * rng.uniform(0.0, 0.12, 4))
        values = 100 * np.repeat(levels, np.diff([0, *edges, 60])) * rng.normal(1, 0.01, 60)
        assert not changepoints.isolated_outliers(values).any()
        points = detect(values)
        cuts = [0, *(p.index for p in points), 60]
        for j, p in enumerate(points):
            before, after = values[cuts[j] : p.index], values[p.index : cuts[j + 2]]
            assert p.before == pytest.approx(before.mean()) and p.after == pytest.approx(after.mean())
            assert abs(after.mean() / before.mean() - 1) >= 0.05, (seed, p)
            assert p.pvalue <= 0.001 and min(before.size, after.size) >= 2


def test_pure_noise_has_false_points_at_the_rate_the_pvalue_sets() -> None:
    """Up to 100 runs, a noise series gets any point with probability at most 2 * max_pvalue.

    Bound: the 99.9 % quantile of Binomial(series, 2 * max_pvalue). Without the Bonferroni
    factor (Otava's final test) 143 of the 200 first series get one, 4 of the 80 second.
    """

    def false_series(count: int, n: int, **options) -> int:
        rng = np.random.default_rng(n)
        return sum(bool(detect(noise(rng, n), **options)) for _ in range(count))

    assert false_series(200, 40, max_pvalue=0.05, min_magnitude=0.0) <= sps.binom.ppf(0.999, 200, 0.1)
    assert false_series(80, 100) <= sps.binom.ppf(0.999, 80, 0.002)  # the defaults: 0.001, 5 %


# -- building blocks --------------------------------------------------------------------------


def test_energy_split_matches_brute_force() -> None:
    rng = np.random.default_rng(8)
    x = np.r_[rng.normal(0, 1, 9), rng.normal(2, 1, 5), rng.normal(0, 1, 8)]

    def q(tau: int, kappa: int) -> float:
        a, b = x[:tau], x[tau:kappa]
        m, k = len(a), len(b)
        between = np.abs(a[:, None] - b[None, :]).mean()
        within_a = np.abs(a[:, None] - a[None, :]).sum() / (m * (m - 1))
        within_b = np.abs(b[:, None] - b[None, :]).sum() / (k * (k - 1))
        return m * k / (m + k) * (2 * between - within_a - within_b)

    tau, kappa, best = changepoints.energy_split(x)
    pairs = [(t, k) for t in range(2, x.size - 1) for k in range(t + 2, x.size + 1)]
    assert (tau, kappa) == max(pairs, key=lambda p: q(*p))
    assert best == pytest.approx(q(tau, kappa))
    assert kappa < x.size  # the best pair stops at the end of the bump, not of the series


def test_the_test_is_students_pooled_t_test() -> None:
    rng = np.random.default_rng(9)
    x = rng.normal(1e6, 1.0, 40)  # large level, small spread: the moments stay exact
    x[25:] += 0.8
    moments = changepoints._Moments(x)
    for a, tau, b in [(0, 25, 40), (3, 10, 31), (20, 22, 24)]:
        ours = changepoints._student_pvalue(moments, np.array([a]), np.array([tau]), np.array([b]))[0]
        assert ours == pytest.approx(sps.ttest_ind(x[a:tau], x[tau:b], equal_var=True).pvalue, rel=1e-6)


def test_five_hundred_runs_take_well_under_a_second() -> None:
    rng = np.random.default_rng(10)
    values = noise(rng, 500) * np.repeat([1.0, 1.2, 1.0, 0.9], [200, 10, 150, 140])
    detect(values)  # scipy imported
    start = time.perf_counter()
    assert indices(values) == [200, 210, 360]
    assert time.perf_counter() - start < 0.5
