"""History: atomic files, change points named by run, the trend plot.

The change-point algorithm itself: test_changepoints.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from nethical_otel.bench import history
from nethical_otel.bench import results as results_module
from nethical_otel.bench.results import BenchError, write_run
from nethical_otel.errors import NethicalOtelError
from tests.unit.test_bench_results import make_run

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


# -- files -----------------------------------------------------------------------------------


def _history(tmp_path: Path, latencies: list[float]) -> Path:
    directory = tmp_path / "benchmark-history"
    for day, scale in enumerate(latencies):
        run = make_run(
            seed=day, scale=scale, timestamp=f"2025-03-{day + 1:02d}T09:30:00Z", git_sha=f"{day:040d}"
        )
        write_run(run, tmp_path / "results.csv")
        history.add(tmp_path / "results.csv", directory)
    return directory


def test_add_names_files_by_run_time_and_never_overwrites(tmp_path: Path) -> None:
    write_run(make_run(), tmp_path / "results.csv")
    first = history.add(tmp_path / "results.csv", tmp_path / "h")
    second = history.add(tmp_path / "results.csv", tmp_path / "h")
    assert first.name == "benchmark_20250301_120000.csv"
    assert second.name == "benchmark_20250301_120000_2.csv"
    assert (tmp_path / "h" / "benchmark_20250301_120000.histogram.json").exists()
    runs = history.load(tmp_path / "h")
    assert [Path(r.source).name for r in runs] == [first.name, second.name]
    assert all(r.has_histogram for r in runs)


def test_add_is_atomic(tmp_path: Path, monkeypatch) -> None:
    write_run(make_run(), tmp_path / "results.csv")

    def crash(src, dst):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(results_module.os, "replace", crash)
    with pytest.raises(NethicalOtelError, match="cannot write: Input/output error"):
        history.add(tmp_path / "results.csv", tmp_path / "h")
    assert list((tmp_path / "h").iterdir()) == []  # no partial file, no temporary left behind


def test_load_orders_by_run_time_and_rejects_a_bad_file(tmp_path: Path) -> None:
    directory = _history(tmp_path, [1.0, 1.0, 1.0])
    runs = history.load(directory)
    assert [r.timestamp[:10] for r in runs] == ["2025-03-01", "2025-03-02", "2025-03-03"]
    (directory / "benchmark_20250304_000000.csv").write_text("timestamp,requests\n")
    with pytest.raises(BenchError, match=r"benchmark_20250304_000000\.csv, line 1: missing column"):
        history.load(directory)
    with pytest.raises(BenchError, match="no such history directory"):
        history.load(tmp_path / "nope")


def test_change_points_name_the_run(tmp_path: Path) -> None:
    directory = _history(tmp_path, [1.0] * 6 + [1.4] * 5)
    runs = history.load(directory)
    points = history.change_points(runs)
    latency = [p for p in points if p.metric != "throughput_rps"]
    assert {p.index for p in latency} == {6}
    assert {p.metric for p in latency} >= {"p50_latency_ms", "p95_latency_ms"}
    assert all(30 < p.change_pct < 50 for p in latency)
    assert runs[6].timestamp == "2025-03-07T09:30:00Z"


def test_plot_is_a_valid_png(tmp_path: Path) -> None:
    import matplotlib.image

    directory = _history(tmp_path, [1.0] * 5 + [1.4] * 4)
    runs = history.load(directory)
    output = history.plot(runs, tmp_path / "out" / "trend.png", history.change_points(runs))
    data = output.read_bytes()
    assert data.startswith(PNG_SIGNATURE)
    image = matplotlib.image.imread(output)
    assert image.shape[0] > 400 and image.shape[1] > 800
    assert [p.name for p in output.parent.iterdir()] == ["trend.png"]


def test_plot_needs_runs(tmp_path: Path) -> None:
    with pytest.raises(BenchError, match="no runs to plot"):
        history.plot([], tmp_path / "t.png")
