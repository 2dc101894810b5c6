"""The fleet commands: ``agent`` (the detector as its own process) and ``baseline create|show``.

Base install only: nothing here needs the CI extra.
"""

from __future__ import annotations

import sys

import click

from nethical_otel.cli.main import PATH
from nethical_otel.errors import NethicalOtelError, redact_url
from nethical_otel.text import plural


@click.command()
@click.option("--config", "config_file", type=PATH, metavar="FILE", help="YAML settings file.")
@click.option("--once", is_flag=True, help="Evaluate one step, print it and exit (a configuration check).")
@click.option(
    "--shard",
    metavar="I/N",
    help="Be replica I of N: evaluate only the series whose hash modulo N is I [default: agent_shard].",
)
def agent(config_file, once, shard) -> None:
    """Run the regression detector as its own process (fleet mode).

    Reads fleet-wide latency histograms from Prometheus (prometheus_url), compares each
    service/action/cohort with its baseline (baseline_file; learned when missing), and sends
    regression alerts to Alertmanager (alertmanager_url). Serves /metrics and /healthz on
    agent_host:agent_port. Stops cleanly on SIGTERM.
    """
    import logging

    from nethical_otel.config import load_settings
    from nethical_otel.detect.agent import Agent, tune_gc_for_the_agent

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    tune_gc_for_the_agent()  # this process is the agent's own
    agent = Agent(load_settings(config_file, **({"agent_shard": shard} if shard is not None else {})))
    try:
        if once:
            agent.run(max_steps=1)
            if agent.detector.last_error:
                raise NethicalOtelError(agent.detector.last_error)
            _print_reports(agent.detector.last_reports)
            return
        url = agent.serve()
        shown = redact_url(agent.settings.prometheus_url)
        owned = f" (shard {agent.shard})" if agent.shard.count > 1 else ""
        click.echo(f"nethical-otel agent{owned}: reading {shown}; metrics on {url}/metrics")
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


@click.group()
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
@click.option("--action", "action_name", help="Action (series) for a --from-run baseline.")
@click.option("--window", type=click.FloatRange(min=1), default=300.0, show_default=True, help="Seconds.")
@click.option(
    "--service-label", default="job", show_default=True, help="Prometheus label naming the service."
)
@click.option("--version", "version_", default="", help="Version or git sha to record with the baseline.")
@click.option("--force", is_flag=True, help="Replace an existing file.")
def baseline_create(
    output, prometheus_url, metrics_url, run_csv, service, action_name, window, service_label, version_, force
) -> None:
    """Record a baseline: the live window of a running service or fleet, or a benchmark run.

    --from-prometheus and --from-metrics record every series the service records, under the
    keys the detector looks up. --from-run records one series, SERVICE/ACTION/COHORT, holding
    the run's end-to-end latency over all the action types it drove: it matches the detector
    only for a service that records that single series (see the Baselines section of
    https://github.com/nethical/nethical-otel/blob/main/docs/detector.md).
    """
    from nethical_otel.detect import capture
    from nethical_otel.detect.baseline import check_writable

    if sum(map(bool, (prometheus_url, metrics_url, run_csv))) != 1:
        raise click.UsageError("give exactly one of --from-prometheus, --from-metrics or --from-run")
    if run_csv and not (service and action_name):
        raise click.UsageError("--from-run needs --service and --action (the series the baseline is for)")
    check_writable(output, overwrite=force, how="--force")
    if run_csv:
        from nethical_otel.bench.results import read_run

        captured = capture.from_run(read_run(run_csv), str(run_csv), service, action_name, version_)
    elif prometheus_url:
        captured = capture.from_prometheus(prometheus_url, window, service_label, version_)
    else:
        captured = capture.from_metrics(metrics_url, window, version_, wait=_wait_with_progress)
    captured.baselines.save(output, overwrite=force)
    steps = sum(1 for b in captured.baselines if b.key.parent)
    of = f" ({steps} of them sub-steps)" if steps else ""
    click.echo(f"wrote {plural(len(captured.baselines), 'baseline')}{of} to {output}")


def _wait_with_progress(seconds: float) -> None:
    """Sleep between the two scrapes, showing how long is left (a bar on a terminal)."""
    import time

    deadline = time.monotonic() + seconds
    label = f"scraped once; scraping again in {seconds:.0f} s"
    with click.progressbar(length=int(seconds), label=label, file=sys.stderr, show_eta=True) as bar:
        done = 0
        while (left := deadline - time.monotonic()) > 0:
            time.sleep(min(1.0, left))
            now = int(seconds - max(left - 1.0, 0.0))
            bar.update(now - done)
            done = now


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


