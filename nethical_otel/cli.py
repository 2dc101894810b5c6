"""``nethical-otel``: the command line.

Errors a user can cause (bad config, bad file, unreachable server) print one line on
stderr and exit with status 2; never a traceback.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import click

from nethical_otel._version import __version__
from nethical_otel.errors import NethicalOtelError, redact_text, redact_url
from nethical_otel.stats import StatsError

# Top-level modules that only the CI extra installs (`pip install 'nethical-otel[ci]'`, see
# pyproject.toml): load, demo and `history plot` need them, and import them before they start.
CI_MODULES = frozenset({"matplotlib", "rich"})

# The CI commands, imported when run (so `--help` and the agent load none of bench/):
# name -> (module, attribute, the one-line summary `nethical-otel --help` lists).
LAZY_COMMANDS = {
    "budget": (
        "nethical_otel.bench.commands",
        "budget",
        "Check a run against performance budgets; exit 1 when one is exceeded.",
    ),
    "compare": (
        "nethical_otel.bench.commands",
        "compare",
        "Compare two runs (CSV + histogram sidecar) under the threshold policy.",
    ),
    "history": (
        "nethical_otel.bench.commands",
        "history",
        "Benchmark history: add runs, detect change points, plot trends.",
    ),
    "load": (
        "nethical_otel.bench.commands",
        "load",
        "Drive a target with open-loop load and record latency, throughput and errors.",
    ),
    "memory": (
        "nethical_otel.bench.commands",
        "memory",
        "Run N actions and report memory: RSS and tracemalloc, top allocation sites, a leak check.",
    ),
}

# Paths the commands check themselves: a bad one is our one-line error naming it (click's own
# checks print a usage message of several lines).
PATH = click.Path(path_type=Path)

_COMMAND = "nethical_otel.command"  # ctx.meta key: the command line's command, for messages


def missing_extra(exc: ImportError) -> str | None:
    """The CI-only module whose absence ``exc`` reports, else None."""
    name = (getattr(exc, "name", None) or "").partition(".")[0]
    return name if isinstance(exc, ModuleNotFoundError) and name in CI_MODULES else None


class _Group(click.Group):
    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (NethicalOtelError, StatsError) as exc:
            click.echo(f"nethical-otel: error: {redact_text(exc)}", err=True)
            ctx.exit(2)
        except ModuleNotFoundError as exc:
            module = missing_extra(exc)
            if module is None:
                raise
            command = ctx.meta.get(_COMMAND, "this command")
            click.echo(
                f"nethical-otel: error: 'nethical-otel {command}' needs the CI extra ({module} is not "
                "installed): pip install 'nethical-otel[ci]'",
                err=True,
            )
            ctx.exit(2)

    def resolve_command(self, ctx: click.Context, args: list[str]):
        name, command, rest = super().resolve_command(ctx, args)
        words = [name]
        if isinstance(command, click.Group) and rest and rest[0] in command.list_commands(ctx):
            words.append(rest[0])  # `history plot`
        ctx.meta[_COMMAND] = " ".join(filter(None, words))
        return name, command, rest

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self.commands, *LAZY_COMMANDS})

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in self.commands and name in LAZY_COMMANDS:
            module, attribute, _ = LAZY_COMMANDS[name]
            self.add_command(getattr(importlib.import_module(module), attribute), name)
        return self.commands.get(name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # As click's, but a CI command not yet imported is listed from its summary.
        commands = {name: click.Command(name, help=entry[2]) for name, entry in LAZY_COMMANDS.items()}
        commands.update(self.commands)
        shown = [(name, commands[name]) for name in sorted(commands) if not commands[name].hidden]
        limit = formatter.width - 6 - max(len(name) for name, _ in shown)
        with formatter.section("Commands"):
            formatter.write_dl([(name, command.get_short_help_str(limit)) for name, command in shown])


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, "-V", "--version", prog_name="nethical-otel")
def main() -> None:
    """Performance monitoring for Python services on OpenTelemetry.

    Instrument a service's hot function, export spans and latency histograms over OTLP and
    Prometheus, detect regressions against a baseline, and stop slow pull requests in CI.

    Settings come from OTEL_* and NETHICAL_OTEL_* environment variables and an optional YAML
    file (--config or NETHICAL_OTEL_CONFIG); see docs/configuration.md.
    """


@main.command()
def version() -> None:
    """Print the version of nethical-otel and of the OpenTelemetry SDK it runs on."""
    from importlib.metadata import version as dist_version

    click.echo(f"nethical-otel {__version__} (opentelemetry-sdk {dist_version('opentelemetry-sdk')})")


@main.command()
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
    type=click.FloatRange(min=0),
    help="Seconds the slowdown lasts [default: 30 % of the duration].",
)
@click.option(
    "--inject-action",
    default="query",
    show_default=True,
    help="Action type to slow (query, tool_call, generate), or 'all'.",
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
    --inject-slowdown; the regression alert fires (shown with its confidence interval);
    the slowdown ends and the alert resolves. /metrics serves everything for Prometheus.
    A PNG and a markdown summary are written to --output-dir.
    """
    from nethical_otel.demo import DemoPlan, Injection, output_paths, run_demo, write_outputs
    from nethical_otel.embedded import setup
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
            duration / 2 if inject_at is None else inject_at,
            0.3 * duration if inject_for is None else inject_for,
            None if inject_action == "all" else inject_action,
        )
    plan = DemoPlan(duration, rps, agents, window, refresh, seed, inject, output_dir)
    telemetry = setup(config_file, detector=True, **overrides)
    try:
        timeline = run_demo(telemetry, plan, _console())
    finally:
        telemetry.shutdown()
    png, summary, _ = write_outputs(timeline, plan)
    fired = sum(a.state == "firing" for a in timeline.alerts)
    click.echo(f"{fired} alert(s) fired. Wrote {png} and {summary}")


