"""nethical-otel: performance monitoring for Python services on OpenTelemetry."""

from nethical_otel._version import __version__
from nethical_otel.bench.profiler import PerformanceProfiler
from nethical_otel.config import Settings, load_settings
from nethical_otel.embedded import setup
from nethical_otel.errors import ConfigError, NethicalOtelError
from nethical_otel.telemetry import Telemetry, action, instrument
from nethical_otel.telemetry.instrumentor import NethicalInstrumentor

__all__ = [
    "ConfigError",
    "NethicalInstrumentor",
    "NethicalOtelError",
    "PerformanceProfiler",
    "Settings",
    "Telemetry",
    "__version__",
    "action",
    "instrument",
    "load_settings",
    "setup",
]
