"""Detector throughput: the statistics under the live detector and CI, side by side with
what they replace, in one run.

  ingest    ``LatencyHistogram.from_samples`` vs ``np.histogram(x, bins=np.geomspace(min,
            max, 1000))`` on the same float64 latencies; rounds interleave the two, each
            figure is the median over rounds
  accuracy  p50/p95/p99 from the histogram vs exact ``np.quantile(x, q, method="lower")``
            on lognormal, Pareto-tailed and bimodal latencies
  evaluate  ``evaluate(Policy(), ...)`` on N series per step: p50/p95/p99 with their
            significance tests, error rate and throughput for each; a tenth of the series
            carry a planted +30 % slowdown, so the verdicts are counted too
  memory    ``LatencyHistogram.nbytes`` per series (one histogram), and its JSON size

Targets: ingest >= 2x faster than np.histogram, quantile error <= 1 %, 1,000 series
evaluated in < 0.5 s with quantile intervals at most 2x as costly as the two
order-statistic intervals they replaced (issue 10), < 16 KiB per series. Exit status 1
when a target is missed.

    python benchmarks/detector.py [--values 1000000] [--rounds 9] [--series 1000]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable

import numpy as np

from nethical_otel.stats import DEFAULT_SCALE, LatencyHistogram, Policy, evaluate
from nethical_otel.stats.significance import _intervals, _ratio_intervals

# -- statistics: data ------------------------------------------------------------------------


def latencies(kind: str, n: int, rng: np.random.Generator) -> np.ndarray:
    """Latency-shaped samples in seconds."""
    if kind == "lognormal":
        return rng.lognormal(math.log(0.02), 0.5, n)
    if kind == "pareto":  # heavy tail (alpha 1.5)
        return 0.005 * (1.0 + rng.pareto(1.5, n))
    if kind == "bimodal":  # cache hits around 5 ms, misses around 100 ms
        hits = rng.random(n) < 0.8
        return np.where(hits, rng.lognormal(math.log(0.005), 0.2, n), rng.lognormal(math.log(0.1), 0.3, n))
    raise ValueError(kind)


# -- statistics: measurements ----------------------------------------------------------------


def median_seconds(variants: dict[str, Callable[[], object]], rounds: int) -> dict[str, float]:
    """Median wall time per variant; every round runs every variant once, interleaved."""
    times: dict[str, list[float]] = {name: [] for name in variants}
    for fn in variants.values():
        fn()  # warm up
    for _ in range(rounds):
        for name, fn in variants.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(ts) for name, ts in times.items()}


def bench_ingest(values: np.ndarray, rounds: int) -> float:
    medians = median_seconds(
        {
            "LatencyHistogram.from_samples": lambda: LatencyHistogram.from_samples(values),
            "np.histogram (1000 geomspace bins)": lambda: np.histogram(
                values, bins=np.geomspace(values.min(), values.max(), 1000)
            ),
        },
        rounds,
    )
    ours, numpy_s = medians.values()
    print(f"ingest: {values.size:,} float64 latencies, median of {rounds} interleaved rounds")
    for name, seconds in medians.items():
        rate = values.size / seconds / 1e6
        per_value = seconds / values.size * 1e9
        print(f"  {name:36s} {seconds * 1e3:8.2f} ms  {rate:7.1f} M values/s  {per_value:5.2f} ns/value")
    ratio = numpy_s / ours
    print(f"  {'speed-up':36s} {ratio:8.2f}x   (target >= 2x)")
    return ratio


def bench_accuracy(n: int, rng: np.random.Generator) -> float:
    qs = np.array([0.5, 0.95, 0.99])
    print(f"quantile error vs exact np.quantile(method='lower'), n={n:,}, scale {DEFAULT_SCALE}")
    bound = 2.0 ** (2.0**-DEFAULT_SCALE) - 1  # one bucket: interpolated estimates stay inside it
    print(f"  {'data':10s} {'p50':>9s} {'p95':>9s} {'p99':>9s}   (bound {bound:.3%}, one bucket)")
    worst = 0.0
    for kind in ("lognormal", "pareto", "bimodal"):
        values = latencies(kind, n, rng)
        exact = np.quantile(values, qs, method="lower")
        error = LatencyHistogram.from_samples(values).quantiles(qs) / exact - 1
        worst = max(worst, float(np.abs(error).max()))
        print(f"  {kind:10s} " + " ".join(f"{e:+9.3%}" for e in error))
    print(f"  {'worst':10s} {worst:9.3%}   (target <= 1%)")
    return worst


def bench_evaluate(series: int, rounds: int, rng: np.random.Generator) -> float:
    """evaluate() over `series` baseline/current pairs; a tenth carry a +30 % slowdown."""
    pairs = []
    planted = np.zeros(series, dtype=bool)
    planted[: series // 10] = True
    for i in range(series):
        kind = ("lognormal", "pareto", "bimodal")[i % 3]
        median = float(rng.uniform(0.002, 0.2))
        rate = float(rng.uniform(50, 300))  # requests/s, the same in both windows
        n_base, n_cur = int(rng.poisson(rate * 60)), int(rng.poisson(rate * 30))  # 60 s baseline, 30 s now
        factor = 1.3 if planted[i] else 1.0
        base = LatencyHistogram.from_samples(
            latencies(kind, n_base, rng) * median / 0.02, errors=int(rng.binomial(n_base, 0.01))
        )
        cur = LatencyHistogram.from_samples(
            latencies(kind, n_cur, rng) * median / 0.02 * factor, errors=int(rng.binomial(n_cur, 0.01))
        )
        pairs.append((base, cur, n_base / 60.0, n_cur / 30.0))
    policy = Policy()
    verdicts: list[list] = []

    def step() -> None:
        verdicts.clear()
        for base, cur, base_rps, cur_rps in pairs:
            verdicts.append(evaluate(policy, base, cur, base_rps, cur_rps))

    side = math.sqrt(policy.confidence)

    def intervals_before() -> None:  # issue 10's predecessor: two order-statistic intervals
        for base, cur, _, _ in pairs:
            _intervals([base, cur], policy._qs, side)

    def intervals_now() -> None:
        for base, cur, _, _ in pairs:
            _ratio_intervals(base, cur, policy._qs, policy.confidence)

    timings = median_seconds({"evaluate": step, "before": intervals_before, "now": intervals_now}, rounds)
    seconds = timings["evaluate"]
    cost = timings["now"] / timings["before"]
    checks = sum(len(findings) for findings in verdicts)
    print(f"evaluate: {series:,} series per step (p50/p95/p99 + error rate + throughput), median of {rounds}")
    print(f"  {'one step':36s} {seconds * 1e3:8.1f} ms  {seconds / series * 1e6:7.1f} us/series"
          f"  {checks / seconds:9.0f} checks/s   (target < 0.5 s)")  # fmt: skip
    print(f"  {'quantile intervals, now':36s} {timings['now'] * 1e3:8.1f} ms  against "
          f"{timings['before'] * 1e3:.1f} ms for the two order-statistic intervals before issue 10: "
          f"{cost:.2f}x   (target <= 2x)")  # fmt: skip
    flagged = np.array([any(f.regressed and f.metric.startswith("p") for f in fs) for fs in verdicts])
    tally = Counter(f.verdict for fs in verdicts for f in fs)
    print(f"  planted +30% slowdowns flagged     {int(flagged[planted].sum())}/{int(planted.sum())}"
          f"   unchanged series flagged {int(flagged[~planted].sum())}/{int((~planted).sum())}"
          f"   verdicts {dict(sorted(tally.items()))}")  # fmt: skip
    return seconds, cost


def bench_memory(rng: np.random.Generator) -> int:
    print(f"memory per series (one histogram, scale {DEFAULT_SCALE})")
    cases = {
        "lognormal 20 ms, 100k values": latencies("lognormal", 100_000, rng),
        "bimodal 5/100 ms, 100k values": latencies("bimodal", 100_000, rng),
        "Pareto tail, 100k values": latencies("pareto", 100_000, rng),
        "1 ms .. 10 s, every bucket": np.geomspace(0.001, 10.0, 100_000),
    }
    worst = 0
    for name, values in cases.items():
        hist = LatencyHistogram.from_samples(values)
        size = hist.nbytes
        worst = max(worst, size)
        json_size = len(json.dumps(hist.to_dict(), separators=(",", ":")))
        buckets = hist.counts.size
        print(f"  {name:36s} {buckets:5d} buckets  {size:6,d} B in memory  {json_size:6,d} B as JSON")
    print(f"  {'worst':36s} {worst / 1024:17.1f} KiB   (target < 16 KiB)")
    return worst


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--values", type=int, default=1_000_000, help="values for ingest and accuracy")
    parser.add_argument("--rounds", type=int, default=9, help="interleaved rounds per timing")
    parser.add_argument("--series", type=int, default=1_000, help="series per evaluate step")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(2024)
    values = latencies("lognormal", args.values, rng)

    ratio = bench_ingest(values, args.rounds)
    print()
    worst_error = bench_accuracy(args.values, rng)
    print()
    step, cost = bench_evaluate(args.series, max(3, args.rounds // 3), rng)
    print()
    worst_bytes = bench_memory(rng)

    targets = {
        "ingest >= 2x np.histogram": ratio >= 2.0,
        "quantile error <= 1%": worst_error <= 0.01,
        f"{args.series:,} series < 0.5 s": step < 0.5,
        "quantile intervals <= 2x the comparison before": cost <= 2.0,
        "< 16 KiB per series": worst_bytes < 16 * 1024,
    }
    print()
    for name, met in targets.items():
        print(f"  {'met   ' if met else 'MISSED'} {name}")
    return 0 if all(targets.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
