"""Detection quality of the real Detector on synthetic latency streams (seeded, simulated time).

Every run is one series fed Poisson arrivals at a fixed rate (0.5 % of them errors) through
the same path as embedded mode (a cumulative histogram windowed by ``RollingWindows``), and
judged by the real ``Detector`` with the default settings: default policy, 60 s window, a
step every 10 s, ``for`` 30 s, keep firing 60 s, a learned baseline rolling over 1 h. The
simulated clock makes six hours take seconds.

Latency shapes: lognormal (median 10 ms, sigma 0.5), bimodal (85 % around 6 ms, 15 % around
30 ms), heavy-tailed lognormal (sigma 1, "heavy") and Pareto (alpha 2, from 5 ms); at 5, 20,
50 and 200 requests per second.

  time to detect  Each run learns its baseline for 70 minutes (so the baseline is full), then
                  branches (a copy of the detector and stream) into two shifts that last ten
                  windows: every latency +20 % ("all +20%": p50/p95/p99 +20 %), and only the
                  slowest 10 % of calls +25 % ("tail +25%": p95/p99 +25 %, p50 unchanged).
                  Measured: seconds from the first shifted call until the p95 alert fires;
                  "p50 fired" counts seeds whose p50 alert fired too (right for "all",
                  wrong for "tail", whose p50 did not move); "p95 mde" is the median minimum
                  detectable effect of the p95 comparison just before the shift.
  false episodes  The same runs go on without any shift for 6 simulated hours from a cold
                  start (learning included); every firing episode of every alert is counted.

Targets (exit code 1 when one is missed):

  - at 50 req/s a p95 shift of +20 % or more fires within 2 windows of the shift in >= 9 of 10
    seeds, for every shape and both shifts; at 20 req/s within 3 windows;
  - zero false firing episodes over 10 seeds x 6 simulated hours, for every shape and rate.

    python benchmarks/detection_quality.py            # 10 seeds, 6 h: ~4 min on 2 cores
    python benchmarks/detection_quality.py --quick    # 3 seeds, 2 h: ~30 s
"""

from __future__ import annotations

import argparse
import copy
import math
import multiprocessing
import os
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from nethical_otel.config import Settings
from nethical_otel.detect.alerts import State, Timing
from nethical_otel.detect.baseline import BaselineSet, SeriesKey
from nethical_otel.detect.detector import Detector, PolicyBook
from nethical_otel.detect.sources import RollingWindows
from nethical_otel.stats import LatencyHistogram

KEY = SeriesKey("governance", "process_action", "")
DEFAULTS = Settings()
STEP_S, WINDOW_S = DEFAULTS.detector_step_s, DEFAULTS.detector_window_s
ERROR_RATE = 0.005
RATES = (5, 20, 50, 200)
# (rate, windows): a shift must fire within this many windows in >= 90 % of the seeds.
DETECTION_TARGETS = {50: 2, 20: 3}
INJECT_AT_S = DEFAULTS.detector_baseline_s + 600.0  # the baseline covers its full horizon by then
AFTER_SHIFT_S = 10 * WINDOW_S


def _lognormal(median: float, sigma: float) -> Callable[[np.random.Generator, int], np.ndarray]:
    return lambda rng, n: rng.lognormal(math.log(median), sigma, n)


def _bimodal(rng: np.random.Generator, n: int) -> np.ndarray:
    slow = rng.random(n) < 0.15
    return np.where(slow, rng.lognormal(math.log(0.030), 0.25, n), rng.lognormal(math.log(0.006), 0.25, n))


def _pareto(rng: np.random.Generator, n: int) -> np.ndarray:
    return 0.005 * (1.0 + rng.pareto(2.0, n))


SHAPES: dict[str, Callable[[np.random.Generator, int], np.ndarray]] = {
    "lognormal": _lognormal(0.010, 0.5),
    "bimodal": _bimodal,
    "heavy": _lognormal(0.010, 1.0),
    "pareto": _pareto,
}
SHIFTS = {"all +20%": ("all", 1.20), "tail +25%": ("tail", 1.25)}


def _p90(shape: str) -> float:
    return float(np.quantile(SHAPES[shape](np.random.default_rng(12345), 2_000_000), 0.90))


