"""collector/: the shipped configs on the collector built from the shipped manifest.

Two configs: config.yaml (native histograms, `otlp_http` to Prometheus 3's OTLP receiver)
and config-classic.yaml (`le` buckets on the `prometheus` exporter, for Prometheus 2.x).

1. The manifest builds exactly the components the two configs use together (names from the
   binary's own `components` listing), all of one release; each config uses every component it
   declares, and its pipelines put memory_limiter first, then batch.
2. `validate` accepts both, and rejects a broken copy (so the check means something).
3. Classic: the example service exports over OTLP (grpc and http/protobuf) to the running
   collector; its Prometheus endpoint then serves `nethical_action_duration_seconds` with the
   service's exact call counts per action/cohort/error, our `le` bounds, job = service.name
   and instance = service.instance.id, plus span metrics for the same calls.
4. Native: the same service, on exponential histograms, through config.yaml into a real
   Prometheus 3: one native histogram series per action/cohort/error with the exact call
   counts, job and instance as on the classic path and no other label, span metrics beside it.
"""

from __future__ import annotations

import math
import re
import subprocess
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

import nethical_otel
from nethical_otel.example import GovernanceError, IntegratedGovernance
from nethical_otel.example.governance import SUBSTEPS
from nethical_otel.names import PARENT_LABEL
from tests.servers import (
    COLLECTOR_CONFIG,
    COLLECTOR_CONFIG_CLASSIC,
    COLLECTOR_CONFIGS,
    COLLECTOR_MANIFEST,
    RunningCollector,
    collector_binary,
    query,
    start_collector,
    start_prometheus,
    wait_for_query,
)

pytestmark = pytest.mark.integration

CORE_VERSION = "v0.165.0"
CONTRIB_VERSION = "v0.165.0"
STABLE_VERSION = "v1.71.0"  # confmap providers: the stable modules released with core v0.165.0


def _config(path: Path = COLLECTOR_CONFIG) -> dict:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def _manifest() -> dict:
    return yaml.safe_load(COLLECTOR_MANIFEST.read_text(encoding="utf-8"))


def _components_used(path: Path) -> dict[str, set[str]]:
    """Components by kind that the pipelines of ``path`` use; each must also be declared there."""
    config = _config(path)
    service = config["service"]
    kinds = ("receivers", "processors", "exporters", "connectors")
    used: dict[str, set[str]] = {kind: set() for kind in kinds}
    for pipeline in service["pipelines"].values():
        for kind in used:
            used[kind].update(pipeline.get(kind, []))
    # A connector is listed as an exporter of one pipeline and a receiver of another.
    connectors = set(config.get("connectors", {}))
    used["connectors"] = (used["receivers"] | used["exporters"]) & connectors
    used["receivers"] -= connectors
    used["exporters"] -= connectors
    used["extensions"] = set(service.get("extensions", []))
    for kind, names in used.items():
        assert set(config.get(kind, {})) == names, f"{kind} declared but unused in {path.name}"
    return used


def test_manifest_builds_exactly_what_the_configs_use() -> None:
    listing = subprocess.run([collector_binary(), "components"], capture_output=True, text=True,
                             timeout=30, check=True)
    built = yaml.safe_load(listing.stdout)
    native, classic = (_components_used(path) for path in (COLLECTOR_CONFIG, COLLECTOR_CONFIG_CLASSIC))
    assert native["exporters"] == {"otlp_http"} and classic["exporters"] == {"prometheus"}
    for kind in native:
        names = native[kind] | classic[kind]
        assert {c["name"] for c in built[kind]} == names, f"{kind}: built {built[kind]}, configs use {names}"
    # ${env:...} everywhere, and --config=<path> goes through the file provider.
    assert {p["scheme"] for p in built["providers"]} == {"env", "file"}

    manifest = _manifest()
    for kind in ("receivers", "processors", "exporters", "connectors", "extensions", "providers"):
        for entry in manifest[kind]:
            module, version = entry["gomod"].split()
            if module.startswith("go.opentelemetry.io/collector/confmap/"):
                assert version == STABLE_VERSION, entry
            elif module.startswith("go.opentelemetry.io/collector/"):
                assert version == CORE_VERSION, entry
            else:
                assert version == CONTRIB_VERSION, entry
    builder_pin = re.search(r"^BUILDER_VERSION=(\S+)", (COLLECTOR_MANIFEST.parent / "build.sh").read_text(),
                            re.MULTILINE)
    assert builder_pin and builder_pin.group(1) == CORE_VERSION


