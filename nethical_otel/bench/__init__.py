"""CI benchmarks: open-loop load, compare and the pull-request comment, budgets, history with
change points and trend plots, the memory check, and ``PerformanceProfiler``.

Every statistic comes from ``nethical_otel.stats``: the same histogram and the same
``compare``/``evaluate``/``Policy`` as the live detector.

The names below are imported on first access, so ``nethical_otel.bench.profiler`` (say)
loads only what it needs, not the load generator, history and plots as well.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nethical_otel.bench.budget import Budget
    from nethical_otel.bench.compare import RunComparison, compare_runs
    from nethical_otel.bench.loadgen import LoadConfig, run_load
    from nethical_otel.bench.profiler import PerformanceProfiler, ProfileReport
    from nethical_otel.bench.results import BenchError, RunResult, read_run, write_run

__all__ = [
    "BenchError",
    "Budget",
    "LoadConfig",
    "PerformanceProfiler",
    "ProfileReport",
    "RunComparison",
    "RunResult",
    "compare_runs",
    "read_run",
    "run_load",
    "write_run",
]

# Public name -> the submodule that defines it (PEP 562).
_LAZY = {
    "Budget": "budget",
    "RunComparison": "compare",
    "compare_runs": "compare",
    "LoadConfig": "loadgen",
    "run_load": "loadgen",
    "PerformanceProfiler": "profiler",
    "ProfileReport": "profiler",
    "BenchError": "results",
    "RunResult": "results",
    "read_run": "results",
    "write_run": "results",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
