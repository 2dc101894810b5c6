"""Is the current run slower than the baseline? One answer for the live detector and for CI.

Quantiles are compared from bucket counts alone (fleet mode has no raw samples) by the
bootstrap, computed exactly instead of by resampling. A resample of n values puts its
order statistic of rank r at or below a value that e of the n values do not exceed exactly
when more than r of its n draws land there: ``P = P(Binomial(n, e / n) > r)``. Read at every
bucket edge, that is the bootstrap distribution of each side's quantile over the buckets
(log-uniform inside one); the log-ratio's is the convolution of the two, and ``[low, high]``
its central ``confidence`` interval: the percentile bootstrap of the ratio with infinitely
many resamples. This is the resampling-free bootstrap of quantiles of Schultzberg and
Ankargren (2022, the method Spotify uses to compare quantiles at scale; they approximate the
index by Binomial(n, q), which in the far tail of small samples is narrower than the
bootstrap and, measured here, pages too often: p99 from 200 calls, 1.6 % of A/A trials).
Exact arithmetic, not Monte Carlo: the same counts always give the same verdict. Chosen over
an asymptotic log-ratio interval (Price and Bonett 2002) because it needs no density
estimate, which bucketed tails make unreliable.

Guarantees at the default ``confidence=0.99`` (``benchmarks/power.py``, tests in
``tests/unit/test_stats_significance.py``):

- **False alarms.** Baseline and current from one distribution: ``"regression"`` at the
  default thresholds in <= 0.5 % of trials for p50/p95/p99, for lognormal (narrow and wide),
  bimodal, Pareto-tailed and tail-shifted services, n = 200 to 20,000 a side (800 trials a
  cell: at most 0.5 %, p99 from 200 wide-lognormal calls; at most 0.2 % from 2,000 calls
  on). The interval alone (threshold 0) lies above 1 in 0-0.6 % of a cell's A/A trials,
  0.27 % on average, against the 0.5 % a 99 % central interval promises: calibrated, a
  little conservative from the buckets' width (1.09 %), not a test at a far stricter level.
  The comparison before (two order-statistic intervals at sqrt(0.99) that had to not
  overlap) was at ~0.001 % and paid for it in power.
- **Power.** Within a few points of a raw-sample percentile bootstrap (2,000 resamples) in
  every cell: lognormal sigma=1, n=2,000 a side, p95 +20 %: 54 % of trials (the bootstrap
  57 %, the comparison before 7 %), +30 %: 91 % (92 %, 40 %); Pareto tail, p95 +30 %: 54 %
  (58 %, 8 %).
- **Honest small samples.** A bootstrap sees nothing beyond a sample's largest values, and a
  population quantile can be bounded distribution-free only when ``q ** n < (1 -
  confidence) / 2`` (``min_count``: p95 from 104 values, p99 from 528, p50 from 8). So a
  regression the counts do prove fires from ``min_samples`` (100) calls a side (p99 +30 %
  from 200 calls: about half of the trials, as the raw-sample bootstrap), while a change
  beyond the threshold that is not significant is ``"inconclusive"`` (the detector holds the
  alert's state) when the side that would bound it is below ``min_count``, never ``"ok ...
  not significantly"``. Fewer than ``min_samples`` on either side: ``"inconclusive"`` too.
- **Meaning.** ``"regression"`` needs both: the point estimate exceeds
  ``baseline * (1 + threshold)`` *and* the whole interval lies above 1. ``"improvement"``
  mirrors it. The point estimates interpolate inside buckets (``LatencyHistogram.quantiles``),
  so a threshold acts where it says.
- **What could have been seen.** Every comparison carries ``mde``, the minimum detectable
  effect: the change its interval would prove in 80 % of runs at these sample sizes (the
  log-ratio's standard error read off the interval; Poisson counts for throughput, the
  baseline's rate for errors). A series whose ``mde`` exceeds its threshold is too quiet for
  the policy: a regression of the threshold's size would mostly go unproven.
- **Cost.** One binomial CDF call per side over the buckets within 9 standard deviations of
  each quantile, one small convolution per quantile: about as much as the comparison it
  replaced (0.9-1.1x side by side in ``benchmarks/detector.py``).

scipy is imported inside the functions that need it (the binomial distributions and the
throughput interval), so importing this module, as every instrumented service does, costs
numpy only. A detector calls ``load_scipy()`` when it starts: imported on the first
comparison instead, scipy's second of CPU would slow the service in the very window being
compared, and the detector would report its own import as a regression.

Error rate: Newcombe's hybrid Wilson score interval for a difference of two proportions
(Newcombe 1998, method 10); coverage close to nominal even at 0 errors. Throughput: an
exact conditional binomial (Clopper-Pearson) interval for the ratio of two Poisson rates
when the request counts are known, a plain threshold otherwise. The policy that applies
them is ``stats.policy``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import numpy as np

from nethical_otel.stats.histogram import LatencyHistogram

Verdict = Literal["ok", "regression", "improvement", "inconclusive"]
DEFAULT_CONFIDENCE = 0.99
DEFAULT_MIN_SAMPLES = 100
MDE_POWER = 0.8  # "would have been detected": in 80 % of runs, the convention of power analysis


@dataclass(frozen=True)
class Comparison:
    """The outcome of comparing one statistic between a baseline and a current sample.

    ``ci_low``/``ci_high`` bound what ``interval`` names: the ratio ``current / baseline``
    (quantiles; throughput when counts are known), or the difference ``current -
    baseline`` in percentage points (error rate); ``"none"`` leaves them NaN.
    ``change_pct`` is always ``(ratio - 1) * 100``; ``difference`` is ``current_value -
    baseline_value`` in the statistic's unit (seconds, a fraction, requests/s).
    """

    metric: str
    quantile: float | None
    baseline_value: float
    current_value: float
    ratio: float
    ci_low: float
    ci_high: float
    change_pct: float
    verdict: Verdict
    n_baseline: int
    n_current: int
    reason: str
    threshold: float
    confidence: float
    interval: Literal["ratio", "difference_pp", "none"] = "ratio"
    # The minimum detectable effect: the smallest true change this comparison's interval
    # would exclude "no change" for in 80 % of runs at its sample sizes and ``confidence``
    # (significance alone; a regression also needs the threshold), in the unit of
    # ``threshold``: relative for quantiles and throughput (0.07 = 7 %), percentage points
    # for the error rate. +inf when the data cannot bound it, NaN when not computed.
    mde: float = math.nan

    @property
    def difference(self) -> float:
        return self.current_value - self.baseline_value

    @property
    def regressed(self) -> bool:
        return self.verdict == "regression"


def quantile_name(q: float) -> str:
    """``0.95 -> "p95"``, ``0.999 -> "p99.9"``."""
    return f"p{round(q * 100, 6):g}"


# -- quantiles -----------------------------------------------------------------------------


def quantile_interval(
    hist: LatencyHistogram, quantiles: Sequence[float] | np.ndarray, confidence: float = DEFAULT_CONFIDENCE
) -> tuple[np.ndarray, np.ndarray]:
    """Distribution-free interval ``[low, high]`` holding each population quantile with
    probability >= ``confidence``.

    ``[x_(l), x_(u)]`` with ``l``/``u`` from ``Binomial(count, q)`` so that
    ``P(l <= B < u) >= confidence``; read as the lower edge of the bucket of ``x_(l)`` and
    the upper edge of the bucket of ``x_(u)``. ``low`` is 0 and ``high`` is +inf when the
    sample is too small to bound that side (p99 at 99 % from fewer than about 530 values).
    """
    lows, highs = _intervals([hist], np.asarray(quantiles, dtype=np.float64), confidence)
    return lows[0], highs[0]


def load_scipy() -> None:
    """Import what the comparisons need now (at detector start), not in the first one."""
    import scipy.special  # noqa: F401


def _intervals(
    hists: Sequence[LatencyHistogram], qs: np.ndarray, confidence: float
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """quantile_interval for several histograms with one vectorized binom.ppf call."""
    from scipy.stats import binom  # imported when a comparison runs, not with the package

    alpha = 1.0 - confidence
    n = np.repeat([max(h.count, 1) for h in hists], qs.size).astype(np.float64)
    q = np.tile(qs, len(hists))
    # 1-based order statistics: l = ppf(alpha/2), u = ppf(1 - alpha/2) + 1, so that
    # P(B <= l - 1) < alpha/2 and P(B <= u - 1) >= 1 - alpha/2 (B = #values <= the quantile).
    ranks = binom.ppf(
        np.concatenate([np.full(q.size, alpha / 2), np.full(q.size, 1 - alpha / 2)]),
        np.concatenate([n, n]),
        np.concatenate([q, q]),
    )
    low_rank, high_rank = ranks[: q.size] - 1.0, ranks[q.size :]  # both 0-based now
    lows, highs = [], []
    for i, hist in enumerate(hists):
        part = slice(i * qs.size, (i + 1) * qs.size)
        lo_r, hi_r = low_rank[part], high_rank[part]
        if hist.count == 0:
            lows.append(np.full(qs.size, np.nan))
            highs.append(np.full(qs.size, np.nan))
            continue
        last = hist.count - 1
        low_known, high_known = lo_r >= 0, hi_r <= last
        # One lookup for both ends: lower edges of the low ranks, upper edges of the high ones.
        edges_lo, edges_hi = hist.order_statistic_bounds(np.clip(np.concatenate([lo_r, hi_r]), 0, last))
        lo_edge, hi_edge = edges_lo[: qs.size], edges_hi[qs.size :]
        lows.append(np.where(low_known, np.maximum(lo_edge, 0.0), 0.0))
        highs.append(np.where(high_known, hi_edge, math.inf))
    return lows, highs


# The ratio's distribution. For a sample of n values and the population q-quantile xi,
# P(x_(k) < xi <= x_(k+1)) = P(Binomial(n, q) = k) for the 1-based order statistics
# (x_(0) = 0, x_(n+1) = +inf): the confidence distribution of xi that every order-statistic
# interval is read from. It is also, up to where a mass sits between two neighbours, the
# distribution of the bootstrap quantile (the index of a resampled quantile is Binomial(n, q)),
# which is how Schultzberg and Ankargren (2022) make the bootstrap of quantiles
# resampling-free. Read from the bucket counts, each side is a distribution over buckets
# (log-uniform inside one) with atoms at 0 and +inf; the log-ratio's is their convolution.
# It is exact arithmetic, not Monte Carlo: the same data always gives the same verdict.

_WINDOW_SD = 9.0  # binomial standard deviations around n*q holding all but ~1e-18 of the mass


def _side_distribution(hist: LatencyHistogram, qs: np.ndarray) -> list[tuple[int, np.ndarray, float, float]]:
    """Per quantile: (absolute index of the first bucket, masses of the buckets from there,
    mass at 0, mass at +inf) of the bootstrap distribution of that quantile's estimate."""
    from scipy.special import bdtr  # imported when a comparison runs, not with the package

    n = hist.count
    counts, offset = hist._trimmed()
    if counts.size == 0:  # every value in the zero bucket
        return [(offset, np.zeros(0), 1.0, 0.0) for _ in qs]
    # edges[j] = values below bucket j (edges[0] = the zero bucket), edges[-1] = n.
    edges = np.empty(counts.size + 1, dtype=np.float64)
    edges[0] = hist.zero_count
    np.cumsum(counts, out=edges[1:])
    edges[1:] += hist.zero_count
    ranks = np.floor(qs * (n - 1))  # 0-based rank of the estimate, numpy's "lower"
    spread = _WINDOW_SD * np.sqrt(n * qs * (1 - qs)) + 2.0
    first = np.searchsorted(edges, ranks - spread, side="right") - 1  # bucket of the lowest rank
    stop = np.searchsorted(edges, ranks + spread, side="left") + 1  # one past the last edge used
    first = np.maximum(first, 0).tolist()
    stop = np.minimum(stop, edges.size).tolist()
    # A resample's order statistic of rank r lies at or below an edge holding e values when
    # more than r of its n draws do: P = P(Binomial(n, e / n) > r) = 1 - bdtr(r, n, e / n).
    windows = [edges[f:s] for f, s in zip(first, stop, strict=True)]
    sizes = [w.size for w in windows]
    cdf = 1.0 - bdtr(np.repeat(ranks, sizes), n, np.concatenate(windows) / n)
    masses = np.diff(cdf)
    out = []
    at = 0
    for f, size in zip(first, sizes, strict=True):
        # Below the window's first edge (the zero bucket, or < 1e-18 cut off) counts as 0,
        # above its last one as +inf (nothing when the window reaches the maximum).
        out.append((offset + f, masses[at : at + size - 1], float(cdf[at]), 1.0 - float(cdf[at + size - 1])))
        at += size
    return out


