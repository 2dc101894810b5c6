"""PerformanceProfiler: latency percentiles, throughput, CPU and memory over a monitored period."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

import nethical_otel
from nethical_otel import PerformanceProfiler


def test_report_matches_what_was_recorded() -> None:
    rng = np.random.default_rng(3)
    samples = rng.lognormal(np.log(0.010), 0.5, 10_000)  # more than one fold of 4096
    profiler = PerformanceProfiler(interval_s=0.05)
    profiler.start_monitoring()
    for i, seconds in enumerate(samples):
        profiler.record(float(seconds), error=i % 100 == 0)
    time.sleep(0.2)
    profiler.stop_monitoring()
    report = profiler.generate_report()
    assert report.requests == 10_000 and report.errors == 100 and report.error_rate == pytest.approx(0.01)
    for q, got in (
        (0.5, report.p50_latency_ms),
        (0.95, report.p95_latency_ms),
        (0.99, report.p99_latency_ms),
    ):
        exact = float(np.quantile(samples, q, method="lower")) * 1e3
        assert got == pytest.approx(exact, rel=0.006)
    assert report.max_latency_ms == pytest.approx(samples.max() * 1e3)
    assert report.throughput_rps == pytest.approx(10_000 / report.duration_s)
    assert report.samples >= 3 and report.memory_peak_mb >= report.memory_start_mb > 0
    assert set(report.to_dict()) >= {"p95_latency_ms", "cpu_percent", "memory_end_mb"}
    assert "p95" in str(report)


def test_cpu_is_measured() -> None:
    profiler = PerformanceProfiler(interval_s=0.05)
    profiler.start_monitoring()
    deadline = time.perf_counter() + 0.4
    while time.perf_counter() < deadline:  # busy: about one core
        pass
    profiler.stop_monitoring()
    report = profiler.generate_report()
    assert report.cpu_percent > 40  # shared machine: one busy thread gets at least this
    assert report.cpu_percent_peak >= report.cpu_percent * 0.9
    idle = PerformanceProfiler(interval_s=0.05)
    idle.start_monitoring()
    time.sleep(0.3)
    idle.stop_monitoring()
    assert idle.generate_report().cpu_percent < report.cpu_percent


def test_measure_and_wrap_sync_and_async() -> None:
    profiler = PerformanceProfiler(interval_s=0.05)

    @profiler.wrap
    def work(x):
        time.sleep(0.005)
        return x

    @profiler.wrap
    async def awork(x):
        await asyncio.sleep(0.005)
        if x == "fail":
            raise RuntimeError(x)
        return x

    work("before")  # not monitoring yet: ignored
    profiler.start_monitoring()
    assert work(1) == 1
    assert asyncio.run(awork(2)) == 2
    with pytest.raises(RuntimeError):
        asyncio.run(awork("fail"))
    with profiler.measure():
        time.sleep(0.005)
    report = profiler.generate_report()  # while monitoring: up to now
    profiler.stop_monitoring()
    assert report.requests == 4 and report.errors == 1
    assert 4.5 < report.p50_latency_ms < 50


def test_life_cycle_errors() -> None:
    profiler = PerformanceProfiler()
    with pytest.raises(RuntimeError, match="start_monitoring"):
        profiler.generate_report()
    profiler.start_monitoring()
    with pytest.raises(RuntimeError, match="already monitoring"):
        profiler.start_monitoring()
    profiler.stop_monitoring()
    profiler.stop_monitoring()  # twice is fine
    assert profiler.generate_report().requests == 0


def test_exported_from_the_package() -> None:
    assert nethical_otel.PerformanceProfiler is PerformanceProfiler
