"""Is the current run slower than the baseline? One answer for the live detector and for CI.

Guarantees, at the default ``confidence=0.99``:

- **False alarms.** When baseline and current are samples of the same distribution,
  ``compare`` says ``"regression"`` with probability at most 0.5 %, whatever the
  distribution (lognormal, heavy-tailed, bimodal, ...). The interval behind it is
  distribution-free: each quantile gets an order-statistic confidence interval from the
  binomial distribution (Conover, *Practical Nonparametric Statistics*, the quantile test;
  Hahn & Meeker, *Statistical Intervals*, ch. 5), read from the histogram with bucket *edges* so bucketing
  only widens it, and the two are combined into an interval for the ratio
  ``current / baseline`` at ``sqrt(0.99)`` each (coverage >= 99 % by independence).
- **Sensitivity.** With 10,000 observations per side, a 30 % slower p95 is flagged in
  every seeded trial of the test suite; the 99 % ratio interval at p95 is about +-6 % wide
  there (lognormal data), so shifts beyond ~6 % become provable.
  Fewer than ``min_samples`` (100) observations on either side gives ``"inconclusive"``.
- **Meaning.** ``"regression"`` needs both: the point estimate exceeds
  ``baseline * (1 + threshold)`` *and* the whole interval lies above 1 (the slowdown is
  real, not noise). ``"improvement"`` mirrors it below ``1 - threshold``.
- **Cost.** About 0.3 ms per series for three quantiles (one vectorized
  ``scipy.stats.binom.ppf`` call) and 0.45 ms for a whole ``evaluate`` (3 quantiles, error
  rate, throughput): 1,000 series in under half a second (``benchmarks/detector.py``). The
  multinomial bootstrap (``method="bootstrap"``) is kept for cross-checking; it costs
  about 70 ms per comparison of 10,000-observation histograms.

scipy is imported inside the functions that need it (the binomial quantile intervals and
the throughput interval), so importing this module, as every instrumented service does,
costs numpy only. A detector calls ``load_scipy()`` when it starts: imported on the first
comparison instead, scipy's second of CPU would slow the service in the very window being
compared, and the detector would report its own import as a regression.

Error rate: Newcombe's hybrid Wilson score interval for a difference of two proportions
(Newcombe 1998, method 10); coverage close to nominal even at 0 errors. Throughput: an
exact conditional binomial (Clopper-Pearson) interval for the ratio of two Poisson rates
when the request counts are known, a plain threshold otherwise.

``Policy`` holds the thresholds (defaults from the regression guide in DESIGN.md) and
``evaluate`` applies one to a baseline/current pair.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import numpy as np

from nethical_otel.stats.histogram import LatencyHistogram, StatsError

Verdict = Literal["ok", "regression", "improvement", "inconclusive"]
DEFAULT_CONFIDENCE = 0.99
DEFAULT_MIN_SAMPLES = 100


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
    # The smallest change this comparison would have caught (80 % power at ``confidence``),
    # in the unit of ``threshold``: relative for quantiles and throughput (0.07 = 7 %),
    # percentage points for the error rate. +inf when the data cannot bound it, NaN when
    # not computed (too few observations).
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
    import scipy.special
    import scipy.stats  # noqa: F401


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


def _bootstrap_ratio_interval(
    baseline: LatencyHistogram,
    current: LatencyHistogram,
    qs: np.ndarray,
    confidence: float,
    resamples: int,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval of current/baseline quantile ratios over multinomial resamples."""
    alpha = 1.0 - confidence
    draws = [_bootstrap_quantiles(h, qs, resamples, rng) for h in (baseline, current)]
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = draws[1] / draws[0]
    ratios = np.where(np.isnan(ratios), 1.0, ratios)  # 0/0: both in the zero bucket
    low = np.quantile(ratios, alpha / 2, axis=0)
    high = np.quantile(ratios, 1 - alpha / 2, axis=0)
    return low, high


def _bootstrap_quantiles(
    hist: LatencyHistogram, qs: np.ndarray, resamples: int, rng: np.random.Generator
) -> np.ndarray:
    """(resamples, len(qs)) quantile estimates from multinomial resamples of the buckets."""
    counts, offset = hist._trimmed()
    weights = np.concatenate([[hist.zero_count], counts]).astype(np.float64)
    draws = rng.multinomial(hist.count, weights / weights.sum(), size=resamples)
    cumulative = np.cumsum(draws, axis=1)
    ranks = np.floor(qs * (hist.count - 1))
    slot = (cumulative[:, :, None] <= ranks[None, None, :]).sum(axis=1)  # 0 = zero bucket
    values = hist.bucket_values(offset + np.maximum(slot - 1, 0))
    return np.where(slot == 0, max(hist.min, 0.0), values)