def _ratio_bounds(
    base: tuple[int, np.ndarray, float, float],
    cur: tuple[int, np.ndarray, float, float],
    alpha: float,
    log_base: float,
) -> tuple[float, float]:
    """(low, high) of the ``1 - alpha`` central interval of current/baseline for one quantile.

    Pairs whose ratio is unknown (a side at 0 or +inf) count against the bound they could
    break: a current at 0 or a baseline at +inf pulls the low end to 0, a current at +inf or
    a baseline at 0 pushes the high end to +inf.
    """
    b_first, b_mass, b0, b_inf = base
    c_first, c_mass, c0, c_inf = cur
    conv = np.convolve(c_mass, b_mass[::-1])
    if conv.size == 0:
        return 0.0, math.inf
    d_first = c_first - b_first - (b_mass.size - 1)  # bucket-index difference of conv[0]
    # CDF of the log-ratio at each integer difference, buckets taken as log-uniform inside; a
    # point below / above the support anchors the interpolation.
    cdf = np.empty(conv.size + 2)
    cdf[0] = 0.0
    np.cumsum(conv, out=cdf[1:-1])
    total = float(cdf[-2])
    cdf[1:-1] -= 0.5 * conv
    cdf[-1] = total
    grid = np.arange(d_first - 1.0, d_first + conv.size + 1.0)
    low_atom = c0 + b_inf - c0 * b_inf  # a pair with current 0 or baseline +inf
    high_atom = c_inf + b0 - c_inf * b0  # a pair with current +inf or baseline 0
    want = (alpha / 2 - low_atom, 1 - alpha / 2 - (1.0 - total - high_atom))
    at = np.interp(want, cdf, grid)
    low = 0.0 if want[0] <= 0 else math.exp(float(at[0]) * log_base)
    high = math.inf if want[1] > total else math.exp(float(at[1]) * log_base)
    return low, high


