"""The CI commands: ``load``, ``compare``, ``budget``, ``history add|plot|detect``, ``memory``.

They need the CI extra (rich, matplotlib); ``cli.main`` imports this module only to run one.

Exit codes: 0 fine; 1 a failing condition (a critical regression, a budget exceeded, a
leak with ``--strict``); 2 bad input (the CLI prints one line naming the file or option).
"""

from __future__ import annotations

import contextlib
import json
import math
from pathlib import Path

import click

from nethical_otel.bench.results import BenchError
from nethical_otel.cli.main import PATH
from nethical_otel.files import check_writable
from nethical_otel.text import plural

# Status lines written to a file or a pipe (a CI log) are this wide unless COLUMNS says.
PLAIN_WIDTH = 100


def status_console(stderr: bool = False):
    """A rich console: terminal-width on a terminal, else ``COLUMNS`` or ``PLAIN_WIDTH`` wide."""
    import os

    from rich.console import Console

    console = Console(stderr=stderr)
    if console.is_terminal:
        return console
    width = os.environ.get("COLUMNS", "")
    return Console(stderr=stderr, width=int(width) if width.isdigit() and int(width) > 0 else PLAIN_WIDTH)


def _stderr_console():
    return status_console(stderr=True)


def _ms(value: float | None) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.2f} ms"


# -- load ------------------------------------------------------------------------------------


