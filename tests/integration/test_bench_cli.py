"""The CI commands as a user runs them: real subprocesses, real load runs, real files.

Three 2-second runs of a target with a known latency distribution (lognormal, median 20 ms)
are shared by the tests: a baseline, a second run of the same target, and the target slowed
by 30 %.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from nethical_otel.bench.results import read_run, write_run
from tests.unit.test_bench_results import make_run

REPO_ROOT = Path(__file__).resolve().parents[2]

TARGET = """
import math, os, threading, time
import numpy as np

_rng = np.random.default_rng(int(os.environ.get("TARGET_SEED", "1")))
_lock = threading.Lock()
SLOWDOWN = float(os.environ.get("TARGET_SLOWDOWN", "1"))


def handle(agent_id, cohort=None):
    with _lock:
        seconds = _rng.lognormal(math.log(0.020), 0.3)
    time.sleep(seconds * SLOWDOWN)


_kept = []


def leak(agent_id):
    _kept.append(bytearray(512))


_calls = iter(range(10**9))


def flaky(agent_id):
    if next(_calls) % 5 == 4:
        raise ValueError("every fifth call fails")
"""


def _cli() -> list[str]:
    script = Path(sys.executable).parent / "nethical-otel"
    return [str(script)] if script.exists() else [sys.executable, "-m", "nethical_otel.cli"]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "NETHICAL_OTEL_", "GITHUB_"))}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    return {**env, **extra}


def run(cwd: Path, *args: str, env: dict[str, str] | None = None, cli: list[str] | None = None):
    return subprocess.run(
        [*(cli or _cli()), *args], cwd=cwd, env=env or _env(), capture_output=True, text=True, timeout=120
    )


def _one_line_error(result, *names: str) -> None:
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for name in names:
        assert name in lines[0], lines[0]


LOAD = (
    "--target",
    "target_mod:handle",
    "--agents",
    "20",
    "--rps",
    "250",
    "--duration",
    "2",
    "--warmup",
    "0.2",
)


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    """base.csv, same.csv (same target, other seed), slow.csv (30 % slower), in one folder."""
    folder = tmp_path_factory.mktemp("runs")
    (folder / "target_mod.py").write_text(TARGET)
    base = run(folder, "load", *LOAD, "--output", "base.csv", "--branch", "main", env=_env(TARGET_SEED="1"))
    assert base.returncode == 0, base.stderr
    # The guide's command line, through the example script.
    same = run(
        folder,
        *LOAD,
        "--output",
        "same.csv",
        "--quiet",
        env=_env(TARGET_SEED="2"),
        cli=[sys.executable, str(REPO_ROOT / "examples/perf/generate_load.py")],
    )
    assert same.returncode == 0, same.stderr
    assert same.stdout == "" and same.stderr == ""  # --quiet
    slow = run(
        folder,
        "load",
        *LOAD,
        "--output",
        "slow.csv",
        "--quiet",
        env=_env(TARGET_SEED="3", TARGET_SLOWDOWN="1.3"),
    )
    assert slow.returncode == 0, slow.stderr
    (folder / "base.log").write_text(base.stdout + base.stderr)
    return folder


def test_load_writes_csv_sidecar_and_summary(runs: Path) -> None:
    pandas = pytest.importorskip("pandas")
    frame = pandas.read_csv(runs / "base.csv")
    assert len(frame) == 1 and frame.loc[0, "requests"] == 500 and frame.loc[0, "agents"] == 20
    assert frame.loc[0, "branch"] == "main" and frame.loc[0, "cohort"] == "benchmark"
    assert 19 <= frame.loc[0, "p50_latency_ms"] <= 23  # median 20 ms plus timer slack
    assert (runs / "base.histogram.json").exists()
    log = (runs / "base.log").read_text()
    for word in ("Requests", "Send rate", "Schedule lag", "Latency", "base.histogram.json"):
        assert word in log
    result = read_run(runs / "base.csv")
    assert result.histogram.count == 500 and result.details["achieved_rps"] >= 247


def test_compare_two_runs_of_the_same_target(runs: Path) -> None:
    result = run(runs, "compare", "base.csv", "same.csv")
    assert result.returncode == 0, result.stderr
    assert "## ✅ Performance Benchmark Results" in result.stdout
    assert "### No Performance Regression" in result.stdout
    assert "*Baseline: `main`*" in result.stdout
    assert "*Benchmark Configuration: 20 agents, 250 RPS, 2 seconds*" in result.stdout


def test_compare_flags_the_slowed_target(runs: Path) -> None:
    result = run(runs, "compare", "base.csv", "slow.csv")
    assert result.returncode == 0, result.stderr  # latency regressions are warnings
    out = result.stdout
    assert "## ⚠️ Performance Benchmark Results" in out and "### **Performance Regression Detected**" in out
    assert "- ⚠️ **P50 Latency** increased by" in out
    failing = run(runs, "compare", "base.csv", "slow.csv", "--fail-on", "warning")
    assert failing.returncode == 1


def test_compare_formats_and_output_file(runs: Path) -> None:
    result = run(runs, "compare", "base.csv", "slow.csv", "--format", "json", "--output", "cmp.json")
    assert result.returncode == 0 and result.stdout == ""
    assert "report written to cmp.json" in result.stderr
    data = json.loads((runs / "cmp.json").read_text())
    assert data["regression"] is True and data["point_estimates_only"] is False
    text = run(runs, "compare", "base.csv", "same.csv", "--format", "text")
    assert text.stdout.startswith("Performance benchmark: no performance regression")
    # The guide's script name.
    script = run(
        runs, "base.csv", "slow.csv", cli=[sys.executable, str(REPO_ROOT / "scripts/compare_benchmarks.py")]
    )
    assert script.returncode == 0 and "Performance Regression Detected" in script.stdout


def test_compare_exit_one_on_error_rate_and_budget(tmp_path: Path) -> None:
    write_run(make_run(errors=4), tmp_path / "base.csv")
    write_run(make_run(seed=2, errors=60), tmp_path / "errors.csv")
    write_run(make_run(seed=3), tmp_path / "fine.csv")
    assert run(tmp_path, "compare", "base.csv", "errors.csv").returncode == 1
    assert run(tmp_path, "compare", "base.csv", "fine.csv").returncode == 0
    (tmp_path / "budget.yaml").write_text("p95: 5\n")
    over = run(tmp_path, "compare", "base.csv", "fine.csv", "--budget", "budget.yaml")
    assert over.returncode == 1 and "❌ **Budget**: P95 latency" in over.stdout


def test_compare_csv_alone_says_point_estimates(runs: Path, tmp_path: Path) -> None:
    (tmp_path / "base.csv").write_text((runs / "base.csv").read_text())
    result = run(tmp_path, "compare", "base.csv", str(runs / "same.csv"))
    assert result.returncode == 0
    assert "Point estimates only: no histogram sidecar for `base.csv`" in result.stdout


@pytest.mark.parametrize(
    ("content", "names"),
    [
        ("", ("bad.csv", "empty file")),
        ("timestamp,git_sha,requests\n", ("bad.csv", "line 1: missing column")),
        (None, ("bad.csv", "line 2:", "(truncated?)")),
    ],
)
def test_compare_bad_csv_is_one_line_exit_two(runs: Path, tmp_path: Path, content, names) -> None:
    if content is None:  # a truncated copy of a real run
        content = (runs / "base.csv").read_text()[:-60]
    (tmp_path / "bad.csv").write_text(content)
    _one_line_error(run(tmp_path, "compare", str(runs / "base.csv"), "bad.csv"), *names)


def test_compare_truncated_sidecar_and_missing_file(runs: Path, tmp_path: Path) -> None:
    (tmp_path / "cut.csv").write_text((runs / "base.csv").read_text())
    text = (runs / "base.histogram.json").read_text()
    (tmp_path / "cut.histogram.json").write_text(text[: len(text) // 3])
    _one_line_error(
        run(tmp_path, "compare", "cut.csv", str(runs / "same.csv")),
        "cut.histogram.json",
        "not valid JSON (truncated?)",
    )
    _one_line_error(run(tmp_path, "compare", "nope.csv", str(runs / "same.csv")), "nope.csv", "no such file")


def test_load_bad_target_is_one_line(tmp_path: Path) -> None:
    _one_line_error(
        run(tmp_path, "load", "--target", "nowhere_xyz:f", "--duration", "1", "-q"), "nowhere_xyz"
    )
    _one_line_error(run(tmp_path, "load", "--target", "a:b", "--url", "http://127.0.0.1:1", "-q"), "not both")


@pytest.mark.parametrize("quiet", [True, False], ids=["quiet", "progress"])
def test_load_where_every_request_fails_exits_one_and_keeps_the_previous_results(
    tmp_path: Path, quiet: bool
) -> None:
    write_run(make_run(), tmp_path / "run.csv")
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))  # bound and never listening: every connection is refused
        url = f"http://127.0.0.1:{sock.getsockname()[1]}/"
        args = ("--url", url, "--duration", "1", "--rps", "20", "--agents", "2", "-o", "run.csv")
        result = run(tmp_path, "load", *args, *(["-q"] if quiet else []))
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines[-1] == (
        f"nethical-otel: error: all 20 requests to POST {url} failed (ConnectError); "
        "nothing written to run.csv"
    )
    if quiet:
        assert len(lines) == 1 and result.stdout == ""
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_load_counts_errors_and_their_types_over_the_same_calls(tmp_path: Path) -> None:
    """Requests, errors and error types are the measured calls; the warm-up's are apart."""
    (tmp_path / "target_mod.py").write_text(TARGET)
    args = ("--target", "target_mod:flaky", "--agents", "1", "--rps", "200", "--duration", "1",
            "--warmup", "0.5")  # fmt: skip
    result = run(tmp_path, "load", *args, env=_env(COLUMNS="200"))
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "200 requests (40 errors, 20.00%); warm-up excluded: 100 requests, 20 errors" in out, out
    assert "ValueError x40" in out and "1 agent (threads)" in out


