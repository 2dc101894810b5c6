"""nethical-otel: performance monitoring for Python services on OpenTelemetry.

Importing the package is cheap: it loads the service side only (the OpenTelemetry SDK,
``@instrument``, ``setup``). Names from the CI side (``PerformanceProfiler``) and the
OpenTelemetry instrumentor are resolved on first access.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from nethical_otel._version import __version__
from nethical_otel.config import Settings, load_settings
from nethical_otel.embedded import setup
from nethical_otel.errors import ConfigError, NethicalOtelError
from nethical_otel.telemetry import Telemetry, action, instrument

if TYPE_CHECKING:
    from nethical_otel.bench.profiler import PerformanceProfiler
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

# Public name -> the module that defines it, imported on first access (PEP 562).
_LAZY = {
    "PerformanceProfiler": "nethical_otel.bench.profiler",
    "NethicalInstrumentor": "nethical_otel.telemetry.instrumentor",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
