"""Benchmark history: one results file per run in a directory, trend plots, change points.

``add`` copies a run into ``DIR/benchmark_YYYYMMDD_HHMMSS.csv`` (the run's own start time,
UTC) with its sidecar, atomically; ``load`` reads them back in time order.

Change points (``change_points``, for ``history detect`` and the plot) come from
``nethical_otel.stats.changepoints``: sliding-window E-divisive means with Student's pooled
t-test, as Apache Otava does it, plus outlier handling and a corrected final test; its
docstring states what it guarantees and ``benchmarks/changepoints.py`` measures it against
Otava itself.
"""

from __future__ import annotations

import io
import math
import os
import re
from collections import Counter
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from nethical_otel.bench.results import BenchError, RunResult, csv_text, read_run, sidecar_path, write_run
from nethical_otel.files import check_writable, write_atomic
from nethical_otel.stats.changepoints import (
    DEFAULT_MAX_PVALUE,
    DEFAULT_MIN_MAGNITUDE,
    ChangePoint,
    detect,
)
from nethical_otel.text import plural

HISTORY_PATTERN = re.compile(r"^benchmark_(\d{8})_(\d{6})(?:_(\d+))?\.csv$")
# The series change points are looked for in, and how they are plotted.
METRICS: dict[str, str] = {
    "p50_latency_ms": "p50",
    "p95_latency_ms": "p95",
    "p99_latency_ms": "p99",
    "throughput_rps": "throughput",
}


# -- files ---------------------------------------------------------------------------------