class Stream:
    """One series: Poisson arrivals per step into a cumulative histogram, windowed as
    ``InProcessSource`` does."""

    window_s = WINDOW_S

    def __init__(self, shape: str, rps: float, seed: int, p90: float) -> None:
        self.sample = SHAPES[shape]
        self.rng = np.random.default_rng(seed)
        self.per_step = rps * STEP_S
        self.p90 = p90
        self.shift: tuple[str, float] | None = None
        self.cumulative = LatencyHistogram()
        self.windows = RollingWindows(WINDOW_S)

    def read(self, now: float):
        n = int(self.rng.poisson(self.per_step))
        batch = self.sample(self.rng, n)
        if self.shift is not None:
            kind, factor = self.shift
            batch = batch * factor if kind == "all" else np.where(batch > self.p90, batch * factor, batch)
        self.cumulative.record_many(batch, errors=int(self.rng.binomial(n, ERROR_RATE)))
        return self.windows.update(now, {KEY: self.cumulative.copy()})


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Episodes:
    """Every firing episode (alert, startsAt) the sinks were told about."""

    seen: dict = field(default_factory=dict)  # (alert key, fired_at) -> short name

    def update(self, alert, now: float) -> None:
        if alert.state is State.FIRING:
            self.seen.setdefault((alert.key, alert.fired_at), _name(alert.labels))

    def close(self, timeout_s: float = 0) -> None:
        pass

    def names(self) -> Counter:
        return Counter(self.seen.values())

    def first_since(self, name: str, since: float) -> float | None:
        times = [fired for (_, fired), n in self.seen.items() if n == name and fired >= since]
        return min(times, default=None)


def _name(labels: dict[str, str]) -> str:
    if "quantile" in labels:
        return f"p{float(labels['quantile']) * 100:g}"
    return {"NethicalErrorRateIncrease": "errors", "NethicalThroughputDrop": "throughput"}.get(
        labels["alertname"], labels["alertname"]
    )


def _new_run(shape: str, rps: float, seed: int, p90: float):
    stream, clock, sink = Stream(shape, rps, seed, p90), Clock(), Episodes()
    detector = Detector(
        stream,
        BaselineSet(),
        PolicyBook.from_mapping(DEFAULTS.policy),
        [sink],
        timing=Timing(for_s=DEFAULTS.detector_for_s, keep_firing_for_s=DEFAULTS.detector_keep_firing_for_s),
        baseline_s=DEFAULTS.detector_baseline_s,
        clock=clock,
    )
    return stream, clock, sink, detector


def _advance(run, until_s: float) -> None:
    clock, detector = run[1], run[3]
    while clock.now < until_s:
        detector.step()
        clock.now += STEP_S


def _p95_mde(detector: Detector) -> float:
    for report in detector.last_reports:
        for finding in report.findings:
            if finding.metric == "p95":
                return finding.comparison.mde
    return math.nan


def run_case(args: tuple[str, int, int, float, float]) -> dict:
    """One (shape, rate, seed): the shifted branches at INJECT_AT_S, and the unshifted run."""
    shape, rps, seed, hours, p90 = args
    run = _new_run(shape, rps, seed, p90)
    _advance(run, INJECT_AT_S)
    detector = run[3]
    baseline = detector.baselines.get(KEY)
    result = {
        "shape": shape,
        "rps": rps,
        "seed": seed,
        "baseline_n": baseline.histogram.count if baseline else 0,
        "mde": _p95_mde(detector),
        "detect": {},
    }
    # The step at INJECT_AT_S reads the calls of the 10 s before it: those are the first shifted.
    shifted_from = INJECT_AT_S - STEP_S
    for name, shift in SHIFTS.items():
        branch = copy.deepcopy(run)  # stream, clock, sink and detector, together
        branch[0].shift = shift
        _advance(branch, INJECT_AT_S + AFTER_SHIFT_S)
        p95, p50 = (branch[2].first_since(q, shifted_from) for q in ("p95", "p50"))
        result["detect"][name] = {
            "p95_after": None if p95 is None else p95 - shifted_from,
            "p50": p50 is not None,
        }
    _advance(run, hours * 3600.0)
    result["false"] = run[2].names()
    return result


# -- the report -------------------------------------------------------------------------------------


def _mde(values: list[float]) -> str:
    finite = [v for v in values if not math.isnan(v)]
    if not finite:
        return "n/a"
    median = statistics.median(finite)
    return "inf" if math.isinf(median) else f"{median:.1%}"


