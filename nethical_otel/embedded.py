"""``nethical_otel.setup()``: telemetry for a service in one call, and the embedded detector.

Embedded mode runs the regression detector on a background thread of the service, fed by
the service's own histograms (no infrastructure); alerts go to the log, and to
Alertmanager when ``alertmanager_url`` is set.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

from opentelemetry.sdk.metrics.export import MetricReader
from opentelemetry.sdk.trace import SpanProcessor

from nethical_otel.config import load_settings
from nethical_otel.telemetry import Telemetry


def setup(
    config_file: str | os.PathLike[str] | None = None,
    *,
    detector: bool | None = None,
    span_processors: Iterable[SpanProcessor] = (),
    metric_readers: Iterable[MetricReader] = (),
    set_global: bool = True,
    **overrides: Any,
) -> Telemetry:
    """Configure OpenTelemetry for this service and return a handle to flush or shut it down.

    Settings come from ``overrides`` (any ``Settings`` field), then the environment
    (``OTEL_*``, ``NETHICAL_OTEL_*``), then ``config_file`` (or ``$NETHICAL_OTEL_CONFIG``),
    then defaults. Extra ``span_processors``/``metric_readers`` (e.g. the SDK's in-memory
    ones) are added to what the settings ask for. ``detector=True`` (or the setting
    ``detector_enabled``) starts the embedded regression detector; ``telemetry.detector``
    is then the running ``Detector`` and ``shutdown()`` stops it.
    """
    # A typo'd NETHICAL_OTEL_* is a WARNING here: telemetry must not stop the service starting.
    settings = load_settings(config_file, unknown="warn", **overrides)
    telemetry = Telemetry(
        settings,
        span_processors=tuple(span_processors),
        metric_readers=tuple(metric_readers),
        set_global=set_global,
    )
    if (settings.detector_enabled if detector is None else detector) and telemetry.registry is not None:
        try:
            _start_detector(telemetry)
        except BaseException:
            telemetry.shutdown()
            raise
    return telemetry


def _start_detector(telemetry: Telemetry) -> None:
    from nethical_otel.detect.build import build_detector
    from nethical_otel.detect.detector import DetectorThread
    from nethical_otel.detect.sources import InProcessSource

    settings = telemetry.settings
    registry = telemetry.registry
    source = InProcessSource(
        registry.histograms, settings.service_name, settings.detector_window_s, registry.exemplars
    )
    runner = DetectorThread(build_detector(settings, source), settings.detector_step_s).start()
    telemetry.detector = runner.detector
    telemetry.add_shutdown_hook(runner.stop)