@main.group()
def config() -> None:
    """Inspect settings: the effective values, and the reference of every key."""


@config.command("show")
@click.option("--config", "config_file", type=PATH, metavar="FILE", help="YAML settings file.")
def config_show(config_file) -> None:
    """Print the settings in effect here (file + environment + defaults); secrets redacted."""
    from nethical_otel.config import load_settings
    from nethical_otel.detect.build import check_settings

    settings = load_settings(config_file)
    check_settings(settings)  # the policy and secret files too: what the agent would refuse
    for name, value in settings.display_items():
        click.echo(f"{name}: {value!r}")


@config.command("reference")
def config_reference() -> None:
    """Print the configuration reference (markdown; docs/configuration.md is this output)."""
    from nethical_otel.config import reference_markdown

    click.echo(reference_markdown(), nl=False)


@main.command()
@click.option("--config", "config_file", type=PATH, metavar="FILE", help="YAML settings file.")
@click.option("--once", is_flag=True, help="Evaluate one step, print it and exit (a configuration check).")
def agent(config_file, once) -> None:
    """Run the regression detector as its own process (fleet mode).

    Reads fleet-wide latency histograms from Prometheus (prometheus_url), compares each
    service/action/cohort with its baseline (baseline_file; learned when missing), and sends
    regression alerts to Alertmanager (alertmanager_url). Serves /metrics and /healthz on
    agent_host:agent_port. Stops cleanly on SIGTERM.
    """
    import logging

    from nethical_otel.config import load_settings
    from nethical_otel.detect.agent import Agent

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    agent = Agent(load_settings(config_file))
    try:
        if once:
            agent.run(max_steps=1)
            if agent.detector.last_error:
                raise NethicalOtelError(agent.detector.last_error)
            _print_reports(agent.detector.last_reports)
            return
        url = agent.serve()
        shown = redact_url(agent.settings.prometheus_url)
        click.echo(f"nethical-otel agent: reading {shown}; metrics on {url}/metrics")
        agent.install_signal_handlers()
        agent.run()
    finally:
        agent.close()


def _print_reports(reports) -> None:
    for report in reports:
        verdicts = ", ".join(f"{f.metric}={f.verdict}" for f in report.findings) or (
            "baseline learned" if report.learned else "no baseline yet"
        )
        calls = report.window.histogram.count
        click.echo(f"{report.key}: {calls} calls in {report.window.seconds:.0f} s; {verdicts}")


@main.group()
def baseline() -> None:
    """Create and inspect baselines (what normal looks like per service/action/cohort)."""