@click.command()
@click.option(
    "--agents",
    type=click.IntRange(min=1),
    default=100,
    show_default=True,
    help="Concurrent callers (threads, or asyncio tasks for an async target).",
)
@click.option(
    "--rps",
    type=click.FloatRange(min=0, min_open=True),
    default=50.0,
    show_default=True,
    help="Requests per second, all agents together (open loop).",
)
@click.option(
    "--duration",
    type=click.FloatRange(min=0, min_open=True),
    default=30.0,
    show_default=True,
    help="Measured seconds, after the warm-up.",
)
@click.option(
    "--warmup",
    type=click.FloatRange(min=0),
    default=None,
    help="Warm-up seconds, run but not recorded [default: 10% of --duration, at most 2].",
)
@click.option(
    "--cohort", default="benchmark", show_default=True, help="Cohort passed to the target and recorded."
)
@click.option(
    "--target",
    metavar="MODULE:CALLABLE",
    help="module:function or module:Class.method (the class is created without arguments) "
    "[default: the example service's IntegratedGovernance.process_action].",
)
@click.option(
    "--url", help="Load an HTTP endpoint instead: POST JSON {agent_id, action, cohort, action_type}."
)
@click.option("--shadow", is_flag=True, help="Pass shadow=True to the target.")
@click.option("--ml-blend", is_flag=True, help="Pass ml_blend=True to the target.")
@click.option(
    "--output",
    "-o",
    type=PATH,
    metavar="FILE",
    help="Write the summary row here (CSV) and the histogram beside it (NAME.histogram.json).",
)
@click.option(
    "--drain-timeout",
    type=click.FloatRange(min=0),
    default=10.0,
    show_default=True,
    help="Seconds to wait for requests still running after the schedule ends; "
    "unfinished ones count as errors.",
)
@click.option(
    "--timeout",
    "request_timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=30.0,
    show_default=True,
    help="HTTP request timeout, seconds (--url only).",
)
@click.option("--branch", help="Branch name to record [default: from git, or GITHUB_HEAD_REF].")
@click.option(
    "--profile",
    is_flag=True,
    help="After the measured run, run the target again under cProfile (one call at a time) and "
    "write the CPU profile beside --output (NAME.profile.json), for `compare`'s "
    "\"Where the time went\". The measured latencies are taken without the profiler.",
)
@click.option(
    "--profile-duration",
    "profile_duration",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    metavar="SECONDS",
    help="Length of the profiling phase [default: 20% of --duration, 2 to 30 s].",
)
@click.option("--quiet", "-q", is_flag=True, help="No progress bar and no summary table.")
def load(
    agents,
    rps,
    duration,
    warmup,
    cohort,
    target,
    url,
    shadow,
    ml_blend,
    output,
    drain_timeout,
    request_timeout,
    branch,
    profile,
    profile_duration,
    quiet,
) -> None:
    """Drive a target with open-loop load and record latency, throughput and errors.

    Requests start on a fixed schedule (RPS), whatever the responses do; latency counts from
    the intended start, so stalls show up in the percentiles (no coordinated omission).
    """
    import rich  # noqa: F401  (progress and summary: a missing CI extra fails now, not after the run)

    from nethical_otel.bench.cpuprofile import profile_path
    from nethical_otel.bench.loadgen import LoadConfig, LoadRun
    from nethical_otel.bench.results import sidecar_path, write_run

    if target and url:
        raise BenchError("give --target or --url, not both")
    if profile_duration is not None and not profile:
        raise BenchError("--profile-duration needs --profile")
    if profile and not output:
        raise BenchError(
            "--profile needs --output FILE: the profile is written beside it (NAME.profile.json)"
        )
    config = LoadConfig(
        target=target,
        url=url,
        agents=agents,
        rps=rps,
        duration_s=duration,
        warmup_s=warmup,
        cohort=cohort,
        shadow=shadow,
        ml_blend=ml_blend,
        drain_timeout_s=drain_timeout,
        request_timeout_s=request_timeout,
        branch=branch,
        profile=profile,
        profile_s=profile_duration,
    )
    run = LoadRun(config)
    if output:  # before the run: a bad path must not cost the whole run
        check_writable(output)
        check_writable(sidecar_path(output))
        if profile:
            check_writable(profile_path(output))
    result = run.run() if quiet else _run_with_progress(run)
    failed = result.requests > 0 and result.errors == result.requests
    side = write_run(result, output) if output and not failed else None
    cpu = _profile_phase(run, result, profile_path(output), quiet) if profile and not failed else None
    if not quiet:
        _print_summary(result, None if failed else output, side, cpu)
    if failed:  # nothing measured: keep the previous results rather than replace them with this
        kinds = list(result.details.get("error_types", {}))
        if result.details.get("unfinished"):
            kinds.append("unfinished at the drain deadline")
        every = f"all {counted(result.requests, 'request')}" if result.requests > 1 else "the one request"
        click.echo(
            f"nethical-otel: error: {every} to {config.target_label()} failed"
            + (f" ({', '.join(kinds)})" if kinds else "")
            + (f"; nothing written to {output}" if output else ""),
            err=True,
        )
        click.get_current_context().exit(1)


def _run_with_progress(run):
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn

    console = _stderr_console()
    columns = (
        TextColumn("[bold]load[/]"),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn(
            "{task.fields[rate]} req/s  p95 {task.fields[p95]}  lag p99 {task.fields[lag]}  "
            "errors {task.fields[errors]}"
        ),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task("load", total=run.n_total, rate="-", p95="-", lag="-", errors=0)

        def update(p) -> None:
            progress.update(
                task,
                completed=p.completed,
                rate="-" if math.isnan(p.rate_rps) else f"{p.rate_rps:,.0f}",
                p95=_ms(p.p95_ms),
                lag=_ms(p.lag_ms),
                errors=p.errors,
            )

        return run.run(update)


def _profile_phase(run, result, path: Path, quiet: bool):
    """The profiling phase after the measured run, written to ``path``: (profile, path), or
    None with a warning when it could not run (the results are written already)."""
    from nethical_otel.bench.cpuprofile import write_profile

    try:
        cpu = run.profile() if quiet else _profile_with_progress(run)
    except BenchError as exc:
        click.echo(f"nethical-otel: warning: {exc}", err=True)
        return None
    write_profile(cpu.for_run(result), path)
    if cpu.errors:
        click.echo(
            f"nethical-otel: warning: {counted(cpu.errors, 'call')} of {cpu.target_calls:,} in the "
            f"profiling phase failed; the profile in {path} includes them",
            err=True,
        )
    return cpu, path


def _profile_with_progress(run):
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn

    columns = (
        TextColumn("[bold]profiling[/]"),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[calls]} calls under cProfile (after the measured run)"),
        TimeRemainingColumn(),
    )
    seconds = run.config.profile_seconds
    with Progress(*columns, console=_stderr_console(), transient=False) as progress:
        task = progress.add_task("profile", total=seconds, calls="0")

        def update(p) -> None:
            progress.update(task, completed=min(p.elapsed_s, seconds), calls=f"{p.calls:,}")

        cpu = run.profile(update)
        progress.update(task, completed=seconds)
        return cpu


