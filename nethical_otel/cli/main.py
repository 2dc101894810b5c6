"""``nethical-otel``: the command line (the group, ``version`` and ``config``).

The other commands live beside this module and are imported when run, so ``--help`` and the
agent load nothing of the CI side: ``detect`` (agent, baseline), ``bench`` (load, compare,
budget, history, memory) and ``demo``.

Errors a user can cause (bad config, bad file, unreachable server) print one line on
stderr and exit with status 2; never a traceback.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import click

from nethical_otel._version import __version__
from nethical_otel.errors import NethicalOtelError, redact_text
from nethical_otel.stats import StatsError

# Top-level modules that only the CI extra installs (`pip install 'nethical-otel[ci]'`, see
# pyproject.toml): load, demo and `history plot` need them, and import them before they start.
CI_MODULES = frozenset({"matplotlib", "rich"})

# The commands imported when run: name -> (module, attribute, the one-line summary that
# `nethical-otel --help` lists; a test checks it is the command's own).
LAZY_COMMANDS = {
    "agent": (
        "nethical_otel.cli.detect",
        "agent",
        "Run the regression detector as its own process (fleet mode).",
    ),
    "baseline": (
        "nethical_otel.cli.detect",
        "baseline",
        "Create and inspect baselines (what normal looks like per service/action/cohort).",
    ),
    "budget": (
        "nethical_otel.cli.bench",
        "budget",
        "Check a run against performance budgets; exit 1 when one is exceeded.",
    ),
    "compare": (
        "nethical_otel.cli.bench",
        "compare",
        "Compare two runs (CSV + histogram sidecar) under the threshold policy.",
    ),
    "demo": (
        "nethical_otel.cli.demo",
        "demo",
        "Watch the whole loop in one process: instrument, load, detect, alert, resolve.",
    ),
    "history": (
        "nethical_otel.cli.bench",
        "history",
        "Benchmark history: add runs, detect change points, plot trends.",
    ),
    "load": (
        "nethical_otel.cli.bench",
        "load",
        "Drive a target with open-loop load and record latency, throughput and errors.",
    ),
    "memory": (
        "nethical_otel.cli.bench",
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


def version_line() -> str:
    """What ``nethical-otel version`` and ``nethical-otel -V`` print."""
    from importlib.metadata import version as dist_version

    return f"nethical-otel {__version__} (opentelemetry-sdk {dist_version('opentelemetry-sdk')})"


def _check_environment() -> None:
    """A mistyped NETHICAL_OTEL_* variable is an error on the command line (a service only
    warns: ``load_settings(unknown="warn")``)."""
    import os

    from nethical_otel.config import unknown_variable_message, unknown_variables

    names = unknown_variables(os.environ)
    if names:
        raise NethicalOtelError(unknown_variable_message(names[0]))


def _print_version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value and not ctx.resilient_parsing:
        click.echo(version_line())
        ctx.exit()


class _Group(click.Group):
    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        """As click's, but a usage error is one line on stderr (ours), then exit 2."""
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.UsageError as exc:
            where = exc.ctx.command_path if exc.ctx is not None else "nethical-otel"
            message = exc.format_message().rstrip(".")
            click.echo(f"nethical-otel: error: {message} (see '{where} --help')", err=True)
            sys.exit(exc.exit_code)
        except click.ClickException as exc:
            exc.show()
            sys.exit(exc.exit_code)
        except click.Abort:
            click.echo("Aborted!", err=True)
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)

    def invoke(self, ctx: click.Context):
        try:
            _check_environment()
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
@click.option(
    "-V",
    "--version",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=_print_version,
    help="Print the version and exit (as `nethical-otel version`).",
)
def main() -> None:
    """Performance monitoring for Python services on OpenTelemetry.

    Instrument a service's hot function, export spans and latency histograms over OTLP and
    Prometheus, detect regressions against a baseline, and stop slow pull requests in CI.

    Settings come from OTEL_* and NETHICAL_OTEL_* environment variables and an optional YAML
    file (--config or NETHICAL_OTEL_CONFIG): `nethical-otel config reference` lists every key.
    """


@main.command()
def version() -> None:
    """Print the version of nethical-otel and of the OpenTelemetry SDK it runs on."""
    click.echo(version_line())


@main.group()
def config() -> None:
    """Inspect settings: the effective values, and the reference of every key."""


@config.command("show")
@click.option("--config", "config_file", type=PATH, metavar="FILE", help="YAML settings file.")
def config_show(config_file) -> None:
    """Print the settings in effect here (file + environment + defaults) as a YAML config file.

    Secrets are left out; the policy is spelled out in full. The output can be fed back with
    --config.
    """
    from nethical_otel.config import load_settings
    from nethical_otel.detect.build import check_settings

    settings = load_settings(config_file)
    check_settings(settings)  # the policy and secret files too: what the agent would refuse
    click.echo(settings.to_yaml(), nl=False)


@config.command("reference")
def config_reference() -> None:
    """Print the configuration reference (markdown; docs/configuration.md is this output)."""
    from nethical_otel.config import reference_markdown

    click.echo(reference_markdown(), nl=False)


