"""The `/metrics` endpoint against the real Prometheus tools.

(a) The exposition passes `promtool check metrics` with no lint at all.
(b) A real Prometheus scrapes it during a steady load, and its
    `histogram_quantile(0.95, ... rate(nethical_action_duration_seconds_bucket[30s]))` is within
    10 % of the exact p95 of the latencies this test measured around the calls. The load draws
    from one stationary distribution and the rate window covers the whole run, so the two
    describe the same population: the remaining gap is bucket interpolation (bounds 19 % apart).
"""

from __future__ import annotations

import subprocess
import threading
import time

import httpx
import numpy as np
import pytest

import nethical_otel
from tests.servers import require_binary, scalar, start_prometheus, wait_for_query

pytestmark = pytest.mark.integration

LOAD_S = 18.0  # shorter than the 30 s rate window, so the window sees all of it
MEDIAN_S, SIGMA = 0.002, 0.6  # lognormal sleep: p95 about 5.4 ms, a few hundred calls per second


@nethical_otel.instrument
def steady_work(seconds: float, cohort: str | None = None) -> float:
    time.sleep(seconds)
    return seconds


@nethical_otel.instrument
def failing_work() -> None:
    raise ValueError("expected by the test")


def test_exposition_passes_promtool_lint(make_telemetry) -> None:
    promtool = require_binary("promtool")
    tel = make_telemetry(service_name="promtool-lint", prometheus_enabled=True, prometheus_port=0,
                         set_global=False)
    assert tel.prometheus_url and tel.prometheus_url.startswith("http://127.0.0.1:")
    for i in range(20):
        steady_work(0.0005 * (i % 4), cohort="a" if i % 2 else "b")
    with nethical_otel.action("checkout", cohort="a"):
        time.sleep(0.001)
    with pytest.raises(ValueError):
        failing_work()

    response = httpx.get(tel.prometheus_url, timeout=5)
    assert response.status_code == 200
    exposition = response.text
    check = subprocess.run([promtool, "check", "metrics"], input=exposition, capture_output=True,
                           text=True, timeout=30)
    assert (check.returncode, check.stdout + check.stderr) == (0, ""), (
        f"promtool check metrics: rc {check.returncode}\n{check.stdout}{check.stderr}\n"
        f"--- exposition ---\n{exposition}")
    assert "nethical_action_duration_seconds_bucket" in exposition
    assert 'nethical_action="steady_work"' in exposition and 'nethical_cohort="a"' in exposition
    assert 'nethical_action="checkout"' in exposition
    assert 'error_type="ValueError"' in exposition
    assert "nethical_action_active" in exposition


def _run_load(stop_at: float, latencies: list[float], errors: list[BaseException]) -> None:
    rng = np.random.default_rng(7)
    try:
        while time.monotonic() < stop_at:
            for seconds in rng.lognormal(np.log(MEDIAN_S), SIGMA, size=256):
                started = time.perf_counter()
                steady_work(float(seconds), cohort="load")
                latencies.append(time.perf_counter() - started)
    except BaseException as exc:
        errors.append(exc)


def test_prometheus_p95_matches_exact_p95(tmp_path, make_telemetry) -> None:
    tel = make_telemetry(service_name="prom-scrape", prometheus_enabled=True, prometheus_port=0,
                         set_global=False)
    with start_prometheus(tmp_path, [tel.prometheus_url], scrape_interval="1s") as prometheus:
        latencies: list[float] = []
        errors: list[BaseException] = []
        load = threading.Thread(target=_run_load, args=(time.monotonic() + LOAD_S, latencies, errors),
                                name="steady-load")
        started = time.monotonic()
        load.start()
        load.join(LOAD_S + 10)
        assert not load.is_alive() and not errors, errors
        time.sleep(2.5)  # two more scrapes: the final counts are in Prometheus
        promql = ('histogram_quantile(0.95, sum by (le) (rate('
                  'nethical_action_duration_seconds_bucket{nethical_action="steady_work"}[30s])))')
        assert time.monotonic() - started < 28, "the 30 s rate window would no longer cover the whole run"
        estimate = scalar(wait_for_query(prometheus.url, promql, timeout_s=10))

    exact = float(np.percentile(latencies, 95))
    relative_error = abs(estimate - exact) / exact
    print(f"p95: Prometheus {estimate * 1e3:.3f} ms, exact {exact * 1e3:.3f} ms, {relative_error:.1%} off, "
          f"{len(latencies)} calls")
    assert len(latencies) > 2000, f"load too thin to judge: {len(latencies)} calls"
    assert relative_error < 0.10, (
        f"Prometheus p95 {estimate * 1e3:.3f} ms vs exact {exact * 1e3:.3f} ms "
        f"({relative_error:.1%} off, {len(latencies)} calls)")
