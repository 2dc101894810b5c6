"""Latency statistics: the histogram type every part of nethical-otel shares."""

from nethical_otel.stats.histogram import DEFAULT_SCALE, LatencyHistogram, relative_accuracy

__all__ = ["DEFAULT_SCALE", "LatencyHistogram", "relative_accuracy"]
