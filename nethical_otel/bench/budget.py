"""Performance budgets: absolute limits a run must stay within (p95 <= 200 ms, ...).

A budget is checked on the run's point estimates, the numbers in its CSV row: a budget is
a promise about what users see, so "p95 was 201 ms" breaks a 200 ms budget whatever the
noise. (Whether a *change* is real is ``compare``'s question, not a budget's.)

Budget file (YAML or JSON), every key optional::

    p50: 50             # ms
    p95: 200
    p99: 500
    mean: 80            # ms
    max: 2000           # ms
    error_rate: 1.0     # percent
    min_throughput: 45  # requests/s
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from nethical_otel.bench.results import BenchError, RunResult
from nethical_otel.files import read_yaml


@dataclass(frozen=True)
class _Limit:
    column: str
    label: str
    unit: str
    scale: float  # CSV value * scale = value in the budget's unit
    upper: bool  # True: value must be <= limit; False: >= limit


LIMITS: dict[str, _Limit] = {
    "p50": _Limit("p50_latency_ms", "P50 latency", "ms", 1.0, True),
    "p95": _Limit("p95_latency_ms", "P95 latency", "ms", 1.0, True),
    "p99": _Limit("p99_latency_ms", "P99 latency", "ms", 1.0, True),
    "mean": _Limit("mean_latency_ms", "Mean latency", "ms", 1.0, True),
    "max": _Limit("max_latency_ms", "Max latency", "ms", 1.0, True),
    "error_rate": _Limit("error_rate", "Error rate", "%", 100.0, True),
    "min_throughput": _Limit("throughput_rps", "Throughput", "req/s", 1.0, False),
}


@dataclass(frozen=True)
class BudgetCheck:
    """One limit applied to one run."""

    key: str
    label: str
    unit: str
    limit: float
    value: float | None
    upper: bool

    @property
    def exceeded(self) -> bool:
        if self.value is None:
            return False
        return self.value > self.limit if self.upper else self.value < self.limit

    def line(self) -> str:
        """``✅ P95 latency 123.40 ms <= 200 ms`` / ``❌ P95 latency 240.10 ms > 200 ms budget``."""
        if self.value is None:
            return (
                f"➖ {self.label}: not in the results file, budget {_num(self.limit)} {self.unit} not checked"
            )
        op = (">" if self.upper else "<") if self.exceeded else ("<=" if self.upper else ">=")
        mark = "❌" if self.exceeded else "✅"
        word = "budget exceeded" if self.exceeded else "within budget"
        return (
            f"{mark} {self.label} {_num(self.value)} {self.unit} {op} {_num(self.limit)} {self.unit} ({word})"
        )


@dataclass(frozen=True)
class Budget:
    """Limits by key (see ``LIMITS``), in ms, percent and requests/s."""

    limits: Mapping[str, float]
    source: str = "command line"

    def __post_init__(self) -> None:
        for key, value in self.limits.items():
            if key not in LIMITS:
                raise BenchError(f"{self.source}: unknown budget {key!r} (known: {', '.join(LIMITS)})")
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not math.isfinite(value)
                or value < 0
            ):
                raise BenchError(f"{self.source}: budget {key!r} is {value!r}; expected a number >= 0")

    def __bool__(self) -> bool:
        return bool(self.limits)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> Budget:
        path = Path(path)
        data = read_yaml(path, "budget file (YAML)", BenchError) or {}
        if not isinstance(data, Mapping):
            raise BenchError(f"{path}: expected a mapping like {{p95: 200}}, got {type(data).__name__}")
        return cls({str(k): v for k, v in data.items()}, source=str(path))

    def merged(self, overrides: Mapping[str, float | None]) -> Budget:
        """This budget with the given (non-None) limits replacing its own."""
        limits = dict(self.limits)
        limits.update({k: v for k, v in overrides.items() if v is not None})
        return Budget(limits, source=self.source)

    def check(self, result: RunResult) -> list[BudgetCheck]:
        checks = []
        for key in LIMITS:
            if key not in self.limits:
                continue
            spec = LIMITS[key]
            raw = getattr(result, spec.column)
            value = None if raw is None or (isinstance(raw, float) and math.isnan(raw)) else raw * spec.scale
            checks.append(BudgetCheck(key, spec.label, spec.unit, float(self.limits[key]), value, spec.upper))
        return checks


def _num(value: float) -> str:
    return f"{value:g}" if float(value).is_integer() else f"{value:.2f}"
