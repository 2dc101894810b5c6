"""A setting the user got wrong stops `nethical-otel demo` with one clear line, never a traceback.

Run as a real subprocess through the console-script entry point, so what is checked is what
a user sees on the terminal.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


def _cli() -> list[str]:
    """The installed `nethical-otel` script of this interpreter, else the module."""
    script = Path(sys.executable).parent / "nethical-otel"
    return [str(script)] if script.exists() else [sys.executable, "-m", "nethical_otel.cli"]


def _run_demo(tmp_path: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "NETHICAL_OTEL_"))}
    # This checkout, not whatever copy another environment installed.
    clean["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), clean.get("PYTHONPATH")]))
    return subprocess.run([*_cli(), "demo", "--duration", "1", *args], env={**clean, **env}, cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)


def _assert_one_line_error(result: subprocess.CompletedProcess[str], *must_name: str) -> None:
    lines = result.stderr.strip().splitlines()
    assert result.returncode != 0, f"exit 0 on a bad setting; stdout: {result.stdout!r}"
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}:\n{result.stderr}"
    for name in must_name:
        assert name in lines[0], f"{name!r} not named in: {lines[0]}"


def test_bad_environment_value_is_one_line(tmp_path: Path) -> None:
    result = _run_demo(tmp_path, {"NETHICAL_OTEL_PROMETHEUS_PORT": "abc"})
    _assert_one_line_error(result, "NETHICAL_OTEL_PROMETHEUS_PORT", "abc")


def test_unknown_environment_variable_is_one_line(tmp_path: Path) -> None:
    result = _run_demo(tmp_path, {"NETHICAL_OTEL_PROMETHEUS_PROT": "9999"})
    _assert_one_line_error(result, "NETHICAL_OTEL_PROMETHEUS_PROT")


@pytest.mark.parametrize("via", ["--config", "NETHICAL_OTEL_CONFIG"])
def test_unknown_yaml_key_is_one_line(tmp_path: Path, via: str) -> None:
    config = tmp_path / "nethical.yaml"
    config.write_text("service_name: demo\nprometheus_prot: 9999\n", encoding="utf-8")
    if via == "--config":
        result = _run_demo(tmp_path, {}, "--config", str(config))
    else:
        result = _run_demo(tmp_path, {"NETHICAL_OTEL_CONFIG": str(config)})
    _assert_one_line_error(result, "prometheus_prot", str(config))