def compare(
    baseline: LatencyHistogram,
    current: LatencyHistogram,
    quantile: float,
    threshold: float,
    *,
    confidence: float = DEFAULT_CONFIDENCE,
    min_samples: int = DEFAULT_MIN_SAMPLES,
    method: Literal["binomial", "bootstrap"] = "binomial",
    resamples: int = 1000,
    rng: np.random.Generator | int | None = None,
) -> Comparison:
    """Compare the ``quantile`` (0 < q < 1) of ``current`` against ``baseline``.

    ``threshold`` is the relative change that matters (0.15 = 15 %). See the module
    docstring for what the verdict guarantees. ``method="bootstrap"`` replaces the
    binomial interval with a percentile bootstrap of the ratio (``resamples``
    multinomial resamples of each histogram's buckets, seeded by ``rng``).
    """
    return compare_quantiles(
        baseline,
        current,
        [quantile],
        [threshold],
        confidence=confidence,
        min_samples=min_samples,
        method=method,
        resamples=resamples,
        rng=rng,
    )[0]


def compare_quantiles(
    baseline: LatencyHistogram,
    current: LatencyHistogram,
    quantiles: Sequence[float],
    thresholds: Sequence[float],
    *,
    confidence: float = DEFAULT_CONFIDENCE,
    min_samples: int = DEFAULT_MIN_SAMPLES,
    method: Literal["binomial", "bootstrap"] = "binomial",
    resamples: int = 1000,
    rng: np.random.Generator | int | None = None,
) -> list[Comparison]:
    """``compare`` for several quantiles at once (one vectorized interval computation)."""
    qs = np.asarray(quantiles, dtype=np.float64)
    limits = np.asarray(thresholds, dtype=np.float64)
    if qs.shape != limits.shape or qs.ndim != 1:
        raise ValueError("quantiles and thresholds must be 1-D sequences of the same length")
    if ((qs <= 0) | (qs >= 1)).any():
        raise ValueError(f"quantiles must be strictly between 0 and 1, got {quantiles}")
    if (limits < 0).any():
        raise ValueError(f"thresholds must be >= 0, got {thresholds}")
    _check_confidence(confidence)
    n_base, n_cur = baseline.count, current.count
    base_values = baseline.quantiles(qs)
    cur_values = current.quantiles(qs)
    enough = n_base >= min_samples and n_cur >= min_samples and n_base > 0 and n_cur > 0
    if enough and method == "binomial":
        side = math.sqrt(confidence)  # two independent intervals: joint coverage side**2
        (base_lo, cur_lo), (base_hi, cur_hi) = _intervals([baseline, current], qs, side)
        with np.errstate(divide="ignore", invalid="ignore"):
            ci_low = np.where(base_hi > 0, cur_lo / base_hi, 0.0)
            ci_high = np.where(base_lo > 0, cur_hi / base_lo, math.inf)
    elif enough and method == "bootstrap":
        generator = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
        ci_low, ci_high = _bootstrap_ratio_interval(baseline, current, qs, confidence, resamples, generator)
    elif enough:
        raise ValueError(f"method must be 'binomial' or 'bootstrap', got {method!r}")
    else:
        ci_low = ci_high = np.full(qs.size, math.nan)
    out = []
    level = f"{confidence:.0%} interval of the ratio"
    for i, q in enumerate(qs):
        name = quantile_name(float(q))
        base_v, cur_v = float(base_values[i]), float(cur_values[i])
        ratio = _ratio(cur_v, base_v)
        low, high = float(ci_low[i]), float(ci_high[i])
        limit = float(limits[i])
        change = f"({_ms(base_v)} -> {_ms(cur_v)})"
        if not enough:
            verdict: Verdict = "inconclusive"
            reason = _too_few(n_base, n_cur, min_samples)
        elif ratio > 1 + limit and low > 1:
            verdict = "regression"
            reason = (
                f"{name} rose {_size(ratio)} {change}, above the {limit:.0%} threshold; "
                f"{level} [{low:.3f}, {high:.3f}] lies above 1"
            )
        elif ratio < 1 - limit and high < 1:
            verdict = "improvement"
            reason = (
                f"{name} fell {_size(ratio)} {change}, beyond the {limit:.0%} threshold; "
                f"{level} [{low:.3f}, {high:.3f}] lies below 1"
            )
        else:
            verdict = "ok"
            if abs(ratio - 1) <= limit:
                reason = f"{name} changed {_pct(ratio)} {change}, within the {limit:.0%} threshold"
            else:
                reason = (
                    f"{name} changed {_pct(ratio)} {change} but not significantly: "
                    f"{level} [{low:.3f}, {high:.3f}] includes 1"
                )
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
            )
        )
    return out


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
    return Comparison(
        ratio=ratio,
        ci_low=low,
        ci_high=high,
        change_pct=(ratio - 1) * 100,
        verdict=verdict,
        reason=reason,
        interval=kind,
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
