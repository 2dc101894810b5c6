"""Change points of a benchmark history: the runs where a metric moved to a new level.

The method is Apache Otava's (Fleming et al., "Hunter: Using Change Point Detection to Hunt
for Performance Regressions", ICPE 2023), with its weak spots fixed:

1. **Isolated outliers are set aside.** A run more than ``OUTLIER_SIGMAS`` (5) noise
   sigmas away from *both* its neighbours, on the same side, is one bad run, not a new
   level (Otava reports it as two change points). The noise sigma is robust and local: the
   median absolute step between consecutive runs over the ~50 around it, / (0.6745 sqrt 2).
   Two such runs in a row are a short regression and are kept.
2. **Candidates: sliding-window E-divisive.** Windows of ``window`` runs (50), half
   overlapping, the last one flush with the newest run. In each, E-divisive means
   (Matteson & James 2014, alpha = 1) splits recursively at the ``(tau, kappa)``
   maximising q-hat(values[s:tau], values[tau:kappa]) while values[s:tau] and
   values[tau:kappa] pass the t-test below at ``10 * max_pvalue`` (the first, "weak" pass;
   2x from 0.05 up, as Otava). A window this short sees a regression of 10 runs in a
   history of 500, which one split over the whole series (our former method) does not.
3. **Final pass, between neighbours.** Each candidate is re-tested against the segments
   between its neighbouring candidates with Student's pooled two-sample t-test (equal
   variances, unbiased variance ``ddof=1``, ``n1 + n2 - 2`` degrees of freedom,
   two-sided), its p-value multiplied by the number of positions the split could have
   taken between those neighbours (Bonferroni: the candidate was *chosen* as the best
   split, so its raw p-value is too small; Otava does not correct for it, and uses the
   biased ``ddof=0`` variance). The weakest candidate is dropped and the others re-tested
   until every one left has ``p <= max_pvalue``, moves the mean by at least
   ``min_magnitude`` (``|after / before - 1|``, the means of its two neighbouring
   segments) and has ``min_size`` runs on each side; each is then moved to the best split
   between its neighbours (largest |t|; E-divisive, which compares whole distributions,
   can be a run off) and the pass repeated. Every point returned meets all three.

Measured (``benchmarks/changepoints.py`` runs ``apache-otava`` 0.8.0 on the same histories;
``tests/unit/test_changepoints.py`` checks the first three):

- **False points.** On pure normal noise a series gets any change point with probability
  at most about ``2 * max_pvalue`` up to 100 runs and ``3 * max_pvalue`` up to 500 (at
  ``max_pvalue`` 0.05: 6.7 / 9.6 / 13 % of series of 30 / 100 / 500 runs, 0.01: 1.1 / 1.5 /
  1.7 %; at the defaults, 0.001 and 5 %: 1 in 2,000, 0 in 1,000, 1 in 300). Otava with
  the same settings: 5 % of 100-run and 14 % of 500-run noise series (3 % noise).
- **Short regressions.** +30 % for 10 runs inside 500 (3 % noise): both edges, to the run.
- **Steps** (3 % noise, 30 runs before): +10 % is named at its first run in 40 / 61 / 75 /
  82 % of series with 2 / 3 / 4 / 5 runs at the new level (+-2 runs: 42 / 70 / 86 / 93 %);
  +30 % in 99 % with 2 runs.
- **Against Otava**, window 50, ``max_pvalue`` 0.001, ``min_magnitude`` 0.05, +-2 runs:
  F1 0.97 against 0.85 over 51 kinds of history; recall on 500-run histories 1.00
  against 0.95. Otava does better on short (50-run) staircases of 2-sigma steps 12 runs
  apart (recall 0.85 against our 0.62): the price of the correction above.
- **Cost.** About 5 ms for 100 runs, 20 ms for 500, 55 ms for 2,000 (numpy; O(window**2)
  per window, so linear in the length).

scipy (``scipy.special.stdtr``) is imported inside the functions that test; importing this
module costs numpy only.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

DEFAULT_MAX_PVALUE = 0.001
DEFAULT_MIN_MAGNITUDE = 0.05
DEFAULT_WINDOW = 50
MIN_SEGMENT = 2
OUTLIER_SIGMAS = 5.0
_SCALE_HALF_WINDOW = 25
# Median and mean of |a - b| for a, b ~ N(mu, s) are 0.954 s and 1.128 s.
_MAD_TO_SIGMA = 1.0 / (0.6744897501960817 * math.sqrt(2.0))
_MEAN_TO_SIGMA = math.sqrt(math.pi) / 2.0


@dataclass(frozen=True)
class ChangePoint:
    """The run at ``index`` starts a new level of ``metric``."""

    metric: str
    index: int
    before: float  # mean of the segment before (outliers set aside)
    after: float  # mean of the segment from ``index`` on
    pvalue: float  # Bonferroni-adjusted Student t-test between the two segments

    @property
    def change_pct(self) -> float:
        return (self.after / self.before - 1) * 100 if self.before else math.inf


# -- building blocks -------------------------------------------------------------------------


def energy_split(values: Sequence[float] | np.ndarray, min_size: int = MIN_SEGMENT) -> tuple[int, int, float]:
    """The ``(tau, kappa, q)`` maximising E-divisive's q-hat of ``values[:tau]`` vs ``values[tau:kappa]``.

    q = m k / (m + k) * (2/(m k) sum|x - y| - 1/C(m,2) sum|x - x'| - 1/C(k,2) sum|y - y'|)
    with m = tau, k = kappa - tau, both at least ``min_size`` and 2 (alpha = 1), every pair at
    once from the 2-D prefix sums of the distance matrix. ``(-1, -1, -inf)`` when too short.
    """
    series = np.asarray(values, dtype=np.float64)
    return _best_split(_distance_prefix(series), 0, series.size, min_size)


def _distance_prefix(values: np.ndarray) -> np.ndarray:
    """``P[i, j]``: the sum of ``|x - y|`` over x in ``values[:i]``, y in ``values[:j]``."""
    n = values.size
    prefix = np.zeros((n + 1, n + 1))
    np.cumsum(np.abs(values[:, None] - values[None, :]), axis=0, out=prefix[1:, 1:])
    np.cumsum(prefix[1:, 1:], axis=1, out=prefix[1:, 1:])
    return prefix


@functools.lru_cache(maxsize=128)
def _split_weights(length: int, min_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """q-hat's coefficients for every (tau, kappa) of a segment of ``length``: they depend on
    m = tau and k = kappa - tau only, so each segment length is worked out once."""
    m = np.arange(min_size, length - min_size + 1, dtype=np.float64)[:, None]
    k = np.arange(2 * min_size, length + 1, dtype=np.float64)[None, :] - m
    valid = k >= min_size
    k = np.where(valid, k, 2.0)
    # m k / (m + k) * (2 B / (m k) - L / (m (m - 1)) - R / (k (k - 1))), term by term.
    weights = (
        np.where(valid, 2 / (m + k), 0.0),
        np.where(valid, k / ((m + k) * (m - 1)), 0.0),
        np.where(valid, m / ((m + k) * (k - 1)), 0.0),
        np.where(valid, 0.0, -np.inf),
    )
    for w in weights:
        w.flags.writeable = False
    return weights


def _best_split(prefix: np.ndarray, a: int, b: int, min_size: int) -> tuple[int, int, float]:
    """``energy_split`` of ``values[a:b]``, from the prefix sums of a series containing it."""
    min_size = max(min_size, 2)
    if b - a < 2 * min_size:
        return -1, -1, -math.inf
    w_between, w_left, w_right, invalid = _split_weights(b - a, min_size)
    diag = np.diagonal(prefix)
    t0, t1 = a + min_size, b - min_size + 1  # tau in [t0, t1), kappa in [k0, b]
    k0 = a + 2 * min_size
    # Block sums of the distance matrix: twice the pair sums within [a, tau) and
    # [tau, kappa), and the sum across them.
    diag_tau = diag[t0:t1, None]
    row_a_tau = prefix[a, t0:t1, None]
    cross = prefix[t0:t1, k0 : b + 1]
    left = diag_tau - 2 * row_a_tau + diag[a]
    right = diag[None, k0 : b + 1] - 2 * cross + diag_tau
    between = cross - prefix[None, a, k0 : b + 1] - diag_tau + row_a_tau
    q = w_between * between - w_left * left - w_right * right + invalid
    i, j = np.unravel_index(int(np.argmax(q)), q.shape)
    return t0 + int(i), k0 + int(j), float(q[i, j])


def isolated_outliers(values: np.ndarray, sigmas: float = OUTLIER_SIGMAS) -> np.ndarray:
    """Mask of runs more than ``sigmas`` noise sigmas from both neighbours, on the same side.

    The noise sigma at each run is the median absolute first difference over the ~50 runs
    around it, / (0.6745 sqrt 2): a level shift is one large difference among 50 and does
    not move it. The first and last runs are never outliers (one neighbour only).
    """
    n = values.size
    mask = np.zeros(n, dtype=bool)
    if n < 3:
        return mask
    steps = np.abs(np.diff(values))
    half = min(_SCALE_HALF_WINDOW, (steps.size - 1) // 2)
    padded = np.pad(steps, half, mode="reflect") if half else steps
    width = 2 * half + 1
    windows = np.sort(np.lib.stride_tricks.sliding_window_view(padded, width), axis=1)
    scale = windows[:, half] * _MAD_TO_SIGMA  # the median
    # Quantised values (whole milliseconds) can have a median step of 0: then the mean step,
    # less the two largest (the outlier's own two steps).
    trimmed = windows[:, : max(width - 2, 1)].mean(axis=1) * _MEAN_TO_SIGMA
    scale = np.where(scale > 0, scale, trimmed)
    # scale[i] is centred on difference i (between runs i and i+1); run i sits between i-1 and i.
    run_scale = np.maximum(scale[:-1], scale[1:])
    up = values[1:-1] - values[:-2]
    down = values[1:-1] - values[2:]
    limit = sigmas * run_scale
    mask[1:-1] = (np.abs(up) > limit) & (np.abs(down) > limit) & (np.sign(up) == np.sign(down))
    return mask


class _Moments:
    """Count, mean and sum of squared deviations of any ``values[a:b]`` in O(1), vectorised."""

    def __init__(self, values: np.ndarray) -> None:
        # Centred first, so the squares do not swamp the spread (latencies of 1e6 +- 1 stay exact).
        centre = float(np.median(values)) if values.size else 0.0
        x = values - centre
        self.centre = centre
        self.sum = np.concatenate(([0.0], np.cumsum(x)))
        self.sq = np.concatenate(([0.0], np.cumsum(x * x)))

    def stats(self, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        n = (b - a).astype(np.float64)
        total = self.sum[b] - self.sum[a]
        mean = total / np.maximum(n, 1)
        ss = np.maximum(self.sq[b] - self.sq[a] - total * mean, 0.0)
        return n, mean + self.centre, ss


def _student_pvalue(moments: _Moments, a: np.ndarray, tau: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Two-sided p of Student's pooled t-test, ``values[a:tau]`` vs ``values[tau:b]``.

    t = (mean2 - mean1) / sqrt(s2 (1/n1 + 1/n2)), s2 = (SS1 + SS2) / (n1 + n2 - 2), on
    ``n1 + n2 - 2`` degrees of freedom. Two constant sides: p = 0 if their means differ
    (beyond rounding), else 1.
    """
    from scipy.special import stdtr

    n1, mean1, ss1 = moments.stats(a, tau)
    n2, mean2, ss2 = moments.stats(tau, b)
    df = n1 + n2 - 2
    with np.errstate(divide="ignore", invalid="ignore"):
        pooled = (ss1 + ss2) / np.maximum(df, 1)
        se = np.sqrt(pooled * (1 / n1 + 1 / n2))
        t = np.abs(mean2 - mean1) / se
    scale = np.maximum(np.maximum(np.abs(mean1), np.abs(mean2)), 1e-300)
    flat = se <= 1e-12 * scale
    differ = np.abs(mean2 - mean1) > 1e-12 * scale
    p = 2 * stdtr(np.maximum(df, 1), -np.where(flat, 0.0, t))
    p = np.where(flat, np.where(differ, 0.0, 1.0), p)
    return np.where(df >= 1, p, 1.0)


