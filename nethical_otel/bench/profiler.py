"""``PerformanceProfiler``: latency, throughput, CPU and memory of a service, from inside it.

    profiler = PerformanceProfiler()
    profiler.start_monitoring()
    with profiler.measure():          # or @profiler.wrap, or profiler.record(seconds)
        engine.process_action(...)
    profiler.stop_monitoring()
    print(profiler.generate_report())

Latencies go into the shared ``LatencyHistogram`` (quantiles within 0.54 %); recording is a
lock and a list append, folded into the histogram every 4,096 values, so memory stays
bounded however long the monitoring runs. A background thread samples the process' CPU time
and RSS every ``interval_s`` (default 1 s); CPU percent is of one core (200 % = two cores
busy). Only what is recorded between ``start_monitoring`` and ``stop_monitoring`` counts.
"""

from __future__ import annotations

import functools
import inspect
import math
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any, TypeVar

from nethical_otel.bench.sysinfo import cpu_seconds, rss_mb
from nethical_otel.stats import LatencyHistogram
from nethical_otel.text import plural

F = TypeVar("F", bound=Callable[..., Any])
_FOLD_EVERY = 4096


@dataclass(frozen=True)
class ProfileReport:
    """What ``generate_report`` returns; ``str()`` gives a short text report."""

    duration_s: float
    requests: int
    errors: int
    error_rate: float
    throughput_rps: float
    p50_latency_ms: float
    p95_latency_ms: float
    p99_latency_ms: float
    mean_latency_ms: float
    max_latency_ms: float
    cpu_percent: float  # mean over the monitored period, of one core
    cpu_percent_peak: float  # highest over one sampling interval
    memory_start_mb: float
    memory_end_mb: float
    memory_peak_mb: float
    memory_mean_mb: float
    samples: int

    def to_dict(self) -> dict[str, Any]:
        return {
            k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in asdict(self).items()
        }

    def __str__(self) -> str:
        return "\n".join(
            [
                f"Performance report over {self.duration_s:.1f} s",
                f"  requests    {self.requests} ({self.throughput_rps:.1f} req/s), errors {self.errors} "
                f"({self.error_rate:.2%})",
                f"  latency     p50 {self.p50_latency_ms:.2f} ms, p95 {self.p95_latency_ms:.2f} ms, "
                f"p99 {self.p99_latency_ms:.2f} ms, mean {self.mean_latency_ms:.2f} ms, "
                f"max {self.max_latency_ms:.2f} ms",
                f"  CPU         {self.cpu_percent:.1f}% mean, "
                f"{self.cpu_percent_peak:.1f}% peak (of one core)",
                f"  memory      {self.memory_start_mb:.1f} -> {self.memory_end_mb:.1f} MB, "
                f"peak {self.memory_peak_mb:.1f} MB, "
                f"mean {self.memory_mean_mb:.1f} MB ({plural(self.samples, 'sample')})",
            ]
        )


class PerformanceProfiler:
    """Monitor a service's latency, throughput, CPU and memory over a period."""

    def __init__(self, interval_s: float = 1.0) -> None:
        if not interval_s > 0:
            raise ValueError(f"interval_s must be > 0, got {interval_s}")
        self.interval_s = interval_s
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._reset()

    def _reset(self) -> None:
        self._histogram = LatencyHistogram()
        self._pending: list[float] = []
        self._pending_errors = 0
        self._monitoring = False
        self._started = self._stopped = math.nan
        self._cpu_start = self._cpu_end = 0.0
        self._memory: list[float] = []
        self._cpu_peak = 0.0

    # -- life cycle --------------------------------------------------------------------------

    def start_monitoring(self) -> None:
        """Start a new monitoring period (what was recorded before is dropped)."""
        if self._monitoring:
            raise RuntimeError("already monitoring; call stop_monitoring() first")
        with self._lock:
            self._reset()
            self._started = time.perf_counter()
            self._cpu_start = cpu_seconds()
            self._memory.append(rss_mb())
            self._monitoring = True
        self._stop.clear()
        self._thread = threading.Thread(target=self._sample, name="nethical-profiler", daemon=True)
        self._thread.start()

    def stop_monitoring(self) -> None:
        """End the period; ``generate_report`` describes it from now on."""
        if not self._monitoring:
            return
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        with self._lock:
            self._monitoring = False
            self._stopped = time.perf_counter()
            self._cpu_end = cpu_seconds()
            self._memory.append(rss_mb())
            self._fold()

    def _sample(self) -> None:
        last_at, last_cpu = time.perf_counter(), cpu_seconds()
        while not self._stop.wait(self.interval_s):
            now, cpu, rss = time.perf_counter(), cpu_seconds(), rss_mb()
            with self._lock:
                self._memory.append(rss)
                if now > last_at:
                    self._cpu_peak = max(self._cpu_peak, (cpu - last_cpu) / (now - last_at) * 100)
            last_at, last_cpu = now, cpu

    # -- recording ---------------------------------------------------------------------------

    def record(self, seconds: float, *, error: bool = False) -> None:
        """One observed call that took ``seconds``; ignored while not monitoring."""
        with self._lock:
            if not self._monitoring:
                return
            self._pending.append(seconds)
            self._pending_errors += error
            if len(self._pending) >= _FOLD_EVERY:
                self._fold()

    def _fold(self) -> None:  # under the lock
        if self._pending or self._pending_errors:
            self._histogram.record_many(self._pending, errors=self._pending_errors)
            self._pending, self._pending_errors = [], 0

    @contextmanager
    def measure(self) -> Iterator[None]:
        """Time the block; an exception counts as an error (and propagates)."""
        start = time.perf_counter()
        try:
            yield
        except BaseException:
            self.record(time.perf_counter() - start, error=True)
            raise
        self.record(time.perf_counter() - start)

    def wrap(self, func: F) -> F:
        """Decorator: every call of ``func`` (sync or async) is measured."""
        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                with self.measure():
                    return await func(*args, **kwargs)

            return async_wrapper  # type: ignore[return-value]

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with self.measure():
                return func(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    # -- report ------------------------------------------------------------------------------

    def generate_report(self) -> ProfileReport:
        """The monitored period so far (up to now while monitoring)."""
        with self._lock:
            if math.isnan(self._started):
                raise RuntimeError("nothing monitored yet; call start_monitoring() first")
            self._fold()
            hist = self._histogram.copy()
            end = time.perf_counter() if self._monitoring else self._stopped
            cpu_end = cpu_seconds() if self._monitoring else self._cpu_end
            memory = [*self._memory, rss_mb()] if self._monitoring else list(self._memory)
            cpu_peak = self._cpu_peak
        duration = max(end - self._started, 1e-9)
        cpu_mean = (cpu_end - self._cpu_start) / duration * 100
        n = hist.count
        p50, p95, p99 = (hist.quantiles([0.5, 0.95, 0.99]) * 1e3).tolist()
        return ProfileReport(
            duration_s=duration,
            requests=n,
            errors=hist.errors,
            error_rate=hist.errors / n if n else 0.0,
            throughput_rps=n / duration,
            p50_latency_ms=p50,
            p95_latency_ms=p95,
            p99_latency_ms=p99,
            mean_latency_ms=hist.sum / n * 1e3 if n else math.nan,
            max_latency_ms=hist.max * 1e3 if n else math.nan,
            cpu_percent=cpu_mean,
            cpu_percent_peak=max(cpu_peak, cpu_mean),
            memory_start_mb=memory[0],
            memory_end_mb=memory[-1],
            memory_peak_mb=max(memory),
            memory_mean_mb=sum(memory) / len(memory),
            samples=len(memory),
        )
