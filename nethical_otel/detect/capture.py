"""Recording a baseline file from a live service, a fleet, or a benchmark run.

Three sources, one result (a ``BaselineSet`` plus where it came from):

- ``from_prometheus``: the fleet-wide window ending now, from Prometheus' HTTP API;
- ``from_metrics``: a service's ``/metrics`` scraped twice, ``window_s`` apart;
- ``from_run``: a ``nethical-otel load`` run. Its histogram is the *end-to-end* latency the load
  generator measured (queueing in the target included) over every action type it drove, so it
  is one series, named by the caller. It matches a detector series only when the service
  records that one series; it is meant for a target called with a single action, or as the
  reference `compare` and budgets use in CI. The per-action series a service records come from
  the other two sources.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from nethical_otel.detect.baseline import Baseline, BaselineSet, SeriesKey
from nethical_otel.detect.sources import PrometheusSource, Window, scrape, window_between
from nethical_otel.errors import NethicalOtelError, redact_url
from nethical_otel.names import DURATION_METRIC


@dataclass
class Captured:
    baselines: BaselineSet
    source: str  # e.g. "prometheus:http://prom:9090" (credentials redacted)


def _baselines(windows: dict[SeriesKey, Window], source: str, version: str) -> Captured:
    baselines = BaselineSet(
        Baseline(key, w.histogram, w.seconds, source=source, version=version)
        for key, w in windows.items()
        if w.histogram.count
    )
    if not len(baselines):
        raise NethicalOtelError(f"no calls of {DURATION_METRIC} in the window from {source}")
    return Captured(baselines, source)


def from_prometheus(url: str, window_s: float, service_label: str = "job", version: str = "") -> Captured:
    windows = PrometheusSource(url, window_s, service_label=service_label).read(time.time())
    return _baselines(windows, f"prometheus:{redact_url(url)}", version)


def from_metrics(
    url: str, window_s: float, version: str = "", wait: Callable[[float], None] = time.sleep
) -> Captured:
    """``wait(seconds)`` passes the time between the two scrapes (the CLI shows progress)."""
    first = scrape(url)
    wait(window_s)
    return _baselines(window_between(first, scrape(url)), f"scrape:{redact_url(url)}", version)


def from_run(run: Any, where: str, service: str, action: str, version: str = "") -> Captured:
    """``run``: a ``bench.results.RunResult`` read from ``where`` (the caller reads it: ``detect``
    does not import the CI side)."""
    if run.histogram is None or not run.duration_s:
        raise NethicalOtelError(f"{where}: no latency histogram sidecar next to it; a baseline needs one")
    windows = {SeriesKey(service, action, run.cohort): Window(run.histogram, run.duration_s)}
    return _baselines(windows, f"run:{where}", version or run.git_sha)
