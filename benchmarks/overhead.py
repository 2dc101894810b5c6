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

    python benchmarks/overhead.py [--calls 20000] [--rounds 7]
"""

from __future__ import annotations

import argparse
import statistics
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20_000, help="calls per variant per round")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()

    samples: dict[str, list[float]] = {name: [] for name in VARIANTS}
    for _ in range(args.rounds):
        for name, make in VARIANTS.items():
            call, close = make()
            per_call_ns(call, args.calls // 10)  # warm up
            samples[name].append(per_call_ns(call, args.calls))
            close()

    bare = statistics.median(samples["bare"])
    overhead = {name: statistics.median(s) - bare for name, s in samples.items() if name != "bare"}
    print(f"per-call overhead, median of {args.rounds} rounds x {args.calls} calls (bare call {bare:.0f} ns)")
    for name, ns in overhead.items():
        spread = statistics.pstdev(samples[name]) if len(samples[name]) > 1 else 0.0
        print(f"  {name:<14} {ns:>9.0f} ns   (±{spread:.0f})")
    print("ratios (target):")
    rows = [
        ("ours/on / snippet/on", overhead["ours/on"] / overhead["snippet/on"], 1.0),
        ("ours/10% / snippet/10%", overhead["ours/10%"] / overhead["snippet/10%"], 0.5),
        ("ours/metrics / prom observe", overhead["ours/metrics"] / overhead["prom observe"], 2.0),
        ("ours/sub-step / prom observe", overhead["ours/sub-step"] / overhead["prom observe"], 2.0),
    ]
    for label, ratio, target in rows:
        verdict = "ok" if ratio <= target else "MISSED"
        print(f"  {label:<28} {ratio:5.2f}x   (<= {target:.1f}x) {verdict}")


if __name__ == "__main__":
    main()