def report(results: list[dict], seeds: int, hours: float) -> list[str]:
    """Print the tables; returns the targets missed."""
    missed: list[str] = []
    need = math.ceil(0.9 * seeds)
    shapes = [shape for shape in SHAPES if any(r["shape"] == shape for r in results)]
    print(
        f"detector defaults: window {WINDOW_S:g} s, step {STEP_S:g} s, for {DEFAULTS.detector_for_s:g} s, "
        f"learned baseline rolling over {DEFAULTS.detector_baseline_s:g} s; {seeds} seeds per row\n"
    )
    print(f"time to fire the p95 alert after a shift at {INJECT_AT_S / 60:.0f} min (w = one 60 s window)")
    header = (
        f"  {'shape':<10} {'shift':<10} {'rate':>6}  {'<=2w':>6} {'<=3w':>6} {'median':>7} {'worst':>7} "
        f"{'missed':>6}  {'p50 fired':>9}  {'p95 mde':>7} {'baseline n':>10}  target"
    )
    print(header)
    for shape in shapes:
        for shift in SHIFTS:
            for rps in RATES:
                rows = [r for r in results if r["shape"] == shape and r["rps"] == rps]
                if not rows:
                    continue
                after = [r["detect"][shift]["p95_after"] for r in rows]
                hits = [a for a in after if a is not None]
                within = {w: sum(a <= w * WINDOW_S + 1e-9 for a in hits) for w in (2, 3)}
                p50 = sum(r["detect"][shift]["p50"] for r in rows)
                median = f"{statistics.median(hits):.0f} s" if hits else "-"
                worst = f"{max(hits):.0f} s" if hits else "-"
                target = ""
                if rps in DETECTION_TARGETS:
                    windows = DETECTION_TARGETS[rps]
                    ok = within[windows] >= need
                    target = f">= {need}/{seeds} in {windows}w  {'ok' if ok else 'MISSED'}"
                    if not ok:
                        missed.append(
                            f"{shape} {shift} at {rps}/s: {within[windows]}/{len(rows)} within {windows}w"
                        )
                baseline_n = statistics.median(r["baseline_n"] for r in rows)
                print(
                    f"  {shape:<10} {shift:<10} {rps:>4}/s  {within[2]:>3}/{len(rows):<2}"
                    f" {within[3]:>3}/{len(rows):<2} {median:>7} {worst:>7} {len(rows) - len(hits):>6}"
                    f"  {p50:>6}/{len(rows):<2}"
                    f"  {_mde([r['mde'] for r in rows]):>7} {baseline_n:>10.0f}  {target}"
                )
            print()
    print(
        f"false firing episodes with no shift ({len({r['seed'] for r in results})} seeds x {hours:g} h "
        f"simulated, from a cold start; every episode of every alert; target 0)"
    )
    print(f"  {'shape':<10} " + " ".join(f"{f'{rps}/s':>22}" for rps in RATES) + "  target")
    for shape in shapes:
        cells, clean = [], True
        for rps in RATES:
            total = Counter()
            for r in results:
                if r["shape"] == shape and r["rps"] == rps:
                    total.update(r["false"])
            count = sum(total.values())
            clean = clean and count == 0
            detail = f" ({', '.join(f'{n} {k}' for k, n in total.most_common(3))})" if count else ""
            cells.append(f"{count}{detail}")
            if count:
                missed.append(f"{shape} at {rps}/s: {count} false firing episodes{detail}")
        print(f"  {shape:<10} " + " ".join(f"{c:>22}" for c in cells) + f"  0  {'ok' if clean else 'MISSED'}")
    return missed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--hours", type=float, default=6.0, help="simulated length of each no-shift run")
    parser.add_argument("--quick", action="store_true", help="3 seeds, 2 h: a smoke run")
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    parser.add_argument(
        "--jobs", type=int, default=cores, help="worker processes (default: the usable cores)"
    )
    parser.add_argument(
        "--shapes",
        default=",".join(SHAPES),
        help=f"comma-separated, of {', '.join(SHAPES)} (default: %(default)s)",
    )
    args = parser.parse_args()
    shapes = [name.strip() for name in args.shapes.split(",") if name.strip()]
    unknown = sorted(set(shapes) - set(SHAPES))
    if unknown or not shapes:
        parser.error(f"--shapes: unknown {', '.join(unknown) or '(none given)'}; known: {', '.join(SHAPES)}")
    seeds, hours = (3, 2.0) if args.quick else (args.seeds, args.hours)
    if hours * 3600 < INJECT_AT_S + AFTER_SHIFT_S:
        parser.error(
            f"--hours must cover the shifted branches: at least {(INJECT_AT_S + AFTER_SHIFT_S) / 3600:.2f}"
        )
    p90 = {shape: _p90(shape) for shape in shapes}
    cases = [
        (shape, rps, 1000 + seed, hours, p90[shape])
        for shape in shapes
        for rps in RATES
        for seed in range(seeds)
    ]
    cases.sort(key=lambda c: -c[1])  # the busiest first: the pool ends evenly
    started = time.perf_counter()
    if args.jobs > 1:
        with multiprocessing.get_context("fork").Pool(args.jobs) as pool:
            results = pool.map(run_case, cases, chunksize=1)
    else:
        results = [run_case(case) for case in cases]
    missed = report(results, seeds, hours)
    steps = len(cases) * (hours * 3600 + len(SHIFTS) * AFTER_SHIFT_S) / STEP_S
    print(
        f"\n{len(cases)} runs, {steps:,.0f} detector steps in {time.perf_counter() - started:.0f} s "
        f"({args.jobs} processes)"
    )
    if missed:
        print("\ntargets missed:\n  " + "\n  ".join(missed))
        return 1
    print("\nall targets met")
    return 0


if __name__ == "__main__":
    sys.exit(main())
