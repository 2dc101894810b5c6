"""``nethical-otel demo``: the whole loop in one process (the logic is ``example.demo``)."""

from __future__ import annotations

import os
from pathlib import Path

import click

from nethical_otel.cli.main import PATH


@click.command()
@click.option("--config", "config_file", type=PATH, metavar="FILE", help="YAML settings file.")
@click.option("--duration", type=click.FloatRange(min=1), default=120.0, show_default=True, help="Seconds.")
@click.option(
    "--rps", type=click.FloatRange(min=1), default=200.0, show_default=True, help="Total request rate."
)
@click.option(
    "--agents", type=click.IntRange(min=1), default=16, show_default=True, help="Concurrent callers."
)
@click.option(
    "--window",
    type=click.FloatRange(min=1),
    default=10.0,
    show_default=True,
    help="Detector window, seconds.",
)
@click.option(
    "--inject-slowdown",
    type=click.FloatRange(min=0.01),
    default=1.3,
    show_default=True,
    help="Slow the injected action by this factor.",
)
@click.option(
    "--inject-at", type=click.FloatRange(min=0), help="Seconds after start [default: half the duration]."
)
@click.option(
    "--inject-for",
    type=click.FloatRange(min=0, min_open=True),
    help="Seconds the slowdown lasts [default: 30 % of the duration].",
)
@click.option(
    "--inject-action",
    default="query",
    show_default=True,
    help="Action type to slow (query, tool_call, generate), or 'all'.",
)
@click.option(
    "--inject-step",
    type=click.Choice(["policy_store.fetch", "risk.model", "none"]),
    default="policy_store.fetch",
    show_default=True,
    help="Sub-step of the action the slowdown goes into (policy_store.fetch or risk.model; it is "
    "slowed so that the whole action is --inject-slowdown slower), or 'none' for all of it.",
)
@click.option("--no-inject", is_flag=True, help="Run steady, with no slowdown: must end with zero alerts.")
@click.option("--alertmanager", "alertmanager_url", help="Also send alerts to this Alertmanager (base URL).")
@click.option(
    "--output-dir",
    type=PATH,
    metavar="DIR",
    default=Path("demo-output"),
    show_default=True,
    help="Where the PNG and the summaries go.",
)
@click.option(
    "--port", type=click.IntRange(0, 65535), help="Port of /metrics [default: 9464, or the setting]."
)
@click.option(
    "--refresh",
    type=click.FloatRange(min=0.1),
    default=1.0,
    show_default=True,
    help="Seconds between updates.",
)
@click.option("--seed", type=int, help="Seed the simulated latencies for a repeatable run.")
def demo(
    config_file,
    duration,
    rps,
    agents,
    window,
    inject_slowdown,
    inject_at,
    inject_for,
    inject_action,
    inject_step,
    no_inject,
    alertmanager_url,
    output_dir,
    port,
    refresh,
    seed,
) -> None:
    """Watch the whole loop in one process: instrument, load, detect, alert, resolve.

    The example governance service runs under an open-loop load with the embedded detector.
    It learns a baseline per action; at --inject-at one action is slowed by
    --inject-slowdown, in one of its sub-steps (--inject-step); the regression alert fires
    (shown with its confidence interval and the sub-step it found the time in); the slowdown
    ends and the alert resolves. /metrics serves everything for Prometheus.
    A PNG and a markdown summary are written to --output-dir.
    """
    from nethical_otel.cli.bench import status_console
    from nethical_otel.embedded import setup
    from nethical_otel.example.demo import (
        INJECT_AT_FRACTION,
        INJECT_FOR_FRACTION,
        DemoPlan,
        Injection,
        outcome,
        output_paths,
        run_demo,
        write_outputs,
    )
    from nethical_otel.files import check_writable

    for path in output_paths(output_dir):  # before the run: a bad path must not cost the demo
        check_writable(path)
    step = max(window / 5, 0.5)
    overrides = {
        "detector_window_s": window,
        "detector_step_s": step,
        "detector_for_s": 2 * step,
        "detector_keep_firing_for_s": 3 * step,
    }
    if not _service_name_configured():
        overrides["service_name"] = "nethical-demo"
    if port is not None:
        overrides["prometheus_port"] = port
    if alertmanager_url:
        overrides["alertmanager_url"] = alertmanager_url
    inject = None
    if not no_inject:
        inject = Injection(
            inject_slowdown,
            INJECT_AT_FRACTION * duration if inject_at is None else inject_at,
            INJECT_FOR_FRACTION * duration if inject_for is None else inject_for,
            None if inject_action == "all" else inject_action,
            proportional=inject_at is None and inject_for is None,
            step=None if inject_step == "none" else inject_step,
        )
    plan = DemoPlan(duration, rps, agents, window, refresh, seed, inject, output_dir)
    telemetry = setup(config_file, detector=True, **overrides)
    try:
        timeline = run_demo(telemetry, plan, status_console())
    finally:
        telemetry.shutdown()
    png, summary, _ = write_outputs(timeline, plan)
    for line in outcome(timeline, plan):
        click.echo(line)
    click.echo(f"Wrote {png} and {summary}")


def _service_name_configured() -> bool:
    return any(v in os.environ for v in ("OTEL_SERVICE_NAME", "NETHICAL_OTEL_SERVICE_NAME"))