def _ratio_intervals(
    baseline: LatencyHistogram | Reference,
    current: LatencyHistogram | Reference,
    qs: np.ndarray,
    confidence: float,
) -> tuple[np.ndarray, np.ndarray]:
    reference = baseline if isinstance(baseline, Reference) else Reference(baseline)
    now = current if isinstance(current, Reference) else Reference(current)
    scale = min(reference.histogram.scale, now.histogram.scale)
    log_base = math.log(2.0) * 2.0**-scale
    alpha = 1.0 - confidence
    sides = reference.side_distribution(qs, scale), now.side_distribution(qs, scale)
    bounds = [_ratio_bounds(b, c, alpha, log_base) for b, c in zip(*sides, strict=True)]
    return np.array([b[0] for b in bounds]), np.array([b[1] for b in bounds])


class Reference:
    """The baseline's side of the quantile comparisons, computed once and reused.

    A detector compares every series with its baseline at every step, and a baseline changes
    rarely: its quantiles, its coarser copies and the bootstrap distributions of its
    quantiles are kept here, per quantile set and scale, instead of being recomputed each
    step (a quarter of a comparison's cost). What is kept is dropped as soon as the histogram's
    count, sum or buckets' extent differ from when it was computed, so a histogram changed
    in place is never compared by stale figures. Pass it wherever a baseline histogram goes
    (``compare_quantiles``, ``stats.policy.evaluate``).
    """

    __slots__ = ("_memo", "_state", "histogram")
    _MAX_ENTRIES = 32  # a series meets a few quantile sets and scales; more is a misuse

    def __init__(self, histogram: LatencyHistogram) -> None:
        self.histogram = histogram
        self._state: tuple = ()
        self._memo: dict[tuple, object] = {}

    def _kept(self, key: tuple, make):
        h = self.histogram
        state = (h.scale, h.count, h.sum, h.zero_count, h.offset, h.counts.size)
        if state != self._state or len(self._memo) >= self._MAX_ENTRIES:
            self._memo.clear()
            self._state = state
        try:
            return self._memo[key]
        except KeyError:
            value = self._memo[key] = make()
            return value

    def quantiles(self, qs: np.ndarray) -> np.ndarray:
        out = self._kept(("quantiles", qs.tobytes()), lambda: self.histogram.quantiles(qs))
        out.setflags(write=False)
        return out

    def at_scale(self, scale: int) -> LatencyHistogram:
        if scale == self.histogram.scale:
            return self.histogram
        return self._kept(("scale", scale), lambda: self.histogram.downscaled(scale))

    def side_distribution(self, qs: np.ndarray, scale: int) -> list[tuple[int, np.ndarray, float, float]]:
        return self._kept(("side", qs.tobytes(), scale), lambda: _side_distribution(self.at_scale(scale), qs))


