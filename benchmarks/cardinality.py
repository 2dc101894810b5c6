"""Cost of many series: RSS, /metrics scrape time and size, call rate while scraped.

For 100 / 1,000 / 2,000 / 10,000 *attempted* series (actions x cohorts, every series fed
the same lognormal latencies, median 20 ms), each in a fresh process:

  ours      ``nethical_otel.setup()`` with its /metrics endpoint; the latencies go through
            the same recorder an ``@instrument``\\ ed call ends in. The series limit
            (``max_series``, default 2,000) caps what is kept: beyond it one overflow series.
  prom      ``prometheus_client.Histogram`` with the same labels, the same ``le`` buckets and
            as many series as *we* keep (what the same exposition would cost it), served by
            ``prometheus_client.start_http_server``.

Scrapes are real HTTP GETs with the headers Prometheus 2.x sends (OpenMetrics preferred,
gzip); the figure is the median of several. Then ``ours`` runs an ``@instrument``\\ ed
function over all its series from a loop for blocks of a few seconds, alternately
unscraped and scraped every 2 s, and reports the scraped/unscraped call-rate ratio (median
over block pairs) and the RSS before and after that phase (growth with time).

Targets: scrape time <= 1.0x prometheus_client's for the same series x buckets; call rate
while scraped >= 90 % of unscraped; RSS bounded by the series limit (10,000 attempted costs
what 2,000 do), not growing with time.

    python benchmarks/cardinality.py [--series 100,1000,2000,10000] [--scrapes 5] [--block 4] [--pairs 3]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import threading
import time
import urllib.request

PROMETHEUS_HEADERS = {
    "Accept": "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;"
    "q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
    "Accept-Encoding": "gzip",
}
CALLS_PER_SERIES = 40
MAX_SERIES = 2000


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return math.nan


def grid(n: int) -> list[tuple[str, str]]:
    actions = max(1, min(100, round(math.sqrt(n))))
    cohorts = math.ceil(n / actions)
    return [(f"action-{a}", f"cohort-{c}") for a in range(actions) for c in range(cohorts)][:n]


def latencies(k: int) -> list[float]:
    import numpy as np

    return np.random.default_rng(7).lognormal(math.log(0.02), 0.8, k).tolist()


def scrape(url: str, scrapes: int) -> tuple[float, int, int]:
    """(median seconds, bytes on the wire, bytes uncompressed)."""
    import gzip

    times, wire, raw = [], 0, 0
    for _ in range(scrapes):
        request = urllib.request.Request(url, headers=PROMETHEUS_HEADERS)
        start = time.perf_counter()
        with urllib.request.urlopen(request, timeout=120) as response:
            body = response.read()
            gzipped = response.headers.get("Content-Encoding") == "gzip"
        times.append(time.perf_counter() - start)
        wire = len(body)
        raw = len(gzip.decompress(body)) if gzipped else len(body)
    return statistics.median(times), wire, raw


def worker_ours(n: int, scrapes: int, block_s: float, pairs: int) -> dict:
    import nethical_otel

    telemetry = nethical_otel.setup(service_name="cardinality", prometheus_port=0, set_global=False)
    base_rss = rss_mb()
    series = grid(n)
    values = latencies(CALLS_PER_SERIES)
    for action, cohort in series:
        recorder = telemetry.registry.series(action, cohort)
        for v in values:
            recorder.observe(v)
    kept = len(telemetry.registry.recorders())
    seconds, wire, raw = scrape(telemetry.prometheus_url, scrapes)
    after_scrape_rss = rss_mb()

    @nethical_otel.instrument(action_arg="action")
    def call(action: str, cohort: str) -> None:
        return None

    def run_block(scraped: bool) -> float:
        stop = threading.Event()
        scraper = None
        if scraped:

            def scrape_every_2s() -> None:
                while not stop.is_set():
                    scrape(telemetry.prometheus_url, 1)
                    stop.wait(2.0)

            scraper = threading.Thread(target=scrape_every_2s, daemon=True)
            scraper.start()
        calls, deadline = 0, time.perf_counter() + block_s
        start = time.perf_counter()
        while time.perf_counter() < deadline:
            for action, cohort in series[:500]:
                call(action, cohort)
            calls += min(500, len(series))
        rate = calls / (time.perf_counter() - start)
        stop.set()
        if scraper is not None:
            scraper.join()
        return rate

    rates = []
    for _ in range(pairs):
        unscraped = run_block(False)
        scraped = run_block(True)
        rates.append(scraped / unscraped)
    end_rss = rss_mb()
    telemetry.shutdown()
    return {
        "kept": kept,
        "scrape_s": seconds,
        "wire": wire,
        "raw": raw,
        "rss_growth_mb": after_scrape_rss - base_rss,
        "rss_end_growth_mb": end_rss - base_rss,
        "rate_ratio": statistics.median(rates),
    }


def worker_prom(n: int, scrapes: int) -> dict:
    import prometheus_client

    from nethical_otel import names
    from nethical_otel.config import Settings
    from nethical_otel.telemetry.bridge import explicit_bounds

    s = Settings()
    registry = prometheus_client.CollectorRegistry()
    histogram = prometheus_client.Histogram(
        names.DURATION_METRIC,
        "Duration of instrumented actions.",
        [names.ACTION_LABEL, names.COHORT_LABEL],
        registry=registry,
        buckets=explicit_bounds(s.bucket_min_s, s.bucket_max_s, s.buckets_per_octave),
    )
    values = latencies(CALLS_PER_SERIES)
    base_rss = rss_mb()
    for action, cohort in grid(n):
        child = histogram.labels(action, cohort)
        for v in values:
            child.observe(v)
    server, _ = prometheus_client.start_http_server(0, addr="127.0.0.1", registry=registry)
    seconds, wire, raw = scrape(f"http://127.0.0.1:{server.server_port}/metrics", scrapes)
    rss = rss_mb() - base_rss
    server.shutdown()
    return {"scrape_s": seconds, "wire": wire, "raw": raw, "rss_growth_mb": rss}


def run_worker(*args: str) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--worker", *args], check=True, capture_output=True, text=True
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--series", default="100,1000,2000,10000")
    parser.add_argument("--scrapes", type=int, default=5)
    parser.add_argument("--block", type=float, default=4.0, help="seconds per call-rate block")
    parser.add_argument("--pairs", type=int, default=3, help="unscraped/scraped block pairs")
    parser.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        kind, n = args.worker[0], int(args.worker[1])
        result = (
            worker_ours(n, args.scrapes, args.block, args.pairs)
            if kind == "ours"
            else worker_prom(n, args.scrapes)
        )
        print(json.dumps(result))
        return

    print(f"{'attempted':>9} {'kept':>5} | {'scrape ours':>11} {'prom':>8} {'ratio':>6} (target <= 1.0) | "
          f"{'MB ours':>7} {'prom':>6} | {'RSS+ ours':>9} {'later':>6} {'prom':>6} | "
          f"{'calls scraped/unscraped':>23} (target >= 0.90)")
    for n in (int(x) for x in args.series.split(",")):
        ours = run_worker("ours", str(n), "--scrapes", str(args.scrapes), "--block", str(args.block),
                          "--pairs", str(args.pairs))
        prom = run_worker("prom", str(ours["kept"]), "--scrapes", str(args.scrapes))
        ratio = ours["scrape_s"] / prom["scrape_s"]
        print(
            f"{n:>9} {ours['kept']:>5} | {ours['scrape_s'] * 1000:>9.1f}ms {prom['scrape_s'] * 1000:>6.1f}ms "
            f"{ratio:>5.2f}x {'ok' if ratio <= 1.0 else 'MISS':>14} | "
            f"{ours['raw'] / 1e6:>7.1f} {prom['raw'] / 1e6:>6.1f} | "
            f"{ours['rss_growth_mb']:>7.0f}MB {ours['rss_end_growth_mb']:>4.0f}MB "
            f"{prom['rss_growth_mb']:>4.0f}MB | "
            f"{ours['rate_ratio']:>23.2f} {'ok' if ours['rate_ratio'] >= 0.9 else 'MISS':>15}",
            flush=True,
        )
    print("scrape: median of HTTP GETs with Prometheus' headers (OpenMetrics, gzip); MB: uncompressed body;")
    print("RSS+: growth over the bare process after the series and scrapes; later: after the call-rate")
    print("phase (scraped every 2 s in half of it).")


if __name__ == "__main__":
    os.environ.setdefault("OTEL_SDK_DISABLED", "false")
    main()
