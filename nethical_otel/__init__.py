"""nethical-otel: performance monitoring for Python services on OpenTelemetry."""

from nethical_otel._version import __version__
from nethical_otel.config import Settings, load_settings
from nethical_otel.errors import ConfigError, NethicalOtelError

__all__ = ["ConfigError", "NethicalOtelError", "Settings", "__version__", "load_settings"]
