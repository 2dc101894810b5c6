"""Change-point detection quality: ours (``nethical_otel.stats.changepoints``) and Apache
Otava's (``apache-otava``, ``otava.analysis.compute_change_points``) on the same seeded
histories, side by side, in one run.

Both get the same settings: a window of 50 runs, ``max_pvalue=0.001``,
``min_magnitude=0.05`` (``nethical-otel history detect``'s defaults; Otava's own default
magnitude is 0, which only adds points). A detected point *matches* a true one when it is
within +-2 runs of it (``TOLERANCE``), each true point matched at most once (closest first);
precision, recall and F1 count matches over every series of a scenario (micro-averaged),
and overall over every scenario.

Two families of histories, each scenario ``--seeds`` times (20):

  perf-*   benchmark-history shapes: normal noise of 3 % (lognormal where named), steps,
           regression-then-fix, short regressions (+30 % / +15 % for 10 runs) in 500 runs,
           steps with isolated outliers, a variance change, pure noise;
  otava-*  the building blocks of Otava's own test data (``otava-test-data`` 0.1.9, the
           generators of apache/otava issue 99) with their default parameters, 50 and 500
           runs: mean 100, sigma 5 clipped to +-4 sigma, step 100 -> 120, regression
           100 -> 130 -> 100, steps 100/110/120/130, rapid steps 100/115/105/120,
           an outlier of 150, variance 2 <-> 10, banding 100/105, uniform 90..110.

What counts as a change point: a new *level* of the mean, as ``history detect`` reports
(``min_magnitude`` is a change of the mean). So a single outlier run is not one (Otava's
generator marks it, but a history back at its level on the next run has not moved, as an
Otava maintainer remarked of the outlier in Otava's own example plot), nor is a change of
variance alone, nor banding: in those scenarios every point found is a false positive.
Two outliers in a row are a two-run regression, so the generated outliers are 3+ runs apart.

Targets: our overall F1 above Otava's, and our recall on the 500-run histories at least
Otava's. Exit status 1 when a target is missed.

    python benchmarks/changepoints.py [--seeds 20] [--verbose]
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from nethical_otel.stats.changepoints import detect

TOLERANCE = 2
WINDOW = 50
MAX_PVALUE = 0.001
MIN_MAGNITUDE = 0.05
LONG = 500


@dataclass(frozen=True)
class History:
    values: np.ndarray
    truth: tuple[int, ...]


Scenario = Callable[[np.random.Generator], History]


# -- perf-*: benchmark-history shapes -------------------------------------------------------


def _noise(rng: np.random.Generator, n: int, cv: float = 0.03) -> np.ndarray:
    return rng.normal(1.0, cv, n)


def _levels(n: int, edges: list[int], levels: list[float]) -> np.ndarray:
    out = np.empty(n)
    for a, b, level in zip([0, *edges], [*edges, n], levels, strict=True):
        out[a:b] = level
    return out


def perf_step(n: int, size: float, tail: int | None = None) -> Scenario:
    def make(rng: np.random.Generator) -> History:
        at = n - tail if tail else int(rng.integers(n // 5, n - n // 5))
        return History(100 * _levels(n, [at], [1.0, 1 + size]) * _noise(rng, n), (at,))

    return make


def perf_regression(n: int, size: float, lasting: tuple[int, int]) -> Scenario:
    def make(rng: np.random.Generator) -> History:
        length = int(rng.integers(lasting[0], lasting[1] + 1))
        at = int(rng.integers(10, n - length - 10))
        values = 100 * _levels(n, [at, at + length], [1.0, 1 + size, 1.0]) * _noise(rng, n)
        return History(values, (at, at + length))

    return make


def perf_steps(n: int, count: int) -> Scenario:
    def make(rng: np.random.Generator) -> History:
        while True:
            edges = sorted(rng.choice(np.arange(20, n - 20), count, replace=False).tolist())
            if min(np.diff([0, *edges, n])) >= 30:
                break
        levels = [1.0]
        for _ in edges:
            change = rng.uniform(0.08, 0.20) * rng.choice([-1, 1])
            levels.append(levels[-1] * (1 + change))
        return History(100 * _levels(n, edges, levels) * _noise(rng, n), tuple(edges))

    return make


def perf_outliers(n: int, count: int, with_step: bool) -> Scenario:
    def make(rng: np.random.Generator) -> History:
        at = int(rng.integers(n // 5, n - n // 5))
        values = 100 * _levels(n, [at], [1.0, 1.15 if with_step else 1.0]) * _noise(rng, n)
        while True:  # isolated: two outliers in a row would be a two-run regression
            spots = np.sort(rng.choice(np.setdiff1d(np.arange(1, n - 1), [at - 1, at]), count, replace=False))
            if np.diff(spots).min() >= 3:
                break
        values[spots] *= rng.uniform(1.4, 2.0, count)
        return History(values, (at,) if with_step else ())

    return make


def perf_variance(n: int, with_step: bool) -> Scenario:
    def make(rng: np.random.Generator) -> History:
        at = n // 2
        cv = np.where(np.arange(n) < at, 0.02, 0.06)
        level = _levels(n, [at], [1.0, 1.15 if with_step else 1.0])
        return History(100 * level * (1 + cv * rng.standard_normal(n)), (at,) if with_step else ())

    return make


def perf_lognormal_step(n: int, size: float) -> Scenario:
    def make(rng: np.random.Generator) -> History:
        at = int(rng.integers(n // 5, n - n // 5))
        level = _levels(n, [at], [1.0, 1 + size])
        return History(100 * level * rng.lognormal(0.0, 0.05, n), (at,))

    return make


def perf_noise(n: int) -> Scenario:
    return lambda rng: History(100 * _noise(rng, n), ())


# -- otava-*: the building blocks of Otava's test data ---------------------------------------


def _otava_noise(rng: np.random.Generator, n: int, sigma: float) -> np.ndarray:
    # noise_normal(bounded=True): clipped to +-4 sigma.
    return np.clip(rng.normal(0.0, sigma, n), -4 * sigma, 4 * sigma)


def otava_steps(n: int, values: list[float], sigma: float, edges: list[int] | None = None) -> Scenario:
    def make(rng: np.random.Generator) -> History:
        cuts = edges or [n * (i + 1) // len(values) for i in range(len(values) - 1)]
        return History(_levels(n, cuts, values) + _otava_noise(rng, n, sigma), tuple(cuts))

    return make


def otava_regression(n: int, duration: int) -> Scenario:
    # regression_fix(value_normal=100, value_regression=130, start=length // 3, sigma=5)
    return otava_steps(n, [100.0, 130.0, 100.0], 5.0, [n // 3, n // 3 + duration])


def otava_outlier(n: int) -> Scenario:
    def make(rng: np.random.Generator) -> History:
        values = 100 + _otava_noise(rng, n, 5.0)
        values[n // 2] = 150.0
        return History(values, ())

    return make


def otava_variance(n: int, before: float, after: float) -> Scenario:
    def make(rng: np.random.Generator) -> History:
        sigma = np.where(np.arange(n) < n // 2, before, after)
        return History(rng.normal(100.0, sigma), ())

    return make


def otava_banding(n: int) -> Scenario:
    return lambda rng: History(rng.choice([100.0, 105.0], n) + rng.normal(0, 2.0, n), ())


def otava_noise(n: int, uniform: bool) -> Scenario:
    if uniform:
        return lambda rng: History(rng.uniform(90.0, 110.0, n), ())
    return lambda rng: History(100 + _otava_noise(rng, n, 5.0), ())


def scenarios() -> dict[str, Scenario]:
    found: dict[str, Scenario] = {
        "perf-step +10% (100 runs)": perf_step(100, 0.10),
        "perf-step -15% (100 runs)": perf_step(100, -0.15),
        "perf-step +30%, 4 runs at the tail (24)": perf_step(24, 0.30, tail=4),
        "perf-step +10%, 6 runs at the tail (40)": perf_step(40, 0.10, tail=6),
        "perf-regression +20% for 5-15 runs (100)": perf_regression(100, 0.20, (5, 15)),
        "perf-regression +30% for 10 runs (500)": perf_regression(500, 0.30, (10, 10)),
        "perf-regression +15% for 10 runs (500)": perf_regression(500, 0.15, (10, 10)),
        "perf-regression -20% for 3-6 runs (500)": perf_regression(500, -0.20, (3, 6)),
        "perf-4 steps of 8-20% (500)": perf_steps(500, 4),
        "perf-8 steps of 8-20% (500)": perf_steps(500, 8),
        "perf-step +15% with 4 outliers (200)": perf_outliers(200, 4, True),
        "perf-outliers only (200)": perf_outliers(200, 5, False),
        "perf-variance 2% -> 6% (200)": perf_variance(200, False),
        "perf-step +15% and variance 2% -> 6% (200)": perf_variance(200, True),
        "perf-lognormal step +15% (200)": perf_lognormal_step(200, 0.15),
        "perf-noise (30)": perf_noise(30),
        "perf-noise (100)": perf_noise(100),
        "perf-noise (500)": perf_noise(500),
    }
    for n in (50, LONG):
        found |= {
            f"otava-step 100 -> 120 ({n})": otava_steps(n, [100.0, 120.0], 5.0),
            f"otava-step 120 -> 100 ({n})": otava_steps(n, [120.0, 100.0], 5.0),
            f"otava-step +10, sigma 2 ({n})": otava_steps(n, [100.0, 110.0], 2.0),
            f"otava-step +50, sigma 2 ({n})": otava_steps(n, [100.0, 150.0], 2.0),
            f"otava-regression-fix ({n})": otava_regression(n, max(10, n // 10)),
            **{
                f"otava-regression {d} runs ({n})": otava_regression(n, d)
                for d in (2, 5, 10, 20)
                if d < n // 3
            },
            f"otava-multiple 100/110/120/130 ({n})": otava_steps(n, [100.0, 110.0, 120.0, 130.0], 5.0),
            f"otava-rapid 100/115/105/120 ({n})": otava_steps(
                n, [100.0, 115.0, 105.0, 120.0], 3.0, [n // 10, 2 * n // 10, 3 * n // 10]
            ),
            f"otava-outlier 150 ({n})": otava_outlier(n),
            f"otava-variance 2 -> 10 ({n})": otava_variance(n, 2.0, 10.0),
            f"otava-variance 10 -> 2 ({n})": otava_variance(n, 10.0, 2.0),
            f"otava-banding 100/105 ({n})": otava_banding(n),
            f"otava-noise normal ({n})": otava_noise(n, uniform=False),
            f"otava-noise uniform ({n})": otava_noise(n, uniform=True),
        }
    return found


# -- detectors and scoring -------------------------------------------------------------------


def ours(values: np.ndarray) -> list[int]:
    points = detect(values, window=WINDOW, max_pvalue=MAX_PVALUE, min_magnitude=MIN_MAGNITUDE)
    return [p.index for p in points]


def otava(values: np.ndarray) -> list[int]:
    from otava.analysis import compute_change_points

    points, _ = compute_change_points(
        [float(v) for v in values], window_len=WINDOW, max_pvalue=MAX_PVALUE, min_magnitude=MIN_MAGNITUDE
    )
    return [int(p.index) for p in points]


@dataclass
class Score:
    tp: int = 0
    fp: int = 0
    fn: int = 0
    seconds: float = 0.0

    def add(self, other: Score) -> None:
        self.tp += other.tp
        self.fp += other.fp
        self.fn += other.fn
        self.seconds += other.seconds

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0


def match(found: list[int], truth: tuple[int, ...]) -> Score:
    """Matches within ``TOLERANCE`` runs, one to one, closest pairs first."""
    pairs = sorted((abs(f - t), i, j) for i, f in enumerate(found) for j, t in enumerate(truth))
    used_found: set[int] = set()
    used_truth: set[int] = set()
    for distance, i, j in pairs:
        if distance <= TOLERANCE and i not in used_found and j not in used_truth:
            used_found.add(i)
            used_truth.add(j)
    return Score(len(used_found), len(found) - len(used_found), len(truth) - len(used_truth))


def run(seeds: int, verbose: bool) -> int:
    if importlib.util.find_spec("otava") is None:
        hint = "pip install --no-deps apache-otava==0.8.0 (make bench does)"
        print(f"apache-otava is not installed: {hint}", file=sys.stderr)
        return 2
    detectors = {"ours": ours, "otava": otava}
    totals = {name: Score() for name in detectors}
    long = {name: Score() for name in detectors}
    worst_ms = {name: 0.0 for name in detectors}
    print(
        f"{'scenario':<44} {'':>6} {'TP':>4} {'FP':>4} {'FN':>4} {'prec':>5} {'rec':>5} {'F1':>5}"
        f"   (+-{TOLERANCE} runs, {seeds} seeds)"
    )
    for s, (name, make) in enumerate(scenarios().items()):
        scores = {d: Score() for d in detectors}
        for seed in range(seeds):
            history = make(np.random.default_rng([s, seed]))
            for d, fn in detectors.items():
                start = time.perf_counter()
                found = fn(history.values)
                elapsed = time.perf_counter() - start
                one = match(found, history.truth)
                one.seconds = elapsed
                scores[d].add(one)
                if history.values.size >= LONG:
                    worst_ms[d] = max(worst_ms[d], elapsed * 1000)
                if verbose and (one.fp or one.fn):
                    print(f"    {d:<6} seed {seed}: truth {list(history.truth)} found {found}")
        for d in detectors:
            sc = scores[d]
            totals[d].add(sc)
            if name.endswith(f"({LONG})"):
                long[d].add(sc)
            label = name if d == "ours" else ""
            recall = f"{sc.recall:5.2f}" if sc.tp + sc.fn else "    -"
            counts = f"{sc.tp:>4} {sc.fp:>4} {sc.fn:>4}"
            print(f"{label:<44} {d:>6} {counts} {sc.precision:5.2f} {recall} {sc.f1:5.2f}")
    print()
    for d in detectors:
        t = totals[d]
        print(
            f"overall {d:<6} TP {t.tp:>5} FP {t.fp:>4} FN {t.fn:>4}  precision {t.precision:.3f}  "
            f"recall {t.recall:.3f}  F1 {t.f1:.3f}  ({LONG} runs: recall {long[d].recall:.3f}); "
            f"time {t.seconds:.1f} s, slowest {LONG}-run series {worst_ms[d]:.0f} ms"
        )
    checks = [
        (
            f"overall F1: ours {totals['ours'].f1:.3f} > otava {totals['otava'].f1:.3f}",
            totals["ours"].f1 > totals["otava"].f1,
        ),
        (
            f"recall on {LONG}-run histories: ours {long['ours'].recall:.3f}"
            f" >= otava {long['otava'].recall:.3f}",
            long["ours"].recall >= long["otava"].recall,
        ),
        (f"slowest {LONG}-run series: ours {worst_ms['ours']:.0f} ms < 1000 ms", worst_ms["ours"] < 1000),
    ]
    print()
    for text, ok in checks:
        print(f"target  {text:<70} {'ok' if ok else 'MISSED'}")
    return 0 if all(ok for _, ok in checks) else 1


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, default=20, help="Histories per scenario.")
    parser.add_argument("--verbose", action="store_true", help="Print every miss and false point.")
    args = parser.parse_args()
    return run(args.seeds, args.verbose)


if __name__ == "__main__":
    sys.exit(main())
