"""The command line's conventions, as a user sees them in a terminal (real subprocesses).

- ``-V`` and ``version`` print the same line;
- a usage error is one line on stderr naming the problem and where to look, exit 2;
- a mistyped NETHICAL_OTEL_* variable is an error here (a service only warns);
- ``config show`` prints YAML that ``--config`` reads back to the same settings, the effective
  policy spelled out, secrets left out.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from nethical_otel.config import Settings, load_settings

REPO_ROOT = Path(__file__).resolve().parents[2]


def _cli(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "NETHICAL_OTEL_"))}
    clean["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), clean.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, "-m", "nethical_otel.cli", *args],
        env={**clean, **(env or {})},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_dash_v_and_version_print_the_same_line() -> None:
    short, long_, word = _cli("-V"), _cli("--version"), _cli("version")
    assert short.returncode == long_.returncode == word.returncode == 0
    assert short.stdout == long_.stdout == word.stdout
    assert short.stdout.startswith("nethical-otel ") and "opentelemetry-sdk" in short.stdout


@pytest.mark.parametrize(
    ("args", "names"),
    [
        (["load", "--rps", "fast"], ["--rps", "'fast'", "nethical-otel load --help"]),
        (["bogus"], ["No such command 'bogus'", "nethical-otel --help"]),
        (["history", "add"], ["Missing argument 'RESULTS'", "nethical-otel history add --help"]),
        (["baseline", "create", "-o", "x.json"], ["exactly one of --from-prometheus"]),
        (["compare", "a.csv"], ["Missing argument 'CURRENT'"]),
    ],
)
def test_a_usage_error_is_one_line_and_exit_2(tmp_path: Path, args: list[str], names: list[str]) -> None:
    result = _cli(*args, cwd=tmp_path)
    assert result.returncode == 2, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr  # click's own: "Usage: ...", "Try ...", "Error: ..."
    assert lines[0].startswith("nethical-otel: error: "), lines[0]
    for name in names:
        assert name in lines[0], lines[0]
    assert not result.stdout


def test_a_mistyped_variable_is_a_one_line_error_with_the_likely_name(tmp_path: Path) -> None:
    result = _cli("config", "show", env={"NETHICAL_OTEL_DETECTOR_WINDOW": "30"}, cwd=tmp_path)
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert "NETHICAL_OTEL_DETECTOR_WINDOW" in line and "did you mean NETHICAL_OTEL_DETECTOR_WINDOW_S?" in line
    assert "https://" in line  # the docs by URL: the repository's docs/ is not what pip installs


def test_config_show_is_yaml_that_reads_back_to_the_same_settings(tmp_path: Path) -> None:
    given = tmp_path / "given.yaml"
    given.write_text(
        yaml.safe_dump(
            {
                "service_name": "checkout",
                "detector_enabled": True,
                "otlp_protocol": "http/protobuf",
                "policy": {
                    "quantiles": {"p95": {"threshold": 0.25}},
                    "overrides": [{"match": {"action": "generate"}, "min_samples": 300}],
                },
            }
        ),
        encoding="utf-8",
    )
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318",
        "NETHICAL_OTEL_ALERTMANAGER_BEARER_TOKEN": "s3cr3t-token",
    }
    shown = _cli("config", "show", "--config", str(given), env=env, cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    text = shown.stdout
    assert "s3cr3t" not in text and "alertmanager_bearer_token: set, not shown" in text
    for python_repr in ("None", "False", "True", "'grpc'", "{}: "):
        assert python_repr not in text, python_repr
    document = yaml.safe_load(text)
    # The effective default policy in full, not `policy: {}`; the overrides as given.
    assert document["policy"]["quantiles"]["p95"] == {"threshold": 0.25, "severity": "warning"}
    assert document["policy"]["quantiles"]["p50"] == {"threshold": 0.1, "severity": "warning"}
    assert document["policy"]["error_rate"] == {"threshold_pp": 1.0, "severity": "critical"}
    assert document["policy"]["overrides"] == [{"match": {"action": "generate"}, "min_samples": 300}]

    fed_back = tmp_path / "shown.yaml"
    fed_back.write_text(text, encoding="utf-8")
    expected = load_settings(given, environ=env)
    again = load_settings(fed_back, environ={})  # the file alone: everything but the secret
    for f in dataclasses.fields(Settings):
        if f.name == "alertmanager_bearer_token":
            assert again.alertmanager_bearer_token is None
        elif f.name == "policy":
            from nethical_otel.detect.baseline import SeriesKey
            from nethical_otel.stats.policy import PolicyBook

            one, two = PolicyBook.from_mapping(expected.policy), PolicyBook.from_mapping(again.policy)
            assert one.default == two.default
            generate = SeriesKey("checkout", "generate")
            assert one.policy_for(generate) == two.policy_for(generate) != one.default
        else:
            assert getattr(again, f.name) == getattr(expected, f.name), f.name
    # And the second round shows the same (the secret, no longer set, as null).
    second = yaml.safe_load(_cli("config", "show", "--config", str(fed_back), cwd=tmp_path).stdout)
    assert second.pop("alertmanager_bearer_token") is None
    assert second == document