def prepare_many(
    histograms: Sequence[LatencyHistogram], quantiles: Sequence[float] | np.ndarray
) -> list[Reference]:
    """A ``Reference`` to each histogram with its quantiles and their bootstrap distributions
    already computed, for all of them in a few numpy passes (the same figures, bit for bit,
    as one histogram at a time). A detector's step prepares every current window so, instead
    of paying numpy's per-call cost a few dozen times per series."""
    from scipy.special import bdtr  # imported when a comparison runs, not with the package

    qs = np.asarray(quantiles, dtype=np.float64)
    refs = [Reference(h) for h in histograms]
    todo = [r for r in refs if r.histogram.count > 0 and r.histogram.counts.any()]
    if not todo or qs.ndim != 1 or ((qs <= 0) | (qs >= 1)).any():
        return refs  # nothing to prepare: each computes its own when asked
    hists = [r.histogram for r in todo]
    k = qs.size
    n = np.array([h.count for h in hists], dtype=np.int64)
    zero = np.array([h.zero_count for h in hists], dtype=np.int64)
    scale = np.array([h.scale for h in hists], dtype=np.float64)
    low = np.array([h.min for h in hists])
    high = np.array([h.max for h in hists])
    # -- quantiles, as LatencyHistogram.quantiles (raw counts, their offset) ---------------
    raw = [h.counts for h in hists]
    size = np.fromiter(map(len, raw), dtype=np.int64, count=len(hists))
    start = np.concatenate([[0], np.cumsum(size)[:-1]])
    flat = np.concatenate(raw)
    running = np.cumsum(flat)
    cumulative = running - np.repeat(running[start] - flat[start], size) + np.repeat(zero, size)
    ranks = np.outer(n - 1, qs).ravel()
    which = np.repeat(np.arange(len(hists)), k)
    pos = _count_at_most(cumulative, start, size, np.floor(ranks), which)
    pos = np.minimum(pos, size[which] - 1)
    at = start[which] + pos
    inside = np.maximum(flat[at], 1)
    before = cumulative[at] - flat[at]
    fraction = np.clip((ranks - before + 0.5) / inside, 0.0, 1.0)
    offset = np.array([h.offset for h in hists], dtype=np.int64)
    values = np.exp2((offset[which] + pos + fraction) * 2.0 ** -scale[which])  # mapping.lower_bound
    values = np.minimum(np.maximum(values, low[which]), high[which])
    values = np.where(ranks < zero[which], np.maximum(low[which], 0.0), values)
    # -- bootstrap distributions, as _side_distribution (trimmed counts, edges) -------------
    trimmed = [h._trimmed() for h in hists]
    tsize = np.fromiter((len(c) for c, _ in trimmed), dtype=np.int64, count=len(hists))
    toffset = np.fromiter((o for _, o in trimmed), dtype=np.int64, count=len(hists))
    width = tsize + 1  # edges[0] = the zero bucket, then one edge per bucket
    estart = np.concatenate([[0], np.cumsum(width)[:-1]])
    steps = np.zeros(int(width.sum()), dtype=np.int64)
    body = np.ones(steps.size, dtype=bool)
    body[estart] = False
    steps[body] = np.concatenate([c for c, _ in trimmed])
    climbed = np.cumsum(steps)
    edges = climbed - np.repeat(climbed[estart], width) + np.repeat(zero, width)
    rank = np.floor(qs * (n[:, None] - 1)).ravel()
    spread = (_WINDOW_SD * np.sqrt(n[:, None] * qs * (1 - qs)) + 2.0).ravel()
    # Edges are integers: "<= x" is "<= floor(x)", "< x" is "<= ceil(x) - 1", exactly.
    first = np.maximum(_count_at_most(edges, estart, width, np.floor(rank - spread), which) - 1, 0)
    stop = _count_at_most(edges, estart, width, np.ceil(rank + spread) - 1, which) + 1
    stop = np.minimum(stop, width[which])
    sizes = stop - first
    gather = np.repeat(estart[which] + first - np.cumsum(sizes) + sizes, sizes) + np.arange(int(sizes.sum()))
    total = np.repeat(n[which], sizes)
    cdf = 1.0 - bdtr(np.repeat(rank, sizes), total, edges[gather].astype(np.float64) / total)
    masses = np.diff(cdf)
    ends = np.cumsum(sizes)
    key_q = qs.tobytes()
    for i, ref in enumerate(todo):
        sides = []
        for j in range(i * k, (i + 1) * k):
            a, b = int(ends[j] - sizes[j]), int(ends[j])
            side = (int(toffset[i] + first[j]), masses[a : b - 1], float(cdf[a]), 1.0 - float(cdf[b - 1]))
            sides.append(side)
        quantile_values = values[i * k : (i + 1) * k].copy()
        ref._kept(("quantiles", key_q), lambda v=quantile_values: v)
        ref._kept(("side", key_q, ref.histogram.scale), lambda v=sides: v)
    return refs


