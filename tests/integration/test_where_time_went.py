"""Where the time went, end to end: a slowdown in one sub-step of the example service.

- Embedded: the service exports its spans to the real Collector (which forwards them to a
  receiver playing the trace backend); the real Alertmanager's alert names the slowed
  sub-step, and its exemplar trace ids are spans the Collector received.
- Pull: a real Prometheus with ``--enable-feature=exemplar-storage`` scrapes the service's
  OpenMetrics ``/metrics``; ``/api/v1/query_exemplars`` returns trace ids of exported spans.
- Classic: the Collector's prometheus exporter serves them in OpenMetrics.
- Fleet: the Collector pushes the native histograms, with their exemplars, to Prometheus 3
  (exemplar storage on); the agent's ``PrometheusSource`` reads the sub-steps as series of
  their own, and exemplars whose trace ids are the Collector's spans.
"""

from __future__ import annotations

import time

import httpx
import pytest
import yaml
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

import nethical_otel
from nethical_otel.detect.baseline import SeriesKey
from nethical_otel.detect.sources import PrometheusSource
from nethical_otel.example import IntegratedGovernance
from nethical_otel.example.governance import CHECK, FETCH, MODEL
from nethical_otel.names import ACTION_LABEL, DURATION_METRIC, PARENT_LABEL, TRACE_ID_LABEL
from tests.integration.test_alerting import FAST
from tests.load import SteadyLoad
from tests.otlp_receiver import HttpReceiver
from tests.servers import (
    COLLECTOR_CONFIG,
    COLLECTOR_CONFIG_CLASSIC,
    active_alerts,
    start_alertmanager,
    start_collector,
    start_prometheus,
    wait_until,
)

pytestmark = pytest.mark.integration

TRACE_URL = "http://127.0.0.1:16686/trace/{trace_id}"


def collector_config_with_trace_backend(endpoint: str) -> dict:
    """The shipped collector/config.yaml, its traces also sent to ``endpoint`` (a trace backend)."""
    config = yaml.safe_load(COLLECTOR_CONFIG.read_text(encoding="utf-8"))
    config["exporters"]["otlp_http/traces"] = {"endpoint": endpoint, "compression": "none"}
    config["service"]["pipelines"]["traces"]["exporters"].append("otlp_http/traces")
    return config


def span_trace_ids(receiver: HttpReceiver) -> set[str]:
    return {span.trace_id for span in receiver.spans()}


def test_the_alert_names_the_slowed_sub_step_and_links_spans_the_collector_received(tmp_path, clean_env):
    with (
        HttpReceiver() as backend,
        start_collector(tmp_path, collector_config_with_trace_backend(backend.endpoint)) as collector,
        start_alertmanager(tmp_path) as am,
    ):
        telemetry = nethical_otel.setup(
            service_name="governance",
            detector=True,
            set_global=False,
            prometheus_enabled=False,
            otlp_endpoint=collector.otlp_grpc_endpoint,
            metrics_exporter="none",
            alertmanager_url=am.url,
            trace_url_template=TRACE_URL,
            **FAST,
        )
        service = IntegratedGovernance(seed=4, error_rate=0.0, latency_scale=0.5)
        baselines = telemetry.detector.baselines
        try:
            with SteadyLoad(service, rps=200, agents=4, cohorts=("control",)):
                wait_until(
                    lambda: baselines.get(SeriesKey("governance", "query", "control"))
                    and baselines.get(SeriesKey("governance", FETCH, "control", parent="query")),
                    30,
                    "learned baselines of query and of its sub-step",
                )
                service.step_slowdown[("query", FETCH)] = 2.0  # query ~1.6x, all of it in the fetch
                alerts = wait_until(
                    lambda: [
                        a
                        for a in active_alerts(am.url, alertname="NethicalLatencyRegression", action="query")
                        if a["annotations"].get("top_substep")
                    ],
                    40,
                    "a latency alert on query naming a sub-step, in Alertmanager",
                )
                annotations = alerts[0]["annotations"]
                assert annotations["top_substep"] == FETCH, annotations
                first = annotations["substeps"].split("; ")[0]
                assert first.startswith(f"{FETCH} +") and "(significant)" in first, first
                assert "mostly in policy_store.fetch" in annotations["summary"]
                # The others may be named too when the machine is loaded (a slower wake-up from
                # each sleep is real time in risk.model), but each carries far less than the fetch.
                parts = [part.split() for part in annotations["substeps"].split("; ")]
                named = {words[0]: float(words[1]) for words in parts}  # sub-step: ms per call
                assert set(named) <= {FETCH, CHECK, MODEL}
                assert all(ms < named[FETCH] / 2 for step, ms in named.items() if step != FETCH), named
                ids = annotations["exemplar_trace_ids"].split(",")
                assert 1 <= len(ids) <= 3 and all(len(i) == 32 for i in ids)
                assert annotations["trace_url"] == TRACE_URL.replace("{trace_id}", ids[0])
                # Sub-steps page no one: only query's own alert is there.
                assert not active_alerts(am.url, action=FETCH)
        finally:
            telemetry.shutdown()  # flushes the last spans to the collector
        wait_until(
            lambda: set(ids) <= span_trace_ids(backend), 20, "the exemplar traces at the trace backend"
        )
        by_trace = [s for s in backend.spans() if s.trace_id == ids[0]]
        assert {s.name for s in by_trace} >= {"process_action", FETCH}, "the whole trace of the slow call"
        slow_fetch = next(s for s in by_trace if s.name == FETCH)
        baseline_fetch_s = 0.5 * 0.6 * 0.004  # latency_scale x the fetch's share x query's median
        assert slow_fetch.duration_s > 1.5 * baseline_fetch_s, "an exemplar of the slow tail"