def run_time(result: RunResult) -> datetime | None:
    try:
        return datetime.strptime(result.timestamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    except ValueError:
        return None


def add(results: str | os.PathLike[str], directory: str | os.PathLike[str]) -> Path:
    """Copy a run (validated) into ``directory``; returns the new CSV's path.

    Named after the run's start time; another run started in the same second gets ``_2``,
    ``_3``. The same run twice (a summary row identical to one in the history: same start,
    commit and figures) is refused with ``BenchError``: it would count twice in the trend
    and its change points.
    """
    result = read_run(results)
    directory = Path(directory)
    when = run_time(result)
    stem = (when or datetime.now(timezone.utc)).strftime("benchmark_%Y%m%d_%H%M%S")
    copy = already_added(result, directory, stem if when else None)
    if copy is not None:
        raise BenchError(
            f"{results}: already in the history as {copy} (the same run: {short_commit(result)}, started "
            f"{result.timestamp or 'at an unknown time'}); nothing added"
        )
    target = directory / f"{stem}.csv"
    suffix = 1
    while target.exists():
        suffix += 1
        target = directory / f"{stem}_{suffix}.csv"
    check_writable(target)
    check_writable(sidecar_path(target))  # so a failure leaves no sidecar without its CSV
    write_run(result, target)
    return target


def already_added(result: RunResult, directory: Path, stem: str | None) -> Path | None:
    """The history file holding ``result``'s very summary row, if any (files named ``stem``
    or ``stem_N`` only, when given; unreadable files are not this run)."""
    if not directory.is_dir():
        return None
    mine = csv_text(result)
    try:
        names = sorted(p.name for p in directory.iterdir())
    except OSError:
        return None
    for name in names:
        match = HISTORY_PATTERN.match(name)
        if not match or (stem is not None and f"benchmark_{match.group(1)}_{match.group(2)}" != stem):
            continue
        try:
            if csv_text(read_run(directory / name, sidecar=False)) == mine:
                return directory / name
        except BenchError:
            continue
    return None


def load(directory: str | os.PathLike[str]) -> list[RunResult]:
    """Every run in ``directory`` (``benchmark_*.csv``), oldest first."""
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise BenchError(f"{directory}: not a directory; --dir names the history directory")
    if not directory.is_dir():
        raise BenchError(
            f"{directory}: no such history directory (create it with `nethical-otel history add`)"
        )
    try:
        paths = [p for p in directory.iterdir() if HISTORY_PATTERN.match(p.name)]
    except OSError as exc:
        raise BenchError(f"{directory}: cannot read: {exc.strerror or exc}") from None
    runs = [read_run(p) for p in paths]

    def key(run: RunResult) -> tuple[datetime, str]:
        match = HISTORY_PATTERN.match(Path(run.source).name)
        seq = int(match.group(3) or 1) if match else 0
        return run_time(run) or datetime.min.replace(tzinfo=timezone.utc), f"{seq:09d}"

    return sorted(runs, key=key)


# -- change points ---------------------------------------------------------------------------


def change_points(
    runs: Sequence[RunResult],
    metrics: Sequence[str] = tuple(METRICS),
    *,
    max_pvalue: float = DEFAULT_MAX_PVALUE,
    min_magnitude: float = DEFAULT_MIN_MAGNITUDE,
) -> list[ChangePoint]:
    """Change points of each metric column over ``runs`` (oldest first); ``index`` names the run."""
    found = []
    for metric in metrics:
        values = np.array([_value(run, metric) for run in runs], dtype=np.float64)
        found += detect(values, metric=metric, max_pvalue=max_pvalue, min_magnitude=min_magnitude)
    return sorted(found, key=lambda c: (c.index, c.metric))


def short_commit(run: RunResult) -> str:
    """The run's commit as people name it (``1a2b3c4``), or ``commit unknown``."""
    return run.git_sha[:7] if run.git_sha not in ("", "unknown") else "commit unknown"


def _finite_max(runs: Sequence[RunResult], metric: str) -> float:
    values = [v for v in (_value(r, metric) for r in runs) if math.isfinite(v)]
    return max(values, default=0.0)


def _value(run: RunResult, metric: str) -> float:
    value = getattr(run, metric)
    return math.nan if value is None else float(value)


# -- plot ------------------------------------------------------------------------------------


def plot(
    runs: Sequence[RunResult], output: str | os.PathLike[str], points: Sequence[ChangePoint] = ()
) -> Path:
    """p50/p95/p99 and throughput over time as a PNG, change points marked; written atomically."""
    figure = trend_figure(runs, points)
    output = Path(output)
    png = io.BytesIO()
    figure.savefig(png, format="png")
    write_atomic(output, png.getvalue())
    return output


def trend_figure(runs: Sequence[RunResult], points: Sequence[ChangePoint] = ()):
    """The matplotlib ``Figure`` ``plot`` writes: one point per run, each change point a
    dashed line labelled with its run's commit and the changes (``1a2b3c4: +12% p95``)."""
    if not runs:
        raise BenchError("no runs to plot: the history directory holds no benchmark_*.csv files")
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    times = [run_time(run) for run in runs]
    # One point per run: on a time axis only when every run has its own start time (two
    # runs in the same second would be drawn on top of each other), else by run number.
    on_time = all(times) and len(set(times)) == len(times)
    x = times if on_time else list(range(1, len(runs) + 1))
    figure = Figure(figsize=(10, 6.5), dpi=110, layout="constrained")
    latency_ax, rate_ax = figure.subplots(2, 1, sharex=True, height_ratios=[2, 1])
    colors = {
        "p50_latency_ms": "tab:green",
        "p95_latency_ms": "tab:orange",
        "p99_latency_ms": "tab:red",
        "throughput_rps": "tab:blue",
    }
    for metric in ("p50_latency_ms", "p95_latency_ms", "p99_latency_ms"):
        latency_ax.plot(
            x,
            [_value(r, metric) for r in runs],
            marker="o",
            markersize=3,
            color=colors[metric],
            label=METRICS[metric],
        )
    rate_ax.plot(
        x,
        [_value(r, "throughput_rps") for r in runs],
        marker="o",
        markersize=3,
        color=colors["throughput_rps"],
        label="throughput",
    )
    # One dashed line per (panel, run), labelled with the run's commit and every metric that
    # changed there; labels of successive lines step down so that they do not overlap.
    marks: dict[tuple[bool, int], list[ChangePoint]] = {}
    for point in points:
        marks.setdefault((point.metric == "throughput_rps", point.index), []).append(point)
    placed = {False: 0, True: 0}
    for (is_rate, index), group in sorted(marks.items()):
        ax = rate_ax if is_rate else latency_ax
        ax.axvline(x[index], color="0.35", linestyle="--", linewidth=1)
        changes = ", ".join(f"{p.change_pct:+.0f}% {METRICS[p.metric]}" for p in group)
        right = index > 0.6 * (len(runs) - 1)  # near the right edge: the label goes left of its line
        ax.annotate(
            f"{short_commit(runs[index])}: {changes}",
            (x[index], 1.0),
            xycoords=("data", "axes fraction"),
            xytext=(-4 if right else 4, -4 - 14 * (placed[is_rate] % 3)),
            textcoords="offset points",
            fontsize=8,
            va="top",
            ha="right" if right else "left",
            color="0.2",
            bbox={"boxstyle": "round,pad=0.2", "facecolor": "white", "edgecolor": "0.7", "alpha": 0.9},
        )
        placed[is_rate] += 1
    latency_ax.set_ylabel("latency (ms)")
    # Headroom above the data for the change-point labels.
    latency_ax.set_ylim(0, max(_finite_max(runs, m) for m in METRICS if m != "throughput_rps") * 1.3 or 1.0)
    latency_ax.legend(loc="upper left", fontsize=8)
    latency_ax.grid(alpha=0.3)
    rate_ax.set_ylabel("throughput (req/s)")
    rate_ax.set_ylim(0, _finite_max(runs, "throughput_rps") * 1.4 or 1.0)
    rate_ax.grid(alpha=0.3)
    if on_time:
        rate_ax.set_xlabel("run start (UTC)")
        figure.autofmt_xdate()
    else:
        shared = sum(n for n in Counter(times).values() if n > 1) if all(times) else 0
        why = f"; {shared} runs share a start time" if shared else ""
        rate_ax.set_xlabel(f"run, oldest first{why}")
        rate_ax.xaxis.get_major_locator().set_params(integer=True)
    span = f"{runs[0].timestamp} .. {runs[-1].timestamp}" if all(times) else "start times unknown"
    marked = "dashed lines: change points (commit: change)" if points else "no change points"
    figure.suptitle(f"Benchmark history: {plural(len(runs), 'run')}, {span}; {marked}", fontsize=10)
    return figure