def _count_at_most(
    values: np.ndarray, start: np.ndarray, size: np.ndarray, x: np.ndarray, which: np.ndarray
) -> np.ndarray:
    """Per query ``x[j]`` (an integer-valued float): how many of its segment's values (the
    segment of ``which[j]``: ``values[start : start + size]``, sorted integers) are <= it."""
    # Segments shifted apart so the whole array is sorted: exact, in integers.
    apart = int(max(values.max(initial=0), 0)) + int(np.abs(x).max(initial=0)) + 2
    shift = np.arange(start.size, dtype=np.int64) * apart
    keyed = values + np.repeat(shift, size)
    wanted = np.clip(x, -apart + 1, apart - 1).astype(np.int64) + shift[which]
    return np.searchsorted(keyed, wanted, side="right") - start[which]


def compare(
    baseline: LatencyHistogram,
    current: LatencyHistogram,
    quantile: float,
    threshold: float,
    *,
    confidence: float = DEFAULT_CONFIDENCE,
    min_samples: int = DEFAULT_MIN_SAMPLES,
) -> Comparison:
    """Compare the ``quantile`` (0 < q < 1) of ``current`` against ``baseline``.

    ``threshold`` is the relative change that matters (0.15 = 15 %). See the module
    docstring for what the verdict guarantees.
    """
    return compare_quantiles(
        baseline, current, [quantile], [threshold], confidence=confidence, min_samples=min_samples
    )[0]


