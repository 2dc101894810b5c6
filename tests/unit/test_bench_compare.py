"""compare: verdicts on seeded runs, exit codes, the pull-request comment (golden files)."""

from __future__ import annotations

import dataclasses
import json
import math
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from nethical_otel.bench.budget import Budget
from nethical_otel.bench.compare import RunSeries, compare_runs, run_series
from nethical_otel.bench.report import MARKER, render
from nethical_otel.bench.results import read_run, write_run
from nethical_otel.cli import main
from nethical_otel.stats import Policy, PolicyBook
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
    """+25 % at p99 from 600 observations: beyond the 20 % threshold, inside the interval."""
    comparison = compare_runs(make_run(seed=11, n=600), make_run(seed=12, n=600, scale=1.25))
    p99 = _by_key(comparison)["p99"]
    assert p99.change_pct > 20
    assert p99.status == "not_significant"
    assert "(not significant" in render(comparison, "markdown")
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


def test_point_estimates_follow_the_policy(tmp_path: Path) -> None:
    """Without histograms the thresholds, severities and minimum sample count are the policy's."""
    for name, run in (("base", make_run()), ("cur", make_run(seed=2, scale=1.3))):
        write_run(run, tmp_path / f"{name}.csv")
        os.unlink(tmp_path / f"{name}.histogram.json")
    baseline, current = read_run(tmp_path / "base.csv"), read_run(tmp_path / "cur.csv")
    strict = Policy.from_mapping(
        {
            "quantiles": {
                "p50": {"threshold": 0.2, "severity": "critical"},
                "p95": {"threshold": 0.5},
                "p99.9": {"threshold": 0.1},
            }
        }
    )
    metrics = _by_key(compare_runs(baseline, current, strict))
    assert (metrics["p50"].status, metrics["p50"].severity, metrics["p50"].threshold) == (
        "regression",
        "critical",
        0.2,
    )
    assert metrics["p95"].status == "ok" and "within the 50% threshold" in metrics["p95"].reason
    assert metrics["p99.9"].status == "inconclusive" and "sidecars" in metrics["p99.9"].reason
    assert compare_runs(baseline, current, strict).exit_code == 1  # critical
    few = compare_runs(baseline, current, Policy(min_samples=5000))
    assert _by_key(few)["p50"].status == "inconclusive"


def test_policy_book_gives_the_policy_of_the_runs_series() -> None:
    book = PolicyBook.from_mapping(
        {
            "quantiles": {"p50": {"threshold": 0.5}, "p95": {"threshold": 0.5}, "p99": {"threshold": 0.5}},
            "overrides": [
                {"match": {"action": "process_action"}, "quantiles": {"p50": {"threshold": 0.1}}},
                {
                    "match": {"service": "api", "action": "process_action"},
                    "quantiles": {"p50": {"severity": "critical"}},
                },
            ],
        }
    )
    target = {"target": "nethical_otel.example.governance:IntegratedGovernance.process_action"}
    baseline, current = make_run(seed=1, details=target), make_run(seed=2, scale=1.3, details=target)
    assert run_series(current) == RunSeries("", "process_action", "benchmark")
    by_default = compare_runs(baseline, current, book)  # the action's override, not the loose default
    assert _by_key(by_default)["p50"].status == "regression" and by_default.exit_code == 0
    assert by_default.policy is book.policy_for(RunSeries("", "process_action", "benchmark"))
    other = compare_runs(baseline, current, book, series=run_series(current, action="generate"))
    assert not other.regressed and other.policy is book.default
    api = compare_runs(baseline, current, book, series=run_series(current, service="api"))
    assert _by_key(api)["p50"].severity == "critical" and api.exit_code == 1
    assert json.loads(render(api, "json"))["series"] == {
        "service": "api",
        "action": "process_action",
        "cohort": "benchmark",
    }


def test_run_series_of_targets() -> None:
    assert run_series(make_run(details={"target": "app.handlers:score"})).action == "score"
    assert run_series(make_run(details={"target": "POST http://127.0.0.1:8000/act"})).action == ""
    assert run_series(make_run(details={})) == RunSeries("", "", "benchmark")
    assert run_series(make_run(cohort="canary"), "svc", "act") == RunSeries("svc", "act", "canary")


