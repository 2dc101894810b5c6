"""compare: verdicts on seeded runs, exit codes, the pull-request comment (golden files)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from nethical_otel.bench.budget import Budget
from nethical_otel.bench.compare import compare_runs
from nethical_otel.bench.report import MARKER, render
from nethical_otel.bench.results import read_run, write_run
from nethical_otel.stats import Policy
from tests.unit.test_bench_results import make_run

GOLDEN = Path(__file__).resolve().parents[1] / "golden"


def _by_key(comparison):
    return {m.key: m for m in comparison.metrics}


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_two_runs_of_the_same_target_are_no_regression(seed: int) -> None:
    comparison = compare_runs(make_run(seed=seed), make_run(seed=seed + 100))
    assert not comparison.regressed, [m.reason for m in comparison.regressions]
    assert comparison.exit_code == 0
    assert render(comparison, "markdown").splitlines()[1] == "## ✅ Performance Benchmark Results"


def test_thirty_percent_slower_is_flagged() -> None:
    comparison = compare_runs(make_run(seed=1), make_run(seed=2, scale=1.3, branch="feature"))
    metrics = _by_key(comparison)
    assert metrics["p50"].status == "regression" and metrics["p50"].severity == "warning"
    assert metrics["p95"].status == "regression"
    assert metrics["p50"].tested and 25 < metrics["p50"].change_pct < 35
    assert comparison.regressed
    assert comparison.exit_code == 0  # warnings only
    assert compare_runs(make_run(seed=1), make_run(seed=2, scale=1.3), fail_on="warning").exit_code == 1


def test_error_rate_up_two_points_fails() -> None:
    comparison = compare_runs(make_run(errors=4), make_run(seed=2, errors=60))
    error_rate = _by_key(comparison)["error_rate"]
    assert error_rate.status == "regression" and error_rate.severity == "critical"
    assert comparison.exit_code == 1


def test_budget_exceeded_fails() -> None:
    current = make_run(seed=2)
    comparison = compare_runs(make_run(), current, budget=Budget({"p95": current.p95_latency_ms * 0.9}))
    assert [b.key for b in comparison.budget_exceeded] == ["p95"]
    assert comparison.exit_code == 1
    assert compare_runs(make_run(), current, budget=Budget({"p95": 1000})).exit_code == 0


def test_change_within_noise_is_marked_not_significant() -> None:
    """+25 % at p99 from 300 observations: beyond the 20 % threshold, inside the interval."""
    comparison = compare_runs(make_run(seed=11, n=300), make_run(seed=12, n=300, scale=1.25))
    p99 = _by_key(comparison)["p99"]
    assert p99.change_pct > 20
    assert p99.status == "not_significant"
    assert "(not significant)" in render(comparison, "markdown")
    assert not any(m.key == "p99" for m in comparison.regressions)


def test_csv_alone_compares_point_estimates_and_says_so(tmp_path: Path) -> None:
    write_run(make_run(), tmp_path / "base.csv")
    write_run(make_run(seed=2, scale=1.3), tmp_path / "cur.csv")
    os.unlink(tmp_path / "base.histogram.json")
    comparison = compare_runs(read_run(tmp_path / "base.csv"), read_run(tmp_path / "cur.csv"))
    assert comparison.point_estimates_only
    p50 = _by_key(comparison)["p50"]
    assert p50.status == "regression" and not p50.tested
    text = render(comparison, "markdown")
    assert "Point estimates only" in text and "base.csv" in text
    assert "not tested for significance" in text
    assert _by_key(comparison)["error_rate"].tested  # counts are in the CSV


def test_policy_changes_apply() -> None:
    loose = {"threshold": 0.5}
    policy = Policy.from_mapping({"quantiles": {"p50": loose, "p95": loose, "p99": loose}})
    comparison = compare_runs(make_run(seed=1), make_run(seed=2, scale=1.3), policy)
    assert not comparison.regressed


def test_json_report_is_complete() -> None:
    comparison = compare_runs(make_run(seed=1), make_run(seed=2, scale=1.3, errors=60))
    data = json.loads(render(comparison, "json"))
    assert data["regression"] is True and data["exit_code"] == 1 and data["failed"] is True
    assert [m["metric"] for m in data["metrics"]] == ["p50", "p95", "p99", "throughput", "error_rate"]
    p50 = data["metrics"][0]
    assert p50["status"] == "regression" and p50["tested"] is True and p50["ci_low"] > 1
    assert data["baseline"]["requests"] == 2000


def test_text_report_names_both_runs() -> None:
    text = render(compare_runs(make_run(), make_run(seed=2, branch="feature", git_sha="b" * 40)), "text")
    assert "baseline main@aaaaaaa" in text and "current  feature@bbbbbbb" in text


# -- golden: the guide's comment -------------------------------------------------------------


def _golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN"):
        path.write_text(text, encoding="utf-8")
    assert text == path.read_text(encoding="utf-8"), f"differs from {path} (UPDATE_GOLDEN=1 rewrites it)"


def test_markdown_regression_matches_golden() -> None:
    baseline = make_run(seed=1, n=3000, errors=3)
    current = make_run(seed=2, n=3000, errors=60, scale=1.3, branch="feature/slow-path", git_sha="b" * 40)
    comparison = compare_runs(baseline, current, budget=Budget({"p99": 30}))
    text = render(comparison, "markdown")
    _golden("compare_regression.md", text)
    lines = text.splitlines()
    assert lines[0] == MARKER
    assert lines[1:4] == ["## ⚠️ Performance Benchmark Results", "", "### **Performance Regression Detected**"]
    assert "| Metric | Baseline | Current | Change |" in lines
    assert lines[-2:] == ["*Benchmark Configuration: 100 agents, 50 RPS, 40 seconds*", "*Baseline: `main`*"]


def test_markdown_no_regression_matches_golden() -> None:
    comparison = compare_runs(make_run(seed=1, n=3000), make_run(seed=2, n=3000, branch="feature/docs"))
    text = render(comparison, "markdown")
    _golden("compare_ok.md", text)
    assert text.splitlines()[1:4] == [
        "## ✅ Performance Benchmark Results",
        "",
        "### No Performance Regression",
    ]
