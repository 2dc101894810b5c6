"""Latency statistics: the histogram type every part of nethical-otel shares, and the one
implementation of "is the current run significantly slower than the baseline"."""

from nethical_otel.stats.compare import (
    DEFAULT_QUANTILE_RULES,
    Comparison,
    Finding,
    Policy,
    QuantileRule,
    compare,
    compare_error_rate,
    compare_quantiles,
    compare_throughput,
    evaluate,
    quantile_interval,
    quantile_name,
)
from nethical_otel.stats.histogram import (
    DEFAULT_SCALE,
    ZERO_THRESHOLD,
    LatencyHistogram,
    StatsError,
    index_of,
    lower_bound,
    merge_all,
    relative_accuracy,
)

__all__ = [
    "DEFAULT_QUANTILE_RULES",
    "DEFAULT_SCALE",
    "ZERO_THRESHOLD",
    "Comparison",
    "Finding",
    "LatencyHistogram",
    "Policy",
    "QuantileRule",
    "StatsError",
    "compare",
    "compare_error_rate",
    "compare_quantiles",
    "compare_throughput",
    "evaluate",
    "index_of",
    "lower_bound",
    "merge_all",
    "quantile_interval",
    "quantile_name",
    "relative_accuracy",
]
