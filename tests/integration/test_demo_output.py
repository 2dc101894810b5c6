"""What `nethical-otel demo` says at the end, and warns at the start, must be what happened.

The messages and the PNG are checked on made-up timelines (exact, instant); two short real
runs (~20 s together) check that the CLI prints them: a warning before the run when the plan
cannot show the whole loop, and the same sentences at the end, in summary.md and summary.json.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg

from nethical_otel.example.demo import (
    AlertEvent,
    DemoPlan,
    DetectorTiming,
    Injection,
    Sample,
    Timeline,
    figure,
    markdown,
    outcome,
    plan_problems,
    plot,
)


def cli_timing(window_s: float) -> DetectorTiming:
    """The timing `nethical-otel demo --window W` runs with (cli/demo.py's overrides)."""
    step = max(window_s / 5, 0.5)
    return DetectorTiming(window_s, step, 2 * step, 3 * step)


def default_plan(duration_s: float, window_s: float = 10.0) -> DemoPlan:
    """The plan of `demo --duration D --window W`: query slowed x1.3 from D/2 for 0.3 D."""
    inject = Injection(1.3, 0.5 * duration_s, 0.3 * duration_s, "query", proportional=True)
    return DemoPlan(duration_s, window_s=window_s, inject=inject)


FETCH_SAID = "policy_store.fetch +1.20 ms per call (all of the slowdown), p50 +50.0% (significant)"


def event(
    t: float, state: str, quantile: str = "0.5", severity: str = "warning", where: bool = False
) -> AlertEvent:
    return AlertEvent(
        t, state, "NethicalLatencyRegression", "query", quantile, severity, "20.0", "+10% .. +30%",
        *(("policy_store.fetch", FETCH_SAID) if where else ()),
    )  # fmt: skip


def timeline(plan: DemoPlan, alerts: list[AlertEvent], window_s: float = 10.0) -> Timeline:
    samples = []
    for t in range(1, int(plan.duration_s) + 1):
        slow = 1.3 if plan.inject and plan.inject.active(t) else 1.0
        for action, base in (("generate", 0.018), ("query", 0.004)):
            factor = slow if action == "query" else 1.0
            current = [base * factor, 2 * base * factor, 3 * base * factor]
            learned = [base, 2 * base, 3 * base] if t > window_s else None
            samples.append(Sample(float(t), action, current, learned, 100.0, 0.0, "ok"))
    return Timeline(0.0, samples, alerts, float(window_s), cli_timing(window_s), plan.duration_s)


# -- the plan, before the run ----------------------------------------------------------------


def test_the_default_plan_fits_and_shorter_ones_say_what_they_miss() -> None:
    timing = cli_timing(10)
    assert plan_problems(default_plan(120), timing) == []
    short = plan_problems(default_plan(20), timing)
    assert {p.stage for p in short} == {"learn", "resolve"}
    assert short[0].text == (
        "a 20 s run is too short for the detector to learn a baseline and see the slowdown, and for "
        "an alert to resolve before the end (needs about 90 s at --window 10; try --duration 120)"
    )
    sixty = plan_problems(default_plan(60), timing)
    assert [p.stage for p in sixty] == ["resolve"]
    assert "too short for an alert to resolve before the end" in sixty[0].text
    # The estimate follows the window: at --window 3 the demo needs far less.
    assert plan_problems(default_plan(30, 3), cli_timing(3)) == []
    assert "an 8 s run" in plan_problems(default_plan(8, 3), cli_timing(3))[0].text


def test_explicit_injection_times_get_advice_on_the_options_given() -> None:
    timing = cli_timing(3)  # step 0.6, for 1.2, keep_firing_for 1.8
    early = DemoPlan(30, window_s=3, inject=Injection(1.3, 2, 9, "query"))
    (problem,) = plan_problems(early, timing)
    assert (
        problem.stage == "learn"
        and "the slowdown starts at 2 s, before the detector has learned" in problem.text
    )
    brief = DemoPlan(30, window_s=3, inject=Injection(1.3, 10, 2, "query"))
    assert (
        "a 2 s slowdown is shorter than the about 5 s an alert needs to fire"
        in plan_problems(brief, timing)[0].text
    )
    late = DemoPlan(20, window_s=3, inject=Injection(1.3, 10, 8, "query"))
    (problem,) = plan_problems(late, timing)
    assert problem.stage == "resolve" and problem.text.endswith("try --duration 30")
    assert plan_problems(DemoPlan(2, window_s=3), timing)[0].text.startswith(
        "a 2 s run is too short for the detector to learn a baseline"
    )
    assert plan_problems(DemoPlan(30, window_s=3), timing) == []  # steady, long enough


# -- the end of the run -----------------------------------------------------------------------


def test_no_alert_in_a_run_too_short_says_why_and_what_to_try() -> None:
    plan = default_plan(20)
    (line,) = outcome(timeline(plan, []), plan)
    assert line == (
        "0 alerts fired: a 20 s run is too short for the detector to learn a baseline and see the "
        "slowdown, and for an alert to resolve before the end (needs about 90 s at --window 10; "
        "try --duration 120)."
    )


def test_an_alert_still_firing_at_exit_is_named_with_when_it_would_resolve() -> None:
    plan = default_plan(60)  # slowdown 30..48 s; an alert resolves ~18 s after: ~66 s
    alerts = [event(40, "firing"), event(40, "firing", "0.95"), event(58, "resolved", "0.95")]
    assert outcome(timeline(plan, alerts), plan) == [
        "2 alerts fired, 1 resolved before the end.",
        "The alert on query (p50) was still firing at exit (an alert resolves about 18 s after the "
        "slowdown ends, here at about 66 s; try --duration 120).",
    ]
    both = outcome(timeline(plan, alerts[:2]), plan)
    assert both[1].startswith("The alerts on query (p50, p95) were still firing at exit")


def test_an_alert_that_fires_after_the_slowdown_is_over_is_not_called_the_injected_one() -> None:
    plan = default_plan(120)  # slowdown 60..96 s; at --window 10 one pending on it fires by 96 + 16 s
    episode = [event(72, "firing"), event(106, "resolved")]
    late = [event(111, "firing", "0.95"), event(113, "firing", "0.99")]  # by 112 s: still the slowdown's
    lines = outcome(timeline(plan, [*episode, *late]), plan)
    assert lines == [
        "3 alerts fired, 1 resolved before the end.",
        "1 alert on query (p99) fired after the slowdown was over (from 113 s): not the injected "
        "slowdown but this machine's own (another process, a busy CPU), which the demo's short "
        "window and `for` catch.",
        "The alerts on query (p95, p99) were still firing at exit (resolves a few steps after the "
        "slowdown ends; try a longer --duration).",
    ]
    # Only the machine's own still firing: no advice to run longer, that would not change it.
    only_late = [*episode, event(113, "firing", "0.99")]
    assert (
        outcome(timeline(plan, only_late), plan)[-1] == "The alert on query (p99) was still firing at exit."
    )


def test_an_alert_that_fires_before_the_slowdown_began_is_not_called_the_injected_one() -> None:
    plan = default_plan(120)  # slowdown 60..96 s
    early = [event(41, "firing", "0.95"), event(47, "resolved", "0.95")]
    episode = [event(72, "firing"), event(106, "resolved")]
    assert outcome(timeline(plan, [*early, *episode]), plan) == [
        "2 alerts fired, all resolved before the end.",
        "1 alert on query (p95) fired before the slowdown began (from 41 s): not the injected "
        "slowdown but this machine's own (another process, a busy CPU), which the demo's short "
        "window and `for` catch.",
    ]
    # One of the machine's own still firing at exit gets no advice to run longer either.
    assert outcome(timeline(plan, [early[0], *episode]), plan)[-1] == (
        "The alert on query (p95) was still firing at exit."
    )


def test_the_plain_outcomes_agree_in_number() -> None:
    plan = default_plan(120)
    one = [event(72, "firing"), event(106, "resolved")]
    assert outcome(timeline(plan, one), plan) == ["1 alert fired and resolved before the end."]
    three = [event(72, "firing", q) for q in ("0.5", "0.95", "0.99")]
    three += [event(106, "resolved", q) for q in ("0.5", "0.95", "0.99")]
    assert outcome(timeline(plan, three), plan) == ["3 alerts fired, all resolved before the end."]
    assert outcome(timeline(plan, []), plan)[0].startswith(
        "0 alerts fired: the slowdown (query x1.3 from 60 s to 96 s, in policy_store.fetch (x1.5)) "
        "was not detected"
    )
    steady = DemoPlan(120)
    assert outcome(timeline(steady, []), steady) == ["0 alerts fired (steady run: none expected)."]
    named = [event(72, "firing", where=True), event(106, "resolved", where=True)]
    assert outcome(timeline(plan, named), plan) == [
        "1 alert fired and resolved before the end.",
        f"The p50 alert on query put the slowdown in policy_store.fetch: {FETCH_SAID}.",
    ]


def test_summary_md_says_the_same() -> None:
    plan = default_plan(60)
    run = timeline(plan, [event(40, "firing", where=True)])
    text = markdown(run, plan, "latency.png")
    for line in outcome(run, plan):
        assert f"- {line}" in text
    assert "Warned at the start: a 60 s run is too short for an alert to resolve" in text
    assert "| 40 s | firing | NethicalLatencyRegression | query | p50 |" in text
    assert f"| {FETCH_SAID} |" in text
    assert "Injected: query x1.3 from 30 s to 48 s, in policy_store.fetch (x1.5)" in text


# -- the PNG ----------------------------------------------------------------------------------


def test_the_png_names_the_slowdown_and_each_alert_in_a_legend_off_the_data(tmp_path: Path) -> None:
    plan = default_plan(60)
    alerts = [
        event(40, "firing", where=True),
        event(40, "firing", "0.95"),
        event(42, "firing", "0.99", "info"),
        event(56, "resolved", "0.99"),
        event(58, "resolved", "0.95"),
    ]
    run = timeline(plan, alerts)
    fig = figure(run, plan)
    (legend,) = fig.legends
    labels = [t.get_text() for t in legend.get_texts()]
    assert "slowdown: query x1.3 from 30 s to 48 s, in policy_store.fetch (x1.5)" in labels
    assert "query p50, p95 alert fired (warning) at 40 s, in policy_store.fetch" in labels
    assert "query p99 alert fired (info) at 42 s" in labels
    assert "query p99 alert resolved at 56 s" in labels and "query p95 alert resolved at 58 s" in labels
    assert "still firing at exit: query (p50)" in labels
    FigureCanvasAgg(fig).draw()
    box = legend.get_window_extent()
    assert all(box.y1 <= ax.get_window_extent().y0 for ax in fig.axes), "the legend is below every plot"
    # The baseline band is faint and under the lines.
    for ax in fig.axes:
        line_z = min(line.get_zorder() for line in ax.lines)
        for patch in ax.patches:
            assert patch.get_zorder() < line_z and patch.get_alpha() <= 0.1
    assert "The alert on query (p50) was still firing at exit" in fig._suptitle.get_text().replace("\n", " ")
    png = plot(run, plan, tmp_path / "latency.png")
    assert png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


# -- the real thing, briefly ------------------------------------------------------------------


def run_cli(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess, dict, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "NETHICAL_OTEL_"))}
    out = tmp_path / "demo-output"
    command = [sys.executable, "-m", "nethical_otel.cli", "demo", "--port", "0", "--seed", "7",
               "--output-dir", str(out), *args]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=90, env=env)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    return result, json.loads((out / "summary.json").read_text()), (out / "summary.md").read_text()


