"""``nethical-otel demo``: the whole loop in one process, in about two minutes.

The example governance service, instrumented; an open-loop load from the load generator;
the embedded detector learning baselines and watching every action; ``/metrics`` for
Prometheus; alerts to the terminal (or to Alertmanager). Halfway through, one action is
slowed down; the alert fires with its confidence interval; the slowdown is removed and the
alert resolves. At the end a PNG of the latency percentiles (baseline band, injection and
alert moments marked) and a markdown summary go to ``demo-output/``.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import matplotlib  # the plot at the end; imported first so that a missing CI extra shows at once
from rich.console import Console
from rich.live import Live
from rich.table import Table

from nethical_otel.bench.loadgen import LoadConfig, LoadRun, callable_target
from nethical_otel.detect.alerts import Alert, State
from nethical_otel.detect.detector import SeriesReport
from nethical_otel.detect.sinks import LogSink
from nethical_otel.example import IntegratedGovernance
from nethical_otel.files import write_atomic
from nethical_otel.telemetry import Telemetry

QUANTILES = (0.5, 0.95, 0.99)


@dataclass(frozen=True)
class Injection:
    """Slow ``action`` (every action when None) by ``factor`` from ``at_s`` for ``for_s`` seconds."""

    factor: float
    at_s: float
    for_s: float | None = None
    action: str | None = None

    def active(self, elapsed_s: float) -> bool:
        return elapsed_s >= self.at_s and (self.for_s is None or elapsed_s < self.at_s + self.for_s)

    def apply(self, service: IntegratedGovernance, elapsed_s: float) -> bool:
        """Set the service's slowdown for this moment; True while the slowdown is on."""
        on = self.active(elapsed_s)
        factor = self.factor if on else 1.0
        if self.action is None:
            service.slowdown = factor
        else:
            service.slowdown_by_action[self.action] = factor
        return on


@dataclass
class Sample:
    """One action at one moment: live window quantiles (s) against its baseline."""

    t: float
    action: str
    current: list[float]
    baseline: list[float] | None
    rps: float
    error_rate: float
    alert: str


@dataclass
class AlertEvent:
    t: float
    state: str  # firing | resolved
    alertname: str
    action: str
    quantile: str
    severity: str
    change_pct: str
    interval: str


@dataclass
class Timeline:
    started: float
    samples: list[Sample] = field(default_factory=list)
    alerts: list[AlertEvent] = field(default_factory=list)
    baselines_learned_at: float | None = None

    def now(self) -> float:
        return time.monotonic() - self.started


class TerminalSink:
    """Records firing/resolved transitions for the timeline and prints them as they happen."""

    def __init__(self, timeline: Timeline, say) -> None:
        self.timeline = timeline
        self.say = say
        self._seen: dict[tuple, State] = {}

    def update(self, alert: Alert, now: float) -> None:
        if self._seen.get(alert.key) is alert.state:
            return
        self._seen[alert.key] = alert.state
        event = AlertEvent(
            t=self.timeline.now(),
            state=alert.state.value,
            alertname=alert.name,
            action=alert.labels.get("action", ""),
            quantile=alert.labels.get("quantile", ""),
            severity=alert.labels.get("severity", ""),
            change_pct=alert.annotations.get("change_pct", ""),
            interval=alert.annotations.get("confidence_interval", ""),
        )
        self.timeline.alerts.append(event)
        what = f"{event.alertname} action={event.action}" + (
            f" p{_pct(event.quantile)}" if event.quantile else ""
        )
        if alert.state is State.FIRING:
            self.say(
                f"[bold red]FIRING[/] {what} ({event.severity}): "
                f"{float(event.change_pct):+.1f}% vs baseline, "
                f"99% interval {event.interval}  [dim]at {event.t:.0f} s[/]"
            )
        else:
            self.say(f"[bold green]RESOLVED[/] {what}  [dim]at {event.t:.0f} s[/]")

    def close(self, timeout_s: float = 5.0) -> None:
        return None


def _pct(quantile: str) -> str:
    return f"{float(quantile) * 100:g}" if quantile else ""


def _alert_state(alerts: list[Alert], action: str) -> str:
    states = {a.state for a in alerts if a.labels.get("action") == action}
    for state in (State.FIRING, State.PENDING):
        if state in states:
            return state.value
    return "ok"


def sample(report: SeriesReport, t: float, alerts: list[Alert]) -> Sample:
    hist = report.window.histogram
    baseline = report.baseline.histogram.quantiles(QUANTILES).tolist() if report.baseline else None
    return Sample(
        t=t,
        action=report.key.action,
        current=hist.quantiles(QUANTILES).tolist() if hist.count else [math.nan] * 3,
        baseline=baseline,
        rps=report.window.throughput_rps,
        error_rate=hist.error_rate if hist.count else math.nan,
        alert=_alert_state(alerts, report.key.action) if report.baseline else "learning",
    )


def _change(current: float, baseline: float | None) -> str:
    if baseline is None or not baseline or math.isnan(current):
        return ""
    return f" ({(current / baseline - 1) * 100:+.0f}%)"


