"""The shipped rules alert alike on native and classic histograms: one slowdown, one set of alerts.

The same latency histograms go into two real Prometheus servers, each running the shipped
rule files (deploy/prometheus/rules, evaluated every second):

- Prometheus 3 receives them over its OTLP receiver (tests/otlp_push.py, as the Collector's
  otlp_http exporter sends them): native histograms;
- Debian's Prometheus 2.42 scrapes them as the Collector's prometheus exporter serves them:
  classic ``le`` buckets of the default layout (Settings' bucket_min_s .. bucket_max_s,
  buckets_per_octave), ``_sum``, ``_count``.

Both scrape the same baseline gauges, as the detector agent exports them (its quantiles of
the unslowed histograms, its request rate and error ratio). Each second every action adds the
same batch of calls, and has for five minutes and more when the rules start, so their 5 m
rates are whole: Prometheus 3 gets that history pushed with its timestamps (its
out-of-order window takes it), 2.42 loads it as a block (`promtool tsdb create-blocks-from
openmetrics`) and scrapes on from there. Against its baseline, ``query`` is twice as slow,
``refund`` fails 5 % of its calls (baseline 0.5 %), ``tool_call`` serves a third of its
baseline rate, ``lookup`` is as it was. Both servers must hold the same regression alerts
(pending: the rules' ``for`` is minutes, which the promtool tests cover): every latency rule
for ``query`` with its severity, the error-rate alert for ``refund``, the throughput alert for
``tool_call``, nothing for ``lookup``, with the same numbers in their annotations (up to the
classic buckets' interpolation).
"""

from __future__ import annotations