def _said_at_the_end(result: subprocess.CompletedProcess, summary: dict, md: str) -> None:
    lines = result.stdout.rstrip().splitlines()
    assert lines[-1].startswith("Wrote ")
    assert lines[-1 - len(summary["outcome"]) : -1] == summary["outcome"]
    for line in summary["outcome"]:
        assert f"- {line}" in md


@pytest.mark.slow
def test_a_run_too_short_warns_first_and_says_why_at_the_end(tmp_path: Path) -> None:
    result, summary, md = run_cli(tmp_path, "--duration", "4", "--window", "3")
    lines = result.stdout.splitlines()
    warning = next(i for i, line in enumerate(lines) if line.startswith("Warning: a 4 s run is too short"))
    first_status = next(i for i, line in enumerate(lines) if line.startswith("["))
    assert warning < first_status, "warned before the run"
    assert "try --duration" in lines[warning]
    _said_at_the_end(result, summary, md)
    assert summary["alerts"] == []
    assert summary["outcome"][0].startswith("0 alerts fired: a 4 s run is too short for the detector")


@pytest.mark.slow
def test_an_alert_cut_off_by_the_end_of_the_run_is_named(tmp_path: Path) -> None:
    # The slowdown lasts to the end of the run: whatever fires cannot resolve before exit.
    result, summary, md = run_cli(
        tmp_path, "--duration", "12", "--window", "2", "--inject-at", "7", "--inject-for", "5"
    )
    assert "Warning: an alert resolves about 4 s after the slowdown ends (at 12 s)" in result.stdout
    _said_at_the_end(result, summary, md)
    firing = summary["still_firing"]
    assert firing, f"the slowdown did not fire on this machine: {summary['outcome']}"
    # The slowed query among them; the others share its process (see test_demo.py) or host.
    by_action: dict[str, list[str]] = {}
    for a in firing:
        by_action.setdefault(a["action"], []).append(f"p{float(a['quantile']) * 100:g}")
    assert "query" in by_action, firing
    last = summary["outcome"][-1]
    assert last.startswith("The alert on" if len(firing) == 1 else "The alerts on"), last
    assert all(f"{action} ({', '.join(qs)})" in last for action, qs in by_action.items()), last
    assert "still firing at exit" in result.stdout
    assert math.isclose(summary["timing"]["window_s"], 2)
