"""The memory check: a planted leak is found, steady targets and warm-up growth are not."""

from __future__ import annotations

import functools

import pytest

from nethical_otel.bench.memory import fit_leak, profile_memory
from nethical_otel.example import IntegratedGovernance

HERE = "tests.unit.test_bench_memory"
_kept: list[bytearray] = []
_warm: dict[int, str] = {}
_calls = [0]


def leaky(agent_id):
    _kept.append(bytearray(256))  # ~300 bytes kept per call, forever


@functools.lru_cache(maxsize=128)
def _lookup(key: int) -> str:
    return f"value-{key}" * 20


def hog(agent_id):
    # 250 kB written per call, 75 MB in all: RSS must grow by more than 20 MB even when the
    # test process already holds freed memory from earlier tests that these bytes reuse.
    _kept.append(b"x" * 250_000)


def steady(agent_id):
    _calls[0] += 1
    return _lookup(_calls[0] % 100) + agent_id  # a bounded cache: fills, then stays


def warms_up(agent_id):
    """Grows a lot during the first 100 calls (a cache filling), then not at all."""
    _calls[0] += 1
    if len(_warm) < 100:
        _warm[_calls[0]] = "x" * 20_000


def test_a_planted_leak_is_detected() -> None:
    report = profile_memory(f"{HERE}:leaky", 2000)
    assert report.leaking
    assert 250 < report.leak.slope < 400
    assert report.leak.slope_low > 0
    assert any("test_bench_memory.py" in site.where for site in report.top[:3])
    text = report.text()
    assert "Memory leak detected" in text
    assert text.rstrip().splitlines()[-1].startswith("✅ Memory usage is acceptable:")


@pytest.mark.parametrize("target", ["steady", "warms_up"])
def test_steady_targets_are_not_leaks(target: str) -> None:
    _warm.clear()
    report = profile_memory(f"{HERE}:{target}", 2000)
    assert report.leak is not None and not report.leaking, report.leak.line()
    if target == "warms_up":
        assert report.traced_increase_mb > 1.5  # the growth was real, and it was warm-up


engine = IntegratedGovernance(seed=1, simulate_io=False, latency_scale=0.01)


async def aleaky(agent_id):
    _kept.append(bytearray(256))


def test_example_service_does_not_leak() -> None:
    report = profile_memory(f"{HERE}:engine.process_action", 1000, shadow=True)
    assert not report.leaking, report.leak.line()
    assert sum(report.errors.values()) < 20  # the example's 0.2 % simulated errors


def test_verdict_lines_follow_the_guide() -> None:
    report = profile_memory(f"{HERE}:hog", 300, warn_mb=5, leak_check=False)
    assert report.high
    assert report.verdict().startswith("⚠️  WARNING: High memory usage detected: ")
    assert report.verdict().endswith(" MB") and report.rss_increase_mb > 20
    _kept.clear()
    quiet = profile_memory(f"{HERE}:steady", 300, warn_mb=100)
    assert quiet.verdict().startswith("✅ Memory usage is acceptable: ")


def test_async_targets_run_too() -> None:
    assert profile_memory(f"{HERE}:aleaky", 1000).leaking


def test_fit_needs_three_points_after_warmup() -> None:
    assert fit_leak([(100, 10), (200, 20)], 200, 0.2, 64) is None
    flat = fit_leak([(n, 1000 + (n % 3)) for n in range(100, 1100, 100)], 1000, 0.2, 64)
    assert not flat.leaking
