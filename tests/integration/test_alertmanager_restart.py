"""Alert delivery on-call can trust, against a real Alertmanager on loopback.

- Alertmanager keeps alerts in memory only: SIGKILLed and restarted while an alert fires,
  it must have that alert back within seconds, not at the next resend (60 s by default).
- A payload it rejects (400) is dropped and logged, not retried forever; the good alerts
  of the same batch still arrive.
- ``close(timeout_s)`` returns in time against a receiver that never answers.
"""

from __future__ import annotations

import logging
import socket
import threading
import time

import httpx
import pytest

from nethical_otel.detect.alerts import Alert, State
from nethical_otel.detect.sinks import AlertmanagerSink
from tests.servers import LOOPBACK, active_alerts, free_port, start_alertmanager, wait_until

pytestmark = pytest.mark.integration

NAME = "NethicalLatencyRegression"


def am_metric(am_url: str, name: str, **labels: str) -> float:
    text = httpx.get(f"{am_url}/metrics", timeout=5).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items())
    )


def firing_alert(action: str = "query", **extra_labels: str) -> Alert:
    now = time.time()
    return Alert(
        labels={"alertname": NAME, "severity": "warning", "service": "svc", "action": action, **extra_labels},
        annotations={"summary": f"{action} p95 +40%"},
        state=State.FIRING,
        fired_at=now - 5,
        active_since=now - 10,
    )


class Detecting:
    """Calls ``sink.update`` every ``step_s`` as the detector does (it dedupes resends)."""

    def __init__(self, sink: AlertmanagerSink, alert: Alert, step_s: float = 0.5) -> None:
        self.sink, self.alert, self.step_s = sink, alert, step_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sink.update(self.alert, time.time())
            self._stop.wait(self.step_s)

    def __enter__(self) -> Detecting:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


@pytest.mark.parametrize("storage", ["same storage", "new empty storage"])
def test_firing_alert_is_back_within_5_s_of_an_alertmanager_restart_and_resolves(tmp_path, storage):
    port = free_port()
    with start_alertmanager(tmp_path, port=port) as am:
        # The default resend interval (60 s): only the restart handling can bring it back in time.
        sink = AlertmanagerSink(am.url, resend_interval_s=60.0)
        alert = firing_alert()
        try:
            with Detecting(sink, alert):
                wait_until(lambda: active_alerts(am.url, alertname=NAME), 10, "the alert in Alertmanager")
                time.sleep(1.0)  # a probe or two while all is well
                am.process.proc.kill()  # SIGKILL: no chance to persist anything
                am.process.proc.wait(timeout=10)
                restarting = time.monotonic()
                workdir = tmp_path if storage == "same storage" else tmp_path / "fresh"
                with start_alertmanager(workdir, port=port) as again:
                    wait_until(
                        lambda: active_alerts(again.url, alertname=NAME, action="query"),
                        5.0 - (time.monotonic() - restarting),
                        "the firing alert in the restarted Alertmanager",
                    )
                    back_after = time.monotonic() - restarting
                    (shown,) = active_alerts(again.url, alertname=NAME)
                    assert shown["annotations"]["summary"] == "query p95 +40%"
                    assert shown["status"]["state"] == "active"

                    def resolved() -> float:
                        return am_metric(again.url, "alertmanager_alerts_received_total", status="resolved")

                    resolved_before = resolved()
                    alert.state, alert.resolved_at = State.RESOLVED, time.time()
                    wait_until(
                        lambda: resolved() > resolved_before,
                        10,
                        "the resolved alert to reach Alertmanager",
                    )
                    wait_until(lambda: not active_alerts(again.url, alertname=NAME), 10, "it to go")
                    print(f"\n{storage}: alert back {back_after:.2f} s after the restart began")
        finally:
            sink.close(timeout_s=2)


def test_rejected_alert_is_dropped_and_logged_while_the_good_ones_arrive(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="nethical_otel")
    port = free_port()
    # Queued while Alertmanager is not up yet, so both go out in one batch when it is.
    sink = AlertmanagerSink(f"http://{LOOPBACK}:{port}")
    try:
        good = firing_alert("good")
        bad = firing_alert("bad", **{"bad-label": "x"})  # not a valid label name: 400
        sink.update(good, time.time())
        sink.update(bad, time.time())
        wait_until(lambda: sink.failures >= 1, 5, "a failed delivery while Alertmanager is down")
        with start_alertmanager(tmp_path, port=port) as am:
            wait_until(lambda: sink.pending == 0, 15, "the batch to be settled")
            assert [a["labels"]["action"] for a in active_alerts(am.url, alertname=NAME)] == ["good"]
            assert sink.rejected == 1
            invalid = am_metric(am.url, "alertmanager_alerts_invalid_total", version="v2")
            assert invalid >= 1
            time.sleep(3)  # several backoff periods: a retried payload would be counted again
            assert am_metric(am.url, "alertmanager_alerts_invalid_total", version="v2") == invalid
            assert sink.pending == 0
        errors = [r for r in caplog.records if r.levelno == logging.ERROR]
        assert len(errors) == 1, [r.getMessage() for r in errors]
        message = errors[0].getMessage()
        assert "HTTP 400" in message and "invalid label set" in message and "bad-label" in message
        assert "action='bad'" in message and "action='good'" not in message
    finally:
        sink.close(timeout_s=2)


def test_close_returns_within_its_timeout_when_the_receiver_never_answers():
    held: list[socket.socket] = []
    listener = socket.create_server((LOOPBACK, 0))
    listener.settimeout(0.2)
    done = threading.Event()

    def accept_and_never_answer() -> None:
        while not done.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            held.append(conn)

    threading.Thread(target=accept_and_never_answer, daemon=True).start()
    try:
        port = listener.getsockname()[1]
        sink = AlertmanagerSink(f"http://{LOOPBACK}:{port}", timeout_s=5.0)
        sink.update(firing_alert(), time.time())
        wait_until(lambda: held, 5, "the sender to connect")
        time.sleep(0.3)  # it is waiting for an answer now
        started = time.monotonic()
        sink.close(timeout_s=1)
        elapsed = time.monotonic() - started
        assert elapsed < 1.5, f"close(timeout_s=1) took {elapsed:.1f} s"
    finally:
        done.set()
        for conn in held:
            conn.close()
        listener.close()