@pytest.mark.parametrize("path", COLLECTOR_CONFIGS, ids=lambda p: p.name)
def test_pipelines_put_memory_limiter_first_then_batch(path: Path) -> None:
    for name, pipeline in _config(path)["service"]["pipelines"].items():
        assert pipeline["processors"][:2] == ["memory_limiter", "batch"], name


def test_native_config_sends_to_prometheus_otlp_receiver() -> None:
    exporter = _config()["exporters"]["otlp_http"]
    # `endpoint` is a base URL (the exporter appends /v1/metrics): Prometheus' /api/v1/otlp.
    assert exporter["endpoint"] == "${env:OTELCOL_PROMETHEUS_OTLP_ENDPOINT:-http://prometheus:9090/api/v1/otlp}"
    assert "metrics_endpoint" not in exporter


@pytest.mark.parametrize("path", COLLECTOR_CONFIGS, ids=lambda p: p.name)
def test_validate_accepts_the_config_and_rejects_a_broken_one(tmp_path: Path, path: Path) -> None:
    binary = collector_binary()
    done = subprocess.run([binary, "validate", f"--config={path}"], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr

    broken = _config(path)
    broken["service"]["pipelines"]["metrics"]["exporters"].append("prometheusremotewrite")
    broken_path = tmp_path / "broken.yaml"
    broken_path.write_text(yaml.safe_dump(broken), encoding="utf-8")
    done = subprocess.run([binary, "validate", f"--config={broken_path}"], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode != 0
    assert "prometheusremotewrite" in done.stdout + done.stderr


def _samples(text: str, name: str) -> list:
    """Samples named exactly ``name`` (families group _bucket/_count/_sum under the base name)."""
    return [s for family in text_string_to_metric_families(text) for s in family.samples if s.name == name]


def _wait_for_samples(collector: RunningCollector, name: str, job: str, accept, timeout_s: float = 15.0):
    deadline = time.monotonic() + timeout_s
    samples: list = []
    while time.monotonic() < deadline:
        samples = [s for s in _samples(collector.scrape(), name) if s.labels.get("job") == job]
        if accept(samples):
            return samples
        time.sleep(0.2)
    raise AssertionError(f"{name}{{job={job!r}}} never satisfied the test; last: {samples}")


def _export_governance_calls(
    service_name: str, otlp_endpoint: str, protocol: str, n: int = 120, **settings: object
) -> tuple[Counter[tuple[str, str, str]], str]:
    """The example service's ``n`` calls, exported over OTLP (``protocol``) to a collector at
    ``otlp_endpoint`` and flushed: (the calls counted by (action, cohort, error type), the
    service's ``service.instance.id``). ``settings``: more ``setup()`` arguments."""
    tel = nethical_otel.setup(
        service_name=service_name, otlp_endpoint=otlp_endpoint, otlp_protocol=protocol,
        metric_export_interval_ms=1000, traces_sampler="always_on", prometheus_enabled=False,
        set_global=False, **settings)
    try:
        gov = IntegratedGovernance(seed=7, error_rate=0.1, latency_scale=0.2)
        calls: Counter[tuple[str, str, str]] = Counter()
        for i in range(n):
            action = ("query", "tool_call")[i % 2]
            cohort = ("control", "canary")[i % 3 == 0]
            try:
                gov.process_action("agent-1", "summarize the ticket", cohort=cohort, action_type=action)
                calls[(action, cohort, "")] += 1
            except GovernanceError:
                calls[(action, cohort, "GovernanceError")] += 1
        assert tel.force_flush() is True
        instance_id = tel.tracer_provider.resource.attributes["service.instance.id"]
    finally:
        tel.shutdown()
    assert any(error for _, _, error in calls), "the run should include failed calls"
    return calls, instance_id


def _assert_sub_steps(by_series: list[tuple[str, str, int]], calls: Counter) -> None:
    """Each action's sub-steps arrive with its name as parent: one fetch and one check per call
    (the cohorts summed; a failed call stops at its check, so risk.model has the rest)."""
    per_action = Counter()
    for (action, _cohort, _error), n in calls.items():
        per_action[action] += n
    fetched = Counter()
    for step, parent, n in by_series:
        if step == SUBSTEPS[0]:
            fetched[parent] += n
    assert fetched == per_action


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_example_service_exports_classic_buckets_through_the_collector(
    tmp_path: Path, clean_env: None, protocol: str
) -> None:
    service_name = f"collector-{protocol.replace('/', '-')}"
    with start_collector(tmp_path, COLLECTOR_CONFIG_CLASSIC) as collector:
        calls, instance_id = _export_governance_calls(service_name, collector.otlp_endpoint(protocol),
                                                      protocol)

        def counted(samples: list) -> bool:
            got = Counter({(s.labels["nethical_action"], s.labels.get("nethical_cohort", ""),
                            s.labels.get("error_type", "")): int(s.value) for s in samples
                           if PARENT_LABEL not in s.labels})
            return got == calls

        counts = _wait_for_samples(collector, "nethical_action_duration_seconds_count", service_name, counted)
        assert {s.labels["instance"] for s in counts} == {instance_id}
        # Only these labels: no resource attribute other than job/instance, no scope labels;
        # the sub-steps of process_action have their parent's action besides.
        assert {frozenset(s.labels) - {"error_type"} for s in counts} == {
            frozenset({"job", "instance", "nethical_action", "nethical_cohort"}),
            frozenset({"job", "instance", "nethical_action", "nethical_cohort", PARENT_LABEL})}
        _assert_sub_steps([(s.labels["nethical_action"], s.labels.get(PARENT_LABEL, ""), int(s.value))
                           for s in counts if not s.labels.get("error_type")], calls)

        text = collector.scrape()
        buckets = [s for s in _samples(text, "nethical_action_duration_seconds_bucket")
                   if s.labels["job"] == service_name]
        bounds = sorted({float(s.labels["le"]) for s in buckets} - {math.inf})
        # 2 ** (k / 4) seconds: 4 buckets per doubling, 0.5 ms .. 60 s by default.
        assert all(math.isclose(4 * math.log2(b), round(4 * math.log2(b)), abs_tol=1e-9) for b in bounds)
        assert bounds[0] <= 0.0005 and bounds[-1] >= 60
        for key, n in calls.items():
            action, cohort, error = key
            inf = [s for s in buckets if s.labels["le"] == "+Inf" and s.labels["nethical_action"] == action
                   and s.labels["nethical_cohort"] == cohort and s.labels.get("error_type", "") == error]
            assert [int(s.value) for s in inf] == [n], key

        assert _samples(text, "nethical_action_active"), "the in-flight gauge is missing"
        [target] = [s for s in _samples(text, "target_info") if s.labels["job"] == service_name]
        assert target.labels["telemetry_sdk_language"] == "python"

        # Span metrics: one call per span, status from the span, our dimensions as labels.
        def span_calls_counted(samples: list) -> bool:
            got: Counter[tuple[str, str, str]] = Counter()
            for s in samples:
                if s.labels["span_name"] != "process_action":  # a sub-step's span
                    continue
                error = "GovernanceError" if s.labels["status_code"] == "STATUS_CODE_ERROR" else ""
                got[(s.labels["nethical_action"], s.labels["nethical_cohort"], error)] += int(s.value)
            return got == calls

        spans = _wait_for_samples(collector, "traces_span_metrics_calls_total", service_name,
                                  span_calls_counted)
        assert {s.labels["span_name"] for s in spans} == {"process_action", *SUBSTEPS}
        assert {s.labels["service_name"] for s in spans} == {service_name}
        durations = [s for s in _samples(collector.scrape(), "traces_span_metrics_duration_seconds_count")
                     if s.labels["job"] == service_name and s.labels["span_name"] == "process_action"]
        assert sum(s.value for s in durations) == sum(calls.values())


def test_example_service_exports_native_histograms_to_prometheus3(tmp_path: Path, clean_env: None) -> None:
    service_name = "collector-native"
    with start_prometheus(tmp_path, [], version=3) as prometheus, \
            start_collector(tmp_path, prometheus_url=prometheus.url) as collector:
        calls, instance_id = _export_governance_calls(
            service_name, collector.otlp_grpc_endpoint, "grpc",
            histogram_aggregation="base2_exponential_bucket_histogram")

        def counted(result: list) -> bool:
            got = Counter({(s["metric"]["nethical_action"], s["metric"].get("nethical_cohort", ""),
                            s["metric"].get("error_type", "")): int(float(s["value"][1])) for s in result
                           if PARENT_LABEL not in s["metric"]})
            return got == calls

        counts = wait_for_query(prometheus.url,
                                f'histogram_count(nethical_action_duration_seconds{{job="{service_name}"}})',
                                accept=counted)
        assert {s["metric"]["instance"] for s in counts} == {instance_id}
        stored = query(prometheus.url, f'nethical_action_duration_seconds{{job="{service_name}"}}')
        assert all("histogram" in s for s in stored), "not native histograms"
        # Only these labels, as on the classic path: no resource attribute besides job/instance,
        # no scope labels.
        assert {frozenset(s["metric"]) - {"error_type", PARENT_LABEL} for s in stored} == {
            frozenset({"__name__", "job", "instance", "nethical_action", "nethical_cohort"})}
        _assert_sub_steps([(s["metric"]["nethical_action"], s["metric"].get(PARENT_LABEL, ""),
                            int(float(s["value"][1]))) for s in counts if not s["metric"].get("error_type")],
                          calls)
        assert not query(prometheus.url, f'{{__name__=~"nethical_action_duration_seconds_.+", '
                                         f'job="{service_name}"}}'), "classic series beside the native ones"
        assert query(prometheus.url, f'nethical_action_active{{job="{service_name}"}}'), "no in-flight gauge"
        [target] = query(prometheus.url, f'target_info{{job="{service_name}"}}')
        assert target["metric"]["telemetry_sdk_language"] == "python"

        def span_calls_counted(result: list) -> bool:
            got: Counter[tuple[str, str, str]] = Counter()
            for s in result:
                if s["metric"]["span_name"] != "process_action":  # a sub-step's span
                    continue
                error = "GovernanceError" if s["metric"]["status_code"] == "STATUS_CODE_ERROR" else ""
                got[(s["metric"]["nethical_action"], s["metric"]["nethical_cohort"], error)] += \
                    int(float(s["value"][1]))
            return got == calls

        spans = wait_for_query(prometheus.url, f'traces_span_metrics_calls_total{{job="{service_name}"}}',
                               accept=span_calls_counted)
        assert {s["metric"]["span_name"] for s in spans} == {"process_action", *SUBSTEPS}


@pytest.mark.parametrize("path", COLLECTOR_CONFIGS, ids=lambda p: p.name)
def test_collector_reads_its_endpoints_from_the_environment(tmp_path: Path, path: Path) -> None:
    """start_collector moved every listener to a free loopback port through OTELCOL_* alone."""
    with start_collector(tmp_path, path) as collector:
        log = collector.process.log_path.read_text(encoding="utf-8")
        for port_url in (collector.otlp_grpc_endpoint, collector.otlp_http_endpoint, collector.telemetry_url):
            assert port_url.startswith("http://127.0.0.1:")
        assert "0.0.0.0" not in log, "a listener kept its production default"
        assert "otelcol_process_uptime" in httpx.get(collector.telemetry_url, timeout=5).text
        if path == COLLECTOR_CONFIG_CLASSIC:
            assert httpx.get(collector.metrics_url, timeout=5).status_code == 200