# -- minimum detectable effect ---------------------------------------------------------------


def _with_mde(comparison, **mde: float):
    """``comparison`` with the rows' ``Comparison.mde`` set (row key -> mde)."""
    comparison.metrics = [
        dataclasses.replace(m, comparison=dataclasses.replace(m.comparison, mde=mde[m.key]))
        if m.key in mde
        else m
        for m in comparison.metrics
    ]
    return comparison


def test_no_regression_says_what_would_have_been_detected() -> None:
    comparison = _with_mde(
        compare_runs(make_run(seed=1), make_run(seed=2)),
        p50=0.075,
        p95=0.12,
        p99=math.inf,
        error_rate=0.45,
        throughput=0.06,
    )
    text = render(comparison, "markdown")
    assert (
        "> No regression; a slowdown of ≥ 7.5% at p50 or ≥ 12% at p95, a throughput drop of ≥ 6.0% "
        "or a rise in the error rate of ≥ 0.45 pp would have been detected at 99% confidence (80% power); "
        "too few calls to prove anything at p99."
    ) in text.splitlines()
    assert "too few calls to prove anything at p99" in render(comparison, "text")
    data = {m["metric"]: m for m in json.loads(render(comparison, "json"))["metrics"]}
    assert (data["p50"]["mde"], data["p50"]["mde_unbounded"]) == (0.075, False)
    assert (data["p99"]["mde"], data["p99"]["mde_unbounded"]) == (None, True)
    assert data["error_rate"]["mde"] == 0.45


def test_sensitivity_leaves_out_what_regressed_and_what_was_not_computed() -> None:
    comparison = compare_runs(make_run(seed=1), make_run(seed=2, scale=1.3))
    comparison = _with_mde(comparison, **{m.key: math.nan for m in comparison.metrics})
    assert "would have been detected" not in render(comparison, "markdown")  # NaN everywhere: no line
    comparison = _with_mde(comparison, p50=0.08, throughput=0.05)
    [line] = [line for line in render(comparison, "markdown").splitlines() if "would have been" in line]
    assert line == (
        "> Where nothing was flagged, a throughput drop of ≥ 5.0% would have been detected at "
        "99% confidence (80% power)."
    )  # p50 regressed: not repeated
    comparison = _with_mde(comparison, throughput=math.inf)
    lines = render(comparison, "markdown").splitlines()
    assert "> Where nothing was flagged, too few calls to prove anything about throughput." in lines


def test_inconclusive_quantile_that_cannot_be_bounded_is_named() -> None:
    """p99 from 300 calls per side cannot be bounded at 99 %: whatever the verdict, an
    unbounded minimum detectable effect is reported as such."""
    comparison = compare_runs(make_run(seed=11, n=300), make_run(seed=12, n=300))
    comparison = _with_mde(comparison, p50=0.2, p95=0.3, p99=math.inf)
    comparison.metrics = [
        dataclasses.replace(m, status="inconclusive", tested=False) if m.key == "p99" else m
        for m in comparison.metrics
    ]
    text = render(comparison, "markdown")
    assert "too few calls to prove anything at p99." in text
    assert "| P99 Latency |" in text and "(too few samples) |" in text


def test_no_regression_with_nothing_provable_says_so() -> None:
    comparison = compare_runs(make_run(seed=1), make_run(seed=2))
    comparison = _with_mde(comparison, **{m.key: math.inf for m in comparison.metrics})
    assert (
        "> No regression, but too few calls to prove anything at p50, p95 or p99, about throughput "
        "or about the error rate."
    ) in render(comparison, "markdown").splitlines()


def test_not_significant_row_says_how_large_a_change_would_show() -> None:
    comparison = compare_runs(make_run(seed=11, n=600), make_run(seed=12, n=600, scale=1.25))
    comparison = _with_mde(comparison, p99=0.41)
    [row] = [line for line in render(comparison, "markdown").splitlines() if line.startswith("| P99")]
    assert row.endswith("(not significant; ≥ +41% would show) |")


# -- the --policy file -----------------------------------------------------------------------


