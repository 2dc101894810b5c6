"""The service's /metrics: formats, compression, and one collection for concurrent scrapes."""

from __future__ import annotations

import gzip
import threading
import time
import urllib.request

from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families as parse_text

import nethical_otel
from nethical_otel.telemetry.prometheus import SharedCollection
from nethical_otel.telemetry.recorder import SeriesRecorder

OPENMETRICS = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"


def get(url: str, **headers: str) -> tuple[bytes, dict[str, str]]:
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10) as response:
        return response.read(), dict(response.headers)


def durations(families) -> dict[tuple, float]:
    return {
        tuple(sorted(s.labels.items())): s.value
        for f in families
        for s in f.samples
        if s.name == "nethical_action_duration_seconds_count"
    }


def test_text_openmetrics_and_gzip_carry_the_same_series(make_telemetry) -> None:
    telemetry = make_telemetry(prometheus_enabled=True, prometheus_port=0, max_series=3)
    for i in range(5):  # 3 series kept, the other 2 in the overflow series
        series = telemetry.registry.series(f"a{i}", "c")
        for v in (0.001 * (i + 1), 0.02, 3.0):
            series.observe(v)
    body, headers = get(telemetry.prometheus_url)
    assert headers["Content-Type"].startswith("text/plain; version=0.0.4")
    text = durations(parse_text(body.decode()))
    om_body, om_headers = get(telemetry.prometheus_url, Accept=OPENMETRICS, **{"Accept-Encoding": "gzip"})
    assert om_headers["Content-Type"].startswith("application/openmetrics-text")
    assert om_headers["Content-Encoding"] == "gzip"
    om_text = gzip.decompress(om_body).decode()
    assert om_text.endswith("# EOF\n") and om_text.count("# EOF") == 1
    openmetrics = durations(parse_openmetrics(om_text))
    assert text == openmetrics
    overflow = [k for k in text if ("otel_metric_overflow", "true") in k]
    assert len(text) == 4 and len(overflow) == 1 and text[overflow[0]] == 6
    # Cumulative buckets end at the count, and a 3 s call is above the 2.0 s bound.
    buckets = [
        s for f in parse_text(body.decode()) for s in f.samples
        if s.name.endswith("_bucket") and s.labels.get("nethical_action") == "a0"
    ]
    by_le = {float(s.labels["le"]): s.value for s in buckets}
    assert by_le[float("inf")] == 3 and by_le[2.0] == 2 and list(by_le.values()) == sorted(by_le.values())


def test_concurrent_scrapes_share_one_collection() -> None:
    calls = []

    def produce(key: tuple) -> bytes:
        calls.append(key)
        time.sleep(0.3)
        return b"body %d" % len(calls)

    shared = SharedCollection(produce)
    results = []
    threads = [threading.Thread(target=lambda: results.append(shared.get(("text",)))) for _ in range(8)]
    for thread in threads:
        thread.start()
        time.sleep(0.01)
    for thread in threads:
        thread.join()
    assert calls == [("text",)] and results == [b"body 1"] * 8
    assert shared.get(("text",)) == b"body 2"  # a later scrape collects afresh


def test_a_failing_collection_fails_its_waiters_and_the_next_one_recovers() -> None:
    attempts = []

    def produce(key: tuple) -> bytes:
        attempts.append(key)
        if len(attempts) == 1:
            time.sleep(0.2)
            raise RuntimeError("collector broke")
        return b"ok"

    shared = SharedCollection(produce)
    errors = []

    def scrape() -> None:
        try:
            shared.get(("text",))
        except RuntimeError as exc:
            errors.append(str(exc))

    threads = [threading.Thread(target=scrape) for _ in range(3)]
    for thread in threads:
        thread.start()
        time.sleep(0.01)
    for thread in threads:
        thread.join()
    assert errors == ["collector broke"] * 3
    assert shared.get(("text",)) == b"ok"


class BrokenRecorder(SeriesRecorder):
    __slots__ = ()

    def snapshot(self):
        raise RuntimeError("corrupt series")


def test_a_failing_series_costs_neither_the_scrape_nor_the_export(make_telemetry, caplog) -> None:
    reader = InMemoryMetricReader()
    telemetry = make_telemetry(prometheus_enabled=True, prometheus_port=0, metric_readers=[reader])
    nethical_otel.instrument(lambda: None, action="good")()
    broken = BrokenRecorder({"nethical.action": "broken"}, None, 6)
    telemetry.registry._series[("broken", None, None)] = broken
    for _ in range(2):
        body, _ = get(telemetry.prometheus_url)
        assert list(durations(parse_text(body.decode())).values()) == [1]
    # OTLP-style readers: the SDK's own metrics still go out, our histograms are left out.
    data = reader.get_metrics_data()
    names = {m.name for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics}
    assert "nethical.action.active" in names and "nethical.action.duration" not in names
    assert sum("logged once" in r.getMessage() for r in caplog.records) == 2
