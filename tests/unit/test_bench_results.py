"""Run files: the CSV row and its sidecar, round trips, atomic writes, clear errors."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from nethical_otel.bench import results as results_module
from nethical_otel.bench.results import (
    CSV_COLUMNS,
    BenchError,
    RunResult,
    atomic_write_text,
    read_run,
    sidecar_path,
    write_run,
)
from nethical_otel.errors import NethicalOtelError
from nethical_otel.stats import LatencyHistogram


def make_run(seed: int = 1, n: int = 2000, errors: int = 4, scale: float = 1.0, **fields) -> RunResult:
    rng = np.random.default_rng(seed)
    hist = LatencyHistogram.from_samples(rng.lognormal(np.log(0.01 * scale), 0.4, n), errors=errors)
    summary = {
        "timestamp": "2025-03-01T12:00:00Z",
        "git_sha": "a" * 40,
        "branch": "main",
        "cohort": "benchmark",
        "agents": 100,
        "target_rps": 50.0,
        "duration_s": 40.0,
        "memory_start_mb": 80.5,
        "memory_end_mb": 81.0,
        "details": {"achieved_rps": 50.0},
    }
    summary.update(fields)
    return RunResult.from_histogram(hist, throughput_rps=49.9, **summary)


def test_round_trip_csv_and_sidecar(tmp_path: Path) -> None:
    run = make_run()
    side = write_run(run, tmp_path / "results.csv")
    assert side == tmp_path / "results.histogram.json"
    back = read_run(tmp_path / "results.csv")
    assert back.has_histogram
    assert back.histogram.to_dict() == run.histogram.to_dict()
    assert back.requests == 2000 and back.errors == 4 and back.error_rate == pytest.approx(0.002)
    assert back.p95_latency_ms == pytest.approx(run.p95_latency_ms, abs=1e-4)  # the CSV's 0.1 us
    assert back.details == {"achieved_rps": 50.0}
    assert back.source == str(tmp_path / "results.csv")
    # The sidecar alone reads too, with the unrounded summary.
    alone = read_run(side)
    assert alone.p50_latency_ms == run.p50_latency_ms and alone.has_histogram


def test_csv_is_the_guides_layout_and_loads_in_pandas(tmp_path: Path) -> None:
    pandas = pytest.importorskip("pandas")
    write_run(make_run(), tmp_path / "results.csv")
    frame = pandas.read_csv(tmp_path / "results.csv")
    assert tuple(frame.columns) == CSV_COLUMNS
    assert len(frame) == 1
    assert frame["requests"].dtype.kind == "i" and frame["p95_latency_ms"].dtype.kind == "f"
    assert frame.loc[0, "branch"] == "main"


def test_csv_alone_reads_without_histogram(tmp_path: Path) -> None:
    write_run(make_run(), tmp_path / "results.csv")
    os.unlink(sidecar_path(tmp_path / "results.csv"))
    back = read_run(tmp_path / "results.csv")
    assert not back.has_histogram
    assert back.requests == 2000


def test_writing_without_histogram_removes_a_stale_sidecar(tmp_path: Path) -> None:
    write_run(make_run(), tmp_path / "r.csv")
    bare = read_run(tmp_path / "r.csv", sidecar=False)
    assert write_run(bare, tmp_path / "r.csv") is None
    assert not sidecar_path(tmp_path / "r.csv").exists()


def _good_csv(tmp_path: Path) -> str:
    write_run(make_run(), tmp_path / "good.csv")
    return (tmp_path / "good.csv").read_text()


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda text: "", "empty file"),
        (lambda text: text.splitlines()[0] + "\n", "a header but no data row (truncated?)"),
        (lambda text: text[: len(text) - 40], "fields where the header has 18 (truncated?)"),
        (lambda text: text.replace("p95_latency_ms", "p95"), "line 1: missing column 'p95_latency_ms'"),
        (lambda text: text.replace(",2000,", ",lots,"), "line 2: field 'requests' is 'lots'"),
        (lambda text: text.replace(",0.002000,", ",2.5,"), "field 'error_rate' is 2.5; expected a fraction"),
        (lambda text: text.replace(",2000,4,", ",2000,4000,"), "field 'errors' (4000) exceeds 'requests'"),
        (lambda text: "\x00\xff garbage", "line 1: missing column"),
    ],
)
def test_bad_csv_is_one_clear_error(tmp_path: Path, mutate, message: str) -> None:
    text = mutate(_good_csv(tmp_path))
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(BenchError) as info:
        read_run(path)
    error = str(info.value)
    assert "\n" not in error
    assert str(path) in error
    assert message in error, error


def test_not_utf8_and_missing_files(tmp_path: Path) -> None:
    (tmp_path / "b.csv").write_bytes(b"\xff\xfe\x00binary")
    with pytest.raises(BenchError, match="not UTF-8"):
        read_run(tmp_path / "b.csv")
    with pytest.raises(BenchError, match="no such file"):
        read_run(tmp_path / "missing.csv")
    with pytest.raises(BenchError, match="is a directory"):
        read_run(tmp_path)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda text: text[: len(text) // 2], "not valid JSON (truncated?)"),
        (lambda text: text.replace('"version": 1', '"version": 9'), "field 'version' is 9"),
        (
            lambda text: text.replace('"format": "nethical-otel-run"', '"format": "x"'),
            "field 'format' is 'x'",
        ),
        (lambda text: text.replace('"zero_count": 0', '"zero_count": -1'), "histogram: field 'zero_count'"),
        (lambda text: "[1, 2]", "expected a JSON object"),
    ],
)
def test_bad_sidecar_is_one_clear_error(tmp_path: Path, mutate, message: str) -> None:
    write_run(make_run(), tmp_path / "r.csv")
    side = sidecar_path(tmp_path / "r.csv")
    side.write_text(mutate(side.read_text()))
    with pytest.raises(BenchError) as info:
        read_run(tmp_path / "r.csv")
    error = str(info.value)
    assert "\n" not in error and str(side) in error and message in error, error


def test_truncated_json_names_line_and_column(tmp_path: Path) -> None:
    write_run(make_run(), tmp_path / "r.csv")
    side = sidecar_path(tmp_path / "r.csv")
    lines = side.read_text().splitlines()
    side.write_text("\n".join(lines[:5]) + "\n")
    with pytest.raises(BenchError, match=r"r\.histogram\.json, line \d+ column \d+: not valid JSON"):
        read_run(tmp_path / "r.csv")


def test_sidecar_of_another_run_is_refused(tmp_path: Path) -> None:
    write_run(make_run(), tmp_path / "r.csv")
    other = json.loads(sidecar_path(tmp_path / "r.csv").read_text())
    other["summary"]["timestamp"] = "2025-03-02T00:00:00Z"
    sidecar_path(tmp_path / "r.csv").write_text(json.dumps(other))
    with pytest.raises(BenchError, match="describes another run"):
        read_run(tmp_path / "r.csv")


def test_appended_rows_give_the_last(tmp_path: Path) -> None:
    text = _good_csv(tmp_path)
    row = text.splitlines()[1].replace(",2000,4,", ",3000,6,")
    (tmp_path / "many.csv").write_text(text + row + "\n")
    assert read_run(tmp_path / "many.csv", sidecar=False).requests == 3000


# -- atomic writes -----------------------------------------------------------------------------


def test_atomic_write_leaves_old_file_and_no_temp_on_failure(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "out.csv"
    atomic_write_text(path, "old\n")

    def broken_replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(results_module.os, "replace", broken_replace)
    with pytest.raises(NethicalOtelError, match=r"out\.csv: cannot write: No space left on device"):
        atomic_write_text(path, "new\n")
    assert path.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.csv"]


def test_write_run_writes_sidecar_before_csv(tmp_path: Path, monkeypatch) -> None:
    order = []
    real = results_module.atomic_write_text
    monkeypatch.setattr(
        results_module, "atomic_write_text", lambda p, t: (order.append(Path(p).name), real(p, t))
    )
    write_run(make_run(), tmp_path / "r.csv")
    assert order == ["r.histogram.json", "r.csv"]