def compare_quantiles(
    baseline: LatencyHistogram | Reference,
    current: LatencyHistogram | Reference,
    quantiles: Sequence[float],
    thresholds: Sequence[float],
    *,
    confidence: float = DEFAULT_CONFIDENCE,
    min_samples: int = DEFAULT_MIN_SAMPLES,
) -> list[Comparison]:
    """``compare`` for several quantiles at once. Either side may be a ``Reference``: the
    baseline's keeps its side of the computation for the next comparison, and current ones
    from ``prepare_many`` come with theirs computed."""
    qs = np.asarray(quantiles, dtype=np.float64)
    limits = np.asarray(thresholds, dtype=np.float64)
    if qs.shape != limits.shape or qs.ndim != 1:
        raise ValueError("quantiles and thresholds must be 1-D sequences of the same length")
    if ((qs <= 0) | (qs >= 1)).any():
        raise ValueError(f"quantiles must be strictly between 0 and 1, got {quantiles}")
    if (limits < 0).any():
        raise ValueError(f"thresholds must be >= 0, got {thresholds}")
    _check_confidence(confidence)
    reference = baseline if isinstance(baseline, Reference) else Reference(baseline)
    now = current if isinstance(current, Reference) else Reference(current)
    n_base, n_cur = reference.histogram.count, now.histogram.count
    base_values = reference.quantiles(qs)
    cur_values = now.quantiles(qs)
    enough = n_base >= min_samples and n_cur >= min_samples and n_base > 0 and n_cur > 0
    if enough:
        ci_low, ci_high = _ratio_intervals(reference, now, qs, confidence)
    else:
        ci_low = ci_high = np.full(qs.size, math.nan)
    z_alpha = _z(confidence)
    out = []
    level = f"{confidence:.0%} interval of the ratio"
    for i, q in enumerate(qs):
        name = quantile_name(float(q))
        base_v, cur_v = float(base_values[i]), float(cur_values[i])
        ratio = _ratio(cur_v, base_v)
        low, high = float(ci_low[i]), float(ci_high[i])
        limit = float(limits[i])
        change = f"({_ms(base_v)} -> {_ms(cur_v)})"
        interval = f"{level} [{low:.3f}, {_bound(high)}]"
        mde = _mde(ratio, low, high, z_alpha) if enough else math.nan
        if not enough:
            verdict: Verdict = "inconclusive"
            reason = _too_few(n_base, n_cur, min_samples)
        elif ratio > 1 + limit and low > 1:
            verdict = "regression"
            reason = f"{name} rose {_size(ratio)} {change}, above the {limit:.0%} threshold; "
            reason += f"{interval} lies above 1"
        elif ratio < 1 - limit and high < 1:
            verdict = "improvement"
            reason = f"{name} fell {_size(ratio)} {change}, beyond the {limit:.0%} threshold; "
            reason += f"{interval} lies below 1"
        elif ratio > 1 + limit and float(q) ** n_base >= (1 - confidence) / 2:
            verdict = "inconclusive"
            reason = (
                f"{name} rose {_size(ratio)} {change}, not significantly ({interval} includes 1), "
                f"and {n_base} baseline calls cannot bound their {name} at {confidence:.0%} "
                f"(needs {min_count(float(q), confidence)})"
            )
        elif ratio < 1 - limit and float(q) ** n_cur >= (1 - confidence) / 2:
            verdict = "inconclusive"
            reason = (
                f"{name} fell {_size(ratio)} {change}, not significantly ({interval} includes 1), "
                f"and {n_cur} current calls cannot bound their {name} at {confidence:.0%} "
                f"(needs {min_count(float(q), confidence)})"
            )
        else:
            verdict = "ok"
            if abs(ratio - 1) <= limit:
                reason = f"{name} changed {_pct(ratio)} {change}, within the {limit:.0%} threshold"
            else:
                reason = f"{name} changed {_pct(ratio)} {change} but not significantly: {interval} includes 1"
        out.append(
            Comparison(
                metric=name,
                quantile=float(q),
                baseline_value=base_v,
                current_value=cur_v,
                ratio=ratio,
                ci_low=low,
                ci_high=high,
                change_pct=(ratio - 1) * 100,
                verdict=verdict,
                n_baseline=n_base,
                n_current=n_cur,
                reason=reason,
                threshold=limit,
                confidence=confidence,
                interval="ratio",
                mde=mde,
            )
        )
    return out


def min_count(q: float, confidence: float = DEFAULT_CONFIDENCE) -> int:
    """The fewest observations whose ``q``-quantile can be bounded from above at ``confidence``
    (two-sided): ``q ** n < (1 - confidence) / 2``. p95: 104, p99: 528, p50: 8 at 99 %."""
    return math.floor(math.log((1 - confidence) / 2) / math.log(q)) + 1


def _mde(ratio: float, low: float, high: float, z_alpha: float) -> float:
    """The slowdown proven with probability ``MDE_POWER``, with the log-ratio's standard error
    read off this interval."""
    if not (low > 0 and math.isfinite(ratio) and ratio > 0):
        return math.inf
    if math.isfinite(high):
        se = (math.log(high) - math.log(low)) / (2 * z_alpha)
    else:
        se = max(math.log(ratio) - math.log(low), 0.0) / z_alpha
    return math.expm1(_detectable(se, z_alpha))


def _z_power() -> float:
    """One-sided z of ``MDE_POWER`` (0.84 at 80 %)."""
    return _z(2 * MDE_POWER - 1)


def _detectable(se: float, z_alpha: float) -> float:
    """The effect (in the unit of ``se``) whose interval excludes zero with probability
    ``MDE_POWER``: what the data can prove, whatever the policy's threshold."""
    return (z_alpha + _z_power()) * se


def _bound(value: float) -> str:
    return f"{value:.3f}" if math.isfinite(value) else "inf"


# -- error rate ----------------------------------------------------------------------------


