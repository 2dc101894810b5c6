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
import textwrap
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import matplotlib  # the plot at the end; imported first so that a missing CI extra shows at once
from rich.console import Console
from rich.live import Live
from rich.table import Table

from nethical_otel import names
from nethical_otel.bench.loadgen import LoadConfig, LoadRun, callable_target
from nethical_otel.detect.alerts import Alert, State
from nethical_otel.detect.detector import SeriesReport
from nethical_otel.detect.learning import WARMUP_WINDOWS
from nethical_otel.detect.sinks import LogSink
from nethical_otel.example import IntegratedGovernance
from nethical_otel.example.governance import FETCH, IO_SHARES
from nethical_otel.files import write_atomic
from nethical_otel.telemetry import Telemetry
from nethical_otel.text import article, plural

QUANTILES = (0.5, 0.95, 0.99)
# The slowdown's default place in the run: from half the duration, for 30 % of it.
INJECT_AT_FRACTION = 0.5
INJECT_FOR_FRACTION = 0.3


@dataclass(frozen=True)
class Injection:
    """Slow ``action`` (every action when None) by ``factor`` from ``at_s`` for ``for_s`` seconds.

    The slowdown goes into one sub-step, ``step`` (``policy_store.fetch`` by default; None:
    all of the action's simulated work), slowed by ``step_factor`` so that the action's
    simulated time grows by ``factor`` as a whole: the alert on the action must say where.
    ``proportional``: ``at_s`` and ``for_s`` are the defaults, fractions of the duration
    (``INJECT_AT_FRACTION``, ``INJECT_FOR_FRACTION``), so a longer ``--duration`` moves them.
    """

    factor: float
    at_s: float
    for_s: float | None = None
    action: str | None = None
    proportional: bool = False
    step: str | None = FETCH

    @property
    def step_factor(self) -> float:
        """The sub-step's own factor (``policy_store.fetch`` is 60 % of the simulated time)."""
        return 1 + (self.factor - 1) / IO_SHARES[self.step] if self.step else self.factor

    @property
    def end_s(self) -> float | None:
        return None if self.for_s is None else self.at_s + self.for_s

    def describe(self) -> str:
        """``query x1.3 from 60 s to 96 s, in policy_store.fetch (x1.5)``."""
        end = f" to {self.end_s:.3g} s" if self.end_s is not None else " to the end"
        where = f", in {self.step} (x{self.step_factor:.3g})" if self.step else ""
        return f"{self.action or 'every action'} x{self.factor:g} from {self.at_s:.3g} s{end}{where}"

    def active(self, elapsed_s: float) -> bool:
        return elapsed_s >= self.at_s and (self.for_s is None or elapsed_s < self.at_s + self.for_s)

    def apply(self, service: IntegratedGovernance, elapsed_s: float) -> bool:
        """Set the service's slowdown for this moment; True while the slowdown is on."""
        on = self.active(elapsed_s)
        if self.step is not None:
            service.step_slowdown[(self.action, self.step)] = self.step_factor if on else 1.0
            return on
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
    substep: str = ""  # the sub-step the alert says most of the slowdown is in
    substeps: str = ""  # the alert's "where the time went", per sub-step


