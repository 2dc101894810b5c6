"""Can the open-loop load generator keep its schedule? Achieved rate and lag at 1k, 5k, 10k rps.

The target is cheap and in-process (a function that returns at once), so what is measured
is the generator itself: the send rate it achieves against the target rate, and the schedule
lag (how late requests start against their intended time; it counts in every latency). The
generator passes when the send rate is >= 99 % of the target. Rates run one after another
in this process, threads (sync target) then asyncio tasks (async target).

    python benchmarks/loadgen.py [--duration 3] [--agents 32] [--rates 1000 5000 10000]
                                 [--mode threads asyncio]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from nethical_otel.bench.loadgen import LoadConfig, LoadRun, Target


def cheap(agent_id: str) -> int:
    return len(agent_id)


async def cheap_async(agent_id: str) -> int:
    return len(agent_id)


def run_once(rps: float, agents: int, duration: float, mode: str) -> dict[str, float]:
    func = cheap_async if mode == "asyncio" else cheap
    target = Target(func, is_async=mode == "asyncio", label=func.__name__, accepts=frozenset({"agent_id"}))
    config = LoadConfig(agents=agents, rps=rps, duration_s=duration, warmup_s=0.5)
    cpu, wall = time.process_time(), time.perf_counter()
    result = LoadRun(config, target).run()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    d = result.details
    return {
        "achieved": d["achieved_rps"],
        "throughput": result.throughput_rps,
        "lag_p50": d["schedule_lag_p50_ms"],
        "lag_p99": d["schedule_lag_p99_ms"],
        "lag_max": d["schedule_lag_max_ms"],
        "p99": result.p99_latency_ms,
        "cpu": cpu / wall * 100,
        "requests": result.requests,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=3.0, help="measured seconds per rate")
    parser.add_argument("--agents", type=int, default=32)
    parser.add_argument("--rates", type=float, nargs="+", default=[1000, 5000, 10000])
    parser.add_argument("--mode", nargs="+", choices=["threads", "asyncio"], default=["threads", "asyncio"])
    args = parser.parse_args(argv)
    print(
        f"open-loop generator, cheap in-process target, {args.agents} agents, {args.duration:g} s per rate, "
        f"{os.cpu_count()} cores"
    )
    header = (
        f"{'mode':8} {'target':>7} {'achieved':>9} {'ratio':>8} {'throughput':>10} "
        f"{'lag p50':>8} {'lag p99':>8} {'lag max':>8} {'p99 lat':>8} {'CPU':>5}"
    )
    print(header)
    print("-" * len(header))
    failed = False
    for mode in args.mode:
        for rps in args.rates:
            r = run_once(rps, args.agents, args.duration, mode)
            ratio = r["achieved"] / rps
            failed |= ratio < 0.99
            print(
                f"{mode:8} {rps:>7.0f} {r['achieved']:>9.1f} {ratio:>8.2%} {r['throughput']:>10.1f} "
                f"{r['lag_p50']:>6.3f}ms {r['lag_p99']:>6.3f}ms {r['lag_max']:>6.1f}ms {r['p99']:>6.3f}ms "
                f"{r['cpu']:>4.0f}%"
            )
    print("achieved/target >= 99% at every rate" if not failed else "FAILED: a rate fell below 99% of target")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
