"""deploy/compose and deploy/kubernetes: what can be proven without a container engine.

1. docker-compose.yml and its classic override validate against the Compose Specification
   schema (check-jsonschema's vendored copy), and a broken copy does not (so the check means
   something); every file they mount exists; the host names and ports Prometheus scrapes are
   compose services. The default is native histograms: the service exports exponential
   buckets (read back through the real settings), the collector runs collector/config.yaml
   and sends to the compose Prometheus' OTLP endpoint, Prometheus is the 3.x release the tests
   build, with its OTLP receiver on; the override switches all of it to the classic path.
1b. deploy/prometheus/prometheus.yml loads in a real Prometheus 3 whose OTLP receiver then
   accepts a request (Debian's 2.42 promtool cannot parse its `otlp:` block; it checks
   prometheus-classic.yml in test_prometheus_rules.py).
2. The Kubernetes manifests validate strictly (unknown fields are errors) against the
   Kubernetes 1.37 OpenAPI schemas (kubernetes-validate), a broken copy does not; the
   gateway's ConfigMap is collector/config.yaml verbatim and it sends to the Prometheus the
   detector reads; the node agents' config puts memory_limiter first and routes by service;
   the detector's settings file loads through the real settings and policy parsers and spells
   out the default policy.
3. Compose, Kubernetes and the builder manifest use one collector release.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
import yaml

from nethical_otel.names import RUNBOOK_BASE_URL
from tests.servers import (
    COLLECTOR_CONFIG,
    COLLECTOR_CONFIG_CLASSIC,
    COLLECTOR_MANIFEST,
    PROMETHEUS_DEPLOY_CONFIG,
    REPO_ROOT,
    deploy_prometheus_config,
    start_prometheus_with,
)
from tests.servers import (
    PROMETHEUS_DEPLOY_CONFIG_CLASSIC as PROMETHEUS_CLASSIC,
)

COMPOSE_DIR = REPO_ROOT / "deploy" / "compose"
COMPOSE = COMPOSE_DIR / "docker-compose.yml"
COMPOSE_CLASSIC = COMPOSE_DIR / "docker-compose.classic.yml"  # an override of COMPOSE
KUBERNETES_DIR = REPO_ROOT / "deploy" / "kubernetes"
MANIFESTS = sorted(p for p in KUBERNETES_DIR.glob("*.yaml") if p.name != "kustomization.yaml")


def _tool(name: str) -> str:
    path = shutil.which(name)
    if not path:
        pytest.fail(f"{name} is missing: install the test extras (pip install -e '.[test]')", pytrace=False)
    return path


def _compose(path: Path = COMPOSE) -> dict:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def _prometheus3_release() -> str:
    """The Prometheus 3 release the tests build (`make prometheus3`): Go module v0.3MM.P is 3.MM.P."""
    pin = re.search(r"^PROMETHEUS3_MODULE_VERSION \?= v0\.(\d)(\d\d)\.(\d+)$",
                    (REPO_ROOT / "Makefile").read_text(encoding="utf-8"), re.MULTILINE)
    assert pin, "Makefile has no PROMETHEUS3_MODULE_VERSION pin"
    return f"{pin.group(1)}.{int(pin.group(2))}.{pin.group(3)}"


def _documents(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]


def _resource(kind: str, name: str) -> dict:
    for path in MANIFESTS:
        for doc in _documents(path):
            if doc["kind"] == kind and doc["metadata"]["name"] == name:
                return doc
    raise AssertionError(f"no {kind}/{name} in {KUBERNETES_DIR}")


def _contrib_version() -> str:
    manifest = yaml.safe_load(COLLECTOR_MANIFEST.read_text(encoding="utf-8"))
    [version] = {entry["gomod"].split()[1] for entry in manifest["exporters"]}
    return version.removeprefix("v")


# -- compose --------------------------------------------------------------------------------


def _check_compose(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([_tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(path)],
                          capture_output=True, text=True, timeout=60)


def test_compose_matches_the_compose_specification(tmp_path: Path) -> None:
    for path in (COMPOSE, COMPOSE_CLASSIC):
        done = _check_compose(path)
        assert done.returncode == 0, done.stdout + done.stderr
    broken = _compose()
    broken["services"]["prometheus"]["restart_policy"] = "always"  # not a service key
    broken_path = tmp_path / "docker-compose.yml"
    broken_path.write_text(yaml.safe_dump(broken), encoding="utf-8")
    assert _check_compose(broken_path).returncode != 0


def test_compose_mounts_files_that_exist() -> None:
    compose = _compose()
    for path in (COMPOSE, COMPOSE_CLASSIC):
        for name, service in _compose(path)["services"].items():
            assert name in compose["services"], f"{path.name}: {name} is not a service of {COMPOSE.name}"
            for volume in service.get("volumes", []):
                source = volume.split(":")[0]
                if source.startswith("."):
                    assert (COMPOSE_DIR / source).exists(), f"{path.name} {name}: {source} does not exist"
    build = compose["x-nethical-image"]["build"]
    assert (COMPOSE_DIR / build["context"] / build["dockerfile"]).is_file()
    collector = compose["services"]["otel-collector"]
    assert "../../collector/config.yaml:/etc/otelcol/config.yaml:ro" in collector["volumes"]
    classic = _compose(COMPOSE_CLASSIC)["services"]["otel-collector"]
    mount = f"../../collector/{COLLECTOR_CONFIG_CLASSIC.name}:/etc/otelcol/config.yaml:ro"
    assert classic["volumes"] == [mount]
    for secret in compose["secrets"].values():
        assert secret["file"].startswith("./secrets/"), "secrets come from git-ignored files"


def _flag(command: list[str], name: str) -> str:
    [value] = [arg.split("=", 1)[1] for arg in command if arg.startswith(f"{name}=")]
    return value


def test_compose_runs_native_histograms_by_default_and_classic_with_the_override() -> None:
    from nethical_otel.config import load_settings

    services = _compose()["services"]
    # The service exports exponential buckets, as the real settings read the variable.
    service_env = {k: str(v) for k, v in services["governance"]["environment"].items()}
    assert load_settings(environ=service_env).histogram_aggregation == "base2_exponential_bucket_histogram"
    # Prometheus 3 (the release the tests run), OTLP receiver on, the native config.
    prometheus = services["prometheus"]
    assert prometheus["image"] == f"prom/prometheus:v{_prometheus3_release()}"
    assert "--web.enable-otlp-receiver" in prometheus["command"]
    config_file = _flag(prometheus["command"], "--config.file")
    assert config_file == f"/etc/prometheus/{PROMETHEUS_DEPLOY_CONFIG.name}"
    assert "../prometheus:/etc/prometheus:ro" in prometheus["volumes"]
    # The collector sends to that Prometheus' OTLP endpoint, the port it listens on.
    otlp = urlsplit(services["otel-collector"]["environment"]["OTELCOL_PROMETHEUS_OTLP_ENDPOINT"])
    assert (otlp.hostname, otlp.port, otlp.path) == ("prometheus", 9090, "/api/v1/otlp")
    assert "9090:9090" in prometheus["ports"]

    override = _compose(COMPOSE_CLASSIC)["services"]
    classic_env = {**service_env, **override["governance"]["environment"]}
    assert load_settings(environ=classic_env).histogram_aggregation == "explicit_bucket_histogram"
    assert override["prometheus"]["image"] == "prom/prometheus:v2.42.0"  # Debian's, the tested one
    assert "--web.enable-otlp-receiver" not in override["prometheus"]["command"]
    classic_file = _flag(override["prometheus"]["command"], "--config.file")
    assert classic_file == f"/etc/prometheus/{PROMETHEUS_CLASSIC.name}" and PROMETHEUS_CLASSIC.is_file()


@pytest.mark.parametrize("config", [PROMETHEUS_DEPLOY_CONFIG, PROMETHEUS_CLASSIC], ids=lambda p: p.name)
def test_prometheus_targets_are_compose_services(config: Path) -> None:
    services = _compose()["services"]
    prometheus = yaml.safe_load(config.read_text(encoding="utf-8"))
    hosts = [target for job in prometheus["scrape_configs"] if job["job_name"] != "prometheus"
             for static in job["static_configs"] for target in static["targets"]]
    hosts += prometheus["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]
    for target in hosts:
        host = urlsplit(f"http://{target}").hostname
        assert host in services, f"{config.name} scrapes {target}, not a compose service"
    jobs = {job["job_name"] for job in prometheus["scrape_configs"]}
    # The collector's own telemetry on both paths; its :8889 exporter on the classic one only.
    assert "otel-collector:8888" in hosts
    assert ("otel-collector" in jobs) == (config == PROMETHEUS_CLASSIC)
    agent_env = services["nethical-agent"]["environment"]
    assert f"nethical-agent:{agent_env['NETHICAL_OTEL_AGENT_PORT']}" in hosts
    assert agent_env["NETHICAL_OTEL_PROMETHEUS_URL"] == "http://prometheus:9090"
    # The agent links the runbooks the rules Prometheus loads link (test_prometheus_rules.py).
    assert agent_env["NETHICAL_OTEL_RUNBOOK_BASE_URL"] == RUNBOOK_BASE_URL


# -- kubernetes -----------------------------------------------------------------------------


def _validate(*paths: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([_tool("kubernetes-validate"), "--strict", *map(str, paths)],
                          capture_output=True, text=True, timeout=120)


def test_kubernetes_manifests_validate_strictly(tmp_path: Path) -> None:
    done = _validate(*MANIFESTS)
    assert done.returncode == 0, done.stdout + done.stderr
    kinds = {(doc["kind"], doc["metadata"]["name"]) for path in MANIFESTS for doc in _documents(path)}
    assert {("DaemonSet", "otel-agent"), ("Deployment", "otel-gateway"), ("Deployment", "nethical-agent"),
            ("ConfigMap", "otel-gateway-config"), ("ConfigMap", "otel-agent-config"),
            ("ConfigMap", "nethical-agent-config")} <= kinds
    broken = (KUBERNETES_DIR / "detector-agent.yaml").read_text(encoding="utf-8").replace(
        "readinessProbe:", "readinesProbe:")
    broken_path = tmp_path / "broken.yaml"
    broken_path.write_text(broken, encoding="utf-8")
    assert _validate(broken_path).returncode != 0


def test_kustomization_lists_every_manifest() -> None:
    kustomization = yaml.safe_load((KUBERNETES_DIR / "kustomization.yaml").read_text(encoding="utf-8"))
    assert sorted(kustomization["resources"]) == [p.name for p in MANIFESTS]


def test_gateway_runs_the_shipped_collector_config() -> None:
    config_map = _resource("ConfigMap", "otel-gateway-config")
    assert config_map["data"]["config.yaml"] == COLLECTOR_CONFIG.read_text(encoding="utf-8"), \
        "deploy/kubernetes/collector-gateway.yaml embeds an old collector/config.yaml"
    # It sends to the OTLP receiver of the Prometheus the detector reads.
    container = _resource("Deployment", "otel-gateway")["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"]}
    detector = yaml.safe_load(_resource("ConfigMap", "nethical-agent-config")["data"]["config.yaml"])
    assert env["OTELCOL_PROMETHEUS_OTLP_ENDPOINT"] == f"{detector['prometheus_url']}/api/v1/otlp"
    ports = {p["containerPort"] for p in container["ports"]}
    assert 8889 not in ports and 8888 in ports, "the native gateway serves no :8889 exporter"


def test_native_prometheus_config_loads_in_prometheus3(tmp_path: Path) -> None:
    shipped = yaml.safe_load(PROMETHEUS_DEPLOY_CONFIG.read_text(encoding="utf-8"))
    assert shipped["otlp"]["translation_strategy"] == "UnderscoreEscapingWithSuffixes"
    assert "promote_resource_attributes" not in shipped["otlp"], "service.name/instance.id are job/instance"
    config = deploy_prometheus_config({"otelcol": ["127.0.0.1:9"], "nethical-detector": ["127.0.0.1:9"]})
    with start_prometheus_with(tmp_path, config, version=3) as prometheus:
        loaded = yaml.safe_load(httpx.get(f"{prometheus.url}/api/v1/status/config", timeout=5)
                                .json()["data"]["yaml"])
        assert loaded["otlp"]["translation_strategy"] == "UnderscoreEscapingWithSuffixes"
        assert loaded["storage"]["tsdb"]["out_of_order_time_window"] == "30m"
        # The receiver is on: an empty OTLP/HTTP protobuf request is accepted.
        response = httpx.post(f"{prometheus.url}/api/v1/otlp/v1/metrics", content=b"",
                              headers={"Content-Type": "application/x-protobuf"}, timeout=5)
        assert response.status_code == 200, response.text


def test_node_agents_limit_memory_first_and_route_by_service() -> None:
    config = yaml.safe_load(_resource("ConfigMap", "otel-agent-config")["data"]["config.yaml"])
    for name, pipeline in config["service"]["pipelines"].items():
        assert pipeline["processors"][:2] == ["memory_limiter", "batch"], name
        assert pipeline["exporters"] == ["loadbalancing"], name
    balancer = config["exporters"]["loadbalancing"]
    assert balancer["routing_key"] == "service"
    assert balancer["resolver"]["dns"]["hostname"].startswith("otel-gateway-headless.")
    _resource("Service", "otel-gateway-headless")


def test_detector_settings_load_and_spell_out_the_default_policy(tmp_path: Path) -> None:
    from nethical_otel.config import load_settings
    from nethical_otel.detect.detector import PolicyBook
    from nethical_otel.stats import Policy

    settings_file = tmp_path / "config.yaml"
    settings_file.write_text(_resource("ConfigMap", "nethical-agent-config")["data"]["config.yaml"],
                             encoding="utf-8")
    settings = load_settings(settings_file, environ={})
    assert settings.agent_port == 9465 and settings.agent_host == "0.0.0.0"
    assert settings.runbook_base_url == RUNBOOK_BASE_URL  # the rules' (test_prometheus_rules.py)
    assert PolicyBook.from_mapping(settings.policy).default == Policy()
    deployment = _resource("Deployment", "nethical-agent")["spec"]["template"]["spec"]["containers"][0]
    assert {"name": "NETHICAL_OTEL_CONFIG", "value": "/etc/nethical-otel/config.yaml"} in deployment["env"]


def test_one_collector_release_everywhere() -> None:
    version = _contrib_version()
    images = {_compose()["services"]["otel-collector"]["image"]}
    for path in MANIFESTS:
        images |= set(re.findall(r"image: (otel/\S+)", path.read_text(encoding="utf-8")))
    assert images == {f"otel/opentelemetry-collector-contrib:{version}"}, images