def _compare_cli(tmp_path: Path, policy_text: str, *extra: str):
    target = {"target": "nethical_otel.example.governance:IntegratedGovernance.process_action"}
    write_run(make_run(seed=1, details=target), tmp_path / "base.csv")
    write_run(make_run(seed=2, scale=1.3, details=target), tmp_path / "cur.csv")
    (tmp_path / "policy.yaml").write_text(policy_text)
    args = [
        "compare",
        str(tmp_path / "base.csv"),
        str(tmp_path / "cur.csv"),
        "--policy",
        str(tmp_path / "policy.yaml"),
        "--format",
        "json",
        *extra,
    ]
    return CliRunner().invoke(main, args, catch_exceptions=False)


OVERRIDES = """\
quantiles: {p50: {threshold: 0.5}, p95: {threshold: 0.5}, p99: {threshold: 0.5}}
overrides:
  - match: {action: process_action}
    quantiles: {p50: {threshold: 0.1, severity: critical}}
"""


def test_policy_file_with_overrides_applies_to_the_runs_action(tmp_path: Path) -> None:
    result = _compare_cli(tmp_path, OVERRIDES)
    assert result.exit_code == 1, result.output  # the override's critical p50
    data = json.loads(result.output)
    assert data["series"]["action"] == "process_action"
    assert data["policy"]["quantiles"]["p50"] == {"threshold": 0.1, "severity": "critical"}
    assert _compare_cli(tmp_path, OVERRIDES, "--action", "other").exit_code == 0


def test_policy_file_may_be_the_agents_settings_file(tmp_path: Path) -> None:
    settings = "prometheus_url: http://prometheus:9090\ndetector_window_s: 300\npolicy:\n" + "".join(
        f"  {line}\n" for line in OVERRIDES.splitlines()
    )
    result = _compare_cli(tmp_path, settings)
    assert result.exit_code == 1, result.output
    assert json.loads(result.output)["policy"]["quantiles"]["p50"]["severity"] == "critical"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("policy: {}\nquantiles: {}\n", "both a top-level `policy`"),
        (
            "policy:\n  overrides: [{match: {host: a}}]\n",
            "policy.yaml: policy.overrides[0].match: unknown key 'host'",
        ),
        ("overrides: {action: a}\n", "overrides: expected a list"),
        ("- 1\n- 2\n", "expected a mapping"),
    ],
)
def test_bad_policy_files_are_one_line_errors(tmp_path: Path, text: str, message: str) -> None:
    result = _compare_cli(tmp_path, text)
    assert result.exit_code == 2
    assert message in result.output and "policy.yaml" in result.output
    assert "Traceback" not in result.output


def test_json_report_is_complete() -> None:
    comparison = compare_runs(make_run(seed=1), make_run(seed=2, scale=1.3, errors=60))
    data = json.loads(render(comparison, "json"))
    assert data["regression"] is True and data["exit_code"] == 1 and data["failed"] is True
    assert [m["metric"] for m in data["metrics"]] == ["p50", "p95", "p99", "throughput", "error_rate"]
    p50 = data["metrics"][0]
    assert p50["status"] == "regression" and p50["tested"] is True and p50["ci_low"] > 1
    assert data["baseline"]["requests"] == 2000
    assert data["policy"] == Policy().to_mapping() and Policy.from_mapping(data["policy"]) == Policy()
    assert data["series"] == {"service": "", "action": "", "cohort": "benchmark"}
    assert {"mde", "mde_unbounded"} <= set(p50)


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


# -- the policy as compare and the generators read it ----------------------------------------


def test_policy_round_trips_through_its_mapping() -> None:
    policy = Policy.from_mapping(
        {"quantiles": {"p99": None, "p99.9": {"threshold": 0.5, "severity": "info"}}, "min_samples": 500}
    )
    assert Policy.from_mapping(policy.to_mapping()) == policy
    assert policy.to_mapping()["quantiles"]["p99"] is None
    assert Policy().describe() == (
        "p50 +10 % warning, p95 +15 % warning, p99 +20 % info, error rate +1 pp critical, "
        "throughput -30 % warning"
    )
    assert (Policy().error_rate_limit, Policy().throughput_floor) == (0.01, 0.7)
    assert [r.ratio_limit for r in Policy().quantiles] == [1.1, 1.15, 1.2]


