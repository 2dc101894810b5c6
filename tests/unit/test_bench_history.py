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
            seed=day,
            scale=scale,
            timestamp=f"2025-03-{day + 1:02d}T09:30:00Z",
            git_sha=f"{day:02d}c0ffee{'0' * 32}",
        )
        write_run(run, tmp_path / "results.csv")
        history.add(tmp_path / "results.csv", directory)
    return directory


def test_add_names_files_by_run_time_and_never_overwrites(tmp_path: Path) -> None:
    write_run(make_run(), tmp_path / "results.csv")
    write_run(make_run(seed=2), tmp_path / "other.csv")  # another run, started in the same second
    first = history.add(tmp_path / "results.csv", tmp_path / "h")
    second = history.add(tmp_path / "other.csv", tmp_path / "h")
    assert first.name == "benchmark_20250301_120000.csv"
    assert second.name == "benchmark_20250301_120000_2.csv"
    assert (tmp_path / "h" / "benchmark_20250301_120000.histogram.json").exists()
    runs = history.load(tmp_path / "h")
    assert [Path(r.source).name for r in runs] == [first.name, second.name]
    assert all(r.has_histogram for r in runs)


def test_adding_the_same_run_twice_is_refused(tmp_path: Path) -> None:
    write_run(make_run(), tmp_path / "results.csv")
    first = history.add(tmp_path / "results.csv", tmp_path / "h")
    before = sorted(p.name for p in (tmp_path / "h").iterdir())
    with pytest.raises(
        BenchError, match=r"results\.csv: already in the history as .*benchmark_20250301_120000\.csv"
    ):
        history.add(tmp_path / "results.csv", tmp_path / "h")
    # A copy of it under another name is the same run too.
    (tmp_path / "copy.csv").write_text((tmp_path / "results.csv").read_text())
    with pytest.raises(BenchError, match=f"already in the history as {first}"):
        history.add(tmp_path / "copy.csv", tmp_path / "h")
    assert sorted(p.name for p in (tmp_path / "h").iterdir()) == before


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


def _texts(figure) -> tuple[str, list[str]]:
    return figure._suptitle.get_text(), [t.get_text() for ax in figure.axes for t in ax.texts]


def test_plot_names_the_commit_and_the_change_at_each_change_point(tmp_path: Path) -> None:
    directory = _history(tmp_path, [1.0] * 6 + [1.4] * 5)
    runs = history.load(directory)
    points = history.change_points(runs)
    title, labels = _texts(history.trend_figure(runs, points))
    assert "11 runs" in title and "dashed lines: change points" in title
    # The first run of the new level (day 6) is commit 06c0ffee...: its short sha names the line.
    assert len(labels) == 1 and labels[0].startswith("06c0ffe: +"), labels
    for p in points:
        assert f"{p.change_pct:+.0f}% {history.METRICS[p.metric]}" in labels[0]


def test_plot_without_change_points_says_so(tmp_path: Path) -> None:
    runs = history.load(_history(tmp_path, [1.0] * 6))
    title, labels = _texts(history.trend_figure(runs, []))
    assert "no change points" in title and "dashed" not in title and labels == []


def test_plot_draws_one_point_per_run_even_in_the_same_second(tmp_path: Path) -> None:
    for seed in range(3):  # three different runs, one start time
        write_run(make_run(seed=seed), tmp_path / "r.csv")
        history.add(tmp_path / "r.csv", tmp_path / "h")
    write_run(make_run(seed=9, timestamp="2025-03-02T12:00:00Z"), tmp_path / "r.csv")
    history.add(tmp_path / "r.csv", tmp_path / "h")
    runs = history.load(tmp_path / "h")
    figure = history.trend_figure(runs)
    title, _ = _texts(figure)
    assert title.startswith("Benchmark history: 4 runs,")
    p50 = figure.axes[0].lines[0]
    xs = list(p50.get_xdata())
    assert len(xs) == len(set(xs)) == 4  # as many distinct points as the title counts
    assert "3 runs share a start time" in figure.axes[1].get_xlabel()


def test_plot_needs_runs(tmp_path: Path) -> None:
    with pytest.raises(BenchError, match="no runs to plot"):
        history.plot([], tmp_path / "t.png")