def test_prometheus_keeps_the_exemplars_of_the_openmetrics_endpoint(tmp_path, clean_env):
    with HttpReceiver() as backend:
        telemetry = nethical_otel.setup(
            service_name="governance",
            set_global=False,
            prometheus_port=0,
            otlp_endpoint=backend.endpoint,
            otlp_protocol="http/protobuf",
            metrics_exporter="none",
        )
        try:
            metrics_url = telemetry.prometheus_url
            text = httpx.get(metrics_url, headers={"Accept": "application/openmetrics-text"}).text
            service = IntegratedGovernance(seed=5, error_rate=0.0, latency_scale=0.3)
            for i in range(200):
                service.process_action(f"agent-{i}", "read the docs", cohort="control", action_type="query")
            plain = httpx.get(metrics_url).text
            assert "# {" not in plain, "the 0.0.4 text format has no exemplars"
            text = httpx.get(metrics_url, headers={"Accept": "application/openmetrics-text"}).text
            assert f'{TRACE_ID_LABEL}="' in text and f'{PARENT_LABEL}="query"' in text
            target = metrics_url.split("//")[1].split("/")[0]
            with start_prometheus(tmp_path, [target], features=["exemplar-storage"]) as prometheus:
                start = time.time() - 60

                def exemplars():
                    response = httpx.get(
                        f"{prometheus.url}/api/v1/query_exemplars",
                        params={
                            "query": f'{DURATION_METRIC}_bucket{{{ACTION_LABEL}="{FETCH}"}}',
                            "start": start,
                            "end": time.time() + 60,
                        },
                        timeout=5,
                    )
                    return [e for series in response.json()["data"] for e in series["exemplars"]]

                found = wait_until(exemplars, 30, "exemplars in Prometheus")
        finally:
            telemetry.shutdown()
        ids = {e["labels"][TRACE_ID_LABEL] for e in found}
        exported = span_trace_ids(backend)
        assert ids and ids <= exported, (ids - exported, len(exported))
        fetch_spans = {s.span_id for s in backend.spans() if s.name == FETCH}
        assert {e["labels"]["span_id"] for e in found} <= fetch_spans, "the exemplar is the fetch's own span"


def test_fleet_reads_sub_steps_and_exemplars_from_prometheus_3(tmp_path, clean_env):
    with (
        HttpReceiver() as backend,
        start_prometheus(tmp_path, [], version=3, features=["exemplar-storage"]) as prometheus,
        start_collector(
            tmp_path, collector_config_with_trace_backend(backend.endpoint), prometheus_url=prometheus.url
        ) as collector,
    ):
        telemetry = nethical_otel.setup(
            service_name="governance",
            set_global=False,
            prometheus_enabled=False,
            otlp_endpoint=collector.otlp_grpc_endpoint,
            histogram_aggregation="base2_exponential_bucket_histogram",
            metric_export_interval_ms=1000,
        )
        service = IntegratedGovernance(seed=6, error_rate=0.0, latency_scale=0.3)
        source = PrometheusSource(prometheus.url, 30.0, histograms="native")
        fetch = SeriesKey("governance", FETCH, "control", parent="query")
        try:
            with SteadyLoad(service, rps=100, agents=2, actions=("query",), cohorts=("control",)):
                windows = wait_until(
                    lambda: (w := source.read(time.time())) and fetch in w and w, 40, "the sub-step series"
                )
                found = wait_until(
                    lambda: source.exemplars(fetch, time.time() - 60, time.time()), 30, "exemplars"
                )
        finally:
            telemetry.shutdown()
            source_keys = set(windows)
        assert SeriesKey("governance", "query", "control") in source_keys
        assert {k.action for k in source_keys if k.parent == "query"} == {FETCH, CHECK, MODEL}
        assert not {k for k in source_keys if not k.parent and k.action in (FETCH, CHECK, MODEL)}
        assert [e.value for e in found] == sorted((e.value for e in found), reverse=True)
        wait_until(
            lambda: {e.trace_id_hex for e in found} <= span_trace_ids(backend),
            20,
            "the exemplars' traces at the trace backend",
        )


def test_the_classic_collector_serves_the_exemplars_in_openmetrics(tmp_path, clean_env):
    with HttpReceiver() as backend, start_collector(tmp_path, COLLECTOR_CONFIG_CLASSIC) as collector:
        telemetry = nethical_otel.setup(
            service_name="governance",
            set_global=False,
            prometheus_enabled=False,
            otlp_endpoint=collector.otlp_grpc_endpoint,
            traces_exporter="none",
            metric_export_interval_ms=500,
            span_processors=[SimpleSpanProcessor(OTLPSpanExporter(f"{backend.endpoint}/v1/traces"))],
        )
        try:
            service = IntegratedGovernance(seed=7, error_rate=0.0, latency_scale=0.2)
            for i in range(100):
                service.process_action(f"agent-{i}", "read", cohort="control", action_type="query")

            def exemplar_lines():
                text = httpx.get(
                    collector.metrics_url, headers={"Accept": "application/openmetrics-text"}, timeout=5
                ).text
                return [
                    line
                    for line in text.splitlines()
                    if line.startswith(f"{DURATION_METRIC}_bucket") and f'{TRACE_ID_LABEL}="' in line
                ]

            lines = wait_until(exemplar_lines, 20, "exemplars on the collector's prometheus exporter")
        finally:
            telemetry.shutdown()
        ids = {line.split(f'{TRACE_ID_LABEL}="')[1][:32] for line in lines}
        assert ids <= span_trace_ids(backend)
        assert any(f'{PARENT_LABEL}="query"' in line for line in lines), "sub-steps' buckets too"
