"""Per-call overhead of @instrument, side by side with what it replaces, in one run.

Variants (each wraps the same no-op ``work(agent_id, cohort)``):
  bare              the call alone
  snippet/on        the original performance guide's hand-written snippet:
                    ``with tracer.start_as_current_span(...)``, time it, ``histogram.record(ms)``;
                    sampler always_on
  snippet/10%       the same with parentbased_traceidratio 0.1
  prom observe      time it and ``prometheus_client.Histogram.observe``
  ours/on, ours/10% ``@nethical_otel.instrument`` under the same two samplers
  ours/metrics      ``@nethical_otel.instrument`` with tracing off (metrics only)
  ours/sub-step     the same, called inside another instrumented call (recorded as its
                    sub-step, ``nethical.action.parent``): what nesting adds
  ours/no-substeps  ours/metrics with ``substeps_enabled=False``: what keeping the parent costs

Spans go through a BatchSpanProcessor to an exporter that discards them, so export work
is on the background thread as in production. Rounds interleave the variants; each figure
is the median over rounds of (ns per call - bare ns per call).

``--instructions`` counts CPU instructions instead, with valgrind's callgrind: each variant
runs in a process of its own twice (``--calls`` and 6x ``--calls`` calls, hash seed fixed),
and the difference divided by the extra calls is its instructions per call. The count hardly
depends on what else the machine is doing (runs differ by 2-3 %, the background threads'
wake-ups), so a change of a few per cent shows where the timings' spread (+-20 % on a shared
machine) hides it; it weighs all instructions alike, so read it beside the timings, not
instead of them. ``--only`` picks variants by name, e.g. to measure an older tree
(``PYTHONPATH=old-tree``) that lacks the newer ones.

    python benchmarks/overhead.py [--calls 20000] [--rounds 7]
    python benchmarks/overhead.py --instructions [--calls 2000] [--only bare,ours/metrics]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import time

import prometheus_client
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased, TraceIdRatioBased

import nethical_otel


class DiscardingExporter(SpanExporter):
    def export(self, spans):
        return SpanExportResult.SUCCESS


def batch_processor() -> BatchSpanProcessor:
    return BatchSpanProcessor(DiscardingExporter(), max_queue_size=1 << 16, max_export_batch_size=2048)


def work(agent_id: str, cohort: str) -> None:
    return None


def per_call_ns(fn, calls: int) -> float:
    start = time.perf_counter_ns()
    for _ in range(calls):
        fn("agent-7", "control")
    return (time.perf_counter_ns() - start) / calls


def snippet_variant(sampler):
    """The guide's snippet, written out by hand as a service would."""
    tracer_provider = TracerProvider(sampler=sampler)
    tracer_provider.add_span_processor(batch_processor())
    tracer = tracer_provider.get_tracer("governance")
    meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
    histogram = meter_provider.get_meter("governance").create_histogram("process_action_latency", unit="ms")

    def call(agent_id, cohort):
        with tracer.start_as_current_span(
            "process_action", attributes={"agent_id": agent_id, "cohort": cohort}
        ):
            start = time.perf_counter()
            result = work(agent_id, cohort)
            histogram.record((time.perf_counter() - start) * 1000.0, {"cohort": cohort})
            return result

    def close():
        tracer_provider.shutdown()
        meter_provider.shutdown()

    return call, close


def prometheus_variant():
    # Unlabelled on purpose: the cheapest observe there is, so the strictest comparison.
    histogram = prometheus_client.Histogram(
        "process_action_seconds", "latency", registry=prometheus_client.CollectorRegistry()
    )

    def call(agent_id, cohort):
        start = time.perf_counter()
        result = work(agent_id, cohort)
        histogram.observe(time.perf_counter() - start)
        return result

    return call, lambda: None


def ours_variant(**settings):
    telemetry = nethical_otel.setup(
        span_processors=[batch_processor()], prometheus_enabled=False, set_global=False, **settings
    )
    return nethical_otel.instrument(name="process_action")(work), telemetry.shutdown


def nested_variant(**settings):
    """Every call made inside one open ``action("parent")`` block: each is a sub-step."""
    call, shutdown = ours_variant(**settings)
    parent = nethical_otel.action("parent")
    parent.__enter__()

    def close():
        parent.__exit__(None, None, None)
        shutdown()

    return call, close