def counted(count: int, noun: str) -> str:
    """``text.plural`` with thousands separators: ``"1,234 requests"``, ``"1 request"``."""
    return f"{count:,} " + plural(count, noun).partition(" ")[2]


def _print_summary(result, output: Path | None, side: Path | None, cpu=None) -> None:
    from rich.table import Table

    d = result.details
    table = Table(title=f"Load test: {d.get('target')}", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    achieved = d.get("achieved_rps") or 0.0
    errors = f"{counted(result.errors, 'error')}, {result.error_rate:.2%}"
    requests = f"{counted(result.requests, 'request')} ({errors})"
    if d.get("warmup_requests"):  # the warm-up ran but is in none of the figures below
        requests += (
            f"; warm-up excluded: {counted(d['warmup_requests'], 'request')}, "
            f"{counted(d.get('warmup_errors') or 0, 'error')}"
        )
    rows = [
        (
            "Configuration",
            f"{counted(result.agents, 'agent')} ({d.get('mode')}), {result.target_rps:g} req/s target, "
            f"{result.duration_s:g} s measured after {d.get('warmup_s', 0):g} s warm-up",
        ),
        ("Requests", requests),
        ("Send rate", f"{achieved:,.1f} req/s ({achieved / result.target_rps:.1%} of target)"),
        ("Throughput", f"{result.throughput_rps:,.1f} req/s completed"),
        (
            "Latency",
            f"p50 {_ms(result.p50_latency_ms)}, p95 {_ms(result.p95_latency_ms)}, "
            f"p99 {_ms(result.p99_latency_ms)}, mean {_ms(result.mean_latency_ms)}, "
            f"max {_ms(result.max_latency_ms)}",
        ),
        (
            "Schedule lag",
            f"p50 {_ms(d.get('schedule_lag_p50_ms'))}, p99 {_ms(d.get('schedule_lag_p99_ms'))}, "
            f"max {_ms(d.get('schedule_lag_max_ms'))} (late starts; counted in latency)",
        ),
        ("Memory (RSS)", f"{result.memory_start_mb:.1f} -> {result.memory_end_mb:.1f} MB"),
        ("Commit", result.label()),
    ]
    if d.get("unfinished"):
        rows.append(
            (
                "Unfinished",
                f"{counted(d['unfinished'], 'request')} still running at the drain deadline (errors)",
            )
        )
    if d.get("error_types"):
        rows.append(("Error types", ", ".join(f"{k} x{v}" for k, v in d["error_types"].items())))
    if cpu is not None:
        profile, _ = cpu
        per_call = profile.profiled_s / profile.target_calls * 1e3
        rows.append(
            (
                "CPU profile",
                f"{counted(profile.target_calls, 'call')} in {profile.duration_s:.1f} s after the measured "
                f"run, one at a time under cProfile ({per_call:.3f} ms/call profiled)"
                + (f", {counted(profile.errors, 'error')}" if profile.errors else ""),
            )
        )
    if output:
        written = [str(output), *([str(side)] if side else []), *([str(cpu[1])] if cpu else [])]
        rows.append(("Written", " + ".join(written)))
    for key, value in rows:
        table.add_row(key, value)
    status_console().print(table)


# -- compare ---------------------------------------------------------------------------------


# The keys of a policy mapping (Policy.from_mapping's, plus PolicyBook's overrides).
POLICY_KEYS = frozenset({"quantiles", "error_rate", "throughput", "confidence", "min_samples", "overrides"})


def _policy(path: Path | None):
    """The ``PolicyBook`` of a ``--policy`` file: the agent's ``policy:`` layout (a default
    policy plus ``overrides``), either at the top of the file or under a top-level ``policy``
    key, so the agent's own settings file works as it is (its other settings are ignored)."""
    from nethical_otel.files import read_yaml
    from nethical_otel.stats import PolicyBook, StatsError

    if path is None:
        return PolicyBook.from_mapping(None)
    data = read_yaml(path, "policy file (YAML)", BenchError)
    where = str(path)
    if isinstance(data, dict) and "policy" in data:
        mixed = sorted(set(data) & POLICY_KEYS)
        if mixed:
            raise BenchError(
                f"{path}: both a top-level `policy` (an agent settings file) and policy key {mixed[0]!r}; "
                "put the thresholds under `policy:` or drop it"
            )
        data, where = data["policy"], f"{path}: policy"
    try:
        return PolicyBook.from_mapping(data, where=where)
    except StatsError as exc:
        raise BenchError(str(exc)) from None


def _budget(path: Path | None, **limits: float | None):
    from nethical_otel.bench.budget import Budget

    base = Budget.from_file(path) if path else Budget({})
    return base.merged(limits)


def _write_or_print(text: str, output: Path | None) -> None:
    from nethical_otel.files import write_atomic

    if output is None:
        click.echo(text, nl=False)
    else:
        write_atomic(output, text)


@click.command()
@click.argument("baseline", type=PATH)
@click.argument("current", type=PATH)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["markdown", "json", "text"]),
    default="markdown",
    show_default=True,
    help="markdown is the pull-request comment.",
)
@click.option(
    "--output",
    "-o",
    type=PATH,
    metavar="FILE",
    help="Write the report here instead of standard output.",
)
@click.option(
    "--policy",
    "policy_file",
    type=PATH,
    metavar="FILE",
    help="YAML thresholds, the agent's `policy` layout: {quantiles: {p95: {threshold: 0.15, "
    "severity: warning}}, error_rate: {threshold_pp: 1}, throughput: {drop: 0.3}, confidence: 0.99, "
    "overrides: [{match: {action: ...}, ...}]}; or the agent's settings file (its `policy:` key).",
)
@click.option(
    "--service",
    help="Service the runs measured, for the policy's overrides [default: none; overrides that "
    "match a service do not apply].",
)
@click.option(
    "--action",
    "action_name",
    help="Action the runs measured, for the policy's overrides [default: the name of the loaded "
    "callable, e.g. process_action].",
)
@click.option(
    "--budget",
    "budget_file",
    type=PATH,
    metavar="FILE",
    help="Budget file (see `nethical-otel budget`) applied to CURRENT; exceeding it fails.",
)
@click.option(
    "--fail-on",
    type=click.Choice(["critical", "warning", "info"]),
    default="critical",
    show_default=True,
    help="Exit 1 on a regression of this severity or worse.",
)
def compare(baseline, current, fmt, output, policy_file, service, action_name, budget_file, fail_on) -> None:
    """Compare two runs (CSV + histogram sidecar) under the threshold policy.

    The policy is the detector's: the default, or --policy with its overrides, the one that
    matches the series (--service, --action, and the run's cohort). When both runs have a CPU
    profile (`load --profile`) and something regressed, the report says where the time went.

    Exit 0: no regression, or only ones below --fail-on (warnings, info). Exit 1: a failing
    condition (by default the error rate rose by more than 1 percentage point) or a budget
    exceeded. Exit 2: bad input.
    """
    from nethical_otel.bench.compare import compare_runs, run_series
    from nethical_otel.bench.cpuprofile import load_profiles
    from nethical_otel.bench.report import render
    from nethical_otel.bench.results import read_run

    if output is not None:
        check_writable(output)
    policies = _policy(policy_file)
    budget = _budget(budget_file)
    base_run, current_run = read_run(baseline), read_run(current)
    series = run_series(current_run, service, action_name)
    profiles = load_profiles(base_run, current_run)  # a bad profile is a warning, never an error
    for warning in profiles.warnings:
        click.echo(f"nethical-otel: warning: {warning}", err=True)
    result = compare_runs(base_run, current_run, policies, budget, fail_on, series, profiles)
    _write_or_print(render(result, fmt), output)
    if output is not None:
        verdict = "regression detected" if result.regressed else "no performance regression"
        click.echo(f"nethical-otel: {verdict}; report written to {output}", err=True)
    click.get_current_context().exit(result.exit_code)


