"""What the CI commands print agrees in number: "1 run", "2 runs", "an 80-action warm-up".

Each test runs the command (click's CliRunner) or the text function on a case with a count
of one and a case with more, so a hard-coded plural or "(s)" cannot pass.
"""

from __future__ import annotations

import socket
from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner

from nethical_otel.bench import history
from nethical_otel.bench.memory import AllocationSite, MemoryReport, profile_memory
from nethical_otel.bench.profiler import ProfileReport
from nethical_otel.bench.report import _config
from nethical_otel.bench.results import write_run
from nethical_otel.cli.main import main
from nethical_otel.stats.changepoints import ChangePoint
from tests.unit.test_bench_results import make_run


def invoke(*args: str):
    return CliRunner().invoke(main, list(args), prog_name="nethical-otel", catch_exceptions=False)


def _history(tmp_path: Path, n: int) -> Path:
    directory = tmp_path / "h"
    for day in range(n):
        write_run(make_run(seed=day, timestamp=f"2025-03-{day + 1:02d}T09:30:00Z"), tmp_path / "r.csv")
        history.add(tmp_path / "r.csv", directory)
    return directory


def test_history_detect_and_plot_count_runs_and_change_points(tmp_path: Path, monkeypatch) -> None:
    one = _history(tmp_path, 1)
    assert invoke("history", "detect", "--dir", str(one)).output == "No change points in 1 run.\n"
    plot = invoke("history", "plot", "--dir", str(one), "-o", str(tmp_path / "t.png"))
    assert plot.output == f"{tmp_path / 't.png'}: 1 run, 0 change points\n"
    four = _history(tmp_path / "more", 4)
    point = ChangePoint("p95_latency_ms", 2, 10.0, 11.2, 1e-5)
    monkeypatch.setattr(history, "change_points", lambda runs, **_: [point])
    detect = invoke("history", "detect", "--dir", str(four))
    assert detect.output.splitlines()[0] == "1 change point in 4 runs:"
    plot = invoke("history", "plot", "--dir", str(four), "-o", str(tmp_path / "t4.png"))
    assert plot.output.endswith(": 4 runs, 1 change point\n")


def test_budget_counts_the_budgets_exceeded(tmp_path: Path) -> None:
    write_run(make_run(), tmp_path / "run.csv")
    one = invoke("budget", str(tmp_path / "run.csv"), "--p50", "1")
    assert one.exit_code == 1 and one.output.splitlines()[-1] == "❌ 1 budget exceeded"
    two = invoke("budget", str(tmp_path / "run.csv"), "--p50", "1", "--p95", "1")
    assert two.exit_code == 1 and two.output.splitlines()[-1] == "❌ 2 budgets exceeded"


def test_a_run_of_one_request_that_failed_is_said_so(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))  # never listening: refused
        url = f"http://127.0.0.1:{sock.getsockname()[1]}/"
        result = CliRunner().invoke(
            main, ["load", "--url", url, "--rps", "1", "--duration", "1", "--agents", "1", "-q"]
        )
    assert result.exit_code == 1
    assert f"error: the one request to POST {url} failed (ConnectError)" in result.output


def test_the_pull_request_comment_configuration_agrees() -> None:
    assert _config(make_run(agents=1, target_rps=10, duration_s=1)) == "1 agent, 10 RPS, 1 second"
    assert _config(make_run(agents=20, target_rps=250, duration_s=2)) == "20 agents, 250 RPS, 2 seconds"
    assert _config(make_run(agents=20, target_rps=250, duration_s=1.5)).endswith("1.5 seconds")


def _report(**changes) -> MemoryReport:
    fields = dict(
        target="t:f",
        actions=1,
        duration_s=0.1,
        errors=Counter({"ValueError": 1}),
        rss_start_mb=10.0,
        rss_end_mb=10.0,
        traced_start_mb=0.0,
        traced_end_mb=0.0,
        traced_peak_mb=0.0,
        warn_mb=100.0,
        top=[AllocationSite("f.py:1", 100, 1)],
    )
    return MemoryReport(**{**fields, **changes})


def test_the_memory_report_agrees() -> None:
    text = _report().text()
    assert "Memory profile: 1 action of t:f" in text and "0.1 s, 1 error (ValueError x1)" in text
    assert "f.py:1: +0.1 KiB in +1 block" in text and "blocks" not in text
    many = _report(
        actions=2, errors=Counter({"ValueError": 2}), top=[AllocationSite("f.py:1", 100, 3)]
    ).text()
    assert "2 actions of" in many and "2 errors" in many and "+3 blocks" in many


@pytest.mark.parametrize(
    ("actions", "phrase"), [(400, "after an 80-action warm-up"), (1000, "after a 200-action")]
)
def test_the_warm_up_takes_its_article(actions: int, phrase: str) -> None:
    assert phrase in profile_memory("tests.unit.test_bench_memory:steady", actions).text()


def test_a_run_too_short_for_a_leak_check_says_so() -> None:
    text = profile_memory("tests.unit.test_bench_memory:steady", 1).text()
    assert (
        "Leak check: not enough checkpoints after the warm-up to fit a line (1 action; run more --actions)"
        in text
    )
    assert text.rstrip().splitlines()[-1].endswith("MB (RSS only: no leak check)")


def test_the_profiler_report_agrees() -> None:
    fields = dict.fromkeys(ProfileReport.__dataclass_fields__, 1.0)
    assert "(1 sample)" in str(ProfileReport(**{**fields, "samples": 1, "requests": 1, "errors": 0}))
    assert "(3 samples)" in str(ProfileReport(**{**fields, "samples": 3, "requests": 1, "errors": 0}))
