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
    # The verdict is the leak: never "acceptable" beside it.
    assert text.rstrip().splitlines()[-1].startswith("⚠️  WARNING: Memory leak detected: +")
    assert "acceptable" not in text and not report.ok


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
    assert report.high and not report.ok
    assert report.verdicts() == [
        f"⚠️  WARNING: High memory usage detected: {report.rss_increase_mb:.2f} MB "
        "(RSS increase; the limit is 5 MB)"
    ]
    assert report.rss_increase_mb > 20 and "acceptable" not in report.text()
    _kept.clear()
    quiet = profile_memory(f"{HERE}:steady", 300, warn_mb=100)
    assert quiet.ok and quiet.verdicts() == [f"✅ Memory usage is acceptable: {quiet.rss_increase_mb:.2f} MB"]
    unchecked = profile_memory(f"{HERE}:steady", 300, leak_check=False)
    assert unchecked.verdict().endswith("MB (RSS only: no leak check)")
    assert "Leak check: skipped (--no-leak-check)" in unchecked.text()


def test_high_use_and_a_leak_both_warn() -> None:
    report = profile_memory(f"{HERE}:hog", 300, warn_mb=5)
    try:
        assert report.high and report.leaking
        lines = report.text().rstrip().splitlines()
        assert lines[-2].startswith("⚠️  WARNING: High memory usage detected: ")
        assert lines[-1].startswith("⚠️  WARNING: Memory leak detected: ")
    finally:
        _kept.clear()


def test_progress_is_reported_and_its_own_allocations_are_not_the_targets() -> None:
    """A progress callback that keeps memory (as rich does: it caches every string it
    measures) is not counted: the steady target stays steady, the leak stays a leak."""
    import io

    from rich.console import Console
    from rich.progress import Progress

    calls: list[tuple[int, int]] = []
    progress = Progress(console=Console(file=io.StringIO(), force_terminal=True), auto_refresh=False)
    task = progress.add_task("memory", total=2000)

    def on_progress(done: int, total: int, elapsed_s: float) -> None:
        calls.append((done, total))
        progress.update(task, completed=done, description=f"{done}/{total} at {elapsed_s:.3f} s")
        progress.refresh()

    with progress:
        steady_report = profile_memory(f"{HERE}:steady", 2000, on_progress=on_progress)
    assert calls[0] == (0, 2000) and calls[-1] == (2000, 2000) and len(calls) > 50
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)
    assert not steady_report.leaking, steady_report.leak.line()
    assert abs(steady_report.leak.slope) < 16, steady_report.leak.line()
    assert not any("rich" in site.where for site in steady_report.top)
    assert profile_memory(f"{HERE}:leaky", 2000, on_progress=on_progress).leaking


def test_warm_up_is_named_with_its_article() -> None:
    text = profile_memory(f"{HERE}:steady", 400).text()  # a 20 % warm-up: 80 actions
    assert "after an 80-action warm-up" in text
    assert "Memory profile: 400 actions of" in text
    assert ", 0 errors" in text


def test_async_targets_run_too() -> None:
    assert profile_memory(f"{HERE}:aleaky", 1000).leaking


def test_fit_needs_three_points_after_warmup() -> None:
    assert fit_leak([(100, 10), (200, 20)], 200, 0.2, 64) is None
    flat = fit_leak([(n, 1000 + (n % 3)) for n in range(100, 1100, 100)], 1000, 0.2, 64)
    assert not flat.leaking
