"""The whole production path, every part real and on loopback, on both histogram paths.

Two instances of the example service (separate processes) export OTLP to the built
Collector, which feeds Prometheus with the shipped configs:

- classic: collector/config-classic.yaml, scraped by Prometheus 2.42 running
  deploy/prometheus/prometheus-classic.yml (`le` buckets, the services on explicit buckets);
- native: collector/config.yaml pushing OTLP to Prometheus 3 running
  deploy/prometheus/prometheus.yml (native histograms, the services on exponential buckets).

The detector agent (fleet mode, PrometheusSource, `prometheus_histograms` left at `auto`)
learns baselines, then both instances slow one action by 30 %; the alert must reach
Alertmanager with the right labels, and resolve once the slowdown ends. Each run prints the
time from injection to alert and from removal to resolve; the second prints both.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.servers import (
    COLLECTOR_CONFIG,
    COLLECTOR_CONFIG_CLASSIC,
    PROMETHEUS_DEPLOY_CONFIG_CLASSIC,
    RunningCollector,
    RunningServer,
    deploy_prometheus_config,
    free_port,
    start_agent,
    start_alertmanager,
    start_collector,
    start_prometheus_with,
    wait_for_query,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SERVICE = "governance"
INJECT_AT_S, INJECT_FOR_S = 45.0, 45.0
AGENT = {
    "detector_window_s": 10,
    "detector_step_s": 2,
    # One fresh window: the test is calibrated (0.5 % a comparison), so a regression must hold
    # on new data before it pages; 4 s of 10 s windows was the same data judged twice.
    "detector_for_s": 10,
    "detector_keep_firing_for_s": 6,
    "alert_resend_interval_s": 5,
}
# What each path stores: the native histogram itself, or its classic `_count` series.
COUNT_METRIC = {
    "classic": "nethical_action_duration_seconds_count",
    "native": "nethical_action_duration_seconds",
}
AGGREGATION = {"classic": "explicit_bucket_histogram", "native": "base2_exponential_bucket_histogram"}
TIMES: dict[str, tuple[float, float]] = {}


def start_instance(otlp_endpoint: str, seed: int, output_dir, histograms: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "NETHICAL_OTEL_"))}
    env.update(
        OTEL_SERVICE_NAME=SERVICE,
        OTEL_EXPORTER_OTLP_ENDPOINT=otlp_endpoint,
        OTEL_EXPORTER_OTLP_PROTOCOL="grpc",
        OTEL_METRIC_EXPORT_INTERVAL="1000",
        OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION=AGGREGATION[histograms],
        NETHICAL_OTEL_PROMETHEUS_ENABLED="false",
    )
    args = [
        sys.executable, "-m", "nethical_otel.cli", "demo", "--duration", "150", "--rps", "150",
        "--agents", "4", "--refresh", "1", "--seed", str(seed),
        "--inject-slowdown", "1.3", "--inject-at", str(INJECT_AT_S), "--inject-for", str(INJECT_FOR_S),
        "--inject-action", "query", "--output-dir", str(output_dir),
    ]  # fmt: skip
    return subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def alerts(am_url: str, **labels: str) -> list[dict]:
    found = httpx.get(f"{am_url}/api/v2/alerts", timeout=5).json()
    return [a for a in found if all(a["labels"].get(k) == v for k, v in labels.items())]


def wait(condition, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")


@contextlib.contextmanager
def pipeline(
    tmp_path: Path, histograms: str, agent_port: int
) -> Iterator[tuple[RunningCollector, RunningServer]]:
    """Collector and Prometheus of one path, Prometheus on the shipped config of that path."""
    targets = {"nethical-detector": [f"127.0.0.1:{agent_port}"]}
    if histograms == "classic":
        with start_collector(tmp_path, COLLECTOR_CONFIG_CLASSIC) as collector:
            targets["otel-collector"] = [collector.metrics_target]
            config = deploy_prometheus_config(targets, path=PROMETHEUS_DEPLOY_CONFIG_CLASSIC)
            with start_prometheus_with(tmp_path, config) as prometheus:
                yield collector, prometheus
    else:
        config = deploy_prometheus_config(targets)  # prometheus.yml, its otlp: block included
        with start_prometheus_with(tmp_path, config, version=3) as prometheus, \
                start_collector(tmp_path, COLLECTOR_CONFIG, prometheus_url=prometheus.url) as collector:
            yield collector, prometheus


@pytest.mark.parametrize("histograms", ["classic", "native"])
def test_service_to_alertmanager_through_collector_and_prometheus(tmp_path, histograms):
    agent_port = free_port()
    with pipeline(tmp_path, histograms, agent_port) as (collector, prometheus), \
            start_alertmanager(tmp_path) as am:
        instances = [
            start_instance(collector.otlp_grpc_endpoint, seed, tmp_path / f"demo-{seed}", histograms)
            for seed in (21, 22)
        ]
        started = time.monotonic()
        try:
            # Two instances behind one service name, fleet-wide: both must be reporting.
            instances_reporting = f'count by (instance) ({COUNT_METRIC[histograms]}{{job="{SERVICE}"}})'
            wait_for_query(prometheus.url, f"count({instances_reporting}) == 2", timeout_s=40)
            settings = {**AGENT, "alertmanager_url": am.url}
            with start_agent(tmp_path, prometheus.url, port=agent_port, settings=settings) as agent:
                wait_for_query(
                    prometheus.url,
                    f'nethical_detector_baseline_seconds{{service="{SERVICE}", action="query"}}',
                    timeout_s=40,
                )
                assert time.monotonic() - started < INJECT_AT_S, "baseline learned only after the injection"
                assert not alerts(am.url), "no alert before the slowdown"

                firing = wait(
                    lambda: alerts(am.url, alertname="NethicalLatencyRegression", action="query"),
                    INJECT_AT_S + 60 - (time.monotonic() - started),
                    "the regression alert",
                )
                fired_after = time.monotonic() - started - INJECT_AT_S
                assert fired_after > 0, "fired before the injection"
                labels = firing[0]["labels"]
                assert labels["service"] == SERVICE and labels["severity"] in ("warning", "info")
                assert labels["cohort"] == "demo" and labels["quantile"] in ("0.5", "0.95", "0.99")
                # The other actions share the demo's event loop with the slowed one, so their tail
                # can really grow (an honest p99 alert); their median cannot.
                for other in ("tool_call", "generate"):
                    assert not alerts(am.url, action=other, quantile="0.5"), f"{other} p50 alerted"

                wait(
                    lambda: not alerts(am.url, action="query"),
                    INJECT_AT_S + INJECT_FOR_S + 60 - (time.monotonic() - started),
                    "the alert to resolve",
                )
                resolved_after = time.monotonic() - started - INJECT_AT_S - INJECT_FOR_S
                assert resolved_after > 0, "resolved before the slowdown ended"
                assert httpx.get(f"{agent.url}/healthz", timeout=5).status_code == 200
                TIMES[histograms] = (fired_after, resolved_after)
                print(
                    f"\nend to end ({histograms}): alert {fired_after:.1f} s after the 30% slowdown began, "
                    f"resolved {resolved_after:.1f} s after it ended"
                )
                if len(TIMES) == 2:
                    for name, (fired, resolved) in TIMES.items():
                        print(f"  {name:8} alert after {fired:5.1f} s, resolved after {resolved:5.1f} s")
        finally:
            for process in instances:
                process.terminate()
            for process in instances:
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    process.kill()
            for process in instances:
                assert b"Traceback" not in process.stderr.read()
