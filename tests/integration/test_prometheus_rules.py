"""deploy/prometheus: the config and rules checked and unit-tested by the real promtool.

1. `promtool check config` accepts prometheus.yml (Prometheus 3's promtool: it has an `otlp`
   block) and prometheus-classic.yml (Debian's 2.42), and with them every rule file they load.
2. `promtool check rules` of both versions accepts each rule file, lint included (no
   duplicate rules).
3. `promtool test rules` passes deploy/prometheus/tests/*.test.yml: the recording rules'
   numbers from collector-shaped input, and the default policy (p50 +10 % warning, p95 +15 %
   warning, p99 +20 % info, errors +1 point critical, throughput < 70 % warning) against the
   agent's baseline gauges and against the `offset 1d` fallback. The one rule set reads both
   kinds of histogram: nethical-rules.test.yml feeds classic `le` buckets (run by both
   promtools), nethical-rules-native.test.yml native histograms (Prometheus 3's promtool only:
   2.42 cannot read them in input_series), the switch from one to the other included.
4. The alert contract: every alert has a runbook_url to an existing docs/runbooks/<alertname>.md,
   a severity the Alertmanager routes, and the regression alerts use the agent's names and labels.
5. The same alert from both sources: the agent's firing alerts and the rules of the same
   alertname carry the same annotation keys and the same runbook_url (Alertmanager merges them
   into one alert where both run).

The same rules on data from the real collector: tests/integration/test_dashboards.py.
"""

from __future__ import annotations

import importlib.util
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml

from nethical_otel import names
from nethical_otel.detect.alerts import State, Timing
from nethical_otel.detect.baseline import Baseline, BaselineSet, SeriesKey
from nethical_otel.detect.detector import Detector, PolicyBook
from nethical_otel.detect.sources import Window
from nethical_otel.stats import LatencyHistogram, Policy
from tests.servers import REPO_ROOT, promtool_binary

pytestmark = pytest.mark.integration

PROMETHEUS_DIR = REPO_ROOT / "deploy" / "prometheus"
RULE_FILES = sorted((PROMETHEUS_DIR / "rules").glob("*.yml"))
RULE_TESTS = sorted((PROMETHEUS_DIR / "tests").glob("*.test.yml"))
AGENT_ALERTS = {names.LATENCY_ALERT, names.ERROR_RATE_ALERT, names.THROUGHPUT_ALERT}
VERSIONS = (2, 3)


def _promtool(*args: str, version: int = 2) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool_binary(version), *args], capture_output=True, text=True, timeout=120,
                          cwd=PROMETHEUS_DIR)


def _versions(test_file: Path) -> tuple[int, ...]:
    """The promtools a test file runs on: native input needs Prometheus 3's."""
    return (3,) if test_file.name.endswith("-native.test.yml") else VERSIONS


@pytest.mark.parametrize(("config", "version"), [("prometheus.yml", 3), ("prometheus-classic.yml", 2)])
def test_check_config(config: str, version: int) -> None:
    done = _promtool("check", "config", config, version=version)
    assert done.returncode == 0, done.stdout + done.stderr
    for rule_file in RULE_FILES:
        assert f"rules/{rule_file.name}" in done.stdout, f"{config} does not load {rule_file.name}"


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("rule_file", RULE_FILES, ids=lambda p: p.name)
def test_check_rules(rule_file: Path, version: int) -> None:
    done = _promtool("check", "rules", str(rule_file), version=version)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize(("test_file", "version"),
                         [(path, version) for path in RULE_TESTS for version in _versions(path)],
                         ids=lambda v: v.name if isinstance(v, Path) else f"promtool{v}")
def test_rule_unit_tests(test_file: Path, version: int) -> None:
    assert {path.name for path in RULE_TESTS} >= {"nethical-rules.test.yml", "nethical-rules-native.test.yml"}
    done = _promtool("test", "rules", str(test_file), version=version)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def _alerting_rules() -> list[dict]:
    rules = []
    for rule_file in RULE_FILES:
        for group in yaml.safe_load(rule_file.read_text(encoding="utf-8"))["groups"]:
            rules.extend(rule for rule in group["rules"] if "alert" in rule)
    return rules


def test_alerts_link_existing_runbooks_and_use_routed_severities() -> None:
    rules = _alerting_rules()
    assert {rule["alert"] for rule in rules} >= AGENT_ALERTS
    for rule in rules:
        url = rule["annotations"]["runbook_url"]
        assert url == f"{names.RUNBOOK_BASE_URL}/{rule['alert']}.md", url
        assert (REPO_ROOT / "docs" / "runbooks" / f"{rule['alert']}.md").is_file(), url
        assert rule["labels"]["severity"] in {"info", "warning", "critical"}
        assert rule["annotations"]["summary"]