_STYLE = {"firing": "bold red", "pending": "yellow", "ok": "green", "learning": "dim"}


def render(samples: list[Sample], title: str) -> Table:
    table = Table(title=title, title_justify="left")
    for column in ("action", "p50 ms", "p95 ms", "p99 ms", "req/s", "errors", "alert"):
        table.add_column(column, justify="left" if column in ("action", "alert") else "right")
    for s in samples:
        cells = [
            f"{c * 1000:.2f}{_change(c, s.baseline[i] if s.baseline else None)}"
            for i, c in enumerate(s.current)
        ]
        table.add_row(
            s.action,
            *cells,
            f"{s.rps:.0f}",
            f"{s.error_rate:.2%}" if not math.isnan(s.error_rate) else "-",
            f"[{_STYLE[s.alert]}]{s.alert}[/]",
        )
    return table


def plain_line(samples: list[Sample], t: float) -> str:
    def quantile(s: Sample, i: int) -> str:
        return f"{s.current[i] * 1000:.2f}ms{_change(s.current[i], s.baseline[i] if s.baseline else None)}"

    parts = [
        f"{s.action} p50={quantile(s, 0)} p95={quantile(s, 1)} rps={s.rps:.0f} alert={s.alert}"
        for s in samples
    ]
    return f"[{t:5.0f}s] " + " | ".join(parts)


@dataclass(frozen=True)
class DemoPlan:
    duration_s: float = 120.0
    rps: float = 200.0
    agents: int = 16
    window_s: float = 10.0
    refresh_s: float = 1.0
    seed: int | None = None
    inject: Injection | None = None
    output_dir: Path = Path("demo-output")


def run_demo(telemetry: Telemetry, plan: DemoPlan, console: Console | None = None) -> Timeline:
    """Run the demo on ``telemetry`` (which must have its embedded detector running)."""
    console = console or Console()
    interactive = console.is_terminal and sys.stdout.isatty()
    detector = telemetry.detector
    timeline = Timeline(started=time.monotonic())
    service = IntegratedGovernance(seed=plan.seed)
    load = LoadRun(
        LoadConfig(agents=plan.agents, rps=plan.rps, duration_s=plan.duration_s, warmup_s=0, cohort="demo"),
        callable_target(service.process_action, "example process_action"),
    )
    worker = threading.Thread(target=load.run, name="nethical-demo-load", daemon=True)
    # Alerts show in the terminal through this sink; the log sink would print raw log lines.
    detector.sinks = [s for s in detector.sinks if not isinstance(s, LogSink)]
    title = (
        f"nethical-otel demo: {plan.rps:.0f} req/s, {plan.window_s:.0f} s window, "
        f"{plan.duration_s:.0f} s (Ctrl-C stops)"
    )
    live = Live(console=console, auto_refresh=False) if interactive else contextlib.nullcontext()
    with live:
        say = (lambda text: live.console.print(text)) if interactive else console.print
        detector.sinks.append(TerminalSink(timeline, say))
        if telemetry.prometheus_url:
            say(f"Prometheus metrics: {telemetry.prometheus_url}")
        if plan.inject:
            target = plan.inject.action or "every action"
            say(
                f"Timeline: learn baselines, slow {target} x{plan.inject.factor:g} "
                f"at {plan.inject.at_s:.0f} s"
                + (f" for {plan.inject.for_s:.0f} s" if plan.inject.for_s else "")
            )
        worker.start()
        injecting = False
        last_plain = -math.inf
        try:
            while worker.is_alive():
                t = timeline.now()
                if plan.inject is not None and plan.inject.apply(service, t) != injecting:
                    injecting = not injecting
                    verb = "slowed" if injecting else "back to normal"
                    say(f"[bold]{plan.inject.action or 'every action'} {verb}[/] at {t:.0f} s")
                worker.join(timeout=plan.refresh_s)
                samples = [sample(r, timeline.now(), detector.book.alerts()) for r in detector.last_reports]
                timeline.samples.extend(samples)
                if timeline.baselines_learned_at is None and samples and all(s.baseline for s in samples):
                    learned = timeline.baselines_learned_at = timeline.now()
                    say(f"Baselines learned for {len(samples)} actions at {learned:.0f} s")
                if interactive:
                    live.update(render(samples, title), refresh=True)
                elif samples and (timeline.now() - last_plain >= 5 or not worker.is_alive()):
                    console.print(plain_line(samples, timeline.now()), highlight=False, soft_wrap=True)
                    last_plain = timeline.now()
        except KeyboardInterrupt:
            load.stop()
    return timeline


# -- what the demo leaves behind --------------------------------------------------------------


def output_paths(output_dir: Path) -> tuple[Path, Path, Path]:
    """Where ``write_outputs`` writes: the PNG, the markdown summary, the JSON summary."""
    return output_dir / "latency.png", output_dir / "summary.md", output_dir / "summary.json"


