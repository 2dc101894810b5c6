"""History: atomic files, change points (E-divisive + t-test), the trend plot."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from nethical_otel.bench import history
from nethical_otel.bench import results as results_module
from nethical_otel.bench.results import BenchError, write_run
from nethical_otel.errors import NethicalOtelError
from tests.unit.test_bench_results import make_run

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


# -- change points ---------------------------------------------------------------------------


def test_a_step_is_found_at_the_first_run_of_the_new_level() -> None:
    rng = np.random.default_rng(3)
    values = np.r_[rng.normal(20, 0.6, 15), rng.normal(26, 0.6, 8)]
    points = history.detect(values)
    assert [i for i, _ in points] == [15]
    assert points[0][1] < 0.001


def test_two_steps_are_both_found() -> None:
    rng = np.random.default_rng(4)
    values = np.r_[rng.normal(20, 0.5, 12), rng.normal(30, 0.5, 10), rng.normal(24, 0.5, 10)]
    assert [i for i, _ in history.detect(values)] == [12, 22]


def test_noise_has_few_false_change_points() -> None:
    """The documented rate: ~1.7 % of 30-run noise series at the defaults; allow up to 4 %."""
    rng = np.random.default_rng(5)
    false = sum(bool(history.detect(rng.normal(100, 3, 30))) for _ in range(300))
    assert false <= 12


def test_a_thirty_percent_shift_is_found_with_four_runs() -> None:
    rng = np.random.default_rng(6)
    hits = sum(
        any(i == 20 for i, _ in history.detect(np.r_[rng.normal(100, 3, 20), rng.normal(130, 3, 4)]))
        for _ in range(100)
    )
    assert hits >= 93


def test_constant_and_short_series() -> None:
    assert history.detect([5.0] * 10) == []
    assert history.detect([1.0, 2.0, 3.0]) == []
    assert [i for i, _ in history.detect([5.0] * 6 + [9.0] * 6)] == [6]
    assert [i for i, _ in history.detect([5.0] * 6 + [np.nan] + [9.0] * 6)] == [7]  # NaN skipped


def test_energy_split_matches_brute_force() -> None:
    rng = np.random.default_rng(8)
    x = rng.normal(0, 1, 17)

    def q(tau: int) -> float:
        a, b = x[:tau], x[tau:]
        m, k = len(a), len(b)
        between = np.abs(a[:, None] - b[None, :]).mean()
        within_a = np.abs(a[:, None] - a[None, :]).sum() / (m * (m - 1))
        within_b = np.abs(b[:, None] - b[None, :]).sum() / (k * (k - 1))
        return m * k / (m + k) * (2 * between - within_a - within_b)

    tau, best = history.energy_split(x)
    brute = max(range(2, 16), key=q)
    assert tau == brute and best == pytest.approx(q(brute))


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
