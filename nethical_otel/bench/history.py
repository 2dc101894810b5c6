"""Benchmark history: one results file per run in a directory, trend plots, change points.

``add`` copies a run into ``DIR/benchmark_YYYYMMDD_HHMMSS.csv`` (the run's own start time,
UTC) with its sidecar, atomically; ``load`` reads them back in time order.

Change points: E-divisive means (Matteson & James 2014) with a Student t-test for
significance, as Apache Otava (formerly Hunter) does it. Top-down, the split that maximises
the energy-distance statistic over all current segments is kept when Welch's t-test between
the two sides has ``p <= max_pvalue``; then, bottom-up, each change point is re-tested
against its neighbours' segments and the weakest is dropped while it is not significant or
moves the mean by less than ``min_magnitude``.

Measured (``tests/unit/test_bench_history.py`` checks the first two): on pure noise (normal,
3 % coefficient of variation) a series of 10 / 30 / 100 runs gets a false change point in
0.3 / 1.7 / 0.7 % of trials with the default ``min_magnitude`` of 5 % (2 / 7 / 8 % without
it: choosing the best split first biases the t-test toward significance). A 10 % shift with
3 % noise is named at its first run in 68 % of series once 5 runs sit at the new level (25 %
with 2); a 30 % shift in 60 % with 3 runs and 98 % with 4. Cost: O(n**2) per split, about 30 ms for 500 runs.
"""

from __future__ import annotations

import io
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from scipy import stats as sps

from nethical_otel.bench.results import BenchError, RunResult, read_run, sidecar_path, write_run
from nethical_otel.files import check_writable, write_atomic

HISTORY_PATTERN = re.compile(r"^benchmark_(\d{8})_(\d{6})(?:_(\d+))?\.csv$")
# The series change points are looked for in, and how they are plotted.
METRICS: dict[str, str] = {
    "p50_latency_ms": "p50",
    "p95_latency_ms": "p95",
    "p99_latency_ms": "p99",
    "throughput_rps": "throughput",
}
DEFAULT_MAX_PVALUE = 0.001
DEFAULT_MIN_MAGNITUDE = 0.05
MIN_SEGMENT = 2


# -- files ---------------------------------------------------------------------------------


