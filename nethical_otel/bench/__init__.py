"""CI benchmarks: open-loop load, compare and the pull-request comment, budgets, history with
change points and trend plots, the memory check, and ``PerformanceProfiler``.

Every statistic comes from ``nethical_otel.stats``: the same histogram and the same
``compare``/``evaluate``/``Policy`` as the live detector.
"""

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