# -- budget ----------------------------------------------------------------------------------


@click.command()
@click.argument("results", type=PATH)
@click.option("--p50", type=click.FloatRange(min=0), help="P50 latency budget, ms.")
@click.option("--p95", type=click.FloatRange(min=0), help="P95 latency budget, ms.")
@click.option("--p99", type=click.FloatRange(min=0), help="P99 latency budget, ms.")
@click.option("--mean", type=click.FloatRange(min=0), help="Mean latency budget, ms.")
@click.option("--max", "max_", type=click.FloatRange(min=0), help="Max latency budget, ms.")
@click.option("--error-rate", type=click.FloatRange(min=0, max=100), help="Error rate budget, percent.")
@click.option("--min-throughput", type=click.FloatRange(min=0), help="Lowest acceptable throughput, req/s.")
@click.option(
    "--file",
    "budget_file",
    type=PATH,
    metavar="FILE",
    help="Budget file (YAML/JSON: p50, p95, p99, mean, max in ms; error_rate in %; min_throughput); "
    "options given override it.",
)
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
def budget(results, p50, p95, p99, mean, max_, error_rate, min_throughput, budget_file, fmt) -> None:
    """Check a run against performance budgets; exit 1 when one is exceeded."""
    from nethical_otel.bench.results import read_run

    limits = _budget(
        budget_file,
        p50=p50,
        p95=p95,
        p99=p99,
        mean=mean,
        max=max_,
        error_rate=error_rate,
        min_throughput=min_throughput,
    )
    if not limits:
        raise BenchError(
            "no budget given: pass --p50/--p95/--p99 (ms), --error-rate, --min-throughput or --file"
        )
    checks = limits.check(read_run(results, sidecar=False))
    exceeded = [c for c in checks if c.exceeded]
    if fmt == "json":
        click.echo(
            json.dumps(
                {
                    "results": str(results),
                    "exceeded": bool(exceeded),
                    "checks": [
                        {
                            "budget": c.key,
                            "label": c.label,
                            "unit": c.unit,
                            "limit": c.limit,
                            "value": c.value,
                            "exceeded": c.exceeded,
                        }
                        for c in checks
                    ],
                },
                indent=2,
            )
        )
    else:
        for check in checks:
            click.echo(check.line())
        click.echo(f"❌ {plural(len(exceeded), 'budget')} exceeded" if exceeded else "✅ All budgets met")
    click.get_current_context().exit(1 if exceeded else 0)


