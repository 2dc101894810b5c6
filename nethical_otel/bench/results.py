"""One load-test run on disk: a summary row in a CSV file plus the full histogram beside it.

``results.csv`` holds a header and one row with the columns of ``CSV_COLUMNS`` (the
regression guide's layout, readable by ``pandas.read_csv``); ``results.histogram.json``
(the *sidecar*) holds the same summary, the latency histogram (``LatencyHistogram.to_dict``)
and the generator's own figures (schedule lag, service time). Compare tests significance
from the sidecar's histogram; a CSV without its sidecar still compares, on point estimates.

Units: latencies in milliseconds, ``error_rate`` a fraction (0.002 = 0.2 %), throughput in
requests per second, memory in MB (10**6 bytes), ``timestamp`` ISO 8601 UTC.

Every file is written atomically (a temporary file in the same directory, fsynced, then
``os.replace``), the sidecar before the CSV, so a reader never sees half a file and never a
CSV whose sidecar is still missing. Every read error is a ``BenchError`` naming the file and
the line or field.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from nethical_otel.errors import NethicalOtelError
from nethical_otel.files import read_text, read_versioned_json
from nethical_otel.files import write_atomic as atomic_write_text
from nethical_otel.stats import LatencyHistogram, StatsError

SIDECAR_FORMAT = "nethical-otel-run"
SIDECAR_VERSION = 1
SIDECAR_SUFFIX = ".histogram.json"
# The CPU profile of ``load --profile`` (``nethical_otel.bench.cpuprofile``), beside the same CSV.
PROFILE_SUFFIX = ".profile.json"

CSV_COLUMNS = (
    "timestamp",
    "git_sha",
    "branch",
    "cohort",
    "agents",
    "target_rps",
    "duration_s",
    "requests",
    "errors",
    "error_rate",
    "throughput_rps",
    "p50_latency_ms",
    "p95_latency_ms",
    "p99_latency_ms",
    "mean_latency_ms",
    "max_latency_ms",
    "memory_start_mb",
    "memory_end_mb",
)
# A file without these is not a load result; the others may be missing or empty.
REQUIRED_COLUMNS = (
    "requests",
    "error_rate",
    "throughput_rps",
    "p50_latency_ms",
    "p95_latency_ms",
    "p99_latency_ms",
)
_TEXT = {"timestamp", "git_sha", "branch", "cohort"}
_INTEGER = {"agents", "requests", "errors"}
# Digits written per float column: enough for microseconds and for ratios of a few ppm.
_DIGITS = {
    "target_rps": 3,
    "duration_s": 3,
    "error_rate": 6,
    "throughput_rps": 3,
    "memory_start_mb": 2,
    "memory_end_mb": 2,
}


class BenchError(NethicalOtelError):
    """A run file, budget file or target a user named is unusable; the message names it."""


@dataclass
class RunResult:
    """The summary of one run (the CSV row) and, when known, its latency histogram."""

    timestamp: str = "unknown"
    git_sha: str = "unknown"
    branch: str = "unknown"
    cohort: str = "benchmark"
    agents: int | None = None
    target_rps: float | None = None
    duration_s: float | None = None
    requests: int = 0
    errors: int | None = 0
    error_rate: float = 0.0
    throughput_rps: float = 0.0
    p50_latency_ms: float = math.nan
    p95_latency_ms: float = math.nan
    p99_latency_ms: float = math.nan
    mean_latency_ms: float | None = None
    max_latency_ms: float | None = None
    memory_start_mb: float | None = None
    memory_end_mb: float | None = None
    # Not in the CSV: the sidecar's histogram and the generator's own figures.
    histogram: LatencyHistogram | None = field(default=None, repr=False, compare=False)
    details: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)
    source: str = field(default="", repr=False, compare=False)

    @classmethod
    def from_histogram(
        cls, histogram: LatencyHistogram, *, throughput_rps: float, **summary: Any
    ) -> RunResult:
        """The summary row of ``histogram`` (seconds) plus the identifying ``summary`` fields."""
        p50, p95, p99 = (histogram.quantiles([0.5, 0.95, 0.99]) * 1e3).tolist()
        count = histogram.count
        return cls(
            requests=count,
            errors=histogram.errors,
            error_rate=histogram.errors / count if count else 0.0,
            throughput_rps=throughput_rps,
            p50_latency_ms=p50,
            p95_latency_ms=p95,
            p99_latency_ms=p99,
            mean_latency_ms=histogram.sum / count * 1e3 if count else math.nan,
            max_latency_ms=histogram.max * 1e3 if count else math.nan,
            histogram=histogram,
            **summary,
        )

    @property
    def has_histogram(self) -> bool:
        return self.histogram is not None

    def row(self) -> dict[str, Any]:
        """The CSV row: column -> value (None for unknown)."""
        return {name: getattr(self, name) for name in CSV_COLUMNS}

    def label(self) -> str:
        """``main@1a2b3c4`` for messages."""
        sha = self.git_sha[:7] if self.git_sha not in ("", "unknown") else "unknown"
        return f"{self.branch}@{sha}"


# -- paths ---------------------------------------------------------------------------------


def run_stem(path: str | os.PathLike[str]) -> str:
    """The name a run's files share: ``results`` for ``results.csv`` or ``results.histogram.json``."""
    name = Path(path).name
    for suffix in (".csv", SIDECAR_SUFFIX):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def sidecar_path(csv_path: str | os.PathLike[str]) -> Path:
    """``results.csv -> results.histogram.json`` (same directory)."""
    path = Path(csv_path)
    stem = path.name[: -len(".csv")] if path.name.endswith(".csv") else path.name
    return path.with_name(stem + SIDECAR_SUFFIX)