def write_outputs(timeline: Timeline, plan: DemoPlan) -> tuple[Path, Path, Path]:
    """The PNG, the markdown summary and a JSON summary (for scripts and tests)."""
    png, summary, data = output_paths(plan.output_dir)
    plot(timeline, plan, png)
    write_atomic(summary, markdown(timeline, plan, png.name))
    document = {
        "plan": {**asdict(plan), "output_dir": str(plan.output_dir)},
        "baselines_learned_at_s": timeline.baselines_learned_at,
        "alerts": [asdict(a) for a in timeline.alerts],
    }
    write_atomic(data, json.dumps(document, indent=1, default=str) + "\n")
    return png, summary, data


def plot(timeline: Timeline, plan: DemoPlan, path: Path) -> Path:
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    actions = sorted({s.action for s in timeline.samples}) or ["(no data)"]
    fig, axes = plt.subplots(
        len(actions), 1, figsize=(10, 2.6 * len(actions) + 0.6), sharex=True, squeeze=False
    )
    colors = {0.5: "tab:blue", 0.95: "tab:orange", 0.99: "tab:red"}
    for ax, action in zip(axes[:, 0], actions, strict=True):
        rows = [s for s in timeline.samples if s.action == action]
        t = [s.t for s in rows]
        for i, q in enumerate(QUANTILES):
            ax.plot(t, [s.current[i] * 1000 for s in rows], color=colors[q], label=f"p{q * 100:g}")
            base = [s.baseline[i] * 1000 if s.baseline else math.nan for s in rows]
            ax.plot(t, base, color=colors[q], linestyle=":", linewidth=1)
        with_base = [s for s in rows if s.baseline]
        if with_base:
            b = with_base[-1].baseline
            ax.axhspan(b[0] * 1000, b[2] * 1000, color="grey", alpha=0.15, label="baseline p50..p99")
        inject = plan.inject
        if inject and (inject.action in (None, action)):
            end = inject.at_s + inject.for_s if inject.for_s else plan.duration_s
            ax.axvspan(inject.at_s, end, color="tab:red", alpha=0.08, label=f"slowdown x{inject.factor:g}")
        for event in timeline.alerts:
            if event.action == action:
                style = ("tab:red", "--") if event.state == "firing" else ("tab:green", "-.")
                ax.axvline(event.t, color=style[0], linestyle=style[1], linewidth=1)
        ax.set_ylabel(f"{action}\nlatency (ms)")
        ax.grid(alpha=0.3)
    axes[0, 0].legend(loc="upper left", fontsize=8, ncol=5)
    axes[0, 0].set_title(
        "nethical-otel demo: live p50/p95/p99 (dotted: baseline; dashed red: alert fired, "
        "dash-dot green: resolved)",
        fontsize=9,
    )
    axes[-1, 0].set_xlabel("seconds since start")
    fig.tight_layout()
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=110)
    plt.close(fig)
    write_atomic(path, png.getvalue())
    return path


def markdown(timeline: Timeline, plan: DemoPlan, png_name: str) -> str:
    lines = ["# nethical-otel demo", ""]
    learned = timeline.baselines_learned_at
    lines.append(
        f"{plan.rps:.0f} req/s for {plan.duration_s:.0f} s, detector window {plan.window_s:.0f} s; "
        + (f"baselines learned at {learned:.0f} s." if learned is not None else "no baseline was learned.")
    )
    if plan.inject:
        end = f" until {plan.inject.at_s + plan.inject.for_s:.0f} s" if plan.inject.for_s else ""
        lines.append(
            f"Injected: {plan.inject.action or 'every action'} slowed x{plan.inject.factor:g} "
            f"from {plan.inject.at_s:.0f} s{end}."
        )
    else:
        lines.append("No slowdown injected.")
    lines += ["", f"![latency]({png_name})", "", "## Alerts", ""]
    if not timeline.alerts:
        lines.append("None fired.")
    else:
        lines += [
            "| at | state | alert | action | quantile | change | 99% interval |",
            "|---|---|---|---|---|---|---|",
        ]
        for a in timeline.alerts:
            change = f"{float(a.change_pct):+.1f}%" if a.change_pct else ""
            lines.append(
                f"| {a.t:.0f} s | {a.state} | {a.alertname} | {a.action} | "
                f"{'p' + _pct(a.quantile) if a.quantile else ''} | {change} | {a.interval} |"
            )
    last = {}
    for s in timeline.samples:
        last[s.action] = s
    if last:
        lines += [
            "",
            "## Last window",
            "",
            "| action | p50 ms | p95 ms | p99 ms | baseline p95 ms | req/s |",
            "|---|---|---|---|---|---|",
        ]
        for action, s in sorted(last.items()):
            base = f"{s.baseline[1] * 1000:.2f}" if s.baseline else "-"
            p50, p95, p99 = (f"{c * 1000:.2f}" for c in s.current)
            lines.append(f"| {action} | {p50} | {p95} | {p99} | {base} | {s.rps:.0f} |")
    return "\n".join(lines) + "\n"