# -- history ---------------------------------------------------------------------------------


_DIR_OPTION = click.option(
    "--dir",
    "directory",
    type=PATH,
    metavar="DIR",
    default=Path("benchmark-history"),
    show_default=True,
    help="History directory.",
)
_PVALUE_OPTION = click.option(
    "--max-pvalue",
    type=click.FloatRange(0, 1, min_open=True),
    default=0.001,
    show_default=True,
    help="Significance of a change point (t-test).",
)
_MAGNITUDE_OPTION = click.option(
    "--min-magnitude",
    type=click.FloatRange(min=0),
    default=0.05,
    show_default=True,
    help="Smallest relative change of the mean that counts (0.05 = 5%).",
)


@click.group()
def history() -> None:
    """Benchmark history: add runs, detect change points, plot trends."""


@history.command("add")
@click.argument("results", type=PATH)
@_DIR_OPTION
def history_add(results, directory) -> None:
    """Copy a run into the history as benchmark_YYYYMMDD_HHMMSS.csv (+ sidecar), atomically.

    The same run twice (an identical summary row) is refused (exit 2): it would count twice
    in the trend. Another run started in the same second is added as ..._2.csv, with a note.
    """
    from nethical_otel.bench import history as hist

    written = hist.add(results, directory)
    match = hist.HISTORY_PATTERN.match(written.name)
    if match and match.group(3):
        click.echo(
            f"nethical-otel: note: another run in {directory} started in the same second; "
            f"this one is {written.name}",
            err=True,
        )
    click.echo(str(written))


