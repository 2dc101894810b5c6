"""``nethical-otel``: the command line.

Errors a user can cause (bad config, bad file, unreachable server) print one line on
stderr and exit with status 2; never a traceback.
"""

from __future__ import annotations

import sys

import click

from nethical_otel._version import __version__
from nethical_otel.errors import NethicalOtelError


class _Group(click.Group):
    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except NethicalOtelError as exc:
            click.echo(f"nethical-otel: error: {exc}", err=True)
            ctx.exit(2)


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
@click.option("--config", "config_file", type=click.Path(dir_okay=False), help="YAML settings file.")
@click.option(
    "--duration", type=click.FloatRange(min=0.1), help="Stop after this many seconds [default: Ctrl-C]."
)
@click.option(
    "--rps", type=click.FloatRange(min=1), default=200.0, show_default=True, help="Total request rate."
)
@click.option(
    "--agents", type=click.IntRange(min=1), default=8, show_default=True, help="Concurrent callers."
)
@click.option(
    "--window",
    type=click.FloatRange(min=1),
    default=10.0,
    show_default=True,
    help="Rolling window of the live table, seconds.",
)
@click.option(
    "--refresh",
    type=click.FloatRange(min=0.1),
    default=1.0,
    show_default=True,
    help="Seconds between table updates.",
)
@click.option(
    "--port", type=click.IntRange(0, 65535), help="Port of /metrics [default: 9464, or the setting]."
)
@click.option("--seed", type=int, help="Seed the simulated latencies for a repeatable run.")
def demo(config_file, duration, rps, agents, window, refresh, port, seed) -> None:
    """Run the example governance service under steady load, watched live.

    Every process_action call becomes a span and a latency observation; /metrics serves
    them for Prometheus; the table shows p50/p95/p99, throughput and error rate per action
    over a rolling window. Stops after --duration or on Ctrl-C.
    """
    from nethical_otel.demo import run_demo
    from nethical_otel.telemetry import setup

    overrides = {"service_name": "nethical-demo"} if not _service_name_configured() else {}
    if port is not None:
        overrides["prometheus_port"] = port
    telemetry = setup(config_file, **overrides)
    try:
        run_demo(
            telemetry,
            duration_s=duration,
            rps=rps,
            agents=agents,
            window_s=window,
            refresh_s=refresh,
            seed=seed,
        )
    finally:
        telemetry.shutdown()


def _service_name_configured() -> bool:
    import os

    return any(v in os.environ for v in ("OTEL_SERVICE_NAME", "NETHICAL_OTEL_SERVICE_NAME"))


if __name__ == "__main__":
    sys.exit(main())
