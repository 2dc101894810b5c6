"""Every command that reads or writes a file, over a corpus of bad files: one line, exit 2, nothing lost.

Each case runs the real `nethical-otel` script in a fresh copy of a directory of good and bad
files and asserts: exit status 2, exactly one line on stderr (``nethical-otel: error: ...``,
naming the file), no traceback, and every file in the directory byte-identical (and with the
same mode) afterwards: nothing overwritten, nothing half-written, no temporary file left.

Unwritable outputs: the tests run as root, which ``chmod`` does not stop, so "unwritable" is
a path under a regular file (``file.txt/out``), a directory where a file is expected, and a
directory of /proc or /sys (no regular file can be created there, whoever you are). A
read-only mount is not tried (it needs privileges the test should not assume); the code path
is the same as /sys's (the probe file cannot be created).

Commands that run for a while (``load``, ``demo``, ``memory``) are started for 30 s or more:
they must fail within seconds, so the outputs were checked before the run.

All cases run in parallel in one fixture (each is a process start, ~0.3 s of CPU).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from nethical_otel.bench.results import write_run
from nethical_otel.detect.baseline import Baseline, SeriesKey
from tests.integration.test_bench_cli import _cli, _env
from tests.unit.test_bench_results import make_run

REPO_ROOT = Path(__file__).resolve().parents[2]
LINUX = sys.platform.startswith("linux") and Path("/proc/self").is_dir()
BINARY = b"\xff\xfe\x00\x81\x9c binary \x00\xc3\x28"
LONG = 30  # seconds (load, demo) a command would run for: it must fail long before


# -- the corpus ------------------------------------------------------------------------------


def _baseline_document(**changes) -> dict:
    baseline = Baseline(
        SeriesKey("svc", "process_action", "benchmark"),
        make_run().histogram,
        window_s=40.0,
        source="test",
        created_at=1_740_000_000.0,
    )
    entry = {**baseline.to_dict(), **changes}
    return {"format": "nethical-otel-baselines", "version": 1, "baselines": [entry]}


def _with_field(csv_text: str, column: str, value: str) -> str:
    header, row = (line.split(",") for line in csv_text.splitlines()[:2])
    row[header.index(column)] = value
    return f"{','.join(header)}\n{','.join(row)}\n"


def _write_corpus(root: Path) -> None:
    good_csv = root / "good.csv"
    write_run(make_run(), good_csv)
    csv_text = good_csv.read_text()
    side_text = (root / "good.histogram.json").read_text()
    (root / "baseline.json").write_text(json.dumps(_baseline_document()))
    (root / "file.txt").write_text("a regular file\n")
    for name in ("dir.csv", "dir.json", "dir.yaml"):
        (root / name).mkdir()
    for suffix in ("csv", "json", "yaml"):
        (root / f"empty.{suffix}").write_bytes(b"")
        (root / f"binary.{suffix}").write_bytes(BINARY)
    # Results CSV: truncated, out of range; a good CSV beside a bad sidecar.
    (root / "truncated.csv").write_text(csv_text[:-60])
    (root / "range.csv").write_text(_with_field(csv_text, "error_rate", "5"))  # 500 %
    (root / "inf.csv").write_text(_with_field(csv_text, "p95_latency_ms", "inf"))
    for stem, sidecar in {
        "cutside": side_text[: len(side_text) // 3],
        "oldside": side_text.replace('"version": 1', '"version": 9', 1),
        "binside": BINARY,
        "deepside": "[" * 100_000,
    }.items():
        (root / f"{stem}.csv").write_text(csv_text)
        data = sidecar if isinstance(sidecar, bytes) else sidecar.encode()
        (root / f"{stem}.histogram.json").write_bytes(data)
    (root / "dirside.csv").write_text(csv_text)
    (root / "dirside.histogram.json").mkdir()
    # Baselines: truncated, wrong version, out-of-range numbers, wrong types, absurd JSON.
    baseline_text = (root / "baseline.json").read_text()
    (root / "truncated.json").write_text(baseline_text[: len(baseline_text) // 2])
    (root / "version.json").write_text(baseline_text.replace('"version": 1,', '"version": 7,', 1))
    bad_baselines = {
        "created-huge.json": {"created_at": 1e20},
        "created-nan.json": {"created_at": math.nan},
        "created-negative.json": {"created_at": -5.0},
        "created-string.json": {"created_at": "yesterday"},
        "window-inf.json": {"window_s": math.inf},
    }
    for name, change in bad_baselines.items():
        (root / name).write_text(json.dumps(_baseline_document(**change)))  # NaN, Infinity as JSON allows
    (root / "nested.json").write_text("[" * 100_000)
    (root / "bigint.json").write_text("1" * 5000)
    # YAML: truncated (unclosed), out of range.
    (root / "truncated.yaml").write_text("quantiles:\n  p95: {threshold: [0.1,\n")
    (root / "policy-inf.yaml").write_text("quantiles:\n  p95: {threshold: .inf}\n")
    (root / "budget-inf.yaml").write_text("p95: .inf\n")
    (root / "budget-negative.yaml").write_text("p95: -3\n")
    (root / "nested.yaml").write_text("[" * 100_000)
    (root / "list.yaml").write_text("- 1\n- 2\n")
    # History: a good one, and one holding a bad run.
    write_run(make_run(), root / "history" / "benchmark_20250301_120000.csv")
    write_run(make_run(), root / "badhistory" / "benchmark_20250301_120000.csv")
    (root / "badhistory" / "benchmark_20250302_120000.csv").write_bytes(BINARY)
    # Outputs whose previous content must survive.
    (root / "previous.csv").write_text(csv_text)
    (root / "previous.histogram.json").mkdir()  # the sidecar cannot be written
    (root / "csvdir.csv").mkdir()  # the CSV cannot be written...
    (root / "csvdir.histogram.json").write_text(side_text)  # ...and the old sidecar must stay
    (root / "demo-out").mkdir()
    (root / "demo-out" / "latency.png").write_bytes(b"\x89PNG old picture")
    (root / "demo-out" / "summary.md").mkdir()


# -- the cases -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    id: str
    args: tuple[str, ...]
    names: tuple[str, ...]  # each must appear in the error line
    env: dict[str, str] = field(default_factory=dict)
    linux_only: bool = False
    max_seconds: float | None = None  # the command must fail sooner (outputs checked first)


def _cases() -> list[Case]:
    cases: list[Case] = []

    def add(id_: str, args: tuple[str, ...], *names: str, **kw) -> None:
        cases.append(Case(id_, args, names or (args[-1],), **kw))

    csv_kinds = {
        "missing": "missing.csv",
        "empty": "empty.csv",
        "binary": "binary.csv",
        "truncated": "truncated.csv",
        "directory": "dir.csv",
        "out-of-range": "range.csv",
        "infinite": "inf.csv",
        "under-a-file": "file.txt/run.csv",
        "truncated-sidecar": "cutside.csv",
        "wrong-version-sidecar": "oldside.csv",
        "binary-sidecar": "binside.csv",
        "nested-sidecar": "deepside.csv",
        "directory-sidecar": "dirside.csv",
    }
    sidecar_names = {"cutside.csv", "oldside.csv", "binside.csv", "deepside.csv", "dirside.csv"}
    # Every kind through `compare`; the other readers of a run share its code, so a few kinds each.
    few = {"missing", "binary", "directory", "under-a-file", "truncated-sidecar"}
    for kind, path in csv_kinds.items():
        name = path.replace(".csv", ".histogram.json") if path in sidecar_names else path.split("/")[0]
        add(f"compare-{kind}", ("compare", path, "good.csv"), name)
        if kind not in few:
            continue
        add(f"compare-current-{kind}", ("compare", "good.csv", path), name)
        add(f"history-add-{kind}", ("history", "add", path, "--dir", "newhistory"), name)
        add(f"baseline-create-{kind}", ("baseline", "create", "--from-run", path, "--service", "s",
                                        "--action", "a", "-o", "new.json"), name)  # fmt: skip
        if path not in sidecar_names:  # budget reads the CSV row only
            add(f"budget-{kind}", ("budget", path, "--p95", "100"), name)

    yaml_kinds = {
        "missing": "missing.yaml",
        "binary": "binary.yaml",
        "truncated": "truncated.yaml",
        "directory": "dir.yaml",
        "nested": "nested.yaml",
        "under-a-file": "file.txt/x.yaml",
    }
    for kind, path in {**yaml_kinds, "out-of-range": "policy-inf.yaml"}.items():
        name = path.split("/")[0]
        add(f"compare-policy-{kind}", ("compare", "good.csv", "good.csv", "--policy", path), name)
    budget_kinds = {**yaml_kinds, "infinite": "budget-inf.yaml", "negative": "budget-negative.yaml"}
    for kind, path in budget_kinds.items():
        name = path.split("/")[0]
        add(f"budget-file-{kind}", ("budget", "good.csv", "--file", path), name)
        if kind in ("binary", "directory", "infinite"):
            add(f"compare-budget-{kind}", ("compare", "good.csv", "good.csv", "--budget", path), name)
    for kind, path in {**yaml_kinds, "not-a-mapping": "list.yaml"}.items():
        if kind != "nested":
            add(f"config-show-{kind}", ("config", "show", "--config", path), path.split("/")[0])

    baseline_kinds = {
        "missing": "missing.json",
        "empty": "empty.json",
        "binary": "binary.json",
        "truncated": "truncated.json",
        "directory": "dir.json",
        "wrong-version": "version.json",
        "created-1e20": "created-huge.json",
        "created-nan": "created-nan.json",
        "created-negative": "created-negative.json",
        "created-string": "created-string.json",
        "window-inf": "window-inf.json",
        "nested": "nested.json",
        "bigint": "bigint.json",
        "under-a-file": "file.txt/b.json",
    }
    agent_env = {"NETHICAL_OTEL_PROMETHEUS_URL": "http://127.0.0.1:9"}
    for kind, path in baseline_kinds.items():
        name = path.split("/")[0]
        add(f"baseline-show-{kind}", ("baseline", "show", path), name)
        if kind not in ("missing", "under-a-file"):  # a missing baseline is learned, not an error
            add(f"agent-once-{kind}", ("agent", "--once"), name,
                env={**agent_env, "NETHICAL_OTEL_BASELINE_FILE": path})  # fmt: skip

    for kind, directory in {
        "missing": "nohistory",
        "a-file": "file.txt",
        "bad-run": "badhistory",
    }.items():
        add(f"history-detect-{kind}", ("history", "detect", "--dir", directory), directory)
        add(f"history-plot-{kind}", ("history", "plot", "--dir", directory, "-o", "trend.png"), directory)

    # Outputs: under a file, a directory, a directory of /proc or /sys.
    unwritable = {
        "under-a-file": ("file.txt/out", "file.txt", False),
        "directory": ("dir.csv", "dir.csv", False),
        "proc": ("/proc/nethical-otel-test/out", "/proc", True),
        "sys": ("/sys/nethical-otel-test-out", "/sys", True),
    }
    for kind, (path, name, linux) in unwritable.items():
        kw = {"linux_only": linux}
        add(f"compare-output-{kind}", ("compare", "good.csv", "good.csv", "-o", path), name, **kw)
        if kind != "directory":  # a directory is what --dir wants; "history-add-dir-is-a-file" below
            add(f"history-add-dir-{kind}", ("history", "add", "good.csv", "--dir", path), name, **kw)
        add(f"history-plot-output-{kind}", ("history", "plot", "--dir", "history", "-o", path), name, **kw)
        add(f"baseline-create-output-{kind}", ("baseline", "create", "--from-run", "good.csv", "--service",
                                               "s", "--action", "a", "-o", path), name, **kw)  # fmt: skip
        add(f"load-output-{kind}", ("load", "--duration", str(LONG), "--rps", "20", "--agents", "2",
                                    "-q", "-o", path), name, max_seconds=LONG / 3, **kw)  # fmt: skip
        add(f"memory-output-{kind}", ("memory", "--actions", "3000", "-o", path), name,
            max_seconds=10, **kw)  # fmt: skip
        demo_dir, demo_name = ("file.txt", "file.txt") if kind == "directory" else (path, name)  # a file
        add(f"demo-output-{kind}", ("demo", "--duration", str(LONG), "--port", "0", "--output-dir", demo_dir),
            demo_name, max_seconds=LONG / 3, **kw)  # fmt: skip
    add("history-add-dir-is-a-file", ("history", "add", "good.csv", "--dir", "file.txt"), "file.txt")
    # history/ already holds good.csv's run (the same summary row): adding it again is refused.
    add("history-add-duplicate", ("history", "add", "good.csv", "--dir", "history"), "good.csv",
        "already in the history as history/benchmark_20250301_120000.csv")  # fmt: skip
    add("baseline-create-exists", ("baseline", "create", "--from-run", "good.csv", "--service", "s",
                                   "--action", "a", "-o", "baseline.json"),
        "baseline.json", "--force")  # fmt: skip
    # The previous results survive a run whose outputs cannot all be written.
    load = ("load", "--duration", str(LONG), "--rps", "20", "-q", "-o")
    add("load-sidecar-unwritable", (*load, "previous.csv"), "previous.histogram.json", max_seconds=LONG / 3)
    add("load-csv-unwritable", (*load, "csvdir.csv"), "csvdir.csv", max_seconds=LONG / 3)
    add("demo-one-output-unwritable", ("demo", "--duration", str(LONG), "--port", "0", "--output-dir",
                                       "demo-out"), "summary.md", max_seconds=LONG / 3)  # fmt: skip
    return cases


CASES = _cases()


# -- running ---------------------------------------------------------------------------------


def _snapshot(root: Path) -> dict[str, tuple[str, bytes | None, int]]:
    found = {}
    for path in sorted(root.rglob("*")):
        st = path.lstat()
        content = path.read_bytes() if path.is_file() else None
        found[str(path.relative_to(root))] = ("dir" if path.is_dir() else "file", content, st.st_mode)
    return found


@dataclass
class Outcome:
    result: subprocess.CompletedProcess[str]
    seconds: float
    before: dict
    after: dict


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory) -> dict[str, Outcome]:
    template = tmp_path_factory.mktemp("corpus")
    _write_corpus(template)
    base = tmp_path_factory.mktemp("cases")

    def run(case: Case) -> tuple[str, Outcome]:
        cwd = base / case.id
        shutil.copytree(template, cwd, symlinks=True)
        before = _snapshot(cwd)
        started = time.monotonic()
        result = subprocess.run(
            [*_cli(), *case.args], cwd=cwd, env=_env(**case.env), capture_output=True, text=True,
            timeout=120,
        )  # fmt: skip
        return case.id, Outcome(result, time.monotonic() - started, before, _snapshot(cwd))

    todo = [c for c in CASES if LINUX or not c.linux_only]
    with ThreadPoolExecutor(max_workers=max(2, min(6, 2 * (os.cpu_count() or 1)))) as pool:
        return dict(pool.map(run, todo))


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_one_line_exit_two_and_nothing_lost(outcomes: dict[str, Outcome], case: Case) -> None:
    if case.id not in outcomes:
        pytest.skip("needs Linux /proc and /sys")
    outcome = outcomes[case.id]
    result = outcome.result
    shown = f"$ nethical-otel {' '.join(case.args)}\nexit {result.returncode}\nstderr:\n{result.stderr}"
    assert "Traceback" not in result.stderr + result.stdout, shown
    assert result.returncode == 2, shown
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("nethical-otel: error: "), shown
    for name in case.names:
        assert name in lines[0], f"{name!r} not named: {lines[0]}"
    assert outcome.after == outcome.before, f"files changed: {shown}"
    if case.max_seconds is not None:
        assert outcome.seconds < case.max_seconds, f"took {outcome.seconds:.1f} s: outputs checked late"
