"""The open-loop load generator: rate, latency measurement, stalls, errors, targets.

Targets are in-process functions with known behaviour; durations are 1-3 s.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from nethical_otel.bench.loadgen import (
    DEFAULT_TARGET,
    LoadConfig,
    LoadRun,
    call_plan,
    git_identity,
    resolve_target,
)
from nethical_otel.bench.results import BenchError
from nethical_otel.stats import LatencyHistogram

HERE = "tests.unit.test_bench_loadgen"


def cheap(agent_id):
    return agent_id


class Sleeper:
    """Sleeps a seeded lognormal time per call and remembers each planned duration."""

    def __init__(self, median_s: float, sigma: float, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.lock = threading.Lock()
        self.median_s, self.sigma = median_s, sigma
        self.planned: list[float] = []

    def _draw(self) -> float:
        with self.lock:
            d = float(self.rng.lognormal(math.log(self.median_s), self.sigma))
            self.planned.append(d)
        return d

    def __call__(self, agent_id):
        time.sleep(self._draw())

    async def call_async(self, agent_id):
        await asyncio.sleep(self._draw())


def _run(target, **config):
    config.setdefault("warmup_s", 0.0)
    config.setdefault("agents", 8)
    run = LoadRun(LoadConfig(**config), _target(target))
    return run.run()


def _target(func):
    from nethical_otel.bench.loadgen import Target, _accepted_arguments, _is_coroutine_function

    accepts, positional = _accepted_arguments(func)
    return Target(
        func, _is_coroutine_function(func), getattr(func, "__name__", "target"), accepts, positional
    )


# -- rate ------------------------------------------------------------------------------------


def test_reaches_its_rate_and_counts_exactly() -> None:
    result = _run(cheap, rps=1000, duration_s=2.0, warmup_s=0.3)
    assert result.requests == 2000  # the warm-up's 300 are not in the results
    assert result.errors == 0
    assert result.details["achieved_rps"] >= 990
    assert result.throughput_rps >= 990
    assert result.details["schedule_lag_p50_ms"] < 5
    assert result.histogram.count == 2000


def test_async_target_reaches_its_rate() -> None:
    async def cheap_async(agent_id):
        return agent_id

    result = _run(cheap_async, rps=1000, duration_s=1.5)
    assert result.details["mode"] == "asyncio"
    assert result.requests == 1500
    assert result.details["achieved_rps"] >= 990


# -- latency measurement ---------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["threads", "asyncio"])
def test_percentiles_match_a_known_latency_distribution(mode: str) -> None:
    sleeper = Sleeper(median_s=0.008, sigma=0.35, seed=7)
    func = sleeper.call_async if mode == "asyncio" else sleeper
    result = _run(func, rps=300, duration_s=3.0, agents=30)
    assert result.requests == len(sleeper.planned) == 900
    planned = np.array(sleeper.planned)
    # Measured latency = planned sleep + timer overshoot + start lag: never below the plan (up to
    # the histogram's 0.54 %), and above it by at most timer slack (asyncio sleeps in whole ms)
    # plus the lag the run itself reports (on a machine shared with busy processes, wake-ups
    # come late, and the lag says by how much).
    slack_ms = (2.5 if mode == "asyncio" else 1.5) + result.details["schedule_lag_p99_ms"]
    for q, measured in zip(
        (0.5, 0.95, 0.99), (result.p50_latency_ms, result.p95_latency_ms, result.p99_latency_ms), strict=True
    ):
        exact = float(np.quantile(planned, q, method="lower")) * 1e3
        assert exact * 0.994 <= measured <= exact * 1.03 + slack_ms, (q, exact, measured)


def test_a_stall_shows_up_in_p99_not_only_in_the_calls_it_caught() -> None:
    """Coordinated omission: every request scheduled during a 0.4 s stall waits for it."""
    stall = {"start": None}
    lock = threading.Lock()

    def stalling(agent_id):
        now = time.perf_counter()
        with lock:
            if stall["start"] is None:
                stall["start"] = now + 1.0  # the service freezes 1 s into the run, for 0.4 s
        start = stall["start"]
        if start <= now < start + 0.4:
            time.sleep(start + 0.4 - now)

    result = _run(stalling, rps=500, duration_s=2.0, agents=4)
    assert result.requests == 1000
    # About 200 requests were due during the stall; their latencies spread over 0..0.4 s,
    # so p99 is close to 0.4 - 0.01 * 2 = 0.38 s. A closed-loop view would see 4 slow calls.
    assert result.p99_latency_ms >= 300
    assert result.p95_latency_ms >= 200
    service = LatencyHistogram.from_dict(result.details["service_time_histogram"])
    assert service.count == 1000
    assert service.quantile(0.99) < 0.05, "service time (from actual start) hides the stall"
    assert result.details["schedule_lag_max_ms"] >= 300


def test_lag_is_reported_when_agents_are_too_few() -> None:
    """2 agents, 20 ms calls, 200 rps: capacity is 100/s, so requests start later and later."""

    def slow(agent_id):
        time.sleep(0.02)

    result = _run(slow, rps=200, duration_s=1.0, agents=2, drain_timeout_s=10)
    assert result.requests == 200
    assert result.details["schedule_lag_max_ms"] > 500
    assert result.p99_latency_ms > 500  # the queueing delay is part of the latency
    assert result.details["achieved_rps"] < 150


# -- errors and hung targets -----------------------------------------------------------------


def test_errors_are_counted_and_named() -> None:
    calls = iter(range(10**9))

    def flaky(agent_id):
        if next(calls) % 10 == 0:
            raise TimeoutError("backend timed out")

    result = _run(flaky, rps=500, duration_s=1.0, agents=1)
    assert result.requests == 500
    assert result.errors == 50
    assert result.error_rate == pytest.approx(0.1)
    assert result.details["error_types"] == {"TimeoutError": 50}
    assert result.histogram.errors == 50


def test_warm_up_errors_are_in_no_figure_of_the_measured_run() -> None:
    """The request count, the error count and the error types describe the same calls."""
    calls = iter(range(10**9))

    def flaky(agent_id):
        if next(calls) % 5 == 0:
            raise TimeoutError("backend timed out")

    result = _run(flaky, rps=500, duration_s=1.0, warmup_s=0.2, agents=1)  # 100 warm-up calls
    assert result.requests == 500 and result.errors == 100
    assert result.details["error_types"] == {"TimeoutError": result.errors}
    assert result.details["warmup_requests"] == 100 and result.details["warmup_errors"] == 20


def test_a_hung_target_ends_at_the_drain_deadline_with_errors() -> None:
    release = threading.Event()

    def hangs(agent_id):
        release.wait(30)

    started = time.perf_counter()
    try:
        result = _run(hangs, rps=50, duration_s=0.5, agents=2, drain_timeout_s=0.5)
    finally:
        release.set()
    assert time.perf_counter() - started < 5
    assert result.requests == 25
    assert result.errors == 25
    assert result.details["unfinished"] == 25
    assert result.p50_latency_ms > 400  # each counted as taking at least until the deadline


# -- targets ---------------------------------------------------------------------------------


class Service:
    def handle(self, agent_id, cohort=None):
        return agent_id

    async def ahandle(self, agent_id):
        return agent_id


service = Service()


def positional_only(x):
    return x


def takes_everything(**kwargs):
    return kwargs


def test_resolve_target_forms() -> None:
    # (pytest imported this file under another module name: compare by name, not identity)
    func = resolve_target(f"{HERE}:cheap").func
    assert (func.__module__, func.__qualname__) == (HERE, "cheap")
    method = resolve_target(f"{HERE}:Service.handle")  # class created without arguments
    assert type(method.func.__self__).__qualname__ == "Service" and not method.is_async
    assert resolve_target(f"{HERE}:service.ahandle").is_async
    default = resolve_target(None)
    assert default.label == DEFAULT_TARGET
    assert {"agent_id", "action", "cohort", "action_type", "shadow", "ml_blend"} <= default.accepts


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("nocolon", "expected module:callable"),
        ("no_such_module_xyz:f", "cannot import 'no_such_module_xyz'"),
        (f"{HERE}:missing", "has no attribute 'missing'"),
        (f"{HERE}:Service", "is not a function or method"),
        (f"{HERE}:Service.nope", "has no attribute 'nope'"),
    ],
)
def test_bad_target_is_one_clear_error(spec: str, message: str) -> None:
    with pytest.raises(BenchError, match=message) as info:
        resolve_target(spec)
    assert "\n" not in str(info.value)


def test_call_plan_passes_what_the_target_names() -> None:
    (args, kwargs), *_ = call_plan(resolve_target(None), 7, "beta", shadow=True, ml_blend=True)
    assert args == ()
    assert kwargs["agent_id"] == "agent-007" and kwargs["cohort"] == "beta"
    assert kwargs["shadow"] is True and kwargs["ml_blend"] is True
    assert kwargs["action_type"] in ("query", "tool_call", "generate") and kwargs["action"]
    (args, kwargs), *_ = call_plan(resolve_target(f"{HERE}:service.handle"), 3, "c", False, False)
    assert kwargs == {"agent_id": "agent-003", "cohort": "c"}
    assert call_plan(resolve_target(f"{HERE}:positional_only"), 1, "c", False, False) == [
        (("agent-001",), {})
    ]
    (args, kwargs), *_ = call_plan(resolve_target(f"{HERE}:takes_everything"), 0, "c", False, True)
    assert set(kwargs) == {"agent_id", "action", "cohort", "action_type", "ml_blend"}
    with pytest.raises(BenchError, match=r"--shadow: target .* takes no 'shadow' argument"):
        call_plan(resolve_target(f"{HERE}:service.handle"), 0, "c", True, False)


def test_the_example_service_runs_under_load() -> None:
    result = LoadRun(LoadConfig(agents=10, rps=100, duration_s=1.0, warmup_s=0.1, ml_blend=True)).run()
    assert result.requests == 100
    assert 2 < result.p50_latency_ms < 60
    assert result.details["ml_blend"] is True


# -- HTTP ------------------------------------------------------------------------------------


def test_url_target_posts_json_and_counts_error_statuses() -> None:
    bodies: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["content-length"])))
            bodies.append(body)
            status = 500 if len(bodies) % 5 == 0 else 200
            self.send_response(status)
            self.send_header("content-length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/process"
        result = LoadRun(
            LoadConfig(url=url, agents=5, rps=100, duration_s=1.0, warmup_s=0, shadow=True)
        ).run()
    finally:
        server.shutdown()
        server.server_close()
    assert result.requests == 100 == len(bodies)
    assert result.errors == 20
    assert result.details["error_types"] == {"HTTPStatusError": 20}
    assert {"agent_id", "action", "cohort", "action_type", "shadow"} <= set(bodies[0])
    assert bodies[0]["cohort"] == "benchmark" and bodies[0]["shadow"] is True


def test_bad_url_is_an_error() -> None:
    with pytest.raises(BenchError, match="expected an http:// or https:// URL"):
        LoadRun(LoadConfig(url="ftp://x"))


# -- identity --------------------------------------------------------------------------------


def test_git_identity_from_repo_then_env(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GITHUB_SHA", "f" * 40)
    monkeypatch.setenv("GITHUB_HEAD_REF", "feature/x")
    assert git_identity(str(tmp_path)) == ("f" * 40, "feature/x")  # not a repository: the env
    monkeypatch.delenv("GITHUB_SHA")
    monkeypatch.delenv("GITHUB_HEAD_REF")
    monkeypatch.delenv("GITHUB_REF_NAME", raising=False)
    assert git_identity(str(tmp_path)) == ("unknown", "unknown")
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@x",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@x",
    }
    for cmd in (["init", "-q", "-b", "trunk"], ["commit", "-q", "--allow-empty", "-m", "x"]):
        subprocess.run(["git", *cmd], cwd=tmp_path, check=True, env=env)
    sha, branch = git_identity(str(tmp_path))
    assert len(sha) == 40 and branch == "trunk"


def test_config_is_validated() -> None:
    with pytest.raises(BenchError, match="--rps"):
        LoadRun(LoadConfig(rps=0), _target(cheap))
    with pytest.raises(BenchError, match="at most"):
        LoadRun(LoadConfig(rps=1e6, duration_s=1e3), _target(cheap))
