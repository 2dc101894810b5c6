"""deploy/compose and deploy/kubernetes: what can be proven without a container engine.

1. docker-compose.yml validates against the Compose Specification schema (check-jsonschema's
   vendored copy), and a broken copy does not (so the check means something); every file it
   mounts exists; the host names and ports Prometheus scrapes are compose services.
2. The Kubernetes manifests validate strictly (unknown fields are errors) against the
   Kubernetes 1.37 OpenAPI schemas (kubernetes-validate), a broken copy does not; the
   gateway's ConfigMap is collector/config.yaml verbatim; the node agents' config puts
   memory_limiter first and routes by service; the detector's settings file loads through
   the real settings and policy parsers and spells out the default policy.
3. Compose, Kubernetes and the builder manifest use one collector release.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from nethical_otel.names import RUNBOOK_BASE_URL
from tests.servers import COLLECTOR_CONFIG, COLLECTOR_MANIFEST, PROMETHEUS_DEPLOY_CONFIG, REPO_ROOT

COMPOSE_DIR = REPO_ROOT / "deploy" / "compose"
COMPOSE = COMPOSE_DIR / "docker-compose.yml"
KUBERNETES_DIR = REPO_ROOT / "deploy" / "kubernetes"
MANIFESTS = sorted(p for p in KUBERNETES_DIR.glob("*.yaml") if p.name != "kustomization.yaml")


def _tool(name: str) -> str:
    path = shutil.which(name)
    if not path:
        pytest.fail(f"{name} is missing: install the test extras (pip install -e '.[test]')", pytrace=False)
    return path


def _compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))


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
    done = _check_compose(COMPOSE)
    assert done.returncode == 0, done.stdout + done.stderr
    broken = _compose()
    broken["services"]["prometheus"]["restart_policy"] = "always"  # not a service key
    broken_path = tmp_path / "docker-compose.yml"
    broken_path.write_text(yaml.safe_dump(broken), encoding="utf-8")
    assert _check_compose(broken_path).returncode != 0


def test_compose_mounts_files_that_exist() -> None:
    compose = _compose()
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (COMPOSE_DIR / source).exists(), f"{name}: {source} does not exist"
    build = compose["x-nethical-image"]["build"]
    assert (COMPOSE_DIR / build["context"] / build["dockerfile"]).is_file()
    collector = compose["services"]["otel-collector"]
    assert "../../collector/config.yaml:/etc/otelcol/config.yaml:ro" in collector["volumes"]
    for secret in compose["secrets"].values():
        assert secret["file"].startswith("./secrets/"), "secrets come from git-ignored files"


def test_prometheus_targets_are_compose_services() -> None:
    services = _compose()["services"]
    prometheus = yaml.safe_load(PROMETHEUS_DEPLOY_CONFIG.read_text(encoding="utf-8"))
    hosts = [target for job in prometheus["scrape_configs"] if job["job_name"] != "prometheus"
             for static in job["static_configs"] for target in static["targets"]]
    hosts += prometheus["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]
    for target in hosts:
        host = urlsplit(f"http://{target}").hostname
        assert host in services, f"prometheus.yml scrapes {target}, not a compose service"
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