# -- the detector ----------------------------------------------------------------------------


def _first_pass_pvalue(max_pvalue: float) -> float:
    """The weak pass's threshold, Otava's: 10x below 0.05, 2x below 0.5, else the same."""
    return max_pvalue * (10 if max_pvalue < 0.05 else 2 if max_pvalue < 0.5 else 1)


def _window_candidates(
    series: np.ndarray, moments: _Moments, window: int, pvalue: float, min_size: int
) -> set[int]:
    """Weak change points: E-divisive inside each sliding window, split while ``p <= pvalue``."""
    n = series.size
    length = min(window, n)
    starts = list(range(0, n - length + 1, max(length // 2, 1)))
    if starts[-1] != n - length:
        starts.append(n - length)  # the newest runs get a full window too
    found: set[int] = set()
    for start in starts:
        prefix = _distance_prefix(series[start : start + length])
        pending = [(0, length)]
        while pending:
            a, b = pending.pop()
            tau, kappa, _ = _best_split(prefix, a, b, min_size)
            if tau < 0:
                continue
            ends = np.array([start + a, start + tau, start + kappa])
            if _student_pvalue(moments, ends[:1], ends[1:2], ends[2:])[0] <= pvalue:
                found.add(start + tau)
                pending += [(a, tau), (tau, b)]
    return found


def _assess(
    moments: _Moments, points: list[int], n: int, min_size: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Each point against its neighbours' segments: adjusted p, magnitude, mean before, after."""
    tau = np.array(points)
    edges = np.array([0, *points, n])
    a, b = edges[:-2], edges[2:]
    positions = np.maximum(b - a - 2 * min_size + 1, 1)  # where the split could have been put
    adjusted = np.minimum(_student_pvalue(moments, a, tau, b) * positions, 1.0)
    adjusted = np.where(np.minimum(tau - a, b - tau) < min_size, 1.0, adjusted)
    _, before, _ = moments.stats(a, tau)
    _, after, _ = moments.stats(tau, b)
    with np.errstate(divide="ignore", invalid="ignore"):
        magnitude = np.where(before != 0, np.abs(after / before - 1), np.inf)
    return adjusted, magnitude, before, after


def _prune(
    moments: _Moments, points: list[int], n: int, max_pvalue: float, min_magnitude: float, min_size: int
) -> list[int]:
    """Drop the weakest point until every one left passes between its neighbours."""
    points = sorted(points)
    while points:
        adjusted, magnitude, _, _ = _assess(moments, points, n, min_size)
        if (adjusted > max_pvalue).any():  # the least significant goes (of equals, the smallest move)
            del points[int(np.lexsort((magnitude, -adjusted))[0])]
        elif (magnitude < min_magnitude).any():
            del points[int(np.argmin(magnitude))]
        else:
            break
    return points


def _relocate(moments: _Moments, points: list[int], n: int, min_size: int) -> list[int]:
    """Move each point to the best single split between its neighbours.

    The best split of ``values[a:b]`` for a shift of the mean is the one with the largest
    between-segment sum of squares, m k / (m + k) (mean2 - mean1)**2, which is also the
    largest |t|; E-divisive, which looks at whole distributions, can be a run or two off.
    """
    points = list(points)
    for j in range(len(points)):
        a = points[j - 1] if j else 0
        b = points[j + 1] if j + 1 < len(points) else n
        tau = np.arange(a + min_size, b - min_size + 1)
        if tau.size == 0:
            continue
        m, left, _ = moments.stats(np.full_like(tau, a), tau)
        k, right, _ = moments.stats(tau, np.full_like(tau, b))
        points[j] = int(tau[np.argmax(m * k / (m + k) * (right - left) ** 2)])
    return points


def detect(
    values: Sequence[float] | np.ndarray,
    *,
    metric: str = "",
    max_pvalue: float = DEFAULT_MAX_PVALUE,
    min_magnitude: float = DEFAULT_MIN_MAGNITUDE,
    window: int = DEFAULT_WINDOW,
    min_size: int = MIN_SEGMENT,
) -> list[ChangePoint]:
    """Change points of ``values`` (oldest first), each naming the first run of its new level.

    Every point returned has, between its neighbouring change points, a Bonferroni-adjusted
    Student t-test p-value ``<= max_pvalue``, a relative change of the mean
    ``>= min_magnitude`` and ``>= min_size`` runs on each side. NaN values (a run without
    that metric) and isolated outliers are skipped; indices refer to ``values``.
    """
    if min_size < 2 or window < 2 * min_size:
        raise ValueError(f"need min_size >= 2 and window >= 2 * min_size, got {min_size}, {window}")
    raw = np.asarray(values, dtype=np.float64)
    finite = np.flatnonzero(np.isfinite(raw))
    keep = finite[~isolated_outliers(raw[finite])]
    series = raw[keep]
    n = series.size
    if n < 2 * min_size:
        return []
    moments = _Moments(series)
    weak = _window_candidates(series, moments, window, _first_pass_pvalue(max_pvalue), min_size)
    points = _prune(moments, list(weak), n, max_pvalue, min_magnitude, min_size)
    if not points:
        return []
    points = _relocate(moments, points, n, min_size)
    points = _prune(moments, points, n, max_pvalue, min_magnitude, min_size)
    if not points:
        return []
    pvalues, _, before, after = _assess(moments, points, n, min_size)
    return [
        ChangePoint(metric, int(keep[tau]), float(before[j]), float(after[j]), float(pvalues[j]))
        for j, tau in enumerate(points)
    ]
