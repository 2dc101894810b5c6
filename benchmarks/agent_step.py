"""The fleet agent's step against a real Prometheus: native histograms (3.x) and classic (2.x) side by side.

One step is ``Detector.step()``: ``PrometheusSource.read`` (the HTTP queries, parsing their
JSON, histograms from the buckets) and evaluating every series against its baseline
(p50/p95/p99 with their significance tests, error rate, throughput), as the agent runs it
every ``detector_step_s``. Every series has a baseline; a twentieth are 1.5x slower than it.

  native   Prometheus 3 (the build of `make prometheus3`), fed over its OTLP receiver as the
           Collector does (tests/otlp_push.py): one exponential histogram per series, and one
           per failed-call series (a tenth of the series also have ``error_type`` set), pushed
           40 s and 5 s before the step so ``increase(...[60s])`` has two samples. One query a step.
  classic  Debian's Prometheus 2.42 (``prometheus`` on PATH) scraping a local ``/metrics`` that
           serves the same histograms as the Collector's prometheus exporter would: ``le``
           buckets from the default Settings layout (``bucket_min_s`` .. ``bucket_max_s``,
           ``buckets_per_octave``), ``_sum``, ``_count``; scraped twice. Three queries a step.

Each figure is the median of ``--rounds`` steps (``--classic-rounds`` on classic: a 10,000
series classic step takes half a minute) after one warm-up step (the machine may be shared and
noisy); read and evaluate are medians of their own. Bytes read: the JSON bodies of
one step as parsed (and on the wire, gzip, as Prometheus sent them).

The process's garbage collector is tuned as ``nethical-otel agent`` tunes its own
(``detect.agent.tune_gc_for_the_agent``).

Sharded: on the native runs of 10,000 series or more, each of ``--shards`` replicas
(``PrometheusSource(shard=Shard(i, N))``, as ``agent --shard i/N``) is timed too, one after
the other here; each replica reads the whole answer and evaluates only its own series.

Target: 10,000 series in under half the default step (``detector_step_s`` 10 s: < 5 s) on
native histograms. Exit status 1 when it is missed; the classic rows are for comparison.

    python benchmarks/agent_step.py [--series 1000 10000] [--classic-series 1000 10000]
                                    [--rounds 5] [--classic-rounds 3] [--shards 2]
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))  # tests/otlp_push.py, tests/exposition_server.py

from nethical_otel import names  # noqa: E402
from nethical_otel.config import Settings  # noqa: E402
from nethical_otel.detect.agent import tune_gc_for_the_agent  # noqa: E402
from nethical_otel.detect.baseline import Baseline, BaselineSet, SeriesKey  # noqa: E402
from nethical_otel.detect.detector import Detector  # noqa: E402
from nethical_otel.detect.shard import Shard  # noqa: E402
from nethical_otel.detect.sources import PrometheusSource  # noqa: E402
from nethical_otel.stats import LatencyHistogram  # noqa: E402
from nethical_otel.stats.policy import PolicyBook  # noqa: E402
from nethical_otel.telemetry.bridge import LeLayout  # noqa: E402
from tests.exposition_server import ExpositionServer  # noqa: E402
from tests.otlp_push import Point, push  # noqa: E402

WINDOW_S = 60.0
SERVICES = 20
SHAPES = 64  # distinct latency distributions, shared round-robin by the series
CALLS_PER_WINDOW = 1800  # 30 calls/s per series in each 60 s window
ERROR_EVERY = 10  # one series in ten also has failed calls (its own error_type series)
SLOW_EVERY = 20  # one series in twenty is 1.5x slower than its baseline
PUSH_BATCH = 1000  # points per OTLP request
WHOLE = Shard()  # one agent for every series
PROMETHEUS3 = Path(  # as tests/servers.py: `make prometheus3` builds it there
    os.environ.get("PROMETHEUS3_BINARY")
    or Path.home() / ".cache/nethical-otel/prometheus3/v0.316.0/prometheus"
)


# -- the series --------------------------------------------------------------------------------


@dataclass
class Fleet:
    """``n`` series, each with two consecutive windows (cumulative: first, then first + second)
    and a baseline; ``errors`` maps a series to its failed calls' two windows."""

    keys: list[SeriesKey]
    first: list[LatencyHistogram]
    both: list[LatencyHistogram]
    errors: dict[int, tuple[LatencyHistogram, LatencyHistogram]]
    baselines: BaselineSet

    @property
    def rows(self) -> int:
        """Histogram series in Prometheus (what a native query returns)."""
        return len(self.keys) + len(self.errors)