@history.command("detect")
@_DIR_OPTION
@_PVALUE_OPTION
@_MAGNITUDE_OPTION
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
def history_detect(directory, max_pvalue, min_magnitude, fmt) -> None:
    """Change points of p50/p95/p99 and throughput (E-divisive means + t-test, as Apache Otava).

    Names the first run of each new level.
    """
    from nethical_otel.bench import history as hist

    runs = hist.load(directory)
    points = hist.change_points(runs, max_pvalue=max_pvalue, min_magnitude=min_magnitude)
    if fmt == "json":
        click.echo(
            json.dumps(
                {
                    "runs": len(runs),
                    "change_points": [
                        {
                            "metric": p.metric,
                            "index": p.index,
                            "run": Path(runs[p.index].source).name,
                            "timestamp": runs[p.index].timestamp,
                            "git_sha": runs[p.index].git_sha,
                            "before": p.before,
                            "after": p.after,
                            "change_pct": p.change_pct,
                            "pvalue": p.pvalue,
                        }
                        for p in points
                    ],
                },
                indent=2,
            )
        )
        return
    if not points:
        click.echo(f"No change points in {plural(len(runs), 'run')}.")
        return
    click.echo(f"{plural(len(points), 'change point')} in {plural(len(runs), 'run')}:")
    for p in points:
        run = runs[p.index]
        unit = "req/s" if p.metric == "throughput_rps" else "ms"
        click.echo(
            f"  {hist.METRICS[p.metric]:<10} new level from {Path(run.source).name} ({run.label()}): "
            f"{p.before:.2f} -> {p.after:.2f} {unit} ({p.change_pct:+.1f}%), p = {p.pvalue:.2g}"
        )


@history.command("plot")
@_DIR_OPTION
@click.option(
    "--output",
    "-o",
    type=PATH,
    metavar="FILE",
    default=Path("trend.png"),
    show_default=True,
    help="PNG file to write.",
)
@_PVALUE_OPTION
@_MAGNITUDE_OPTION
def history_plot(directory, output, max_pvalue, min_magnitude) -> None:
    """Plot p50/p95/p99 and throughput over time (PNG), change points marked."""
    import matplotlib  # noqa: F401  (the CI extra: checked first)

    from nethical_otel.bench import history as hist

    check_writable(output)
    runs = hist.load(directory)
    points = hist.change_points(runs, max_pvalue=max_pvalue, min_magnitude=min_magnitude)
    written = hist.plot(runs, output, points)
    click.echo(f"{written}: {plural(len(runs), 'run')}, {plural(len(points), 'change point')}")


# -- memory ----------------------------------------------------------------------------------


