"""CPU profiles: the profiling phase, the file, the diff, and what the report makes of it.

The real profiles come from targets in this module that spin the CPU for a known time (a
deterministic cProfile signal, unlike sleeping under a loaded runner); the diff and report
tests use documents with fixed numbers.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from nethical_otel.bench import cpuprofile
from nethical_otel.bench.compare import compare_runs
from nethical_otel.bench.cpuprofile import (
    CpuProfile,
    FunctionStats,
    collect,
    diff_profiles,
    load_profiles,
    profile_path,
    read_profile,
    summarise,
    write_profile,
)
from nethical_otel.bench.loadgen import LoadConfig, LoadRun
from nethical_otel.bench.report import render
from nethical_otel.bench.results import BenchError, read_run, write_run
from tests.unit.test_bench_results import make_run

HERE = "tests.unit.test_bench_cpuprofile"
SLOW_S = 0.003


def fast_part() -> None:
    end = time.perf_counter() + 0.0001
    while time.perf_counter() < end:
        pass


def slow_part() -> None:
    end = time.perf_counter() + SLOW_S
    while time.perf_counter() < end:
        pass


def handle(agent_id):
    fast_part()
    slow_part()


async def handle_async(agent_id):
    fast_part()
    slow_part()


def _by_name(profile: CpuProfile) -> dict[str, FunctionStats]:
    return {f.function: f for f in profile.functions}


# -- collecting ------------------------------------------------------------------------------


@pytest.mark.parametrize("target", ["handle", "handle_async"])
def test_profiling_phase_names_the_slow_function_and_none_of_ours(target: str) -> None:
    run = LoadRun(LoadConfig(target=f"{HERE}:{target}", agents=3, profile=True, profile_s=0.3))
    profile = run.profile()
    assert profile.target_calls >= 20 and profile.errors == 0
    assert 0.25 < profile.duration_s < 2
    functions = _by_name(profile)
    slow, fast, entry = functions["slow_part"], functions["fast_part"], functions[target]
    # Relative to the longest sys.path entry it is under (pytest puts tests/unit on it).
    assert slow.file.endswith("test_bench_cpuprofile.py") and not slow.file.startswith("/")
    assert slow.line == slow_part.__code__.co_firstlineno
    assert slow.calls == slow.primitive_calls == profile.target_calls
    # Spinning: the time is in slow_part's own loop and the perf_counter calls it makes.
    # It spins until a deadline: never less than SLOW_S a call; more when a busy runner preempts it.
    per_call = slow.own_s / profile.target_calls
    assert per_call > SLOW_S * 0.95, per_call
    assert slow.own_s > 1.5 * fast.own_s, (slow, fast)  # 10x when idle; preemption adds to both
    assert slow.self_s < slow.own_s <= slow.cumulative_s * 1.001
    assert entry.cumulative_s >= slow.cumulative_s + fast.cumulative_s
    files = {f.file for f in profile.functions}
    assert not any("nethical_otel/bench" in f or f.startswith("asyncio/") for f in files), files
    assert not any("_lsprof" in f.function for f in profile.functions)
    # Built-ins called from the target's code are folded into it: perf_counter has no own time.
    assert _by_name(profile)["<built-in method time.perf_counter>"].own_s < 1e-6
    assert profile.profiled_s == pytest.approx(entry.cumulative_s, rel=0.05), (profile.profiled_s, entry)


def test_profiling_counts_errors_and_stops_a_hung_target() -> None:
    def flaky(agent_id):
        raise ValueError("no")

    profile = collect(flaky, [(("a",), {})], is_async=False, seconds=0.05, timeout_s=5)
    assert profile.errors == profile.target_calls >= 1
    release = threading.Event()
    with pytest.raises(BenchError, match=r"did not return within 0\.2 s; no profile written"):
        collect(lambda: release.wait(5), [((), {})], is_async=False, seconds=0.05, timeout_s=0.2)
    release.set()


def test_profile_refuses_an_http_target() -> None:
    with pytest.raises(BenchError, match="--profile profiles a target in this process"):
        LoadRun(LoadConfig(url="http://127.0.0.1:1/", profile=True))


def test_default_phase_length() -> None:
    assert [cpuprofile.default_profile_seconds(d) for d in (1, 30, 60, 1000)] == [2.0, 6.0, 12.0, 30.0]
    assert LoadConfig(duration_s=30).profile_seconds == 6.0
    assert LoadConfig(duration_s=30, profile_s=1.5).profile_seconds == 1.5


def test_summarise_folds_built_ins_into_their_callers_and_leaves_out_bookkeeping() -> None:
    roots = ["/srv/app", "/venv/site-packages"]
    user = ("/srv/app/svc/engine.py", 10, "score")
    helper = ("/venv/site-packages/lib/fmt.py", 3, "render")
    loop = ("/venv/site-packages/nethical_otel/bench/cpuprofile.py", 300, "_loop")
    sleep = ("~", 0, "<built-in method time.sleep>")
    clock = ("~", 0, "<built-in method time.perf_counter>")
    disable = ("~", 0, "<method 'disable' of '_lsprof.Profiler' objects>")
    stats = {
        loop: (1, 1, 0.01, 1.0, {}),
        user: (10, 10, 0.1, 0.9, {loop: (10, 10, 0.1, 0.9)}),
        helper: (20, 20, 0.2, 0.2, {user: (20, 20, 0.2, 0.2)}),
        sleep: (10, 10, 0.6, 0.6, {user: (10, 10, 0.6, 0.6)}),
        clock: (30, 30, 0.03, 0.03, {loop: (10, 10, 0.01, 0.01), user: (20, 20, 0.02, 0.02)}),
        disable: (1, 1, 0.0, 0.0, {}),
    }
    functions, profiled, seen = summarise(stats, roots)
    by_name = {f.function: f for f in functions}
    assert set(by_name) == {
        "score",
        "render",
        "<built-in method time.sleep>",
        "<built-in method time.perf_counter>",
    }
    score = by_name["score"]
    assert (score.file, score.line, score.calls) == ("svc/engine.py", 10, 10)
    assert score.self_s == 0.1 and score.own_s == pytest.approx(0.1 + 0.6 + 0.02)
    assert by_name["render"].file == "lib/fmt.py" and by_name["render"].own_s == 0.2
    assert by_name["<built-in method time.sleep>"].own_s == pytest.approx(0.0)
    assert [c.function for c in by_name["render"].callers] == ["score"]
    assert score.callers == ()  # its only caller is the profiling loop
    assert profiled == pytest.approx(0.1 + 0.6 + 0.02 + 0.2) and seen == 4
    assert [f.function for f in functions] == [  # by cumulative time
        "score",
        "<built-in method time.sleep>",
        "render",
        "<built-in method time.perf_counter>",
    ]


def test_summarise_keeps_the_top_by_cumulative_and_by_own_time() -> None:
    stats = {}
    for i in range(10):  # deep callers: much cumulative, no own time
        stats[(f"/a/chain{i}.py", 1, "f")] = (1, 1, 0.0, 10.0 - i, {})
    for i in range(10):  # leaves: own time, less cumulative than any caller
        stats[(f"/a/leaf{i}.py", 1, "g")] = (1, 1, 0.1 * (i + 1), 0.1 * (i + 1), {})
    functions, _, seen = summarise(stats, ["/a"], keep=3)
    files = {f.file for f in functions}
    assert seen == 20 and len(functions) == 6
    assert {"chain0.py", "chain1.py", "chain2.py", "leaf9.py", "leaf8.py", "leaf7.py"} == files


# -- the file --------------------------------------------------------------------------------


def _profile(calls: int, *rows: tuple, profiled_s: float | None = None, **fields) -> CpuProfile:
    """A profile of ``calls`` target calls; rows are (file, line, function, own_s, cumulative_s)."""
    functions = [
        FunctionStats(file, line, name, calls, calls, own, own, cum) for file, line, name, own, cum in rows
    ]
    total = sum(f.own_s for f in functions) if profiled_s is None else profiled_s
    return CpuProfile(calls, 2.0, total, functions, python="3.11.7", functions_seen=len(functions), **fields)


def test_profile_round_trips_and_sits_beside_the_csv(tmp_path: Path) -> None:
    profile = LoadRun(LoadConfig(target=f"{HERE}:handle", agents=1, profile=True, profile_s=0.1)).profile()
    written = write_profile(profile.for_run(make_run()), profile_path(tmp_path / "run.csv"))
    assert written == tmp_path / "run.profile.json"
    assert profile_path(tmp_path / "run.histogram.json") == written
    doc = json.loads(written.read_text())
    assert (doc["format"], doc["version"], doc["clock"]) == ("nethical-otel-cpu-profile", 1, "wall")
    assert doc["run"] == {"timestamp": "2025-03-01T12:00:00Z", "requests": 2000}
    back = read_profile(written)
    assert back == profile and back.source == str(written)


def test_a_new_run_at_the_same_path_removes_the_old_profile(tmp_path: Path) -> None:
    write_run(make_run(), tmp_path / "run.csv")
    write_profile(_profile(10, ("a.py", 1, "f", 1.0, 1.0)), tmp_path / "run.profile.json")
    write_run(make_run(seed=2), tmp_path / "run.csv")
    assert not (tmp_path / "run.profile.json").exists()


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.update(format="pstats"), "field 'format' is 'pstats'"),
        (lambda d: d.update(version=9), "field 'version' is 9"),
        (lambda d: d.update(target_calls=0), "'target_calls' is 0, expected at least 1"),
        (lambda d: d.update(functions={}), "field 'functions' must be a list"),
        (lambda d: d["functions"][0].update(line="x"), "'functions[0].line' is 'x'"),
        (lambda d: d["functions"][0].update(own_s=-1), "'functions[0].own_s' is -1"),
        (lambda d: d["functions"][0].pop("file"), "'functions[0].file' is None, expected a string"),
    ],
)
def test_bad_profile_is_one_clear_error(tmp_path: Path, mutate, message: str) -> None:
    doc = _profile(10, ("a.py", 1, "f", 1.0, 1.0)).to_dict()
    mutate(doc)
    path = tmp_path / "r.profile.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(BenchError, match=r"r\.profile\.json") as info:
        read_profile(path)
    assert message in str(info.value)


# -- the diff --------------------------------------------------------------------------------


def test_diff_ranks_by_change_of_own_time_per_target_call() -> None:
    base = _profile(
        100,
        ("svc/engine.py", 10, "score", 0.1, 1.0),  # 1 ms/call own
        ("svc/engine.py", 30, "slow_part", 0.1, 0.1),  # 1 ms/call
        ("svc/rules.py", 5, "match", 0.3, 0.3),  # 3 ms/call
        ("svc/rules.py", 50, "tiny", 0.0001, 0.0001),
    )
    current = _profile(
        50,  # fewer calls: everything is per target call
        ("svc/engine.py", 10, "score", 0.05, 1.5),  # 1 ms/call: unchanged own, more cumulative
        ("svc/engine.py", 30, "slow_part", 0.3, 0.3),  # 6 ms/call: +5
        ("svc/rules.py", 5, "match", 0.1, 0.1),  # 2 ms/call: -1 (an improvement ranks too)
        ("svc/rules.py", 50, "tiny", 0.0004, 0.0004),  # +0.007 ms: below 5 % of the top move
        ("svc/new.py", 1, "added", 0.025, 0.025),  # 0.5 ms/call, new
    )
    diff = diff_profiles(base, current)
    assert [r.function for r in diff.rows] == ["slow_part", "match", "added"]
    slow, match, added = diff.rows
    assert (slow.base_ms, slow.current_ms) == pytest.approx((1.0, 6.0))
    assert slow.change_ms == pytest.approx(5.0) and slow.change_pct == pytest.approx(500.0)
    assert (slow.base_cumulative_ms, slow.current_cumulative_ms) == pytest.approx((1.0, 6.0))
    assert match.change_ms == pytest.approx(-1.0)
    assert added.base_ms is None and added.change_pct is None
    assert (diff.base_calls, diff.current_calls) == (100, 50)
    assert (diff.base_ms, diff.current_ms) == pytest.approx((5.001, 9.508))
    assert len(diff_profiles(base, current, limit=1).rows) == 1


def test_diff_leaves_out_our_own_frames_and_the_event_loop() -> None:
    ours = [
        ("nethical_otel/bench/cpuprofile.py", 300, "_loop", 0.0, 1.0),
        ("nethical_otel/bench/loadgen.py", 500, "_sync_agent", 0.0, 1.0),
        ("asyncio/base_events.py", 1900, "_run_once", 0.0, 1.0),
        ("selectors.py", 460, "select", 0.0, 1.0),
        ("~", 0, "<method 'disable' of '_lsprof.Profiler' objects>", 0.0, 0.0),
    ]
    base = _profile(10, ("app.py", 3, "work", 0.01, 0.01), *[(*r[:3], 0.0, 0.0) for r in ours])
    current = _profile(10, ("app.py", 3, "work", 0.02, 0.02), *[(*r[:3], 0.5, 1.0) for r in ours])
    assert [r.function for r in diff_profiles(base, current).rows] == ["work"]


def test_a_function_moved_by_the_change_still_matches_by_name() -> None:
    base = _profile(10, ("app.py", 3, "work", 0.01, 0.01), ("app.py", 9, "__init__", 0.001, 0.001),
                    ("app.py", 20, "__init__", 0.001, 0.001))  # fmt: skip
    current = _profile(10, ("app.py", 7, "work", 0.05, 0.05), ("app.py", 13, "__init__", 0.001, 0.001),
                       ("app.py", 24, "__init__", 0.001, 0.001))  # fmt: skip
    [row, *_] = diff_profiles(base, current).rows
    assert (row.function, row.line, row.base_ms, row.current_ms) == ("work", 7, 1.0, 5.0)


# -- with compare and the report -------------------------------------------------------------


def _pair(tmp_path: Path, base_profile: CpuProfile | None, current_profile: CpuProfile | None, **slow):
    baseline, current = make_run(seed=1, n=3000), make_run(seed=2, n=3000, **slow)
    write_run(baseline, tmp_path / "base.csv")
    write_run(current, tmp_path / "cur.csv")
    for name, run, profile in (("base", baseline, base_profile), ("cur", current, current_profile)):
        if profile is not None:
            write_profile(profile.for_run(run), tmp_path / f"{name}.profile.json")
    return read_run(tmp_path / "base.csv"), read_run(tmp_path / "cur.csv")


BASE = _profile(100, ("svc/engine.py", 30, "slow_part", 0.1, 0.1))
SLOWER = _profile(100, ("svc/engine.py", 30, "slow_part", 0.4, 0.4))


def test_regression_with_both_profiles_says_where_the_time_went(tmp_path: Path) -> None:
    baseline, current = _pair(tmp_path, BASE, SLOWER, scale=1.3)
    pair = load_profiles(baseline, current)
    assert pair.warnings == [] and pair.missing == [] and pair.diff is not None
    comparison = compare_runs(baseline, current, profiles=pair)
    assert comparison.regressed
    markdown = render(comparison, "markdown")
    assert "### Where the time went" in markdown
    row = "| `slow_part` | `svc/engine.py:30` | 1.000 | 4.000 | +3.000 ms (+300.0%) | 1.000 → 4.000 |"
    assert row in markdown.splitlines()
    text = render(comparison, "text")
    assert "Where the time went:" in text and "slow_part" in text and "svc/engine.py:30" in text
    data = json.loads(render(comparison, "json"))
    assert data["profile"]["functions"][0]["function"] == "slow_part"
    assert data["profile"]["functions"][0]["change_ms_per_call"] == pytest.approx(3.0)


def test_no_section_without_a_regression_but_the_json_has_the_diff(tmp_path: Path) -> None:
    baseline, current = _pair(tmp_path, BASE, SLOWER)
    comparison = compare_runs(baseline, current, profiles=load_profiles(baseline, current))
    assert not comparison.regressed
    for fmt in ("markdown", "text"):
        out = render(comparison, fmt)
        assert "Where the time went" not in out and "slow_part" not in out and "--profile" not in out
    assert json.loads(render(comparison, "json"))["profile"]["functions"][0]["function"] == "slow_part"


def test_a_missing_profile_is_one_line_and_only_with_a_regression(tmp_path: Path) -> None:
    baseline, current = _pair(tmp_path, BASE, None, scale=1.3)
    pair = load_profiles(baseline, current)
    assert pair.diff is None and pair.warnings == [] and pair.missing == [str(tmp_path / "cur.csv")]
    markdown = render(compare_runs(baseline, current, profiles=pair), "markdown")
    assert "Where the time went" not in markdown
    [line] = [line for line in markdown.splitlines() if "--profile" in line]
    assert line == (
        f"> No CPU profile for `{tmp_path / 'cur.csv'}`: run `nethical-otel load --profile` on both "
        "sides to see where the time went."
    )
    baseline, current = _pair(tmp_path, None, None)
    quiet = render(compare_runs(baseline, current, profiles=load_profiles(baseline, current)), "markdown")
    assert "--profile" not in quiet


@pytest.mark.parametrize("damage", ["truncate", "other_run"])
def test_a_bad_profile_is_a_warning_naming_the_file_and_no_section(tmp_path: Path, damage: str) -> None:
    baseline, current = _pair(tmp_path, BASE, SLOWER, scale=1.3)
    path = tmp_path / "cur.profile.json"
    if damage == "truncate":
        path.write_text(path.read_text()[:50])
    else:
        doc = json.loads(path.read_text())
        doc["run"]["requests"] = 1
        path.write_text(json.dumps(doc))
    pair = load_profiles(baseline, current)
    [warning] = pair.warnings
    assert str(path) in warning and warning.endswith("the report has no profile section")
    assert pair.diff is None
    markdown = render(compare_runs(baseline, current, profiles=pair), "markdown")
    assert "Where the time went" not in markdown and "--profile" not in markdown