import math
import re
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from nethical_otel import names
from nethical_otel.config import Settings
from nethical_otel.detect.baseline import SeriesKey
from nethical_otel.stats import LatencyHistogram, Policy
from nethical_otel.telemetry.bridge import LeLayout
from tests.exposition_server import ExpositionServer
from tests.otlp_push import Point, push
from tests.servers import (
    PROMETHEUS3_OTLP_CONFIG,
    REPO_ROOT,
    require_binary,
    start_prometheus_with,
    wait_until,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

RULE_FILES = sorted((REPO_ROOT / "deploy" / "prometheus" / "rules").glob("*.yml"))
SERVICE = "rules-svc"
REGRESSIONS = {names.LATENCY_ALERT, names.ERROR_RATE_ALERT, names.THROUGHPUT_ALERT}
CALLS_PER_S = {"query": 500, "lookup": 500, "refund": 500, "tool_call": 200}
BASELINE_RPS = {"query": 500, "lookup": 500, "refund": 500, "tool_call": 600}  # tool_call: a third
FAILED_SHARE = 0.05  # refund's failed calls (baseline 0.5 %)
BASELINE_ERRORS = 0.005
SLOWDOWN = {"query": 2.0}
LAYOUT = LeLayout(Settings().bucket_min_s, Settings().bucket_max_s, Settings().buckets_per_octave)
HISTORY_S = 320  # seconds of calls before the servers start: more than the rules' 5 m window


class Batches:
    """Each action's calls of one second (ok, failed), and its baseline histogram."""

    def __init__(self) -> None:
        self.t0 = int(time.time()) - HISTORY_S  # when the calls began: the counters' zero
        self._cumulative: list[list[tuple[str, str, LatencyHistogram]]] = []
        rng = np.random.default_rng(20)
        self.ok: dict[str, LatencyHistogram] = {}
        self.failed: dict[str, LatencyHistogram] = {}
        self.baseline: dict[str, LatencyHistogram] = {}
        for i, (action, calls) in enumerate(CALLS_PER_S.items()):
            samples = rng.lognormal(math.log(0.01 * (i + 1)), 0.4, calls)
            n_failed = round(calls * FAILED_SHARE) if action == "refund" else 0
            self.baseline[action] = LatencyHistogram.from_samples(samples)  # as it was: unslowed
            slowed = samples * SLOWDOWN.get(action, 1.0)
            self.ok[action] = LatencyHistogram.from_samples(slowed[n_failed:])
            if n_failed:
                self.failed[action] = LatencyHistogram.from_samples(slowed[:n_failed])

    def cumulative(self, seconds: int) -> list[tuple[str, str, LatencyHistogram]]:
        """(action, error_type, histogram) after ``seconds`` seconds of calls (do not change them)."""
        if not self._cumulative:
            self._cumulative.append([(action, error_type, LatencyHistogram(batch.scale))
                                     for error_type, batches in (("", self.ok), ("TimeoutError", self.failed))
                                     for action, batch in batches.items()])
        while len(self._cumulative) <= seconds:
            self._cumulative.append([
                (action, error_type, hist.copy().merge((self.failed if error_type else self.ok)[action]))
                for action, error_type, hist in self._cumulative[-1]
            ])
        return self._cumulative[seconds]

    def at(self, t: float) -> list[tuple[str, str, LatencyHistogram]]:
        """The cumulative histograms at epoch time ``t``."""
        return self.cumulative(max(0, int(t - self.t0)))


def _gauges(batches: Batches) -> list[str]:
    """The detector agent's baseline gauges for the four actions."""
    lines = []
    for action, hist in batches.baseline.items():
        labels = f'service="{SERVICE}",action="{action}",cohort="prod"'
        rules = Policy().quantiles
        for rule, value in zip(rules, hist.quantiles([r.quantile for r in rules]), strict=True):
            quantile = f'{labels},quantile="{rule.quantile:g}"'
            lines.append(f"{names.DETECTOR_BASELINE}{{{quantile}}} {float(value)!r}")
        lines.append(f"{names.DETECTOR_BASELINE_RPS}{{{labels}}} {BASELINE_RPS[action]}")
        lines.append(f"{names.DETECTOR_BASELINE_ERRORS}{{{labels}}} {BASELINE_ERRORS}")
    return lines


def _classic(cumulative: list[tuple[str, str, LatencyHistogram]], at: str = "") -> list[str]:
    """The collector's prometheus exporter's text for these cumulative histograms (each
    sample stamped ``at`` where given: OpenMetrics for promtool's backfill)."""
    name = names.DURATION_METRIC
    les = [repr(b) for b in LAYOUT.bounds] + ["+Inf"]
    lines = []
    stamp = f" {at}" if at else ""
    for action, error_type, hist in cumulative:
        labels = (f'{names.JOB_LABEL}="{SERVICE}",instance="svc:9464",{names.ACTION_LABEL}="{action}",'
                  f'{names.COHORT_LABEL}="prod"')
        if error_type:
            labels += f',{names.ERROR_TYPE_LABEL}="{error_type}"'
        for le, count in zip(les, LAYOUT.cumulative(hist), strict=True):
            lines.append(f'{name}_bucket{{{labels},le="{le}"}} {count}{stamp}')
        lines += [f"{name}_sum{{{labels}}} {float(hist.sum)!r}{stamp}",
                  f"{name}_count{{{labels}}} {hist.count}{stamp}"]
    return lines


def _backfill(batches: Batches, until: int, data_dir: Path) -> None:
    """The history before ``until`` (every second from the calls' start) as a TSDB block."""
    lines = [f"# TYPE {names.DURATION_METRIC} histogram"]
    for t in range(batches.t0, until):
        lines += _classic(batches.at(t), at=str(t))
    openmetrics = data_dir.parent / "history.om"
    data_dir.mkdir(parents=True, exist_ok=True)
    openmetrics.write_text("\n".join([*lines, "# EOF"]) + "\n", encoding="utf-8")
    done = subprocess.run([require_binary("promtool"), "tsdb", "create-blocks-from", "openmetrics",
                           str(openmetrics), str(data_dir)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def _exposition(batches: Batches) -> Callable[[str], bytes]:
    """The body of a scrape by path: ``/gauges``, the agent's baseline gauges; ``/classic``,
    those and the histograms as they are at the time of the scrape."""
    gauges = _gauges(batches)

    def body(path: str) -> bytes:
        lines = list(gauges)
        if path == "/classic":
            lines.append(f"# TYPE {names.DURATION_METRIC} histogram")
            lines += _classic(batches.at(time.time()))
        return ("\n".join(lines) + "\n").encode()

    return body


def _config(target: str, path: str) -> dict:
    return {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(p) for p in RULE_FILES],
        "scrape_configs": [{"job_name": "sources", "honor_labels": True, "scrape_interval": "1s",
                            "scrape_timeout": "1s", "metrics_path": path,
                            "static_configs": [{"targets": [target]}]}],
    }


class Pusher:
    """Pushes the cumulative histograms to Prometheus 3's OTLP receiver: the history first
    (a point a second, with its timestamp), then every second as it happens."""

    def __init__(self, url: str, batches: Batches) -> None:
        self.url, self.batches = url, batches
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="otlp-pusher", daemon=True)
        self.error: BaseException | None = None

    def push(self, t: int) -> None:
        points = [Point(SeriesKey(SERVICE, action, "prod"), hist, error_type)
                  for action, error_type, hist in self.batches.at(t)]
        push(self.url, points, at=t, start=self.batches.t0 - 1)

    def _run(self) -> None:
        t = int(time.time())
        while not self._stop.is_set():
            try:
                self.push(t)
            except BaseException as exc:  # surfaced by the test
                self.error = exc
                return
            t += 1
            self._stop.wait(max(0.0, t - time.time()))

    def __enter__(self) -> Pusher:
        for t in range(self.batches.t0, int(time.time())):
            self.push(t)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)


