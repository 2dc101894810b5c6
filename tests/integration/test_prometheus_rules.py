"""deploy/prometheus: the config and rules checked and unit-tested by the real promtool.

1. `promtool check config` accepts prometheus.yml (and with it every rule file it loads).
2. `promtool check rules` accepts each rule file, lint included (no duplicate rules).
3. `promtool test rules` passes deploy/prometheus/tests/*.test.yml: the recording rules'
   numbers from collector-shaped input, and the default policy (p50 +10 % warning, p95 +15 %
   warning, p99 +20 % info, errors +1 point critical, throughput < 70 % warning) against the
   agent's baseline gauges and against the `offset 1d` fallback.
4. The alert contract: every alert has a runbook_url to an existing docs/runbooks/<alertname>.md,
   a severity the Alertmanager routes, and the regression alerts use the agent's names and labels.

The same rules on data from the real collector: tests/integration/test_dashboards.py.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from tests.servers import REPO_ROOT, require_binary

pytestmark = pytest.mark.integration

PROMETHEUS_DIR = REPO_ROOT / "deploy" / "prometheus"
RULE_FILES = sorted((PROMETHEUS_DIR / "rules").glob("*.yml"))
RULE_TESTS = sorted((PROMETHEUS_DIR / "tests").glob("*.test.yml"))
RUNBOOK_BASE = "https://github.com/nethical/nethical-otel/blob/main/docs/runbooks/"
AGENT_ALERTS = {"NethicalLatencyRegression", "NethicalErrorRateIncrease", "NethicalThroughputDrop"}


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    promtool = require_binary("promtool")
    return subprocess.run([promtool, *args], capture_output=True, text=True, timeout=120, cwd=PROMETHEUS_DIR)


def test_check_config() -> None:
    done = _promtool("check", "config", "prometheus.yml")
    assert done.returncode == 0, done.stdout + done.stderr
    for rule_file in RULE_FILES:
        assert f"rules/{rule_file.name}" in done.stdout, f"prometheus.yml does not load {rule_file.name}"


@pytest.mark.parametrize("rule_file", RULE_FILES, ids=lambda p: p.name)
def test_check_rules(rule_file: Path) -> None:
    done = _promtool("check", "rules", str(rule_file))
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("test_file", RULE_TESTS, ids=lambda p: p.name)
def test_rule_unit_tests(test_file: Path) -> None:
    assert RULE_TESTS, "no promtool unit tests found"
    done = _promtool("test", "rules", str(test_file))
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
        assert url == f"{RUNBOOK_BASE}{rule['alert']}.md", url
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