# -- golden: "Where the time went" (CPU profiles with fixed numbers) -------------------------


def _cpu_profile(calls: int, rows: list[tuple], callers: dict | None = None):
    """A profile of ``calls`` target calls; rows are (file, line, function, own_s, cumulative_s)."""
    from nethical_otel.bench.cpuprofile import Caller, CpuProfile, FunctionStats, is_bookkeeping

    callers = callers or {}
    functions = [
        FunctionStats(
            file, line, name, calls, calls, own, own, cum, tuple(Caller(*c) for c in callers.get(name, ()))
        )
        for file, line, name, own, cum in rows
    ]
    profiled = sum(f.own_s for f in functions if not is_bookkeeping(f.file, f.function))
    return CpuProfile(calls, 4.0, profiled, functions, python="3.11.7")


def test_markdown_with_profiles_matches_golden() -> None:
    from nethical_otel.bench.cpuprofile import ProfilePair, diff_profiles

    loop = ("nethical_otel/bench/cpuprofile.py", 310, "_loop")
    base = _cpu_profile(
        1000,
        [
            ("governance/engine.py", 40, "process_action", 0.20, 9.0),
            ("governance/rules.py", 12, "check_policy", 1.50, 4.0),
            ("governance/rules.py", 88, "normalise", 2.50, 2.5),
            ("governance/audit.py", 7, "write_audit", 1.00, 1.0),
            ("json/encoder.py", 205, "iterencode", 0.80, 0.8),
            ("~", 0, "<method 'join' of 'str' objects>", 0.05, 0.05),
            (*loop, 0.0, 9.5),
        ],
        {
            "normalise": [
                ("governance/rules.py", 12, "check_policy", 1.5),
                ("governance/audit.py", 7, "write_audit", 1.0),
            ]
        },
    )
    current = _cpu_profile(
        800,
        [
            ("governance/engine.py", 42, "process_action", 0.16, 12.0),  # moved down two lines
            ("governance/rules.py", 12, "check_policy", 1.20, 8.0),
            ("governance/rules.py", 90, "normalise", 6.40, 6.4),
            ("governance/audit.py", 7, "write_audit", 0.40, 0.4),
            ("governance/rules.py", 140, "<listcomp>", 0.40, 0.4),  # new in the pull request
            ("json/encoder.py", 205, "iterencode", 0.64, 0.64),
            ("~", 0, "<method 'join' of 'str' objects>", 0.40, 0.40),  # called from C: its own row
            (*loop, 4.0, 16.0),  # our own frame: never in the table
        ],
        {
            "normalise": [
                ("governance/rules.py", 12, "check_policy", 5.6),
                ("governance/audit.py", 7, "write_audit", 0.8),
            ]
        },
    )
    pair = ProfilePair(diff=diff_profiles(base, current))
    baseline = make_run(seed=1, n=3000, errors=3)
    slower = make_run(seed=2, n=3000, errors=3, scale=1.3, branch="feature/slow-path", git_sha="b" * 40)
    comparison = compare_runs(baseline, slower, profiles=pair)
    text = render(comparison, "markdown")
    _golden("compare_profile_regression.md", text)
    lines = text.splitlines()
    table = lines[lines.index("### Where the time went") + 6 :]
    assert table[0].startswith("| `normalise` ← `check_policy` | `governance/rules.py:90` | 2.500 | 8.000 |")
    assert not any("cpuprofile" in line or "_loop" in line for line in lines)
    # The text format has the same table; the JSON the same data.
    assert "normalise ← check_policy  governance/rules.py:90" in render(comparison, "text")
    data = json.loads(render(comparison, "json"))["profile"]
    assert [f["function"] for f in data["functions"]][:2] == ["normalise", "write_audit"]
    assert data["functions"][0]["via"]["function"] == "check_policy"
    # Without a regression the comment has no such section.
    calm = compare_runs(baseline, make_run(seed=2, n=3000, errors=3), profiles=pair)
    assert "Where the time went" not in render(calm, "markdown")
