"""Budgets: limits from options or a file, checked on a run's point estimates."""

from __future__ import annotations

from pathlib import Path

import pytest

from nethical_otel.bench.budget import Budget
from nethical_otel.bench.results import BenchError
from tests.unit.test_bench_results import make_run


def test_checks_each_limit() -> None:
    run = make_run(errors=40)  # p50 ~10 ms, p95 ~19 ms, 2 % errors, 49.9 req/s
    checks = {
        c.key: c for c in Budget({"p50": 50, "p95": 15, "error_rate": 1.0, "min_throughput": 45}).check(run)
    }
    assert not checks["p50"].exceeded and checks["p50"].value == pytest.approx(run.p50_latency_ms)
    assert checks["p95"].exceeded
    assert checks["error_rate"].exceeded and checks["error_rate"].value == pytest.approx(2.0)
    assert not checks["min_throughput"].exceeded
    assert (
        checks["p95"].line().startswith("❌ P95 latency")
        and "> 15 ms (budget exceeded)" in checks["p95"].line()
    )
    assert checks["p50"].line().startswith("✅ P50 latency") and "<= 50 ms" in checks["p50"].line()
    low = Budget({"min_throughput": 60}).check(run)[0]
    assert low.exceeded and "< 60 req/s" in low.line()


def test_file_and_overrides(tmp_path: Path) -> None:
    path = tmp_path / "budget.yaml"
    path.write_text("p50: 50\np95: 200\np99: 500\n")
    budget = Budget.from_file(path).merged({"p95": 100, "p99": None})
    assert dict(budget.limits) == {"p50": 50, "p95": 100, "p99": 500}
    (tmp_path / "b.json").write_text('{"p95": 120}')
    assert dict(Budget.from_file(tmp_path / "b.json").limits) == {"p95": 120}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("p95: 200\np96: 1\n", "unknown budget 'p96'"),
        ("p95: fast\n", "budget 'p95' is 'fast'"),
        ("p95: -1\n", "expected a number >= 0"),
        ("- 1\n- 2\n", "expected a mapping"),
        ("p95: [1\n", "line 2: not valid YAML"),
    ],
)
def test_bad_budget_file_is_one_clear_error(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "budget.yaml"
    path.write_text(text)
    with pytest.raises(BenchError) as info:
        Budget.from_file(path)
    assert str(path) in str(info.value) and message in str(info.value), str(info.value)
    assert "\n" not in str(info.value)


def test_missing_budget_file() -> None:
    with pytest.raises(BenchError, match=r"budget\.yaml: no such file"):
        Budget.from_file("/nonexistent/budget.yaml")
