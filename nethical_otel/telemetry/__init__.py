"""Providers, exporters and the instrumentation of a service's hot functions."""

from nethical_otel.telemetry.instrument import action, instrument
from nethical_otel.telemetry.setup import Telemetry

__all__ = ["Telemetry", "action", "instrument"]