def compare_error_rate(
    baseline: LatencyHistogram | tuple[int, int],
    current: LatencyHistogram | tuple[int, int],
    threshold_pp: float = 1.0,
    confidence: float = DEFAULT_CONFIDENCE,
    *,
    min_samples: int = DEFAULT_MIN_SAMPLES,
) -> Comparison:
    """Compare error rates: histograms (their ``errors``/``count``) or ``(errors, total)`` pairs.

    ``"regression"`` when the rate rose by more than ``threshold_pp`` percentage points
    and the ``confidence`` interval of the difference (Newcombe hybrid score) lies above
    0; ``"improvement"`` mirrors it. When both samples share one error rate, a false
    ``"regression"`` has probability about ``(1 - confidence) / 2`` or less.
    """
    _check_confidence(confidence)
    if threshold_pp < 0:
        raise ValueError(f"threshold_pp must be >= 0, got {threshold_pp}")
    e1, n1 = _errors_total(baseline, "baseline")
    e2, n2 = _errors_total(current, "current")
    p1 = e1 / n1 if n1 else math.nan
    p2 = e2 / n2 if n2 else math.nan
    ratio = _ratio(p2, p1)
    if n1 < max(min_samples, 1) or n2 < max(min_samples, 1):
        return Comparison(
            metric="error_rate",
            quantile=None,
            baseline_value=p1,
            current_value=p2,
            ratio=ratio,
            ci_low=math.nan,
            ci_high=math.nan,
            change_pct=(ratio - 1) * 100,
            verdict="inconclusive",
            n_baseline=n1,
            n_current=n2,
            reason=_too_few(n1, n2, min_samples),
            threshold=threshold_pp,
            confidence=confidence,
            interval="difference_pp",
        )
    z = _z(confidence)
    l1, u1 = _wilson(e1, n1, z)
    l2, u2 = _wilson(e2, n2, z)
    diff = p2 - p1
    low = diff - math.sqrt((p2 - l2) ** 2 + (u1 - p1) ** 2)
    high = diff + math.sqrt((u2 - p2) ** 2 + (p1 - l1) ** 2)
    diff_pp, low_pp, high_pp = diff * 100, low * 100, high * 100
    rates = f"({p1:.2%} -> {p2:.2%}, {e1}/{n1} -> {e2}/{n2})"
    interval = f"{confidence:.0%} interval [{low_pp:+.2f}, {high_pp:+.2f}] pp"
    limit = f"the {threshold_pp:g} pp threshold"
    if diff_pp > threshold_pp and low_pp > 0:
        verdict: Verdict = "regression"
        reason = f"error rate rose {abs(diff_pp):.2f} pp {rates}, above {limit}; {interval}"
    elif diff_pp < -threshold_pp and high_pp < 0:
        verdict = "improvement"
        reason = f"error rate fell {abs(diff_pp):.2f} pp {rates}, beyond {limit}; {interval}"
    else:
        verdict = "ok"
        if abs(diff_pp) <= threshold_pp:
            reason = f"error rate changed {diff_pp:+.2f} pp {rates}, within {limit}"
        else:
            reason = f"error rate changed {diff_pp:+.2f} pp {rates}, not significantly: {interval} includes 0"
    # The rise caught in MDE_POWER of runs: the difference's standard error at the baseline's
    # rate (at least one error in either sample, so a clean baseline still gives a figure).
    rate = max(p1, 1.0 / (n1 + n2))
    se_pp = 100 * math.sqrt(rate * (1 - rate) * (1 / n1 + 1 / n2))
    return Comparison(
        metric="error_rate",
        quantile=None,
        baseline_value=p1,
        current_value=p2,
        ratio=ratio,
        ci_low=low_pp,
        ci_high=high_pp,
        change_pct=(ratio - 1) * 100,
        verdict=verdict,
        n_baseline=n1,
        n_current=n2,
        reason=reason,
        threshold=threshold_pp,
        confidence=confidence,
        interval="difference_pp",
        mde=_detectable(se_pp, z),
    )


def _wilson(errors: int, total: int, z: float) -> tuple[float, float]:
    """Wilson score interval for a proportion."""
    p = errors / total
    z2 = z * z
    centre = (p + z2 / (2 * total)) / (1 + z2 / total)
    half = z / (1 + z2 / total) * math.sqrt(p * (1 - p) / total + z2 / (4 * total * total))
    return max(0.0, centre - half), min(1.0, centre + half)


@lru_cache(maxsize=64)
def _z(confidence: float) -> float:
    from statistics import NormalDist  # statistics pulls decimal and fractions; only when needed

    return NormalDist().inv_cdf(1 - (1 - confidence) / 2)


def _errors_total(sample: LatencyHistogram | tuple[int, int], which: str) -> tuple[int, int]:
    if isinstance(sample, LatencyHistogram):
        errors, total = sample.errors, sample.count
    else:
        errors, total = (int(x) for x in sample)
    if total < 0 or not 0 <= errors <= max(total, 0):
        raise ValueError(f"{which}: need 0 <= errors <= total, got errors={errors}, total={total}")
    return errors, total


# -- throughput ----------------------------------------------------------------------------


