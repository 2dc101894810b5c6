"""Memory check: run a target N times and report what memory did, and whether it leaks.

Two views of memory, both from the standard library: the process RSS (what the operator
sees; ``/proc/self/statm``) and tracemalloc's traced Python allocations (exact, and with the
allocation sites). The verdict line follows the regression guide: the RSS increase over the
run against ``warn_mb``.

Leak check: the run is cut into ``checkpoints`` equal chunks; after each, a full
``gc.collect()`` and a reading of traced memory. The first ``warmup_fraction`` of the run
(caches filling, first-call imports) is left out, and a least-squares line is fitted to the
rest: traced bytes against actions done. It is a leak when the slope exceeds
``leak_bytes_per_action`` *and* its 99 % confidence interval (Student t on the fit's
standard error) lies above zero, so a one-off step during warm-up or noise around a flat
line is not called a leak while steady growth of a few dozen bytes per action is.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import math
import os
import time
import tracemalloc
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import stats as sps

from nethical_otel.bench.loadgen import Target, call_plan, resolve_target
from nethical_otel.bench.sysinfo import MB, rss_mb
from nethical_otel.text import article, plural

# The progress display's own allocations (rich's bar, click's lines) are not the target's.
_NOT_PROGRESS = [tracemalloc.Filter(False, f"*{os.sep}{package}{os.sep}*") for package in ("rich", "click")]
DEFAULT_WARN_MB = 100.0
DEFAULT_LEAK_BYTES_PER_ACTION = 64.0
_IGNORED_FILES = (
    "tracemalloc.py",
    "<frozen importlib._bootstrap>",
    "<frozen importlib._bootstrap_external>",
    "<unknown>",
)


@dataclass(frozen=True)
class AllocationSite:
    where: str  # file:line
    size_diff: int  # bytes
    count_diff: int  # blocks

    def line(self) -> str:
        blocks = "block" if abs(self.count_diff) == 1 else "blocks"
        return f"{self.where}: {self.size_diff / 1024:+.1f} KiB in {self.count_diff:+d} {blocks}"


@dataclass(frozen=True)
class LeakCheck:
    actions: list[int]  # cumulative actions at each checkpoint used in the fit
    traced_bytes: list[int]
    slope: float  # bytes per action
    slope_low: float
    slope_high: float
    threshold: float
    warmup_actions: int

    @property
    def leaking(self) -> bool:
        return self.slope > self.threshold and self.slope_low > 0

    def line(self) -> str:
        verdict = "LEAK: memory grows with every action" if self.leaking else "no leak"
        return (
            f"slope {self.slope:+.1f} B/action "
            f"(99% interval {self.slope_low:+.1f} .. {self.slope_high:+.1f}), "
            f"threshold {self.threshold:g} B/action: {verdict}"
        )


@dataclass
class MemoryReport:
    target: str
    actions: int
    duration_s: float
    errors: Counter[str]
    rss_start_mb: float
    rss_end_mb: float
    traced_start_mb: float
    traced_end_mb: float
    traced_peak_mb: float
    warn_mb: float
    top: list[AllocationSite] = field(default_factory=list)
    leak: LeakCheck | None = None
    leak_skipped: str = ""  # why there is no leak check (when ``leak`` is None)

    @property
    def rss_increase_mb(self) -> float:
        return self.rss_end_mb - self.rss_start_mb

    @property
    def traced_increase_mb(self) -> float:
        return self.traced_end_mb - self.traced_start_mb

    @property
    def high(self) -> bool:
        return self.rss_increase_mb > self.warn_mb

    @property
    def leaking(self) -> bool:
        return self.leak is not None and self.leak.leaking

    @property
    def ok(self) -> bool:
        """Neither high use nor a leak (what ``--strict`` passes)."""
        return not (self.high or self.leaking)

    def verdicts(self) -> list[str]:
        """The guide's verdict lines: a warning for high use (the RSS increase over the run
        against ``warn_mb``) and one for a leak; "acceptable" only when there is neither."""
        lines = []
        if self.high:
            lines.append(
                f"⚠️  WARNING: High memory usage detected: {self.rss_increase_mb:.2f} MB "
                f"(RSS increase; the limit is {self.warn_mb:g} MB)"
            )
        if self.leaking:
            lines.append(f"⚠️  WARNING: Memory leak detected: {self.leak.slope:+.0f} bytes per action")
        if not lines:
            caveat = ""
            if self.leak is None:
                caveat = " (RSS only: no leak check)"
            lines.append(f"✅ Memory usage is acceptable: {self.rss_increase_mb:.2f} MB{caveat}")
        return lines

    def verdict(self) -> str:
        return "\n".join(self.verdicts())

    def text(self) -> str:
        errors = sum(self.errors.values())
        kinds = ", ".join(f"{name} x{n}" for name, n in self.errors.most_common(3))
        lines = [
            f"Memory profile: {plural(self.actions, 'action')} of {self.target}",
            f"  {self.duration_s:.1f} s, {plural(errors, 'error')}" + (f" ({kinds})" if kinds else ""),
            "",
            f"  {'':12}{'start':>10}{'end':>10}{'increase':>11}",
            f"  {'RSS':12}{self.rss_start_mb:>7.2f} MB{self.rss_end_mb:>7.2f} MB"
            f"{self.rss_increase_mb:>+8.2f} MB",
            f"  {'traced':12}{self.traced_start_mb:>7.2f} MB{self.traced_end_mb:>7.2f} MB"
            f"{self.traced_increase_mb:>+8.2f} MB   (tracemalloc: Python allocations)",
            f"  {'traced peak':12}{self.traced_peak_mb:>7.2f} MB",
            "",
            "Top allocation sites (growth over the run):",
        ]
        lines += [f"  {i:2d}. {site.line()}" for i, site in enumerate(self.top, 1)] or ["  (none)"]
        lines.append("")
        if self.leak is not None:
            warmup = f"{self.leak.warmup_actions}-action"
            lines.append(
                f"Leak check ({len(self.leak.actions)} checkpoints after {article(warmup)} {warmup} warm-up, "
                "traced memory against actions):"
            )
            lines.append(f"  {self.leak.line()}")
            lines.append("")
        elif self.leak_skipped:
            lines += [f"Leak check: {self.leak_skipped}", ""]
        lines += self.verdicts()
        return "\n".join(lines) + "\n"

    def to_dict(self) -> dict[str, Any]:
        leak = None
        if self.leak is not None:
            leak = {
                "slope_bytes_per_action": self.leak.slope,
                "slope_low": self.leak.slope_low,
                "slope_high": self.leak.slope_high,
                "threshold": self.leak.threshold,
                "leaking": self.leak.leaking,
                "actions": self.leak.actions,
                "traced_bytes": self.leak.traced_bytes,
            }
        return {
            "target": self.target,
            "actions": self.actions,
            "duration_s": self.duration_s,
            "errors": dict(self.errors),
            "rss_start_mb": self.rss_start_mb,
            "rss_end_mb": self.rss_end_mb,
            "rss_increase_mb": self.rss_increase_mb,
            "traced_start_mb": self.traced_start_mb,
            "traced_end_mb": self.traced_end_mb,
            "traced_increase_mb": self.traced_increase_mb,
            "traced_peak_mb": self.traced_peak_mb,
            "warn_mb": self.warn_mb,
            "high": self.high,
            "leaking": self.leaking,
            "ok": self.ok,
            "verdicts": self.verdicts(),
            "top": [
                {"where": s.where, "size_diff": s.size_diff, "count_diff": s.count_diff} for s in self.top
            ],
            "leak": leak,
        }


def profile_memory(
    target: Target | str | None = None,
    actions: int = 1000,
    *,
    warn_mb: float = DEFAULT_WARN_MB,
    leak_check: bool = True,
    checkpoints: int = 10,
    warmup_fraction: float = 0.2,
    leak_bytes_per_action: float = DEFAULT_LEAK_BYTES_PER_ACTION,
    cohort: str = "benchmark",
    shadow: bool = False,
    ml_blend: bool = False,
    top: int = 10,
    on_progress: Callable[[int, int, float], None] | None = None,
) -> MemoryReport:
    """Run ``actions`` calls of ``target`` one after another and measure memory.

    ``on_progress(done, actions, elapsed_s)`` is called at the start, about every 1 % of the
    run and at the end, between calls and never during a memory reading. What it allocates
    is traced too: allocations in ``rich`` and ``click`` (the display's) are left out of the
    readings, the end figure and the top sites; anything else it keeps counts as the target's.
    """
    if actions < 1:
        raise ValueError("actions must be >= 1")
    if not isinstance(target, Target):
        target = resolve_target(target)
    plan = itertools.cycle(call_plan(target, 0, cohort, shadow, ml_blend))
    chunks = max(1, min(checkpoints, actions))
    sizes = [actions // chunks + (1 if i < actions % chunks else 0) for i in range(chunks)]
    errors: Counter[str] = Counter()
    was_tracing = tracemalloc.is_tracing()
    if not was_tracing:
        tracemalloc.start(1)
    try:
        gc.collect()
        rss_start = rss_mb()
        before = tracemalloc.take_snapshot()
        traced_start = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        done, readings = 0, []
        started = time.perf_counter()
        run_chunk = _async_chunk if target.is_async else _sync_chunk
        piece = max(1, actions // 100) if on_progress is not None else actions
        if on_progress is not None:
            on_progress(0, actions, 0.0)
        for size in sizes:
            left = size
            while left:
                n = min(piece, left)
                run_chunk(target.func, plan, n, errors)
                done, left = done + n, left - n
                if on_progress is not None and left:
                    on_progress(done, actions, time.perf_counter() - started)
            gc.collect()
            readings.append((done, _traced_bytes(on_progress is not None)))
            if on_progress is not None:  # after the reading
                on_progress(done, actions, time.perf_counter() - started)
        duration = time.perf_counter() - started
        traced_end, traced_peak = tracemalloc.get_traced_memory()
        after = tracemalloc.take_snapshot()
        if on_progress is not None:
            after = after.filter_traces(_NOT_PROGRESS)
            traced_end = sum(trace.size for trace in after.traces)
        rss_end = rss_mb()
    finally:
        if not was_tracing:
            tracemalloc.stop()
    sites = [
        AllocationSite(
            f"{stat.traceback[0].filename}:{stat.traceback[0].lineno}", stat.size_diff, stat.count_diff
        )
        for stat in after.compare_to(before, "lineno")
        if stat.size_diff > 0 and not stat.traceback[0].filename.endswith((*_IGNORED_FILES, __file__))
    ][:top]
    leak = fit_leak(readings, actions, warmup_fraction, leak_bytes_per_action) if leak_check else None
    skipped = ""
    if not leak_check:
        skipped = "skipped (--no-leak-check)"
    elif leak is None:
        skipped = (
            f"not enough checkpoints after the warm-up to fit a line ({plural(actions, 'action')}; "
            "run more --actions)"
        )
    return MemoryReport(
        target=target.label,
        actions=actions,
        duration_s=duration,
        errors=errors,
        rss_start_mb=rss_start,
        rss_end_mb=rss_end,
        traced_start_mb=traced_start / MB,
        traced_end_mb=traced_end / MB,
        traced_peak_mb=traced_peak / MB,
        warn_mb=warn_mb,
        top=sites,
        leak=leak,
        leak_skipped=skipped,
    )


def _traced_bytes(exclude_progress: bool) -> int:
    """Traced memory now; without what the progress display holds, when there is one (rich
    caches every string it measures: a bar updated 100 times keeps ~50 kB, which would look
    like a leak of the target's)."""
    if not exclude_progress:
        return tracemalloc.get_traced_memory()[0]
    return sum(trace.size for trace in tracemalloc.take_snapshot().filter_traces(_NOT_PROGRESS).traces)


def fit_leak(
    readings: list[tuple[int, int]], actions: int, warmup_fraction: float, threshold: float
) -> LeakCheck | None:
    """Least-squares slope of traced bytes over actions after the warm-up; None with < 3 points."""
    warmup = math.ceil(actions * warmup_fraction)
    used = [(n, b) for n, b in readings if n >= warmup]
    if len(used) < 3:
        return None
    x = np.array([n for n, _ in used], dtype=np.float64)
    y = np.array([b for _, b in used], dtype=np.float64)
    fit = sps.linregress(x, y)
    slope, stderr = float(fit.slope), float(fit.stderr)
    half = float(sps.t.ppf(0.995, len(used) - 2)) * stderr if math.isfinite(stderr) else 0.0
    return LeakCheck(
        actions=[int(n) for n in x],
        traced_bytes=[int(b) for b in y],
        slope=slope,
        slope_low=slope - half,
        slope_high=slope + half,
        threshold=threshold,
        warmup_actions=warmup,
    )


def _sync_chunk(func: Callable[..., Any], plan: Any, size: int, errors: Counter[str]) -> None:
    for _ in range(size):
        args, kwargs = next(plan)
        try:
            func(*args, **kwargs)
        except Exception as exc:
            errors[type(exc).__name__] += 1


def _async_chunk(func: Callable[..., Any], plan: Any, size: int, errors: Counter[str]) -> None:
    async def chunk() -> None:
        for _ in range(size):
            args, kwargs = next(plan)
            try:
                await func(*args, **kwargs)
            except Exception as exc:
                errors[type(exc).__name__] += 1

    asyncio.run(chunk())
