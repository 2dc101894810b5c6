"""`nethical-otel agent` and `nethical-otel baseline` as a user runs them: real processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import httpx
import pytest
import yaml

from nethical_otel.detect.baseline import BaselineSet
from nethical_otel.example.governance import SUBSTEPS
from tests.servers import free_port, start_prometheus

pytestmark = pytest.mark.integration


def cli(
    *args: str, timeout: float = 60, env_extra: dict[str, str] | None = None, **kwargs
) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "NETHICAL_OTEL_"))}
    env.update(env_extra or {})
    return subprocess.run(
        [sys.executable, "-m", "nethical_otel.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        **kwargs,
    )


def wait_http(url: str, status: int = 200, timeout_s: float = 20) -> httpx.Response:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            response = httpx.get(url, timeout=2)
            if response.status_code == status:
                return response
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{url} did not answer {status} within {timeout_s} s")


def test_agent_serves_health_and_metrics_and_stops_on_sigterm(tmp_path):
    with start_prometheus(tmp_path, []) as prom:
        port = free_port()
        config = tmp_path / "agent.yaml"
        config.write_text(
            yaml.safe_dump(
                {
                    "prometheus_url": prom.url,
                    "agent_port": port,
                    "detector_step_s": 0.5,
                    "baseline_file": str(tmp_path / "baselines.json"),
                }
            )
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "NETHICAL_OTEL_"))}
        agent = subprocess.Popen(
            [sys.executable, "-m", "nethical_otel.cli", "agent", "--config", str(config)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        try:
            wait_http(f"http://127.0.0.1:{port}/healthz")
            metrics = wait_http(f"http://127.0.0.1:{port}/metrics").text
            assert "nethical_detector_evaluations_total" in metrics
            assert "nethical_detector_evaluation_duration_seconds_bucket" in metrics
            started = time.monotonic()
            agent.send_signal(signal.SIGTERM)
            _out, err = agent.communicate(timeout=15)
            assert agent.returncode == 0, err
            assert time.monotonic() - started < 10
            assert "SIGTERM received, stopping" in err
            assert "Traceback" not in err
        finally:
            if agent.poll() is None:
                agent.kill()


def test_agent_without_prometheus_is_one_clear_line(tmp_path):
    result = cli("agent")
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "nethical-otel: error: the agent reads fleet-wide histograms from Prometheus: set prometheus_url"
    )


def test_baseline_create_from_a_running_service_then_show(tmp_path):
    port = free_port()
    demo = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "nethical_otel.cli",
            "demo",
            "--duration",
            "30",
            "--port",
            str(port),
            "--rps",
            "300",
            "--no-inject",
            "--output-dir",
            str(tmp_path / "demo"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "OTEL_SERVICE_NAME": "governance"},
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/metrics")
        path = tmp_path / "baselines.json"
        url = f"http://127.0.0.1:{port}/metrics"
        created = cli(
            "baseline", "create", "--from-metrics", url, "--window", "3", "-o", str(path), "--version", "v1"
        )
        assert created.returncode == 0, created.stderr
        # The 3 actions, and the 3 sub-steps of each (they say where an alert's time went).
        assert "wrote 12 baselines (9 of them sub-steps)" in created.stdout
        assert "scraping again in 3 s" in created.stderr  # the wait between the scrapes is shown
        everything = list(BaselineSet.load(path))
        actions = ("query", "tool_call", "generate")
        assert {(b.key.service, b.key.action, b.key.cohort, b.key.parent) for b in everything} == {
            ("governance", action, "demo", "") for action in actions
        } | {("governance", step, "demo", action) for action in actions for step in SUBSTEPS}
        baselines = [b for b in everything if not b.key.parent]
        for b in baselines:
            assert 2.5 < b.window_s < 4.5 and b.version == "v1"
            assert 40 < b.throughput_rps < 200  # 300 req/s over 3 actions, 50/30/20 %
            assert 0.001 < b.histogram.quantile(0.5) < 0.05
        shown = cli("baseline", "show", str(path))
        assert shown.returncode == 0 and "governance/query/demo" in shown.stdout

        again = cli("baseline", "create", "--from-metrics", url, "--window", "1", "-o", str(path))
        assert again.returncode == 2 and "exists; pass --force to replace it" in again.stderr
        assert len(again.stderr.strip().splitlines()) == 1
        assert "overwrite=True" not in again.stderr  # the API's spelling, not the CLI's
    finally:
        demo.terminate()
        demo.wait(timeout=10)


def test_corrupt_baseline_file_is_one_clear_line(tmp_path):
    path = tmp_path / "baselines.json"
    path.write_text('{"format": "nethical-otel-baselines", "version": 1, "baselines": [{"service": 1}]}')
    result = cli("baseline", "show", str(path))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"nethical-otel: error: {path}: baselines[0]: missing 'histogram'"
    ]


def test_agent_once_against_an_unreachable_prometheus_fails_clearly(tmp_path):
    url = f"http://127.0.0.1:{free_port()}"
    env_config = tmp_path / "agent.yaml"
    env_config.write_text(yaml.safe_dump({"prometheus_url": url}))
    result = cli("agent", "--config", str(env_config), "--once")
    assert result.returncode == 2
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"nethical-otel: error: cannot reach Prometheus at {url}")
    assert "Traceback" not in result.stderr


def test_baseline_from_a_benchmark_run(tmp_path):
    import numpy as np

    from nethical_otel.bench.results import RunResult, write_run
    from nethical_otel.stats import LatencyHistogram

    rng = np.random.default_rng(4)
    hist = LatencyHistogram.from_samples(rng.lognormal(np.log(0.02), 0.3, 3000), errors=6)
    run = tmp_path / "results.csv"
    write_run(
        RunResult.from_histogram(
            hist, throughput_rps=100.0, duration_s=30.0, cohort="benchmark", git_sha="abc1234"
        ),
        run,
    )
    path = tmp_path / "baselines.json"
    result = cli(
        "baseline", "create", "--from-run", str(run), "--service", "governance", "--action", "process_action",
        "-o", str(path),
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"wrote 1 baseline to {path}"
    (baseline,) = BaselineSet.load(path)
    assert (baseline.key.service, baseline.key.action, baseline.key.cohort) == (
        "governance",
        "process_action",
        "benchmark",
    )
    assert baseline.version == "abc1234" and baseline.window_s == 30.0 and baseline.throughput_rps == 100.0
    assert baseline.histogram.count == 3000 and baseline.histogram.errors == 6
    assert baseline.histogram.quantile(0.95) == hist.quantile(0.95)

    # No default series name: a made-up one ("process_action") matched nothing the service records.
    for given in ([], ["--service", "governance"], ["--action", "query"]):
        missing = cli("baseline", "create", "--from-run", str(run), *given, "-o", str(tmp_path / "x.json"))
        _one_line_error(missing, "--from-run needs --service and --action")


def _one_line_error(result: subprocess.CompletedProcess, *must_name: str) -> str:
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    for name in must_name:
        assert name in lines[0], lines[0]
    return lines[0]


def test_agent_once_with_an_infinite_window_is_one_line(tmp_path):
    """It used to log a traceback (OverflowError in the step) and exit 0."""
    config = tmp_path / "agent.yaml"
    config.write_text(f"prometheus_url: http://127.0.0.1:{free_port()}\ndetector_window_s: .inf\n")
    line = _one_line_error(cli("agent", "--config", str(config), "--once"), "agent.yaml: detector_window_s")
    assert "must be a finite number" in line


def test_infinite_detector_step_is_one_line():
    result = cli(
        "agent",
        "--once",
        env_extra={"NETHICAL_OTEL_DETECTOR_STEP_S": "inf", "NETHICAL_OTEL_PROMETHEUS_URL": "http://h"},
    )
    _one_line_error(result, "NETHICAL_OTEL_DETECTOR_STEP_S: must be a finite number")


def test_unknown_propagator_is_one_line_and_help_still_works():
    bogus = {"OTEL_PROPAGATORS": "bogus"}
    helped = cli("--help", env_extra=bogus)
    assert helped.returncode == 0 and "Traceback" not in helped.stderr, helped.stderr
    for args in (("config", "show"), ("agent", "--once")):
        _one_line_error(cli(*args, env_extra=bogus), "OTEL_PROPAGATORS: unknown propagator 'bogus'")


def test_agent_errors_and_logs_carry_no_credentials_from_the_prometheus_url(tmp_path):
    url = f"http://reader:pr0m-pw@127.0.0.1:{free_port()}/?token=t0ken-value"
    config = tmp_path / "agent.yaml"
    config.write_text(yaml.safe_dump({"prometheus_url": url}))
    result = cli("agent", "--config", str(config), "--once")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "pr0m-pw" not in result.stderr and "t0ken-value" not in result.stderr
    assert (
        result.stderr.strip()
        .splitlines()[-1]
        .startswith("nethical-otel: error: cannot reach Prometheus at http://***@127.0.0.1:")
    )
