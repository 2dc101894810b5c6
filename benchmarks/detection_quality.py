"""Detection quality of the real Detector on synthetic latency streams (seeded, simulated time).

Each series is a lognormal stream (median 10 ms, sigma 0.5) at a given request rate,
evaluated with the default policy every 10 s over a 60 s window, ``for`` = 30 s, as the
agent runs by default. Two questions, printed as tables:

  time to detect   a +20 % shift of every latency (so p95 +20 %, over the 15 % threshold)
                   injected at t = 10 min: seconds until the p95 alert fires (median and
                   worst over seeds), per request rate;
  false alerts     alerts fired over long runs with no shift at all (target: zero).

    python benchmarks/detection_quality.py [--seeds 10] [--hours 12]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from nethical_otel.detect.alerts import State, Timing
from nethical_otel.detect.baseline import BaselineSet, SeriesKey
from nethical_otel.detect.detector import Detector, PolicyBook
from nethical_otel.detect.sources import RollingWindows
from nethical_otel.stats import LatencyHistogram

KEY = SeriesKey("governance", "process_action", "")
STEP_S, WINDOW_S = 10.0, 60.0


class Stream:
    """A cumulative histogram fed ``rps * STEP_S`` lognormal latencies per step."""

    window_s = WINDOW_S

    def __init__(self, seed: int, rps: float) -> None:
        self.rng = np.random.default_rng(seed)
        self.per_step = int(rps * STEP_S)
        self.factor = 1.0
        self.cumulative = LatencyHistogram()
        self.windows = RollingWindows(WINDOW_S)

    def read(self, now: float):
        batch = self.rng.lognormal(np.log(0.010), 0.5, self.per_step) * self.factor
        self.cumulative.record_many(batch)
        return self.windows.update(now, {KEY: self.cumulative.copy()})


class Fired:
    def __init__(self) -> None:
        self.first: dict[str, float] = {}
        self.count = 0

    def update(self, alert, now: float) -> None:
        if alert.state is State.FIRING:
            name = alert.labels.get("quantile", alert.name)
            if name not in self.first:
                self.first[name] = now
                self.count += 1

    def close(self, timeout_s: float = 0) -> None:
        pass


def run(seed: int, rps: float, steps: int, shift_at_step: int | None) -> Fired:
    stream, sink = Stream(seed, rps), Fired()
    now = [0.0]
    detector = Detector(
        stream,
        BaselineSet(),
        PolicyBook.from_mapping({}),
        [sink],
        timing=Timing(for_s=30.0, keep_firing_for_s=60.0),
        clock=lambda: now[0],
    )
    for step in range(steps):
        now[0] = step * STEP_S
        if shift_at_step is not None and step == shift_at_step:
            stream.factor = 1.2
        detector.step()
    return sink


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--hours", type=float, default=12.0, help="simulated length of each no-shift run")
    args = parser.parse_args()

    print("time to detect a +20 % shift (p95 alert, default policy, 60 s window, step 10 s, for 30 s)")
    print(f"  {'rate':>9}  {'median':>8}  {'worst':>8}  {'missed':>6}  (over {args.seeds} seeds)")
    shift_step = 60  # t = 10 min, after the baseline is learned from the first full window
    for rps in (5, 20, 50, 200):
        delays, missed = [], 0
        for seed in range(args.seeds):
            sink = run(seed, rps, shift_step + 30, shift_step)
            fired = sink.first.get("0.95")
            if fired is None:
                missed += 1
            else:
                delays.append(fired - shift_step * STEP_S)
        median = f"{statistics.median(delays):.0f} s" if delays else "-"
        worst = f"{max(delays):.0f} s" if delays else "-"
        print(f"  {rps:>5} rps  {median:>8}  {worst:>8}  {missed:>6}")

    steps = int(args.hours * 3600 / STEP_S)
    print(f"\nfalse alerts with no shift ({args.hours:g} h simulated per seed, {steps} evaluations each)")
    started = time.perf_counter()
    for rps in (5, 50):
        alerts = sum(run(1000 + seed, rps, steps, None).count for seed in range(args.seeds))
        verdict = "ok" if alerts == 0 else "MISSED"
        print(f"  {rps:>5} rps  {alerts} alerts over {args.seeds * steps} evaluations  (target 0) {verdict}")
    print(f"\n({time.perf_counter() - started:.0f} s for the no-shift runs)")


if __name__ == "__main__":
    main()