def test_regression_alerts_express_the_default_policy() -> None:
    """The thresholds and severities are the detector's, quantile by quantile."""
    by_key = {}
    for rule in _alerting_rules():
        if rule["alert"] in AGENT_ALERTS:
            by_key[(rule["alert"], rule["labels"].get("quantile"))] = rule
    expected = {
        ("NethicalLatencyRegression", "0.5"): ("> 1.10", "warning"),
        ("NethicalLatencyRegression", "0.95"): ("> 1.15", "warning"),
        ("NethicalLatencyRegression", "0.99"): ("> 1.20", "info"),
        ("NethicalErrorRateIncrease", None): ("> 0.01", "critical"),
        ("NethicalThroughputDrop", None): ("< 0.70", "warning"),
    }
    assert set(by_key) == set(expected)
    for key, (comparison, severity) in expected.items():
        assert comparison in by_key[key]["expr"], (key, by_key[key]["expr"])
        assert by_key[key]["labels"]["severity"] == severity, key


class _RegressedSource:
    """One series, twice as slow as its baseline, failing 10 % of its calls, at a third of its rate."""

    window_s = 60.0

    def read(self, now: float) -> dict[SeriesKey, Window]:
        samples = np.random.default_rng(5).lognormal(np.log(0.02), 0.3, 2000)
        return {KEY: Window(LatencyHistogram.from_samples(samples, errors=200), self.window_s)}


KEY = SeriesKey("svc", "query", "control")


def _agent_alerts(**detector_options: object) -> dict[str, dict[str, str]]:
    """alertname -> annotations of the agent's firing alerts (the default policy, every rule)."""
    fast = np.random.default_rng(4).lognormal(np.log(0.01), 0.3, 6000)
    baselines = BaselineSet([Baseline(KEY, LatencyHistogram.from_samples(fast), 60.0, "file")])
    clock = iter(range(0, 10**6, 10))
    found: dict[str, dict[str, str]] = {}

    class Sink:
        def update(self, alert, now: float) -> None:
            if alert.state is State.FIRING:
                found[alert.labels["alertname"]] = dict(alert.annotations)

        def close(self, timeout_s: float = 5.0) -> None:
            pass

    detector = Detector(_RegressedSource(), baselines, PolicyBook.from_mapping({}), [Sink()],
                        timing=Timing(for_s=0), learn=False, clock=lambda: float(next(clock)),
                        **detector_options)
    detector.step()
    return found


def _annotations_by_alert(groups: list[dict]) -> dict[str, dict[str, str]]:
    return {rule["alert"]: rule["annotations"] for group in groups for rule in group["rules"]}


def test_agent_and_rules_annotate_the_same_alert_alike() -> None:
    agent = _agent_alerts()
    assert set(agent) == AGENT_ALERTS, sorted(agent)
    committed = _annotations_by_alert([{"rules": _alerting_rules()}])
    for alertname, expected in agent.items():
        assert list(committed[alertname]) == list(expected), alertname  # the same keys, in one order
        assert committed[alertname]["runbook_url"] == expected["runbook_url"], alertname
        assert expected["runbook_url"] == f"{names.RUNBOOK_BASE_URL}/{alertname}.md"


@pytest.mark.parametrize(
    ("runbook_base_url", "dashboard_url"),
    [("https://wiki.example.com/runbooks/", "https://grafana.example.com/d/nethical-performance"), ("", "")],
    ids=["elsewhere", "none"],
)
def test_generated_rules_take_the_agents_link_settings(runbook_base_url: str, dashboard_url: str) -> None:
    """generate.py --runbook-base-url / --dashboard-url link as the agent's settings of the same
    names do: the same URLs, and no runbook_url at all for an empty base."""
    generator = _generator()
    text = generator.alert_rules(Policy(), generator.Links(runbook_base_url, dashboard_url))
    rules = _annotations_by_alert(yaml.safe_load(text)["groups"])
    agent = _agent_alerts(runbook_base_url=runbook_base_url, dashboard_url=dashboard_url or None)
    assert set(agent) == AGENT_ALERTS
    for alertname, expected in agent.items():
        assert list(rules[alertname]) == list(expected), alertname
        for key in ("runbook_url", "dashboard_url"):
            assert rules[alertname].get(key) == expected.get(key), (alertname, key)
    for alertname, found in rules.items():  # the pipeline alerts too
        assert ("runbook_url" in found) == bool(runbook_base_url), alertname
        assert ("dashboard_url" in found) == bool(dashboard_url), alertname


def _generator():
    spec = importlib.util.spec_from_file_location("prometheus_generate", PROMETHEUS_DIR / "generate.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