@dataclass(frozen=True)
class DetectorTiming:
    """The embedded detector's clock in this run, and what it implies for the demo's plan.

    The estimates are deliberately on the safe side (a whole window, not the part of it
    that usually suffices):

    - a first baseline: the first full window, seen at the next step (``learned_s``). A
      slowdown that starts earlier is learned as normal: no alert can follow;
    - a warmed-up baseline: ``WARMUP_WINDOWS`` windows (``detect.learning``), ``warmed_s``.
      A slowdown after the first baseline but before this is still caught (its windows are
      judged regressions and kept out), against a young baseline with wider intervals; the
      suggested duration leaves room for the warm-up;
    - an alert fires once the slowdown fills a window, has held for ``for_s``, at the next
      step (``fire_after_s``, counted from the start of the slowdown);
    - it resolves once the window is clear of it, ``keep_firing_for_s`` later, at the next
      step (``resolve_after_s``, counted from the end of the slowdown).
    """

    window_s: float
    step_s: float
    for_s: float
    keep_firing_for_s: float
    learns: bool = True  # baselines come from the run itself (no baseline file)

    @classmethod
    def from_settings(cls, settings) -> DetectorTiming:
        return cls(
            settings.detector_window_s,
            settings.detector_step_s,
            settings.detector_for_s,
            settings.detector_keep_firing_for_s,
            learns=not settings.baseline_file,
        )

    @property
    def learned_s(self) -> float:
        return self.window_s + self.step_s if self.learns else self.step_s

    @property
    def warmed_s(self) -> float:
        return WARMUP_WINDOWS * self.window_s + self.step_s if self.learns else self.step_s

    @property
    def fire_after_s(self) -> float:
        return self.window_s + self.for_s + self.step_s

    @property
    def resolve_after_s(self) -> float:
        return self.window_s + self.keep_firing_for_s + self.step_s

    def needed_duration_s(self) -> float:
        """The shortest run whose default slowdown (from half the duration, for 30 % of it) is
        learned against, fires and resolves before the end."""
        return max(
            self.warmed_s / INJECT_AT_FRACTION,
            self.fire_after_s / INJECT_FOR_FRACTION,
            self.resolve_after_s / (1 - INJECT_AT_FRACTION - INJECT_FOR_FRACTION),
        )

    def suggested_duration_s(self) -> int:
        """``needed_duration_s`` with a quarter more room, rounded up to whole half minutes
        beyond a minute, else to 10 s (120 s at a 10 s window, 40 s at 3 s)."""
        room = self.needed_duration_s() * 1.25
        unit = 30 if room > 60 else 10
        return unit * math.ceil(room / unit - 1e-9)


@dataclass(frozen=True)
class Problem:
    """Why a plan cannot show one stage of the loop: ``stage`` learn, fire or resolve."""

    stage: str
    text: str


def _up(seconds: float, to: int = 1) -> int:
    return to * math.ceil(seconds / to - 1e-9)


def plan_problems(plan: DemoPlan, timing: DetectorTiming) -> list[Problem]:
    """What keeps ``plan`` from showing the whole loop (a baseline learned, the alert firing
    and resolving before the run ends); empty when it can (see ``DetectorTiming``)."""
    window = f"--window {timing.window_s:g}"
    duration = plan.duration_s
    inject = plan.inject
    run = f"{article(f'{duration:g}')} {duration:g} s run"
    if inject is None:
        if duration < timing.learned_s:
            return [
                Problem(
                    "learn",
                    f"{run} is too short for the detector to learn a baseline (about "
                    f"{timing.learned_s:.0f} s at {window}; try --duration {_up(timing.learned_s, 10)})",
                )
            ]
        return []
    if inject.proportional:
        stages = {}
        if inject.at_s < timing.learned_s:
            stages["learn"] = "for the detector to learn a baseline and see the slowdown"
        elif inject.for_s is not None and inject.for_s < timing.fire_after_s:
            stages["fire"] = "for the detector to see the slowdown"
        if inject.end_s is not None and inject.end_s + timing.resolve_after_s > duration:
            stages["resolve"] = "for an alert to resolve before the end"
        needed, suggested = _up(timing.needed_duration_s()), timing.suggested_duration_s()
        text = (
            f"{run} is too short {', and '.join(stages.values())} "
            f"(needs about {needed} s at {window}; try --duration {suggested})"
        )
        return [Problem(stage, text) for stage in stages]
    problems = []
    if inject.at_s < timing.learned_s:
        problems.append(
            Problem(
                "learn",
                f"the slowdown starts at {inject.at_s:g} s, before the detector has learned a baseline "
                f"(about {timing.learned_s:.0f} s at {window}; it would learn the slow calls as normal); "
                f"try --inject-at {_up(timing.warmed_s)}",
            )
        )
    if inject.for_s is not None and inject.for_s < timing.fire_after_s:
        problems.append(
            Problem(
                "fire",
                f"a {inject.for_s:g} s slowdown is shorter than the about {timing.fire_after_s:.0f} s an "
                f"alert needs to fire (a full window, then `for` {timing.for_s:g} s); "
                f"try --inject-for {_up(timing.fire_after_s)}",
            )
        )
    elif inject.at_s + timing.fire_after_s > duration:
        problems.append(
            Problem(
                "fire",
                f"the run ends at {duration:g} s, before an alert can fire (about "
                f"{inject.at_s + timing.fire_after_s:.0f} s); "
                f"try --duration {_up(inject.at_s + timing.fire_after_s + timing.resolve_after_s, 10)}",
            )
        )
    if inject.end_s is not None and inject.end_s + timing.resolve_after_s > duration:
        problems.append(
            Problem(
                "resolve",
                f"an alert resolves about {timing.resolve_after_s:.0f} s after the slowdown ends "
                f"(at {inject.end_s:g} s), after the run ends at {duration:g} s; "
                f"try --duration {_up(inject.end_s + timing.resolve_after_s, 10)}",
            )
        )
    return problems


