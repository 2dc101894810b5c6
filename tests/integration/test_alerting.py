"""The detector against a real Alertmanager (and, for the fleet path, a real Prometheus).

Timelines are compressed: windows of seconds instead of minutes. The example service runs
under a steady paced load; a slowdown is injected into one action type.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import httpx
import pytest

import nethical_otel
from nethical_otel.config import load_settings
from nethical_otel.detect.agent import Agent
from nethical_otel.detect.baseline import SeriesKey
from nethical_otel.example import IntegratedGovernance
from nethical_otel.names import RUNBOOK_BASE_URL
from tests.load import SteadyLoad
from tests.servers import (
    active_alerts,
    free_port,
    start_alertmanager,
    start_prometheus,
    wait_for_query,
    wait_until,
)

pytestmark = pytest.mark.integration

# The example's own latencies (query's median 4 ms, in two sleeps). At a third of that, sleeps
# of half a millisecond are mostly the host's wake-up delay, which on a shared VM moves from
# second to second (a 2 ms sleep's p95 went from 2.6 to 3.5 ms and back here): a steady run
# then saw 35 of 50 one-second windows "regressed" or "improved", and an injected slowdown of
# query came with alerts on the other actions. Real services' calls last milliseconds.
LATENCY_SCALE = 1.0

FAST = {
    "detector_window_s": 4.0,
    "detector_step_s": 1.0,
    "detector_for_s": 2.0,
    "detector_keep_firing_for_s": 3.0,
    "alert_resend_interval_s": 2.0,
}


def received(am_url: str, status: str) -> float:
    text = httpx.get(f"{am_url}/metrics", timeout=5).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("alertmanager_alerts_received_total") and f'status="{status}"' in line
    )


def embedded(am_url: str, **overrides):
    return nethical_otel.setup(
        service_name="governance",
        detector=True,
        set_global=False,
        prometheus_enabled=False,
        alertmanager_url=am_url,
        **(FAST | overrides),
    )


def learned(telemetry, action: str = "query", cohort: str = "control") -> bool:
    return telemetry.detector.baselines.get(SeriesKey("governance", action, cohort)) is not None


def test_injected_slowdown_fires_then_resolves(tmp_path, clean_env):
    with start_alertmanager(tmp_path) as am:
        telemetry = embedded(am.url)
        service = IntegratedGovernance(seed=1, error_rate=0.0, latency_scale=LATENCY_SCALE)
        try:
            with SteadyLoad(service, rps=300, agents=12):
                wait_until(lambda: learned(telemetry), 30, "a learned baseline")
                injected = time.monotonic()
                service.slowdown_by_action["query"] = 1.5
                alerts = wait_until(
                    lambda: active_alerts(
                        am.url, alertname="NethicalLatencyRegression", action="query", quantile="0.5"
                    ),
                    40,
                    "the p50 regression alert in Alertmanager",
                )
                fired_after = time.monotonic() - injected
                alert = alerts[0]
                assert alert["labels"] | {"cohort": "-"} == {
                    "alertname": "NethicalLatencyRegression",
                    "severity": "warning",
                    "service": "governance",
                    "action": "query",
                    "cohort": "-",
                    "quantile": "0.5",
                }
                assert alert["labels"]["cohort"] in ("control", "treatment")
                annotations = alert["annotations"]
                for name in (
                    "summary",
                    "description",
                    "baseline_value",
                    "current_value",
                    "change_pct",
                    "confidence_interval",
                    "runbook_url",
                ):
                    assert annotations.get(name), name
                assert 25 < float(annotations["change_pct"]) < 80
                assert float(annotations["current_value"]) > float(annotations["baseline_value"])
                # The default base: the same absolute link the Prometheus rules carry.
                assert annotations["runbook_url"] == f"{RUNBOOK_BASE_URL}/NethicalLatencyRegression.md"
                assert alert["status"]["state"] == "active"
                # Only the slowed action type alerts.
                assert not active_alerts(am.url, action="tool_call") and not active_alerts(
                    am.url, action="generate"
                )

                removed = time.monotonic()
                service.slowdown_by_action["query"] = 1.0
                wait_until(lambda: not active_alerts(am.url, action="query"), 40, "the alert to resolve")
                resolved_after = time.monotonic() - removed
                assert received(am.url, "resolved") >= 1
                print(
                    f"\nembedded: fired {fired_after:.1f} s after injection, "
                    f"resolved {resolved_after:.1f} s after removal"
                )
        finally:
            telemetry.shutdown()


def test_alertmanager_started_late_still_gets_the_alert(tmp_path, clean_env):
    port = free_port()
    am_url = f"http://127.0.0.1:{port}"
    telemetry = embedded(am_url)
    service = IntegratedGovernance(seed=2, error_rate=0.0, latency_scale=LATENCY_SCALE)
    try:
        with SteadyLoad(service, rps=300, agents=12):
            wait_until(lambda: learned(telemetry), 30, "a learned baseline")
            service.slowdown_by_action["query"] = 1.6
            wait_until(
                lambda: any(a.state.value == "firing" for a in telemetry.detector.book.alerts()),
                40,
                "the detector to fire while Alertmanager is down",
            )
            time.sleep(2)  # a few failed deliveries and resends
            with start_alertmanager(tmp_path, port=port) as am:
                wait_until(
                    lambda: active_alerts(am.url, alertname="NethicalLatencyRegression", action="query"),
                    30,
                    "the alert after Alertmanager came up",
                )
    finally:
        telemetry.shutdown()


@pytest.mark.slow
def test_steady_run_sends_no_alert_for_50_windows(tmp_path, clean_env):
    with start_alertmanager(tmp_path) as am:
        # for 5 s: five fresh 1 s windows. The comparison is calibrated (a false "regression" in
        # <= 0.5 % of comparisons a quantile), and a real host stall of a second or two does
        # slow a real service's p99: it may look regressed, it must not page.
        telemetry = embedded(am.url, detector_window_s=1.0, detector_step_s=1.0, detector_for_s=5.0)
        service = IntegratedGovernance(seed=3, error_rate=0.0, latency_scale=LATENCY_SCALE)
        verdicts: dict[int, list[str]] = {}

        def conclusive() -> list[list[str]]:
            return [v for v in verdicts.values() if v and "inconclusive" not in v]

        try:
            with SteadyLoad(service, rps=400, agents=4, actions=("query",), cohorts=("control",)):
                wait_until(lambda: learned(telemetry), 30, "a learned baseline")
                first = telemetry.detector.evaluations
                # 50 judged windows. A window whose change the data cannot prove either way (a
                # host stall beyond the threshold but not significant, too few calls) is
                # inconclusive and pages no one either; up to 10 of those are waited out, and the
                # no-page check below covers them too.
                while len(conclusive()) < 50 and telemetry.detector.evaluations - first < 62:
                    reports = telemetry.detector.last_reports
                    verdicts[telemetry.detector.evaluations] = [
                        f.verdict for r in reports for f in r.findings
                    ]
                    time.sleep(0.2)
        finally:
            telemetry.shutdown()
        judged = conclusive()
        assert len(judged) >= 50, f"only {len(judged)} windows had enough samples to judge"
        odd = {step: v for step, v in verdicts.items() if v in judged and v != ["ok"] * len(v)}
        assert len(odd) <= 5, f"at most a tenth of the windows may look regressed: {odd}"
        assert received(am.url, "firing") == 0 and not active_alerts(am.url)


def start_instance(port: int, seed: int, output_dir, *extra: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "NETHICAL_OTEL_"))}
    env["OTEL_SERVICE_NAME"] = "governance"
    args = [
        sys.executable,
        "-m",
        "nethical_otel.cli",
        "demo",
        "--duration",
        "120",
        "--port",
        str(port),
        "--rps",
        "150",
        "--agents",
        "4",
        "--refresh",
        "5",
        "--seed",
        str(seed),
        "--output-dir",
        str(output_dir),
        *extra,
    ]
    return subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


@pytest.mark.slow
def test_fleet_agent_reads_prometheus_over_two_instances(tmp_path, clean_env):
    ports = [free_port(), free_port()]
    instances = [
        start_instance(ports[0], 10, tmp_path / "a", "--no-inject"),
        # The second instance slows `query` 1.6x from 30 s to 75 s after it starts.
        start_instance(
            ports[1],
            11,
            tmp_path / "b",
            "--inject-slowdown",
            "1.6",
            "--inject-at",
            "30",
            "--inject-for",
            "45",
            "--inject-action",
            "query",
        ),
    ]
    started = time.monotonic()
    try:
        targets = [f"127.0.0.1:{p}" for p in ports]
        with (
            start_prometheus(tmp_path, targets, job_name="governance") as prom,
            start_alertmanager(tmp_path) as am,
        ):
            # Both instances scraped, and a full 10 s window of data before the agent learns.
            wait_for_query(prom.url, 'count(up{job="governance"} == 1) == 2', timeout_s=30)
            wait_for_query(
                prom.url, "sum(increase(nethical_action_duration_seconds_count[10s])) > 500", timeout_s=40
            )
            time.sleep(max(0.0, 14 - (time.monotonic() - started)))
            settings = load_settings(
                environ={},
                prometheus_url=prom.url,
                alertmanager_url=am.url,
                detector_window_s=10.0,
                detector_step_s=2.0,
                detector_for_s=2.0,
                detector_keep_firing_for_s=6.0,
                alert_resend_interval_s=2.0,
                agent_port=0,
            )
            agent = Agent(settings)
            url = agent.serve()
            import threading

            runner = threading.Thread(target=agent.run, daemon=True)
            runner.start()
            try:
                wait_until(lambda: len(agent.detector.baselines) >= 3, 20, "baselines for the 3 actions")
                assert {b.key.service for b in agent.detector.baselines} == {"governance"}
                alerts = wait_until(
                    lambda: active_alerts(am.url, alertname="NethicalLatencyRegression", action="query"),
                    60,
                    "the fleet-wide regression alert",
                )
                fired_at = time.monotonic() - started - 30
                assert alerts[0]["labels"]["service"] == "governance"
                metrics = httpx.get(f"{url}/metrics", timeout=5).text
                assert 'nethical_detector_ratio{action="query"' in metrics
                assert "nethical_detector_alerts{" in metrics and 'state="firing"' in metrics
                assert httpx.get(f"{url}/healthz", timeout=5).status_code == 200
                wait_until(
                    lambda: not active_alerts(am.url, action="query"), 60, "the fleet alert to resolve"
                )
                resolved_at = time.monotonic() - started - 75
                print(
                    f"\nfleet: fired {fired_at:.1f} s after injection, "
                    f"resolved {resolved_at:.1f} s after removal"
                )
            finally:
                agent.stop_event.set()
                runner.join(timeout=10)
                agent.close()
    finally:
        for process in instances:
            process.terminate()
        for process in instances:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