def _alerts(url: str) -> dict[tuple, dict[str, str]]:
    """The regression alerts Prometheus holds (pending or firing): labels -> annotations."""
    body = httpx.get(f"{url}/api/v1/alerts", timeout=5).json()
    found = {}
    for alert in body["data"]["alerts"]:
        labels = alert["labels"]
        if labels["alertname"] in REGRESSIONS:
            key = tuple(labels.get(k, "") for k in ("alertname", "severity", "action", "quantile"))
            found[key] = alert["annotations"]
    return found


def _expected() -> set[tuple]:
    policy = Policy()
    latency = {(names.LATENCY_ALERT, r.severity, "query", f"{r.quantile:g}") for r in policy.quantiles}
    return latency | {
        (names.ERROR_RATE_ALERT, policy.error_rate_severity, "refund", ""),
        (names.THROUGHPUT_ALERT, policy.throughput_severity, "tool_call", ""),
    }


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """(classic 2.42 URL, native 3 URL), both fed and evaluating the shipped rules."""
    batches = Batches()
    with ExpositionServer(_exposition(batches)) as exposition:
        native_config = {**_config(exposition.target, "/gauges"), **PROMETHEUS3_OTLP_CONFIG}
        _backfill(batches, int(time.time()) - 1, tmp_path / "prometheus" / "data")  # 2.42's data dir
        with start_prometheus_with(tmp_path, _config(exposition.target, "/classic")) as classic, \
                start_prometheus_with(tmp_path, native_config, version=3) as native, \
                Pusher(native.url, batches) as pusher:
            yield classic.url, native.url
            assert pusher.error is None, pusher.error


def test_native_and_classic_rules_raise_the_same_alerts(servers: tuple[str, str]) -> None:
    classic_url, native_url = servers
    expected = _expected()
    urls = {"classic": classic_url, "native": native_url}
    for kind, url in urls.items():
        wait_until(lambda url=url: set(_alerts(url)) == expected, 60,
                   f"the {kind} rules' alerts {sorted(expected)}", interval_s=0.5)
    # Held, not a passing moment: a few evaluations later, still exactly these on both.
    time.sleep(3)
    found = {kind: _alerts(url) for kind, url in urls.items()}
    for kind, alerts in found.items():
        assert set(alerts) == expected, kind
    # The same numbers: the current quantile, error ratio, request rate, and the same baseline.
    for key in sorted(expected):
        native, classic = found["native"][key], found["classic"][key]
        print(f"{key}: current native {native['current_value']} / classic {classic['current_value']}, "
              f"baseline {native['baseline_value']}")
        assert native["baseline_value"] == classic["baseline_value"], key
        tolerance = 0.1 if key[0] == names.LATENCY_ALERT else 0.02  # classic: 19 % wide `le` buckets
        assert float(native["current_value"]) == pytest.approx(float(classic["current_value"]), rel=tolerance)
        numbers = re.compile(r"\d+(?:\.\d+)?%")
        assert numbers.sub("N%", native["summary"]) == numbers.sub("N%", classic["summary"]), key