# -- writing -------------------------------------------------------------------------------


def csv_text(result: RunResult) -> str:
    """The CSV file of ``result``: header and one row."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    writer.writerow([_format_cell(name, getattr(result, name)) for name in CSV_COLUMNS])
    return buffer.getvalue()


def sidecar_document(result: RunResult) -> dict[str, Any]:
    """The sidecar JSON document of ``result`` (its summary, histogram and details)."""
    summary = {name: _json_value(getattr(result, name)) for name in CSV_COLUMNS}
    return {
        "format": SIDECAR_FORMAT,
        "version": SIDECAR_VERSION,
        "summary": summary,
        "histogram": result.histogram.to_dict() if result.histogram is not None else None,
        "details": result.details,
    }


def write_run(result: RunResult, csv_path: str | os.PathLike[str]) -> Path | None:
    """Write ``csv_path`` and, when the result has a histogram, its sidecar (returned).

    The sidecar goes first: a CSV on disk always has its sidecar complete beside it. A
    stale sidecar from an earlier run at the same path is removed, and so is a CPU profile
    (``NAME.profile.json``): ``load --profile`` writes the new run's after this.
    """
    side = sidecar_path(csv_path)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(Path(csv_path).with_name(run_stem(csv_path) + PROFILE_SUFFIX))
    if result.histogram is not None:
        atomic_write_text(side, json.dumps(sidecar_document(result), indent=1, allow_nan=False) + "\n")
    else:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(side)
        side = None
    atomic_write_text(csv_path, csv_text(result))
    return side


def _format_cell(name: str, value: Any) -> str:
    if value is None:
        return ""
    if name in _TEXT:
        return str(value)
    if name in _INTEGER:
        return str(int(value))
    value = float(value)
    if not math.isfinite(value):
        return ""
    return f"{value:.{_DIGITS.get(name, 4)}f}"


def _json_value(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


# -- reading -------------------------------------------------------------------------------


def read_run(path: str | os.PathLike[str], *, sidecar: bool = True) -> RunResult:
    """Read a run: a CSV file (plus its sidecar when present and ``sidecar``), or a sidecar alone.

    A CSV with several data rows (runs appended by hand) gives its last row. Raises
    ``BenchError`` naming the file and line or field on anything unreadable, and when the
    sidecar describes another run than the CSV row.
    """
    path = Path(path)
    if path.name.endswith(".json"):
        return _read_sidecar(path)
    text = read_text(path, "results file (CSV)", BenchError)
    result = _parse_csv(text, str(path))
    side = sidecar_path(path)
    if sidecar and side.exists():
        documented = _read_sidecar(side)
        for name in ("timestamp", "requests"):
            if getattr(documented, name) != getattr(result, name):
                raise BenchError(
                    f"{side}: describes another run than {path} ({name} {getattr(documented, name)!r} vs "
                    f"{getattr(result, name)!r}); delete the stale sidecar or pass the right pair"
                )
        result.histogram = documented.histogram
        result.details = documented.details
    result.source = str(path)
    return result


def _parse_csv(text: str, where: str) -> RunResult:
    if not text.strip():
        raise BenchError(f"{where}: empty file; expected a header line and a data row")
    try:
        rows = list(csv.reader(io.StringIO(text, newline="")))
    except csv.Error as exc:
        raise BenchError(f"{where}: not valid CSV: {exc}") from None
    header = [cell.strip() for cell in rows[0]]
    missing = [name for name in REQUIRED_COLUMNS if name not in header]
    if missing:
        raise BenchError(
            f"{where}, line 1: missing column {missing[0]!r} "
            "(is this a results file of `nethical-otel load`?)"
        )
    data = [
        (number, row) for number, row in enumerate(rows[1:], start=2) if any(cell.strip() for cell in row)
    ]
    if not data:
        raise BenchError(f"{where}: a header but no data row (truncated?)")
    line, row = data[-1]
    if len(row) != len(header):
        raise BenchError(
            f"{where}, line {line}: {len(row)} fields where the header has {len(header)} (truncated?)"
        )
    values = dict(zip(header, (cell.strip() for cell in row), strict=True))
    return _result_from_fields(values, f"{where}, line {line}")


def _result_from_fields(values: Mapping[str, Any], where: str) -> RunResult:
    """A RunResult from column -> raw value (CSV strings or JSON values), validated."""
    known = {f.name for f in fields(RunResult)}
    parsed: dict[str, Any] = {}
    for name in CSV_COLUMNS:
        raw = values.get(name)
        if raw is None or raw == "":
            if name in REQUIRED_COLUMNS:
                raise BenchError(f"{where}: field {name!r} is empty")
            continue
        if name in _TEXT:
            parsed[name] = str(raw)
        elif name in _INTEGER:
            parsed[name] = _integer(raw, name, where)
        else:
            parsed[name] = _number(raw, name, where)
    result = RunResult(**{k: v for k, v in parsed.items() if k in known})
    if result.errors is not None and "errors" in parsed and result.errors > result.requests:
        raise BenchError(f"{where}: field 'errors' ({result.errors}) exceeds 'requests' ({result.requests})")
    if not 0 <= result.error_rate <= 1:
        raise BenchError(f"{where}: field 'error_rate' is {result.error_rate}; expected a fraction in 0..1")
    if "errors" not in parsed:
        result.errors = round(result.error_rate * result.requests)
    return result


def _integer(raw: Any, name: str, where: str) -> int:
    if isinstance(raw, bool):
        raise BenchError(f"{where}: field {name!r} is {raw!r}, expected a whole number >= 0")
    try:
        value = float(raw)
    except (TypeError, ValueError, OverflowError):
        raise BenchError(f"{where}: field {name!r} is {raw!r}, expected a whole number >= 0") from None
    if not value.is_integer() or value < 0:
        raise BenchError(f"{where}: field {name!r} is {raw!r}, expected a whole number >= 0")
    return int(value)


def _number(raw: Any, name: str, where: str) -> float:
    if isinstance(raw, bool):
        raise BenchError(f"{where}: field {name!r} is {raw!r}, expected a number >= 0")
    try:
        value = float(raw)
    except (TypeError, ValueError, OverflowError):
        raise BenchError(f"{where}: field {name!r} is {raw!r}, expected a number >= 0") from None
    if math.isnan(value) or value < 0 or math.isinf(value):
        raise BenchError(f"{where}: field {name!r} is {raw!r}, expected a finite number >= 0")
    return value


def _read_sidecar(path: Path) -> RunResult:
    document = read_versioned_json(
        path, "run histogram file (JSON)", SIDECAR_FORMAT, SIDECAR_VERSION, "rerun the benchmark", BenchError
    )
    summary = document.get("summary")
    if not isinstance(summary, dict):
        raise BenchError(f"{path}: field 'summary' must be an object")
    result = _result_from_fields(summary, f"{path}: summary")
    raw_hist = document.get("histogram")
    if raw_hist is not None:
        try:
            result.histogram = LatencyHistogram.from_dict(raw_hist, where=f"{path}: histogram")
        except StatsError as exc:
            raise BenchError(str(exc)) from None
        if result.histogram.count != result.requests:
            raise BenchError(
                f"{path}: histogram holds {result.histogram.count} observations but summary 'requests' is "
                f"{result.requests}"
            )
    details = document.get("details", {})
    if not isinstance(details, dict):
        raise BenchError(f"{path}: field 'details' must be an object")
    result.details = details
    result.source = str(path)
    return result