def test_budget_command(runs: Path) -> None:
    ok = run(runs, "budget", "base.csv", "--p50", "50", "--p95", "200", "--p99", "500")
    assert ok.returncode == 0, ok.stdout
    assert "✅ P95 latency" in ok.stdout and "✅ All budgets met" in ok.stdout
    over = run(runs, "budget", "base.csv", "--p50", "5")
    assert over.returncode == 1 and "❌ P50 latency" in over.stdout and "❌ 1 budget exceeded" in over.stdout
    two = run(runs, "budget", "base.csv", "--p50", "5", "--p95", "5")
    assert two.returncode == 1 and "❌ 2 budgets exceeded" in two.stdout
    (runs / "budget.yaml").write_text("p95: 200\nerror_rate: 1\n")
    assert run(runs, "budget", "base.csv", "--file", "budget.yaml").returncode == 0
    _one_line_error(run(runs, "budget", "base.csv"), "no budget given")
    (runs / "wrong.yaml").write_text("p9: 1\n")
    _one_line_error(
        run(runs, "budget", "base.csv", "--file", "wrong.yaml"), "wrong.yaml", "unknown budget 'p9'"
    )


def test_history_add_detect_plot(runs: Path, tmp_path: Path) -> None:
    for name in ("base.csv", "same.csv", "slow.csv"):
        added = run(runs, "history", "add", name, "--dir", str(tmp_path / "benchmark-history"))
        assert added.returncode == 0, added.stderr
        assert Path(added.stdout.strip()).name.startswith("benchmark_")
    files = sorted(p.name for p in (tmp_path / "benchmark-history").iterdir())
    assert len(files) == 6 and sum(f.endswith(".histogram.json") for f in files) == 3
    # The same run again: refused in one line, nothing added.
    again = run(runs, "history", "add", "base.csv", "--dir", str(tmp_path / "benchmark-history"))
    _one_line_error(again, "base.csv", "already in the history as", "nothing added")
    assert sorted(p.name for p in (tmp_path / "benchmark-history").iterdir()) == files
    detect = run(tmp_path, "history", "detect")
    assert detect.returncode == 0 and "No change points in 3 runs" in detect.stdout
    plot = run(tmp_path, "history", "plot", "--output", "trend.png")
    assert plot.returncode == 0, plot.stderr
    assert plot.stdout.strip() == "trend.png: 3 runs, 0 change points"
    assert (tmp_path / "trend.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    _one_line_error(run(tmp_path, "history", "plot", "--dir", "missing"), "no such history directory")


def test_memory_command(tmp_path: Path) -> None:
    (tmp_path / "target_mod.py").write_text(TARGET)
    result = run(tmp_path, "memory", "--actions", "1000", "--target", "target_mod:leak")
    assert result.returncode == 0, result.stderr  # without --strict a leak is reported, not failed
    # One verdict: the leak. Never "acceptable" beside it.
    assert result.stdout.rstrip().splitlines()[-1].startswith("⚠️  WARNING: Memory leak detected: +")
    assert "acceptable" not in result.stdout and "Top allocation sites" in result.stdout
    assert (tmp_path / "memory-profile.txt").read_text() == result.stdout
    # Progress, off a terminal: a few plain lines on stderr.
    progress = [line for line in result.stderr.splitlines() if line.startswith("memory: ")]
    assert progress[0] == "memory: running 1000 actions ..." and progress[-1].startswith(
        "memory: 1,000/1,000 actions, "
    ), result.stderr
    assert 3 <= len(progress) <= 6
    strict = run(
        tmp_path, "memory", "--actions", "500", "--target", "target_mod:leak", "--strict", "-o", "m.txt"
    )
    assert strict.returncode == 1
    assert (tmp_path / "m.txt").read_text().rstrip().splitlines()[-1].startswith("⚠️  WARNING: Memory leak")
    steady = run(tmp_path, "memory", "--actions", "500", "--target", "target_mod:handle", "--strict",
                 "-o", "s.txt")  # fmt: skip
    assert steady.returncode == 0, steady.stdout
    assert steady.stdout.rstrip().splitlines()[-1].startswith("✅ Memory usage is acceptable:")


# -- load --profile and "Where the time went" ------------------------------------------------

PROFILED_TARGET = """
import os, time

SLOW_S = float(os.environ.get("SLOW_MS", "1")) / 1e3


def fast_part():
    end = time.perf_counter() + 0.0003
    while time.perf_counter() < end:  # CPU, not sleep: a steady cProfile signal
        pass


def slow_part():
    end = time.perf_counter() + SLOW_S
    while time.perf_counter() < end:
        pass


def handle(agent_id):
    fast_part()
    slow_part()
"""

PROFILED_LOAD = ("--target", "profiled_mod:handle", "--agents", "4", "--rps", "100", "--duration", "2",
                 "--warmup", "0.2", "--profile", "--profile-duration", "1")  # fmt: skip


def test_load_profile_then_compare_names_the_slowed_function(tmp_path: Path) -> None:
    (tmp_path / "profiled_mod.py").write_text(PROFILED_TARGET)
    base = run(tmp_path, "load", *PROFILED_LOAD, "-o", "base.csv", env=_env(SLOW_MS="1", COLUMNS="200"))
    assert base.returncode == 0, base.stderr
    assert "profiling" in base.stderr  # the progress display says so
    assert "CPU profile" in base.stdout and "base.profile.json" in base.stdout
    pr = run(tmp_path, "load", *PROFILED_LOAD, "-o", "pr.csv", "-q", env=_env(SLOW_MS="4"))
    assert pr.returncode == 0 and pr.stdout == "" and pr.stderr == "", pr.stderr
    doc = json.loads((tmp_path / "pr.profile.json").read_text())
    assert doc["format"] == "nethical-otel-cpu-profile" and doc["target_calls"] > 50
    assert doc["run"]["requests"] == read_run(tmp_path / "pr.csv").requests
    assert {f["function"] for f in doc["functions"]} >= {"handle", "fast_part", "slow_part"}

    result = run(tmp_path, "compare", "base.csv", "pr.csv")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "### **Performance Regression Detected**" in lines
    table = [line for line in lines[lines.index("### Where the time went") :] if line.startswith("| `")]
    assert table and table[0].startswith("| `slow_part` | `profiled_mod.py:"), "\n".join(lines)
    assert not any("fast_part" in row for row in table[:1])
    data = json.loads(run(tmp_path, "compare", "base.csv", "pr.csv", "--format", "json").stdout)
    top = data["profile"]["functions"][0]
    assert top["function"] == "slow_part" and top["change_ms_per_call"] > 1.5  # 3 ms when idle
    # A profile that cannot be read: one warning naming it, and the comment without the section.
    (tmp_path / "pr.profile.json").write_text("{")
    broken = run(tmp_path, "compare", "base.csv", "pr.csv")
    assert broken.returncode == 0 and "Traceback" not in broken.stderr
    [warning] = broken.stderr.strip().splitlines()
    assert warning.startswith("nethical-otel: warning: pr.profile.json") and "no profile section" in warning
    assert "Performance Regression Detected" in broken.stdout and "Where the time went" not in broken.stdout
    # No profile on one side: one line saying how to get one.
    (tmp_path / "pr.profile.json").unlink()
    missing = run(tmp_path, "compare", "base.csv", "pr.csv")
    assert missing.stderr == "" and "run `nethical-otel load --profile` on both sides" in missing.stdout


def test_load_profile_usage_errors_are_one_line(tmp_path: Path) -> None:
    (tmp_path / "profiled_mod.py").write_text(PROFILED_TARGET)
    _one_line_error(run(tmp_path, "load", "--target", "profiled_mod:handle", "--profile", "-q"), "--output")
    _one_line_error(
        run(tmp_path, "load", "--url", "http://127.0.0.1:1/", "--profile", "-o", "r.csv", "-q"), "--profile"
    )
    _one_line_error(
        run(tmp_path, "load", "--target", "profiled_mod:handle", "--profile-duration", "1", "-o", "r.csv"),
        "--profile-duration needs --profile",
    )
    (tmp_path / "r.profile.json").mkdir()  # the profile's path is checked before the run
    _one_line_error(
        run(tmp_path, "load", "--target", "profiled_mod:handle", "--profile", "-o", "r.csv", "-q"),
        "r.profile.json",
    )
    assert not (tmp_path / "r.csv").exists()


SUBSTEP_TARGET = """
import os
from nethical_otel.example import IntegratedGovernance
from nethical_otel.example.governance import FETCH


class Slowed(IntegratedGovernance):
    def __init__(self):
        super().__init__(seed=int(os.environ.get("TARGET_SEED", "1")), error_rate=0.0, latency_scale=0.5)
        self.step_slowdown[(None, FETCH)] = float(os.environ.get("FETCH_SLOWDOWN", "1"))
"""


def test_compare_names_the_slowed_sub_step_of_an_instrumented_target(tmp_path: Path) -> None:
    (tmp_path / "slowed_mod.py").write_text(SUBSTEP_TARGET)
    load = ("load", "--target", "slowed_mod:Slowed.process_action", "--rps", "150", "--duration", "3",
            "--warmup", "1", "-q")  # fmt: skip
    base = run(tmp_path, *load, "-o", "base.csv", env=_env(FETCH_SLOWDOWN="1"))
    pr = run(tmp_path, *load, "-o", "pr.csv", env=_env(FETCH_SLOWDOWN="2", TARGET_SEED="2"))
    assert base.returncode == 0 and pr.returncode == 0, base.stderr + pr.stderr
    steps = read_run(tmp_path / "pr.csv").details["substeps"]["steps"]
    assert {s["action"] for s in steps} == {"policy_store.fetch", "policy.check", "risk.model"}
    model_calls = sum(s["histogram"]["count"] for s in steps if s["action"] == "risk.model")
    # The 450 measured calls, not the warm-up's 150. The boundary is a moment, not a call: a
    # call in flight when the warm-up ends counts on the side it ends on (seen: 452).
    assert abs(model_calls - 450) <= 5, "the measured calls, the warm-up left out"

    result = run(tmp_path, "compare", "base.csv", "pr.csv")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    where = lines[lines.index("### Where the time went") :]
    rows = [line.split(" | ") for line in where if line.startswith("| `")]
    assert rows, result.stdout
    firsts = {}
    for row in rows:
        firsts.setdefault(row[0], row)
    assert {row[1] for row in firsts.values()} == {"`policy_store.fetch`"}, result.stdout
    assert "(significant)" in firsts["| `query`"][-1], "query has the calls to show it (generate has 90)"
    data = json.loads(run(tmp_path, "compare", "base.csv", "pr.csv", "--format", "json").stdout)
    assert {g["changes"][0]["action"] for g in data["substeps"]} == {"policy_store.fetch"}