def fleet(n: int, rng: np.random.Generator) -> Fleet:
    medians = np.geomspace(0.002, 0.2, SHAPES)

    def window(median: float, calls: int) -> LatencyHistogram:
        return LatencyHistogram.from_samples(rng.lognormal(math.log(median), 0.4, calls))

    shapes = []
    for median in medians:
        calls = {factor: tuple(window(median * factor, CALLS_PER_WINDOW) for _ in range(2))
                 for factor in (1.0, 1.5)}
        failed = tuple(window(median, CALLS_PER_WINDOW // 50) for _ in range(2))  # 2 % of the calls fail
        base = window(median, CALLS_PER_WINDOW * 60)  # an hour's baseline, for the series without failures
        base_failed = window(median, CALLS_PER_WINDOW // 50 * 60)
        base_failed.errors = base_failed.count
        shapes.append((calls, failed, base, base.copy().merge(base_failed)))  # the same error rate
    keys, first, both, errors, baselines = [], [], [], {}, []
    for i in range(n):
        key = SeriesKey(f"svc{i % SERVICES}", f"action{i // SERVICES}", ("prod", "canary")[i % 3 == 0])
        calls, failed, base, base_with_errors = shapes[i % SHAPES]
        one, two = calls[1.5 if i % SLOW_EVERY == 0 else 1.0]
        keys.append(key)
        first.append(one)
        both.append(one.copy().merge(two))
        if i % ERROR_EVERY == 0:
            errors[i] = (failed[0], failed[0].copy().merge(failed[1]))
        baseline = base_with_errors if i % ERROR_EVERY == 0 else base
        baselines.append(Baseline(key, baseline, 3600.0, "benchmark"))
    return Fleet(keys, first, both, errors, BaselineSet(baselines))


# -- Prometheus --------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def prometheus(binary: str, config: dict, workdir: Path, *args: str) -> Iterator[str]:
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "prometheus.yml").write_text(yaml.safe_dump(config), encoding="utf-8")
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    with open(workdir / "prometheus.log", "wb") as log:
        proc = subprocess.Popen(
            [binary, f"--config.file={workdir / 'prometheus.yml'}", f"--storage.tsdb.path={workdir / 'data'}",
             f"--web.listen-address=127.0.0.1:{port}", "--storage.tsdb.retention.time=1h", *args],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=workdir,
        )
    try:
        _wait(lambda: httpx.get(f"{url}/-/ready", timeout=1).status_code == 200, 60, f"{binary} ready", proc)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def _wait(condition, timeout_s: float, what: str, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what}: Prometheus exited with rc {proc.returncode}")
        with contextlib.suppress(httpx.HTTPError):
            if condition():
                return
        time.sleep(0.2)
    raise RuntimeError(f"timed out after {timeout_s:.0f} s waiting for {what}")


def _value(url: str, promql: str) -> float:
    result = httpx.get(f"{url}/api/v1/query", params={"query": promql}, timeout=60).json()["data"]["result"]
    return float(result[0]["value"][1]) if result else math.nan


# -- filling them ------------------------------------------------------------------------------


def fill_native(url: str, data: Fleet) -> float:
    """Push both windows over OTLP; returns the step's ``now``."""
    now = time.time()
    start = now - 3600

    def points(cumulative: list[LatencyHistogram], error_index: int) -> list[Point]:
        out = [Point(key, hist) for key, hist in zip(data.keys, cumulative, strict=True)]
        out += [Point(data.keys[i], pair[error_index], "TimeoutError") for i, pair in data.errors.items()]
        return out

    for at, cumulative, error_index in ((now - 40, data.first, 0), (now - 5, data.both, 1)):
        batch = points(cumulative, error_index)
        for i in range(0, len(batch), PUSH_BATCH):
            push(url, batch[i : i + PUSH_BATCH], at=at, start=start)
    _wait(lambda: _value(url, f"count({names.DURATION_METRIC})") == data.rows, 60, "every native series")
    return now


def exposition(data: Fleet, which: int, layout: LeLayout) -> bytes:
    """The classic text of every series' cumulative histogram (``which``: 0 first, 1 both)."""
    name = names.DURATION_METRIC
    les = [repr(b) for b in layout.bounds] + ["+Inf"]
    lines = [f"# TYPE {name} histogram"]

    def add(key: SeriesKey, hist: LatencyHistogram, error_type: str) -> None:
        labels = (f'{names.JOB_LABEL}="{key.service}",instance="bench:9464",'
                  f'{names.ACTION_LABEL}="{key.action}",{names.COHORT_LABEL}="{key.cohort}"')
        if error_type:
            labels += f',{names.ERROR_TYPE_LABEL}="{error_type}"'
        for le, count in zip(les, layout.cumulative(hist), strict=True):
            lines.append(f'{name}_bucket{{{labels},le="{le}"}} {count}')
        lines.append(f"{name}_sum{{{labels}}} {hist.sum!r}")
        lines.append(f"{name}_count{{{labels}}} {hist.count}")

    for key, hist in zip(data.keys, (data.first, data.both)[which], strict=True):
        add(key, hist, "")
    for i, pair in data.errors.items():
        add(data.keys[i], pair[which], "TimeoutError")
    return ("\n".join(lines) + "\n").encode()


def fill_classic(url: str, server: ExpositionServer, data: Fleet, layout: LeLayout,
                 timeout_s: float) -> float:
    """Two scrapes (first, then first + second); returns the step's ``now``. Scrapes then fail
    (503), so no ingestion runs beside the measured steps."""
    count = f"{names.DURATION_METRIC}_count"
    server.body = exposition(data, 0, layout)
    second = exposition(data, 1, layout)
    _wait(lambda: _value(url, f"count({count})") == data.rows, timeout_s, "the first scrape")
    server.body = second
    total = sum(h.count for h in data.both) + sum(pair[1].count for pair in data.errors.values())
    _wait(lambda: _value(url, f"sum({count})") == total, timeout_s, "the second scrape")
    now = time.time()
    server.body = None
    time.sleep(2)  # let the failed scrape's staleness markers land before timing
    return now


# -- measuring ---------------------------------------------------------------------------------


class CountingClient(httpx.Client):
    """Counts requests and response bytes (parsed JSON and on the wire)."""

    def __init__(self) -> None:
        super().__init__(timeout=120)
        self.requests = self.json_bytes = self.wire_bytes = 0

    def send(self, request: httpx.Request, **kwargs) -> httpx.Response:
        response = super().send(request, **kwargs)
        self.requests += 1
        self.json_bytes += len(response.content)
        self.wire_bytes += response.num_bytes_downloaded
        return response


@dataclass
class Result:
    series: int
    kind: str
    step_s: float
    read_s: float
    evaluate_s: float
    queries: int
    json_bytes: int
    wire_bytes: int
    alerts: int
    shard: Shard = WHOLE


def measure(url: str, kind: str, data: Fleet, now: float, rounds: int, shard: Shard = WHOLE) -> Result:
    client = CountingClient()
    source = PrometheusSource(url, WINDOW_S, histograms=kind, client=client, shard=shard)
    read_times: list[float] = []
    timed_read = source.read

    def read(at: float):
        started = time.perf_counter()
        try:
            return timed_read(at)
        finally:
            read_times.append(time.perf_counter() - started)

    source.read = read  # type: ignore[method-assign]
    detector = Detector(source, data.baselines, PolicyBook.from_mapping({}), [], learn=False,
                        clock=lambda: now)
    owned = sum(shard.owns(key) for key in data.keys)
    steps, counts = [], []
    for round_ in range(rounds + 1):
        before = (client.requests, client.json_bytes, client.wire_bytes)
        started = time.perf_counter()
        reports = detector.step()
        elapsed = time.perf_counter() - started
        if len(reports) != owned:
            raise RuntimeError(f"{kind}: the step evaluated {len(reports)} of {owned} series "
                               f"({detector.last_error})")
        if round_:  # the first is the warm-up
            steps.append(elapsed)
            counts.append(tuple(b - a for a, b in zip(before, (client.requests, client.json_bytes,
                                                                 client.wire_bytes), strict=True)))
    reads = read_times[1:]
    evaluates = [s - r for s, r in zip(steps, reads, strict=True)]
    regressed = {r.key for r in detector.last_reports if any(f.regressed for f in r.findings)}
    queries, json_bytes, wire_bytes = counts[-1]
    return Result(len(data.keys), kind, statistics.median(steps), statistics.median(reads),
                  statistics.median(evaluates), queries, json_bytes, wire_bytes, len(regressed), shard)


def _bytes(n: float) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 1e5 else f"{n / 1e3:.1f} kB"


def table(results: list[Result], target_s: float, step_s: float, rounds: int, classic_rounds: int) -> None:
    print(f"\nagent step (PrometheusSource.read + evaluate of every series), median of {rounds} steps "
          f"(classic: {classic_rounds})")
    print(f"target: 10,000 series in under half the default step (detector_step_s {step_s:g} s -> "
          f"< {target_s:g} s) on native histograms\n")
    head = (f"{'series':>7s}  {'kind':10s} {'Prom.':8s} {'step':>8s} {'read':>8s} {'evaluate':>8s} "
            f"{'queries':>7s} {'bytes read (JSON / wire)':>24s} {'regressed':>9s}  target")
    print(head)
    print("-" * len(head))
    for r in results:
        verdict = "pass" if r.step_s < target_s else "FAIL"
        one = r.shard.count == 1
        role = "the target" if r.kind == "native" and r.series >= 10_000 and one else "for comparison"
        kind = r.kind if one else f"{r.kind} {r.shard.index}/{r.shard.count}"
        print(f"{r.series:7,d}  {kind:10s} {('3.16' if r.kind == 'native' else '2.42'):8s} "
              f"{r.step_s:7.2f}s {r.read_s:7.2f}s {r.evaluate_s:7.2f}s {r.queries:7d} "
              f"{_bytes(r.json_bytes) + ' / ' + _bytes(r.wire_bytes):>24s} {r.alerts:9,d}  "
              f"< {target_s:g} s: {verdict} ({role})")
    for n in sorted({r.series for r in results}):
        rows = {r.kind: r for r in results if r.series == n and r.shard.count == 1}
        if len(rows) == 2:
            native, classic = rows["native"], rows["classic"]
            print(f"  {n:,} series: the native step is {classic.step_s / native.step_s:.1f}x faster than the "
                  f"classic, {classic.json_bytes / native.json_bytes:.1f}x fewer JSON bytes")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--series", type=int, nargs="+", default=[1000, 10_000], help="native runs")
    parser.add_argument("--classic-series", type=int, nargs="*", default=[1000, 10_000], help="classic runs")
    parser.add_argument("--rounds", type=int, default=5, help="timed steps per native run (after a warm-up)")
    parser.add_argument("--classic-rounds", type=int, default=3, help="timed steps per classic run")
    parser.add_argument("--shards", type=int, default=2,
                        help="also time each of N sharded replicas on the native runs of 10,000+ series "
                             "(one after the other here; each would have its own core); 1: not")
    args = parser.parse_args(argv)
    settings = Settings()
    step_s = settings.detector_step_s
    target_s = step_s / 2
    layout = LeLayout(settings.bucket_min_s, settings.bucket_max_s, settings.buckets_per_octave)
    if not PROMETHEUS3.is_file():
        print(f"Prometheus 3 not built at {PROMETHEUS3}: run `make prometheus3`", file=sys.stderr)
        return 2
    prometheus2 = shutil.which("prometheus")
    if args.classic_series and not prometheus2:
        print("Prometheus 2.x (`prometheus`) is not on PATH: run `make servers`", file=sys.stderr)
        return 2
    tune_gc_for_the_agent()  # as `nethical-otel agent` does in its own process
    rng = np.random.default_rng(12)
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="agent-step-") as tmp:
        for n in args.series:
            data = fleet(n, rng)
            config = {"global": {"scrape_interval": "1m"},
                      "otlp": {"translation_strategy": "UnderscoreEscapingWithSuffixes"},
                      "storage": {"tsdb": {"out_of_order_time_window": "30m"}}}
            workdir = Path(tmp) / f"native-{n}"
            with prometheus(str(PROMETHEUS3), config, workdir, "--web.enable-otlp-receiver") as url:
                started = time.monotonic()
                now = fill_native(url, data)
                print(f"native  {n:,} series ({data.rows:,} histogram series): filled in "
                      f"{time.monotonic() - started:.0f} s", flush=True)
                results.append(measure(url, "native", data, now, args.rounds))
                for i in range(args.shards if args.shards > 1 and n >= 10_000 else 0):
                    results.append(measure(url, "native", data, now, args.rounds, Shard(i, args.shards)))
        for n in args.classic_series:
            data = fleet(n, rng)
            interval = "5s" if data.rows * len(layout.bounds) < 200_000 else "20s"
            with ExpositionServer() as server:  # 503 until fill_classic sets its body
                config = {"global": {"scrape_interval": interval, "scrape_timeout": interval},
                          "scrape_configs": [{"job_name": "collector", "honor_labels": True,
                                              "static_configs": [{"targets": [server.target]}]}]}
                with prometheus(prometheus2, config, Path(tmp) / f"classic-{n}") as url:
                    started = time.monotonic()
                    now = fill_classic(url, server, data, layout, timeout_s=300)
                    series = data.rows * (len(layout.bounds) + 3)
                    print(f"classic {n:,} series ({series:,} Prometheus series: {len(layout.bounds) + 1} "
                          f"`le` buckets, _sum, _count each): filled in {time.monotonic() - started:.0f} s",
                          flush=True)
                    results.append(measure(url, "classic", data, now, args.classic_rounds))
    results.sort(key=lambda r: (r.series, r.kind != "native", r.shard.count, r.shard.index))
    table(results, target_s, step_s, args.rounds, args.classic_rounds)
    native = [r for r in results if r.kind == "native" and r.series >= 10_000 and r.shard.count == 1]
    if not native:
        print("\n  (no native run of 10,000 series: the target was not measured)")
        return 0
    missed = [r for r in native if r.step_s >= target_s]
    print(f"\n  {'MISSED' if missed else 'met   '} native: 10,000 series in < {target_s:g} s")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
