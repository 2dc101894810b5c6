"""deploy/prometheus/generate.py: the rules and their promtool tests are the policy's.

1. The committed rules and unit tests (every file the generator makes) are exactly what the
   generator makes from ``Policy()`` (a policy change without regenerating fails here).
2. The generated files follow any policy: for policies unlike the default (other quantiles,
   severities, a zero threshold, a large minimum sample count) `promtool check rules` and
   `promtool test rules` pass on what the generator makes: the classic tests on Debian's
   promtool 2.42, the native ones on Prometheus 3's.
3. The generated tests can fail: rules made from one policy fail the tests made from another,
   classic and native alike.
4. The links follow --runbook-base-url / --dashboard-url (none for ""), and promtool agrees.
"""

from __future__ import annotations

import importlib.util
import subprocess
from pathlib import Path

import pytest
import yaml

from nethical_otel.stats import Policy
from tests.servers import REPO_ROOT, promtool_binary

PROMETHEUS_DIR = REPO_ROOT / "deploy" / "prometheus"
GENERATOR = PROMETHEUS_DIR / "generate.py"
CLASSIC_TESTS, NATIVE_TESTS = "tests/nethical-rules.test.yml", "tests/nethical-rules-native.test.yml"
# Each generated test file and the promtool that reads it (2: Debian's 2.42, 3: Prometheus 3's).
TEST_FILES = [(CLASSIC_TESTS, 2), (NATIVE_TESTS, 3)]

OTHER_POLICIES = {
    "other-quantiles": {
        "quantiles": {
            "p90": {"threshold": 0.25, "severity": "critical"},
            "p99": None,
            "p99.9": {"threshold": 0.5, "severity": "info"},
        },
        "error_rate": {"threshold_pp": 2.5, "severity": "warning"},
        "throughput": {"drop": 0.5, "severity": "critical"},
        "min_samples": 5000,
    },
    "zero-thresholds": {
        "quantiles": {"p50": {"threshold": 0.0}, "p95": {"threshold": 0.125}},
        "error_rate": {"threshold_pp": 0},
        "throughput": {"drop": 0.0},
        "min_samples": 3,
    },
    "loose": {"quantiles": {"p50": {"threshold": 0.05}}, "error_rate": {"threshold_pp": 0.3},
              "throughput": {"drop": 0.9}},
}


def _generator():
    spec = importlib.util.spec_from_file_location("prometheus_generate", GENERATOR)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _write(directory: Path, files: dict[Path, str]) -> None:
    for relative, text in files.items():
        path = directory / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


def _promtool(directory: Path, *args: str, version: int = 2) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool_binary(version), *args], cwd=directory, capture_output=True, text=True,
                          timeout=180)


# -- 1: committed = generated ---------------------------------------------------------------


def test_every_generated_file_is_tested_here() -> None:
    assert sorted(str(p) for p in _generator().render()) == sorted(GENERATED_FILES)
    tests = sorted(f for f in GENERATED_FILES if f.startswith("tests/"))
    assert sorted(path for path, _ in TEST_FILES) == tests


GENERATED_FILES = ["rules/nethical-recording.yml", "rules/nethical-alerts.yml", CLASSIC_TESTS, NATIVE_TESTS]


@pytest.mark.parametrize("relative", GENERATED_FILES)
def test_committed_file_is_what_the_generator_makes(relative: str) -> None:
    generated = _generator().render()[Path(relative)]
    assert (PROMETHEUS_DIR / relative).read_text(encoding="utf-8") == generated, \
        f"deploy/prometheus/{relative} is stale: run python deploy/prometheus/generate.py"


def test_generator_check_mode() -> None:
    assert _generator().main(["--check"]) == 0


def test_generator_link_options(capsys: pytest.CaptureFixture[str]) -> None:
    generator = _generator()
    assert generator.main(["--check", "--runbook-base-url", generator.RUNBOOK_BASE_URL + "/"]) == 0
    assert generator.main(["--check", "--runbook-base-url", ""]) == 1  # the committed rules link runbooks
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        generator.main(["--check", "--runbook-base-url", "docs/runbooks"])
    assert exit_info.value.code == 2 and "http" in capsys.readouterr().err


def test_alert_rules_carry_each_policy_rule() -> None:
    policy = Policy.from_mapping(OTHER_POLICIES["other-quantiles"])
    rules = [rule for group in yaml.safe_load(_generator().alert_rules(policy))["groups"]
             for rule in group["rules"] if rule["alert"].startswith("NethicalLatency")]
    assert [(r["labels"]["quantile"], r["labels"]["severity"]) for r in rules] == [
        ("0.5", "warning"), ("0.9", "critical"), ("0.95", "warning"), ("0.999", "info")]
    assert 'ratio{quantile="0.9"} > 1.25' in rules[1]["expr"] and ">= 5000" in rules[1]["expr"]


# -- 2, 3: promtool on generated files -------------------------------------------------------


@pytest.mark.integration
@pytest.mark.slow  # about 5 s per promtool run (section 3 of a file replays two days)
@pytest.mark.parametrize("name", sorted(OTHER_POLICIES))
def test_generated_rules_pass_their_generated_tests(tmp_path: Path, name: str) -> None:
    _write(tmp_path, _generator().render(Policy.from_mapping(OTHER_POLICIES[name])))
    for version in (2, 3):
        rules = ("rules/nethical-recording.yml", "rules/nethical-alerts.yml")
        done = _promtool(tmp_path, "check", "rules", *rules, version=version)
        assert done.returncode == 0, done.stdout + done.stderr
    for test_file, version in TEST_FILES:
        done = _promtool(tmp_path, "test", "rules", test_file, version=version)
        assert done.returncode == 0, (test_file, done.stdout + done.stderr)


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.parametrize("change", [
    {"quantiles": {"p95": {"threshold": 0.30}}},  # a line moved up: `query` no longer fires
    {"quantiles": {"p95": {"threshold": 0.05}}},  # moved down: `lookup` fires
    {"quantiles": {"p99": {"severity": "critical"}}, "error_rate": {"threshold_pp": 2}},
], ids=["p95-up", "p95-down", "severity-and-error-rate"])
@pytest.mark.parametrize(("test_file", "version"), TEST_FILES, ids=["classic", "native"])
def test_tests_of_one_policy_fail_the_rules_of_another(
    tmp_path: Path, change: dict, test_file: str, version: int
) -> None:
    generator = _generator()
    _write(tmp_path, generator.render(Policy()))
    other = generator.render(Policy.from_mapping(change))
    _write(tmp_path, {path: text for path, text in other.items() if path.parts[0] == "rules"})
    done = _promtool(tmp_path, "test", "rules", test_file, version=version)
    assert done.returncode != 0, done.stdout


@pytest.mark.integration
@pytest.mark.parametrize("links", [("", "https://grafana.example.com/d/nethical-performance?orgId=1"),
                                   ("https://wiki.example.com/runbooks", "")], ids=["no-runbooks", "wiki"])
def test_generated_links_pass_their_generated_tests(tmp_path: Path, links: tuple[str, str]) -> None:
    generator = _generator()
    files = generator.render(Policy(), generator.Links(*links))
    alerts = files[Path("rules/nethical-alerts.yml")]
    assert ("runbook_url:" in alerts) == bool(links[0]) and ("dashboard_url:" in alerts) == bool(links[1])
    _write(tmp_path, files)
    for test_file, version in TEST_FILES:
        done = _promtool(tmp_path, "test", "rules", test_file, version=version)
        assert done.returncode == 0, (test_file, done.stdout + done.stderr)