@baseline.command("create")
@click.option(
    "--output", "-o", required=True, type=PATH, metavar="FILE", help="Baseline file to write."
)
@click.option("--from-prometheus", "prometheus_url", help="Prometheus base URL (fleet-wide window).")
@click.option("--from-metrics", "metrics_url", help="A service's /metrics URL, scraped twice a window apart.")
@click.option(
    "--from-run", "run_csv", type=PATH, metavar="FILE", help="A `nethical-otel load` results CSV."
)
@click.option("--service", help="Service name for a --from-run baseline.")
@click.option(
    "--action",
    "action_name",
    default="process_action",
    show_default=True,
    help="Action for a --from-run baseline.",
)
@click.option("--window", type=click.FloatRange(min=1), default=300.0, show_default=True, help="Seconds.")
@click.option(
    "--service-label", default="job", show_default=True, help="Prometheus label naming the service."
)
@click.option("--version", "version_", default="", help="Version or git sha to record with the baseline.")
@click.option("--force", is_flag=True, help="Replace an existing file.")
def baseline_create(
    output, prometheus_url, metrics_url, run_csv, service, action_name, window, service_label, version_, force
) -> None:
    """Record a baseline: the live window of a running service, or a benchmark run."""
    import time

    from nethical_otel.detect.baseline import Baseline, BaselineSet, check_writable
    from nethical_otel.detect.sources import PrometheusSource, scrape, window_between

    if sum(map(bool, (prometheus_url, metrics_url, run_csv))) != 1:
        raise click.UsageError("give exactly one of --from-prometheus, --from-metrics or --from-run")
    if run_csv and not service:
        raise click.UsageError("--from-run needs --service (the run file does not name one)")
    check_writable(output, overwrite=force)
    if run_csv:
        from nethical_otel.bench.results import read_run
        from nethical_otel.detect.baseline import SeriesKey
        from nethical_otel.detect.sources import Window

        run = read_run(run_csv)
        if run.histogram is None or not run.duration_s:
            raise NethicalOtelError(
                f"{run_csv}: no latency histogram sidecar next to it; a baseline needs one"
            )
        windows = {SeriesKey(service, action_name, run.cohort): Window(run.histogram, run.duration_s)}
        source = f"run:{run_csv}"
        version_ = version_ or run.git_sha
    elif prometheus_url:
        windows = PrometheusSource(prometheus_url, window, service_label=service_label).read(time.time())
        source = f"prometheus:{redact_url(prometheus_url)}"
    else:
        first = scrape(metrics_url)
        click.echo(f"scraped {metrics_url}; scraping again in {window:.0f} s", err=True)
        time.sleep(window)
        windows = window_between(first, scrape(metrics_url))
        source = f"scrape:{redact_url(metrics_url)}"
    baselines = BaselineSet(
        Baseline(key, w.histogram, w.seconds, source=source, version=version_)
        for key, w in windows.items()
        if w.histogram.count
    )
    if not len(baselines):
        raise NethicalOtelError(f"no calls of nethical_action_duration_seconds in the window from {source}")
    baselines.save(output, overwrite=force)
    click.echo(f"wrote {len(baselines)} baselines to {output}")


@baseline.command("show")
@click.argument("path", type=PATH)
def baseline_show(path) -> None:
    """Print the baselines in a file."""
    import datetime

    from nethical_otel.detect.baseline import BaselineSet

    header = ("series", "calls", "p50 ms", "p95 ms", "p99 ms", "req/s", "errors", "created", "source")
    rows = []
    for b in BaselineSet.load(path):
        p50, p95, p99 = b.histogram.quantiles([0.5, 0.95, 0.99]) * 1000
        created = datetime.datetime.fromtimestamp(b.created_at, tz=datetime.timezone.utc)
        rows.append(
            (
                str(b.key),
                str(b.histogram.count),
                f"{p50:.2f}",
                f"{p95:.2f}",
                f"{p99:.2f}",
                f"{b.throughput_rps:.1f}",
                f"{b.error_rate:.2%}",
                created.strftime("%Y-%m-%d %H:%M"),
                b.source + (f" @ {b.version}" if b.version else ""),
            )
        )
    # Plain text (no rich): the agent's base install has this command too.
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]
    left = {"series", "created", "source"}
    click.echo(str(path))
    for row in (header, *rows):
        cells = (c.ljust(w) if h in left else c.rjust(w) for h, c, w in zip(header, row, widths, strict=True))
        click.echo("  ".join(cells).rstrip())


def _console():
    """A terminal-width console, or a wide one when the output goes to a file or a pipe."""
    from rich.console import Console

    console = Console()
    return console if console.is_terminal else Console(width=200)


def _service_name_configured() -> bool:
    import os

    return any(v in os.environ for v in ("OTEL_SERVICE_NAME", "NETHICAL_OTEL_SERVICE_NAME"))


if __name__ == "__main__":
    sys.exit(main())
