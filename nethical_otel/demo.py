"""``nethical-otel demo``: the example service under steady load, watched live.

Agents (threads) call ``IntegratedGovernance.process_action`` at a paced rate; the
instrumentation records every call; the ``/metrics`` endpoint serves them; a live table
shows p50/p95/p99, throughput and error rate per action over a rolling window, read from
the same histograms the exporters ship.
"""

from __future__ import annotations

import contextlib
import itertools
import sys
import threading
import time
from dataclasses import dataclass

from rich.console import Console
from rich.live import Live
from rich.table import Table

from nethical_otel.detect.sources import InProcessSource
from nethical_otel.example import PROFILES, GovernanceError, IntegratedGovernance
from nethical_otel.stats import LatencyHistogram
from nethical_otel.telemetry import Telemetry

ACTIONS = tuple(PROFILES)
COHORTS = ("control", "treatment")


@dataclass(frozen=True)
class WindowStats:
    action: str
    requests: int
    throughput_rps: float
    error_rate: float
    p50_ms: float
    p95_ms: float
    p99_ms: float


class RollingWindow:
    """Per-action window statistics, read through the detector's in-process source."""

    def __init__(self, telemetry: Telemetry, window_s: float) -> None:
        self._source = InProcessSource(
            telemetry.registry.histograms, telemetry.settings.service_name, window_s
        )

    def update(self) -> list[WindowStats]:
        merged: dict[str, tuple[LatencyHistogram, float]] = {}
        for key, window in self._source.read(time.time()).items():
            if key.action in merged:
                merged[key.action][0].merge(window.histogram)
            else:
                merged[key.action] = (window.histogram.copy(), window.seconds)
        rows = []
        for action, (hist, seconds) in sorted(merged.items()):
            if not hist.count:
                continue
            p50, p95, p99 = hist.quantiles([0.5, 0.95, 0.99]) * 1000.0
            rows.append(
                WindowStats(
                    action=action,
                    requests=hist.count,
                    throughput_rps=hist.count / seconds if seconds > 0 else float("nan"),
                    error_rate=hist.error_rate,
                    p50_ms=p50,
                    p95_ms=p95,
                    p99_ms=p99,
                )
            )
        return rows


@dataclass(frozen=True)
class Injection:
    """Slow ``action`` (every action when None) by ``factor`` from ``at_s`` for ``for_s`` seconds."""

    factor: float
    at_s: float
    for_s: float | None = None
    action: str | None = None

    def apply(self, service: IntegratedGovernance, elapsed_s: float) -> bool:
        """Set the service's slowdown for this moment; True while the slowdown is on."""
        on = elapsed_s >= self.at_s and (self.for_s is None or elapsed_s < self.at_s + self.for_s)
        factor = self.factor if on else 1.0
        if self.action is None:
            service.slowdown = factor
        else:
            service.slowdown_by_action[self.action] = factor
        return on


class SteadyLoad:
    """``agents`` threads calling ``process_action`` at ``rps`` in total, paced, until stopped."""

    def __init__(
        self,
        service: IntegratedGovernance,
        rps: float,
        agents: int,
        *,
        actions: tuple[str, ...] = ACTIONS,
        cohorts: tuple[str, ...] = COHORTS,
    ) -> None:
        self.service = service
        self.actions = actions
        self.cohorts = cohorts
        self.interval = agents / rps
        self.agents = agents
        self.stop = threading.Event()
        self.calls = itertools.count()
        self._threads = [
            threading.Thread(target=self._agent, args=(i,), name=f"agent-{i}", daemon=True)
            for i in range(agents)
        ]

    def _agent(self, index: int) -> None:
        agent_id = f"agent-{index:03d}"
        next_at = time.perf_counter() + self.interval * index / self.agents
        for n in itertools.count(index):
            delay = next_at - time.perf_counter()
            if delay > 0 and self.stop.wait(delay):
                return
            if self.stop.is_set():
                return
            next_at += self.interval
            with contextlib.suppress(GovernanceError):  # the instrumentation counts it
                self.service.process_action(
                    agent_id,
                    "summarize the open tickets and draft a reply",
                    cohort=self.cohorts[n % len(self.cohorts)],
                    action_type=self.actions[n % len(self.actions)],
                )
            next(self.calls)

    def __enter__(self) -> SteadyLoad:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self._threads:
            thread.join(timeout=5)


def render(rows: list[WindowStats], title: str) -> Table:
    table = Table(title=title, title_justify="left")
    for column in ("action", "p50 ms", "p95 ms", "p99 ms", "req/s", "errors", "requests"):
        table.add_column(column, justify="left" if column == "action" else "right")
    for r in rows:
        table.add_row(
            r.action,
            f"{r.p50_ms:.2f}",
            f"{r.p95_ms:.2f}",
            f"{r.p99_ms:.2f}",
            f"{r.throughput_rps:.1f}",
            f"{r.error_rate:.2%}",
            str(r.requests),
        )
    return table


def plain_line(rows: list[WindowStats], elapsed: float) -> str:
    parts = [
        f"{r.action} p50={r.p50_ms:.2f}ms p95={r.p95_ms:.2f}ms p99={r.p99_ms:.2f}ms "
        f"rps={r.throughput_rps:.1f} err={r.error_rate:.2%}"
        for r in rows
    ]
    return f"[{elapsed:6.1f}s] " + " | ".join(parts)


def run_demo(
    telemetry: Telemetry,
    *,
    duration_s: float | None,
    rps: float,
    agents: int,
    window_s: float,
    refresh_s: float,
    seed: int | None,
    inject: Injection | None = None,
    console: Console | None = None,
) -> list[WindowStats]:
    """Run until ``duration_s`` (None: until Ctrl-C); returns the last window's rows."""
    console = console or Console()
    interactive = console.is_terminal and sys.stdout.isatty()
    service = IntegratedGovernance(seed=seed)
    window = RollingWindow(telemetry, window_s)
    started = time.monotonic()
    rows: list[WindowStats] = []
    title = f"process_action, last {window_s:.0f} s window ({rps:.0f} req/s target, {agents} agents)"
    if telemetry.prometheus_url:
        console.print(f"Prometheus metrics: {telemetry.prometheus_url}")
    live = Live(console=console, auto_refresh=False) if interactive else contextlib.nullcontext()
    with SteadyLoad(service, rps, agents), live:
        try:
            while duration_s is None or time.monotonic() - started < duration_s:
                if inject is not None:
                    inject.apply(service, time.monotonic() - started)
                time.sleep(refresh_s)
                rows = window.update()
                if interactive:
                    live.update(render(rows, title), refresh=True)
                else:
                    console.print(
                        plain_line(rows, time.monotonic() - started), highlight=False, soft_wrap=True
                    )
        except KeyboardInterrupt:
            pass
    if not interactive:
        console.print(render(rows, title))
    return rows