@click.command()
@click.option("--actions", type=click.IntRange(min=1), default=1000, show_default=True, help="Calls to make.")
@click.option("--target", metavar="MODULE:CALLABLE", help="As for `load` [default: the example service].")
@click.option(
    "--warn-mb",
    type=click.FloatRange(min=0),
    default=100.0,
    show_default=True,
    help="Warn when RSS grows by more than this over the run.",
)
@click.option(
    "--leak-threshold",
    type=click.FloatRange(min=0),
    default=64.0,
    show_default=True,
    help="Bytes per action of steady growth that count as a leak.",
)
@click.option("--no-leak-check", is_flag=True, help="Skip the growth fit.")
@click.option("--cohort", default="benchmark", show_default=True)
@click.option("--shadow", is_flag=True, help="Pass shadow=True to the target.")
@click.option("--ml-blend", is_flag=True, help="Pass ml_blend=True to the target.")
@click.option(
    "--output",
    "-o",
    type=PATH,
    metavar="FILE",
    default=Path("memory-profile.txt"),
    show_default=True,
    help="Where to write the profile.",
)
@click.option("--strict", is_flag=True, help="Exit 1 on high memory use or a leak.")
def memory(
    actions, target, warn_mb, leak_threshold, no_leak_check, cohort, shadow, ml_blend, output, strict
) -> None:
    """Run N actions and report memory: RSS and tracemalloc, top allocation sites, a leak check."""
    from nethical_otel.bench.memory import profile_memory
    from nethical_otel.files import write_atomic

    check_writable(output)  # before the run
    with _memory_progress() as on_progress:
        report = profile_memory(
            target,
            actions,
            warn_mb=warn_mb,
            leak_check=not no_leak_check,
            leak_bytes_per_action=leak_threshold,
            cohort=cohort,
            shadow=shadow,
            ml_blend=ml_blend,
            on_progress=on_progress,
        )
    text = report.text()
    write_atomic(output, text)
    click.echo(text, nl=False)
    click.echo(f"(written to {output})", err=True)
    if strict and not report.ok:
        click.get_current_context().exit(1)


def _eta(done: int, total: int, elapsed_s: float) -> str:
    if done <= 0 or elapsed_s <= 0:
        return "-"
    return f"about {math.ceil(elapsed_s / done * (total - done))} s left"


@contextlib.contextmanager
def _memory_progress():
    """The ``on_progress`` of ``profile_memory``: a bar on a terminal (stderr), else a line
    at each quarter of the run. What they allocate (in rich, click) is traced too, and left
    out of the readings by ``profile_memory``."""
    console = _stderr_console()
    if not console.is_terminal:
        marks = [0.25, 0.5, 0.75, 1.0]

        def line(done: int, total: int, elapsed_s: float) -> None:
            if done == 0:
                click.echo(f"memory: running {plural(total, 'action')} ...", err=True)
            while marks and done >= marks[0] * total:
                marks.pop(0)
                left = "" if done >= total else f", {_eta(done, total, elapsed_s)}"
                click.echo(f"memory: {done:,}/{total:,} actions, {elapsed_s:.1f} s{left}", err=True)

        yield line
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (
        TextColumn("[bold]memory[/]"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("actions"),
        TimeElapsedColumn(),
        TextColumn("{task.fields[eta]}"),
    )
    # No refresh thread (nothing allocates during a memory reading) and no speed history
    # (speed_estimate_period=0 keeps one sample, the ETA is ours): the bar's state stays small.
    with Progress(*columns, console=console, auto_refresh=False, speed_estimate_period=0) as progress:
        task = progress.add_task("memory", total=None, eta="")

        def bar(done: int, total: int, elapsed_s: float) -> None:
            eta = _eta(done, total, elapsed_s) if done < total else ""
            progress.update(task, total=total, completed=done, eta=eta)
            progress.refresh()

        yield bar