def run_time(result: RunResult) -> datetime | None:
    try:
        return datetime.strptime(result.timestamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    except ValueError:
        return None


def add(results: str | os.PathLike[str], directory: str | os.PathLike[str]) -> Path:
    """Copy a run (validated) into ``directory``; returns the new CSV's path.

    Named after the run's start time; a second run in the same second gets ``_2``, ``_3``.
    """
    result = read_run(results)
    directory = Path(directory)
    when = run_time(result) or datetime.now(timezone.utc)
    stem = when.strftime("benchmark_%Y%m%d_%H%M%S")
    target = directory / f"{stem}.csv"
    suffix = 1
    while target.exists():
        suffix += 1
        target = directory / f"{stem}_{suffix}.csv"
    check_writable(target)
    check_writable(sidecar_path(target))  # so a failure leaves no sidecar without its CSV
    write_run(result, target)
    return target


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


@dataclass(frozen=True)
class ChangePoint:
    """The run at ``index`` starts a new level of ``metric``."""

    metric: str
    index: int
    before: float  # mean of the segment before
    after: float  # mean of the segment from ``index`` on
    pvalue: float

    @property
    def change_pct(self) -> float:
        return (self.after / self.before - 1) * 100 if self.before else math.inf


def energy_split(values: np.ndarray, min_size: int = MIN_SEGMENT) -> tuple[int, float]:
    """The split ``tau`` (values[:tau] | values[tau:]) maximising E-divisive's q-hat statistic.

    q(tau) = m k / (m + k) * (2/(m k) sum|x - y| - 1/C(m,2) sum|x - x'| - 1/C(k,2) sum|y - y'|)
    over both sides of the split (alpha = 1), from 2-D prefix sums of the distance matrix.
    Returns ``(-1, -inf)`` when the series is too short to split.
    """
    n = values.size
    if n < 2 * min_size:
        return -1, -math.inf
    distance = np.abs(values[:, None] - values[None, :])
    prefix = np.zeros((n + 1, n + 1))
    prefix[1:, 1:] = distance.cumsum(0).cumsum(1)
    tau = np.arange(min_size, n - min_size + 1)
    m, k = tau.astype(np.float64), (n - tau).astype(np.float64)
    left = prefix[tau, tau]  # twice the sum over pairs within values[:tau]
    between = prefix[tau, n] - left
    right = prefix[n, n] - prefix[tau, n] - prefix[n, tau] + left
    q = m * k / (m + k) * (2 * between / (m * k) - left / (m * (m - 1)) - right / (k * (k - 1)))
    best = int(np.argmax(q))
    return int(tau[best]), float(q[best])


def _ttest(left: np.ndarray, right: np.ndarray) -> float:
    """Two-sided Welch t-test p-value; two constant sides are 0 apart or 1 alike."""
    scale = max(abs(left.mean()), abs(right.mean()), 1e-300)
    if max(np.ptp(left), np.ptp(right)) <= 1e-12 * scale:  # both sides constant (up to rounding)
        return 1.0 if abs(left.mean() - right.mean()) <= 1e-12 * scale else 0.0
    # From the moments (as Otava does): no precision warning when one side is constant.
    result = sps.ttest_ind_from_stats(
        left.mean(), left.std(ddof=1), left.size, right.mean(), right.std(ddof=1), right.size, equal_var=False
    )
    return float(result.pvalue)


def _magnitude(left: np.ndarray, right: np.ndarray) -> float:
    before, after = left.mean(), right.mean()
    return abs(after / before - 1) if before else math.inf


def detect(
    values: Sequence[float] | np.ndarray,
    *,
    max_pvalue: float = DEFAULT_MAX_PVALUE,
    min_magnitude: float = DEFAULT_MIN_MAGNITUDE,
    min_size: int = MIN_SEGMENT,
) -> list[tuple[int, float]]:
    """Change points of ``values``: ``[(index, pvalue)]``, index = first value of the new level.

    NaN values (a run without that metric) are skipped; indices refer to ``values``.
    """
    raw = np.asarray(values, dtype=np.float64)
    keep = np.flatnonzero(np.isfinite(raw))
    series = raw[keep]
    points: list[int] = []
    segments = [(0, series.size)]
    while True:  # top-down: strongest split first, stop when no segment splits significantly
        candidates = []
        for a, b in segments:
            tau, q = energy_split(series[a:b], min_size)
            if tau > 0:
                candidates.append((q, a + tau, a, b))
        accepted = None
        for _, tau, a, b in sorted(candidates, reverse=True):
            left, right = series[a:tau], series[tau:b]
            if _ttest(left, right) <= max_pvalue and _magnitude(left, right) >= min_magnitude:
                accepted = (tau, a, b)
                break
        if accepted is None:
            break
        tau, a, b = accepted
        points.append(tau)
        segments.remove((a, b))
        segments += [(a, tau), (tau, b)]
    points.sort()
    while points:  # bottom-up: re-test each point between its neighbours, drop the weakest
        edges = [0, *points, series.size]
        scored = []
        for j, tau in enumerate(points):
            left, right = series[edges[j] : tau], series[tau : edges[j + 2]]
            scored.append((_ttest(left, right), _magnitude(left, right), tau))
        weakest = max(scored, key=lambda s: (s[0], -s[1]))
        if weakest[0] <= max_pvalue and weakest[1] >= min_magnitude:
            return [(int(keep[tau]), p) for p, _, tau in scored]
        points.remove(weakest[2])
    return []


def change_points(
    runs: Sequence[RunResult],
    metrics: Sequence[str] = tuple(METRICS),
    *,
    max_pvalue: float = DEFAULT_MAX_PVALUE,
    min_magnitude: float = DEFAULT_MIN_MAGNITUDE,
) -> list[ChangePoint]:
    """Change points of each metric column over ``runs`` (oldest first)."""
    found = []
    for metric in metrics:
        values = np.array([_value(run, metric) for run in runs], dtype=np.float64)
        points = detect(values, max_pvalue=max_pvalue, min_magnitude=min_magnitude)
        edges = [0] + [i for i, _ in points] + [len(runs)]
        for j, (index, pvalue) in enumerate(points):
            before, after = values[edges[j] : index], values[index : edges[j + 2]]
            found.append(
                ChangePoint(metric, index, float(np.nanmean(before)), float(np.nanmean(after)), pvalue)
            )
    return sorted(found, key=lambda c: (c.index, c.metric))


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
    if not runs:
        raise BenchError("no runs to plot: the history directory holds no benchmark_*.csv files")
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    times = [run_time(run) for run in runs]
    x = times if all(times) else list(range(len(runs)))
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
    # One dashed line per (panel, run), labelled with every metric that changed there.
    marks: dict[tuple[bool, int], list[ChangePoint]] = {}
    for point in points:
        marks.setdefault((point.metric == "throughput_rps", point.index), []).append(point)
    for (is_rate, index), group in sorted(marks.items()):
        ax = rate_ax if is_rate else latency_ax
        ax.axvline(x[index], color="0.35", linestyle="--", linewidth=1)
        label = ", ".join(f"{METRICS[p.metric]} {p.change_pct:+.0f}%" for p in group)
        ax.annotate(
            label,
            (x[index], 1.0),
            xycoords=("data", "axes fraction"),
            xytext=(4, -4),
            textcoords="offset points",
            fontsize=8,
            va="top",
            color="0.2",
            bbox={"boxstyle": "round,pad=0.2", "facecolor": "white", "edgecolor": "0.7", "alpha": 0.9},
        )
    latency_ax.set_ylabel("latency (ms)")
    # Headroom above the data for the change-point labels.
    latency_ax.set_ylim(0, max(_finite_max(runs, m) for m in METRICS if m != "throughput_rps") * 1.2 or 1.0)
    latency_ax.legend(loc="upper left", fontsize=8)
    latency_ax.grid(alpha=0.3)
    rate_ax.set_ylabel("throughput (req/s)")
    rate_ax.set_ylim(0, _finite_max(runs, "throughput_rps") * 1.3 or 1.0)
    rate_ax.grid(alpha=0.3)
    rate_ax.set_xlabel("run start (UTC)" if all(times) else "run")
    if all(times):
        figure.autofmt_xdate()
    span = f"{runs[0].timestamp} .. {runs[-1].timestamp}" if all(times) else f"{len(runs)} runs"
    figure.suptitle(f"Benchmark history: {len(runs)} runs, {span}; dashed lines: change points", fontsize=10)
    output = Path(output)
    png = io.BytesIO()
    figure.savefig(png, format="png")
    write_atomic(output, png.getvalue())
    return output