VARIANTS = {
    "bare": lambda: (work, lambda: None),
    "snippet/on": lambda: snippet_variant(ALWAYS_ON),
    "snippet/10%": lambda: snippet_variant(ParentBased(TraceIdRatioBased(0.1))),
    "prom observe": prometheus_variant,
    "ours/on": lambda: ours_variant(traces_sampler="always_on"),
    "ours/10%": lambda: ours_variant(traces_sampler="parentbased_traceidratio", traces_sampler_arg=0.1),
    "ours/metrics": lambda: ours_variant(traces_enabled=False),
    "ours/sub-step": lambda: nested_variant(traces_enabled=False),
    "ours/no-substeps": lambda: ours_variant(traces_enabled=False, substeps_enabled=False),
}


RATIOS = (  # (numerator, denominator, target)
    ("ours/on", "snippet/on", 1.0),
    ("ours/10%", "snippet/10%", 0.5),
    ("ours/metrics", "prom observe", 2.0),
    ("ours/sub-step", "prom observe", 2.0),
)


def timed(names: list[str], calls: int, rounds: int) -> dict[str, float]:
    """ns per call above the bare call: the median over interleaved rounds."""
    samples: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(rounds):
        for name in names:
            call, close = VARIANTS[name]()
            per_call_ns(call, calls // 10)  # warm up
            samples[name].append(per_call_ns(call, calls))
            close()
    bare = statistics.median(samples["bare"])
    print(f"per-call overhead, median of {rounds} rounds x {calls} calls (bare call {bare:.0f} ns)")
    overhead = {}
    for name in names[1:]:
        overhead[name] = statistics.median(samples[name]) - bare
        spread = statistics.pstdev(samples[name]) if len(samples[name]) > 1 else 0.0
        print(f"  {name:<16} {overhead[name]:>9.0f} ns   (±{spread:.0f})")
    return overhead


def run_one(name: str, calls: int) -> None:
    """The child of --instructions: one variant, warmed up, then ``calls`` calls."""
    call, close = VARIANTS[name]()
    per_call_ns(call, 500)
    per_call_ns(call, calls)
    close()


def instructions(names: list[str], calls: int) -> dict[str, float]:
    """Instructions per call above the bare call, from two callgrind runs per variant."""
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        sys.exit("overhead.py: --instructions needs valgrind on PATH (Debian: apt-get install valgrind)")
    env = {**os.environ, "PYTHONHASHSEED": "0"}

    def count(name: str, n: int) -> int:
        done = subprocess.run(
            [
                valgrind,
                "--tool=callgrind",
                "--callgrind-out-file=/dev/null",
                sys.executable,
                __file__,
                "--run-one",
                name,
                "--calls",
                str(n),
            ],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        found = re.search(r"Collected : (\d+)", done.stderr)
        if done.returncode != 0 or found is None:
            sys.exit(f"overhead.py: callgrind run of {name} failed: {done.stderr.strip().splitlines()[-1:]}")
        return int(found.group(1))

    per_call = {}
    for name in names:
        per_call[name] = (count(name, 6 * calls) - count(name, calls)) / (5 * calls)
        print(f"  counted {name}", file=sys.stderr)
    bare = per_call["bare"]
    runs = f"callgrind, {calls} vs {6 * calls} calls"
    print(f"per-call overhead in instructions ({runs}; bare call {bare:.0f})")
    overhead = {name: per_call[name] - bare for name in names[1:]}
    for name, n in overhead.items():
        print(f"  {name:<16} {n:>9.0f} instructions")
    return overhead


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, help="calls per variant per round (20000; --instructions: 2000)")
    parser.add_argument("--rounds", type=int, default=7, help="timed rounds (not with --instructions)")
    parser.add_argument("--instructions", action="store_true", help="count instructions with callgrind")
    parser.add_argument("--only", help="comma-separated variants (bare is always measured)")
    parser.add_argument("--run-one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run_one:
        run_one(args.run_one, args.calls or 2_000)
        return
    names = list(VARIANTS) if not args.only else ["bare", *(n for n in args.only.split(",") if n != "bare")]
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        parser.error(f"unknown variant(s) {', '.join(unknown)}; known: {', '.join(VARIANTS)}")
    if args.instructions:
        overhead = instructions(names, args.calls or 2_000)
    else:
        overhead = timed(names, args.calls or 20_000, args.rounds)
    print("ratios (target):")
    for num, den, target in RATIOS:
        if num in overhead and den in overhead:
            ratio = overhead[num] / overhead[den]
            verdict = "ok" if ratio <= target else "MISSED"
            print(f"  {num + ' / ' + den:<28} {ratio:5.2f}x   (<= {target:.1f}x) {verdict}")


if __name__ == "__main__":
    main()
