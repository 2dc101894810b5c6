"""Latency statistics: the histogram type every part of nethical-otel shares, the one
implementation of "is the current run significantly slower than the baseline", and the one
threshold policy."""

from nethical_otel.stats.histogram import ZERO_THRESHOLD, LatencyHistogram, StatsError, merge_all
from nethical_otel.stats.mapping import DEFAULT_SCALE, index_of, lower_bound, relative_accuracy
from nethical_otel.stats.policy import (
    DEFAULT_QUANTILE_RULES,
    Finding,
    Policy,
    PolicyBook,
    QuantileRule,
    evaluate,
)
from nethical_otel.stats.significance import (
    Comparison,
    compare,
    compare_error_rate,
    compare_quantiles,
    compare_throughput,
    quantile_interval,
    quantile_name,
)

__all__ = [
    "DEFAULT_QUANTILE_RULES",
    "DEFAULT_SCALE",
    "ZERO_THRESHOLD",
    "Comparison",
    "Finding",
    "LatencyHistogram",
    "Policy",
    "PolicyBook",
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