def compare_throughput(
    baseline_rps: float,
    current_rps: float,
    drop: float = 0.30,
    *,
    baseline_count: int | None = None,
    current_count: int | None = None,
    confidence: float = DEFAULT_CONFIDENCE,
) -> Comparison:
    """Compare throughput (requests per second).

    ``"regression"`` when ``current < baseline * (1 - drop)``. When the request counts
    behind both rates are given, the drop must also be significant: the exact conditional
    binomial (Clopper-Pearson) ``confidence`` interval of the rate ratio, treating the
    counts as Poisson over ``count / rps`` seconds, must lie below 1. (Closed-loop load has
    less variance than Poisson, so this errs on the quiet side; very bursty traffic has
    more.) ``"improvement"`` mirrors it above ``1 + drop``. ``"inconclusive"`` when the
    baseline rate is not a positive number.
    """
    _check_confidence(confidence)
    if not 0 <= drop < 1:
        raise ValueError(f"drop must be in [0, 1), got {drop}")
    base, cur = float(baseline_rps), float(current_rps)
    n_base = int(baseline_count) if baseline_count is not None else 0
    n_cur = int(current_count) if current_count is not None else 0
    common = {
        "metric": "throughput",
        "quantile": None,
        "baseline_value": base,
        "current_value": cur,
        "n_baseline": n_base,
        "n_current": n_cur,
        "threshold": drop,
        "confidence": confidence,
    }
    if not (math.isfinite(base) and base > 0 and math.isfinite(cur) and cur >= 0):
        return Comparison(
            ratio=math.nan,
            ci_low=math.nan,
            ci_high=math.nan,
            change_pct=math.nan,
            verdict="inconclusive",
            reason=f"throughput {base:g} -> {cur:g} req/s: need a positive baseline and a current rate >= 0",
            interval="none",
            **common,
        )
    ratio = cur / base
    low = high = math.nan
    kind: Literal["ratio", "none"] = "none"
    if baseline_count is not None and current_count is not None and n_base > 0 and cur > 0:
        from scipy import special  # imported when a comparison runs, not with the package

        # Given N = X_b + X_c, X_c ~ Binomial(N, pi) with pi / (1 - pi) = ratio * t_c / t_b.
        t_base, t_cur = n_base / base, n_cur / cur
        total = n_base + n_cur
        alpha = 1 - confidence
        pi_low = special.betaincinv(n_cur, total - n_cur + 1, alpha / 2) if n_cur > 0 else 0.0
        pi_high = special.betaincinv(n_cur + 1, total - n_cur, 1 - alpha / 2)
        scale = t_base / t_cur
        low = float(pi_low / (1 - pi_low) * scale)
        high = float(pi_high / (1 - pi_high) * scale) if pi_high < 1 else math.inf
        kind = "ratio"
    significant_drop = kind == "none" or high < 1
    significant_rise = kind == "none" or low > 1
    rates = f"({base:.1f} -> {cur:.1f} req/s)"
    note = f"; {confidence:.0%} interval of the ratio [{low:.3f}, {high:.3f}]" if kind == "ratio" else ""
    if ratio < 1 - drop and significant_drop:
        verdict: Verdict = "regression"
        reason = f"throughput fell {_size(ratio)} {rates}, more than the {drop:.0%} allowed{note}"
    elif ratio > 1 + drop and significant_rise:
        verdict = "improvement"
        reason = f"throughput rose {_size(ratio)} {rates}{note}"
    else:
        verdict = "ok"
        if abs(ratio - 1) <= drop:
            reason = f"throughput changed {_pct(ratio)} {rates}, within {drop:.0%}"
        else:
            reason = f"throughput changed {_pct(ratio)} {rates} but not significantly{note}"
    mde = math.nan
    if kind == "ratio" and n_cur > 0:  # the drop caught in MDE_POWER of runs (Poisson counts)
        se = math.sqrt(1 / n_base + 1 / n_cur)
        mde = -math.expm1(-_detectable(se, _z(confidence)))
    return Comparison(
        ratio=ratio,
        ci_low=low,
        ci_high=high,
        change_pct=(ratio - 1) * 100,
        verdict=verdict,
        reason=reason,
        interval=kind,
        mde=mde,
        **common,
    )


# -- helpers -------------------------------------------------------------------------------


def _ratio(current: float, baseline: float) -> float:
    if math.isnan(current) or math.isnan(baseline):
        return math.nan
    if baseline > 0:
        return current / baseline
    return 1.0 if current <= 0 else math.inf


def _pct(ratio: float) -> str:
    """Signed change: "+12.3%"."""
    return f"{(ratio - 1) * 100:+.1f}%" if math.isfinite(ratio) else "from 0"


def _size(ratio: float) -> str:
    """Unsigned size of a change, for "rose 12.3%" / "fell 12.3%"."""
    return f"{abs(ratio - 1) * 100:.1f}%" if math.isfinite(ratio) else "from 0"


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.3g} ms"


def _too_few(n_base: int, n_cur: int, min_samples: int) -> str:
    need = max(min_samples, 1)
    return f"too few observations to judge: baseline {n_base}, current {n_cur}, need {need} each"


def _check_confidence(confidence: float) -> None:
    if not 0.5 <= confidence < 1:
        raise ValueError(f"confidence must be in [0.5, 1), got {confidence}")