@dataclass
class Timeline:
    started: float
    samples: list[Sample] = field(default_factory=list)
    alerts: list[AlertEvent] = field(default_factory=list)
    baselines_learned_at: float | None = None
    timing: DetectorTiming | None = None
    ended_at: float | None = None  # seconds since start when the load ended
    interrupted: bool = False

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
            substep=alert.annotations.get("top_substep", ""),
            substeps=alert.annotations.get("substeps", ""),
        )
        self.timeline.alerts.append(event)
        what = f"{event.alertname} action={event.action}" + (
            f" p{_pct(event.quantile)}" if event.quantile else ""
        )
        if alert.state is State.FIRING:
            self.say(
                f"[bold red]FIRING[/] {what} ({event.severity}): "
                f"{float(event.change_pct):+.1f}% vs baseline, "
                f"99% interval {event.interval}"
                + (f", mostly in [bold]{event.substep}[/]" if event.substep else "")
                + f"  [dim]at {event.t:.0f} s[/]"
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

    # One line per action (under 100 characters), so a CI log reads like the live table.
    width = max((len(s.action) for s in samples), default=0)
    return "\n".join(
        f"[{t:5.0f}s] {s.action:<{width}}  p50={quantile(s, 0)}  p95={quantile(s, 1)}  "
        f"rps={s.rps:.0f}  alert={s.alert}"
        for s in samples
    )


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
    timeline = Timeline(started=time.monotonic(), timing=DetectorTiming.from_settings(telemetry.settings))
    service = IntegratedGovernance(seed=plan.seed)
    load = LoadRun(
        LoadConfig(agents=plan.agents, rps=plan.rps, duration_s=plan.duration_s, warmup_s=0, cohort="demo"),
        callable_target(service.process_action, "example process_action"),
    )
    worker = threading.Thread(target=load.run, name="nethical-demo-load", daemon=True)
    # Alerts show in the terminal through this sink; the log sink would print raw log lines.
    detector.sinks = [s for s in detector.sinks if not isinstance(s, LogSink)]
    title = (
        f"nethical-otel demo: {plan.rps:g} req/s, {plan.window_s:g} s window, "
        f"{plan.duration_s:g} s (Ctrl-C stops)"
    )
    live = Live(console=console, auto_refresh=False) if interactive else contextlib.nullcontext()
    with live:
        # A log or a pipe gets each message on one line, however long (grep-able).
        say = (lambda text: live.console.print(text)) if interactive else _plain_printer(console)
        detector.sinks.append(TerminalSink(timeline, say))
        if telemetry.prometheus_url:
            say(f"Prometheus metrics: {telemetry.prometheus_url}")
        if plan.inject:
            target = plan.inject.action or "every action"
            say(
                f"Timeline: learn baselines, slow {target} x{plan.inject.factor:g} "
                f"at {plan.inject.at_s:.3g} s"
                + (f" for {plan.inject.for_s:.3g} s" if plan.inject.for_s is not None else "")
            )
        # Before spending the time: a plan that cannot show the whole loop says so now.
        for text in dict.fromkeys(p.text for p in plan_problems(plan, timeline.timing)):
            say(f"[bold yellow]Warning:[/] {text}")
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
                    say(f"Baselines learned for {plural(len(samples), 'action')} at {learned:.0f} s")
                if interactive:
                    live.update(render(samples, title), refresh=True)
                elif samples and (timeline.now() - last_plain >= 5 or not worker.is_alive()):
                    console.print(plain_line(samples, timeline.now()), highlight=False, soft_wrap=True)
                    last_plain = timeline.now()
        except KeyboardInterrupt:
            load.stop()
            timeline.interrupted = True
    timeline.ended_at = timeline.now()
    return timeline


def _plain_printer(console: Console):
    def say(text: str) -> None:
        console.print(text, highlight=False, soft_wrap=True)

    return say


# -- what it came to ---------------------------------------------------------------------------


def _what(event: AlertEvent) -> str:
    """``p95`` for a latency alert, else the metric the alert name says (``error rate``)."""
    if event.quantile:
        return f"p{_pct(event.quantile)}"
    return {names.ERROR_RATE_ALERT: "error rate", names.THROUGHPUT_ALERT: "throughput"}.get(
        event.alertname, event.alertname
    )


def still_firing(timeline: Timeline) -> list[AlertEvent]:
    """The alerts whose last transition was to firing: still firing when the run ended."""
    last: dict[tuple[str, str, str], AlertEvent] = {}
    for event in timeline.alerts:
        last[(event.alertname, event.action, event.quantile)] = event
    return [e for e in last.values() if e.state == "firing"]


def _on_actions(events: Sequence[AlertEvent]) -> str:
    """``query (p50, p95) and tool_call (p99)``."""
    by_action: dict[str, list[str]] = {}
    for e in events:
        by_action.setdefault(e.action or "?", []).append(_what(e))
    parts = [f"{action} ({', '.join(whats)})" for action, whats in by_action.items()]
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def outside_slowdown(timeline: Timeline, plan: DemoPlan) -> tuple[list[AlertEvent], list[AlertEvent]]:
    """The alerts that began to fire too early or too late to be the injected slowdown's:
    before it began, or after it had left the window (an alert pending on it fires ``for``
    later at the latest). Both are the machine's own, which a short window catches."""
    inject, timing = plan.inject, timeline.timing
    if inject is None or timing is None:
        return [], []
    fired = [e for e in timeline.alerts if e.state == "firing"]
    before = [e for e in fired if e.t <= inject.at_s]
    if inject.end_s is None:
        return before, []
    limit = inject.end_s + timing.fire_after_s
    return before, [e for e in fired if e.t > limit]


def outcome(timeline: Timeline, plan: DemoPlan) -> list[str]:
    """What the run showed, in sentences, for the terminal, summary.md and the PNG: how many
    alerts fired, and when that is not what the plan was for, why (a run too short to learn
    a baseline, an alert still firing at exit) and what to change."""
    timing = timeline.timing
    problems = plan_problems(plan, timing) if timing else []
    fired = sum(a.state == "firing" for a in timeline.alerts)
    firing = still_firing(timeline)
    inject = plan.inject
    lines = []
    if timeline.interrupted:
        lines.append(f"Stopped at {timeline.ended_at or 0:.0f} s of {plan.duration_s:g} s (Ctrl-C).")
    head = f"{plural(fired, 'alert')} fired"
    stopped = timeline.interrupted  # the plan did not run out: no advice on it
    if fired == 0:
        early = [p.text for p in problems if p.stage in ("learn", "fire")]
        if early and not stopped:
            head += f": {early[0]}"
        elif inject is None:
            head += " (steady run: none expected)"
        elif not stopped:
            head += (
                f": the slowdown ({inject.describe()}) was not detected; it was within the policy's "
                "thresholds or the noise (try a larger --inject-slowdown)"
            )
    elif inject is None:
        head += " although nothing was slowed: false alarms"
    elif not firing:
        head += ", all resolved before the end" if fired > 1 else " and resolved before the end"
    elif fired > len(firing):
        head += f", {fired - len(firing)} resolved before the end"
    lines.append(head + ".")
    before, after = outside_slowdown(timeline, plan)
    for events, when in ((before, "before the slowdown began"), (after, "after the slowdown was over")):
        if events:
            lines.append(
                f"{plural(len(events), 'alert')} on {_on_actions(events)} fired {when} (from "
                f"{events[0].t:.0f} s): not the injected slowdown but this machine's own (another "
                "process, a busy CPU), which the demo's short window and `for` catch."
            )
    named = [e for e in timeline.alerts if e.state == "firing" and e.substep]
    if named:
        first = named[0]
        said = first.substeps.split("; ")[0]
        where = f"put the slowdown in {first.substep}: {said}"
        lines.append(f"The {_what(first)} alert on {first.action} {where}.")
    if firing:
        subject = "the alert on" if len(firing) == 1 else "the alerts on"
        verb = "was" if len(firing) == 1 else "were"
        text = f"{subject} {_on_actions(firing)} {verb} still firing at exit"
        injected = any(e not in before and e not in after for e in firing)  # not only the machine's own
        if (
            inject is not None
            and inject.end_s is not None
            and timing is not None
            and injected
            and not stopped
        ):
            late = [p.text for p in problems if p.stage == "resolve"]
            hint = (
                f"try --duration {timing.suggested_duration_s()}"
                if inject.proportional
                else f"try --duration {_up(inject.end_s + timing.resolve_after_s, 10)}"
            )
            text += (
                f" (an alert resolves about {timing.resolve_after_s:.0f} s after the slowdown ends, "
                f"here at about {inject.end_s + timing.resolve_after_s:.0f} s; {hint})"
                if late
                else " (resolves a few steps after the slowdown ends; try a longer --duration)"
            )
        lines.append(text[0].upper() + text[1:] + ".")
    return lines


# -- what the demo leaves behind --------------------------------------------------------------


def output_paths(output_dir: Path) -> tuple[Path, Path, Path]:
    """Where ``write_outputs`` writes: the PNG, the markdown summary, the JSON summary."""
    return output_dir / "latency.png", output_dir / "summary.md", output_dir / "summary.json"


def write_outputs(timeline: Timeline, plan: DemoPlan) -> tuple[Path, Path, Path]:
    """The PNG, the markdown summary and a JSON summary (for scripts and tests)."""
    png, summary, data = output_paths(plan.output_dir)
    plot(timeline, plan, png)
    write_atomic(summary, markdown(timeline, plan, png.name))
    timing = timeline.timing
    document = {
        "plan": {**asdict(plan), "output_dir": str(plan.output_dir)},
        "timing": asdict(timing) if timing else None,
        "plan_warnings": list(dict.fromkeys(p.text for p in plan_problems(plan, timing))) if timing else [],
        "baselines_learned_at_s": timeline.baselines_learned_at,
        "ended_at_s": timeline.ended_at,
        "alerts": [asdict(a) for a in timeline.alerts],
        "still_firing": [asdict(a) for a in still_firing(timeline)],
        "outcome": outcome(timeline, plan),
    }
    write_atomic(data, json.dumps(document, indent=1, default=str) + "\n")
    return png, summary, data


_COLORS = {0.5: "tab:blue", 0.95: "tab:orange", 0.99: "tab:red"}


def _alert_groups(events: Sequence[AlertEvent]) -> list[tuple[float, str, list[AlertEvent]]]:
    """Transitions of one action at the same moment (one step) to the same state (and, for
    firing, of the same severity), as (t, state, events)."""
    groups: dict[tuple[float, str, str], list[AlertEvent]] = {}
    for event in events:
        severity = event.severity if event.state == "firing" else ""
        groups.setdefault((round(event.t, 1), event.state, severity), []).append(event)
    return [(t, state, group) for (t, state, _), group in sorted(groups.items())]


def plot(timeline: Timeline, plan: DemoPlan, path: Path) -> Path:
    """Write ``figure(timeline, plan)`` as a PNG, atomically."""
    png = io.BytesIO()
    figure(timeline, plan).savefig(png, format="png")
    write_atomic(path, png.getvalue())
    return path


def figure(timeline: Timeline, plan: DemoPlan):
    """Live p50/p95/p99 of each action against its baseline, the slowdown shaded, every
    alert transition a vertical line named in the legend (below the plots, off the data);
    the title says what the run came to (``outcome``)."""
    matplotlib.use("Agg")
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    actions = sorted({s.action for s in timeline.samples}) or ["(no data)"]
    fig = Figure(figsize=(10, 2.4 * len(actions) + 2.2), dpi=110, layout="constrained")
    axes = fig.subplots(len(actions), 1, sharex=True, squeeze=False)[:, 0]
    handles: dict[str, object] = {}
    for q in QUANTILES:
        handles[f"p{q * 100:g} live"] = Line2D([], [], color=_COLORS[q])
    handles["baseline of each (dotted)"] = Line2D([], [], color="0.3", linestyle=":", linewidth=1)
    band = False
    inject = plan.inject
    for ax, action in zip(axes, actions, strict=True):
        rows = [s for s in timeline.samples if s.action == action]
        t = [s.t for s in rows]
        for i, q in enumerate(QUANTILES):
            ax.plot(t, [s.current[i] * 1000 for s in rows], color=_COLORS[q], zorder=3)
            base = [s.baseline[i] * 1000 if s.baseline else math.nan for s in rows]
            ax.plot(t, base, color=_COLORS[q], linestyle=":", linewidth=1, zorder=2)
        with_base = [s for s in rows if s.baseline]
        if with_base:  # under everything, faint: it must not hide a line
            b = with_base[-1].baseline
            ax.axhspan(b[0] * 1000, b[2] * 1000, color="0.5", alpha=0.07, zorder=0, linewidth=0)
            band = True
        if inject and inject.action in (None, action):
            end = inject.end_s if inject.end_s is not None else plan.duration_s
            ax.axvspan(inject.at_s, end, color="tab:red", alpha=0.08, zorder=0, linewidth=0)
            label = f"slowdown: {inject.describe()}"
            handles[label] = Patch(color="tab:red", alpha=0.15)
        for at, state, group in _alert_groups([e for e in timeline.alerts if e.action == action]):
            color, style = ("tab:red", "--") if state == "firing" else ("tab:green", "-.")
            ax.axvline(at, color=color, linestyle=style, linewidth=1.2, zorder=4)
            whats = ", ".join(_what(e) for e in group)
            severity = f" ({group[0].severity})" if state == "firing" and group[0].severity else ""
            verb = "fired" if state == "firing" else "resolved"
            where = next((e.substep for e in group if e.substep), "") if state == "firing" else ""
            where = f", in {where}" if where else ""
            handles[f"{action} {whats} alert {verb}{severity} at {at:.0f} s{where}"] = Line2D(
                [], [], color=color, linestyle=style, linewidth=1.2
            )
        if not rows:
            ax.text(0.5, 0.5, "no samples: the run ended before the detector's first step",
                    transform=ax.transAxes, ha="center", va="center", color="0.4")  # fmt: skip
        ax.set_ylabel(f"{action}\nlatency (ms)")
        ax.grid(alpha=0.3, zorder=1)
    if band:
        handles["baseline p50..p99 (last)"] = Patch(color="0.5", alpha=0.15)
    if not timeline.alerts:
        handles["no alert fired"] = Line2D([], [], linestyle="none")
    firing = still_firing(timeline)
    if firing:
        handles[f"still firing at exit: {_on_actions(firing)}"] = Line2D([], [], linestyle="none")
    axes[-1].set_xlabel("seconds since start")
    axes[-1].set_xlim(0, max(plan.duration_s, timeline.ended_at or 0, *(s.t for s in timeline.samples)))
    fig.legend(
        list(handles.values()), list(handles), loc="outside lower center", ncol=3, fontsize=8, frameon=False
    )
    what = f"slowdown: {inject.describe()}" if inject else "steady run, nothing slowed"
    title = f"nethical-otel demo: live p50/p95/p99 vs learned baseline; {what}"
    summary = textwrap.fill(" ".join(outcome(timeline, plan)), 130)
    fig.suptitle(f"{title}\n{summary}", fontsize=9)
    return fig


def markdown(timeline: Timeline, plan: DemoPlan, png_name: str) -> str:
    lines = ["# nethical-otel demo", ""]
    learned = timeline.baselines_learned_at
    lines.append(
        f"{plan.rps:g} req/s for {plan.duration_s:g} s, detector window {plan.window_s:g} s; "
        + (f"baselines learned at {learned:.0f} s." if learned is not None else "no baseline was learned.")
    )
    if plan.inject:
        lines.append(f"Injected: {plan.inject.describe()} (slowed).")
    else:
        lines.append("No slowdown injected.")
    timing = timeline.timing
    lines += ["", "## Outcome", ""]
    lines += [f"- {line}" for line in outcome(timeline, plan)]
    if timing is not None:
        said = " ".join(lines)
        warned = dict.fromkeys(p.text for p in plan_problems(plan, timing) if p.text not in said)
        lines += [f"- Warned at the start: {text}." for text in warned]
        lines.append(
            f"- Detector: {timing.window_s:g} s window, a step every {timing.step_s:g} s, "
            f"`for` {timing.for_s:g} s, `keep_firing_for` {timing.keep_firing_for_s:g} s; "
            f"an alert fires about {timing.fire_after_s:.0f} s after a slowdown starts and resolves "
            f"about {timing.resolve_after_s:.0f} s after it ends."
        )
    lines += ["", f"![latency]({png_name})", "", "## Alerts", ""]
    if not timeline.alerts:
        lines.append("None fired.")
    else:
        lines += [
            "| at | state | alert | action | metric | change | 99% interval | where the time went |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for a in timeline.alerts:
            change = f"{float(a.change_pct):+.1f}%" if a.change_pct else ""
            lines.append(
                f"| {a.t:.0f} s | {a.state} | {a.alertname} | {a.action} | "
                f"{_what(a)} | {change} | {a.interval} | {a.substeps} |"
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
