"""The Alertmanager sink against a real Alertmanager that requires basic auth."""

from __future__ import annotations

import logging
import time

import httpx
import pytest

from nethical_otel.config import load_settings
from nethical_otel.detect.alerts import Alert, State
from nethical_otel.detect.build import build_sinks
from nethical_otel.detect.sinks import AlertmanagerSink
from tests.servers import LOOPBACK, ServerProcess, free_port, require_binary

pytestmark = pytest.mark.integration

PASSWORD = "s3cret-pass"
# bcrypt of PASSWORD (cost 12), as Alertmanager's web config wants it; a test credential.
PASSWORD_HASH = "$2b$12$InbHYmsRS/ezm80dlPgiZen1HXJ3mgDoHaDq467fxCcIiLL0crH76"


@pytest.fixture
def secured_alertmanager(tmp_path):
    binary = require_binary("prometheus-alertmanager", "alertmanager")
    (tmp_path / "alertmanager.yml").write_text("route: {receiver: 'null'}\nreceivers: [{name: 'null'}]\n")
    (tmp_path / "web.yml").write_text(f"basic_auth_users:\n  nethical: '{PASSWORD_HASH}'\n")
    port = free_port()
    args = [
        binary,
        f"--config.file={tmp_path / 'alertmanager.yml'}",
        f"--web.config.file={tmp_path / 'web.yml'}",
        f"--storage.path={tmp_path / 'data'}",
        f"--web.listen-address={LOOPBACK}:{port}",
        "--cluster.listen-address=",
    ]
    ready = f"http://nethical:{PASSWORD}@{LOOPBACK}:{port}/-/ready"
    with ServerProcess(args, tmp_path, ready, name="alertmanager"):
        yield f"http://{LOOPBACK}:{port}"


def firing_alert(now: float) -> Alert:
    return Alert(
        labels={
            "alertname": "NethicalLatencyRegression",
            "severity": "warning",
            "service": "svc",
            "action": "q",
        },
        annotations={"summary": "p95 +40%"},
        state=State.FIRING,
        fired_at=now - 5,
    )


def test_password_from_file_reaches_alertmanager(secured_alertmanager, tmp_path, caplog):
    secret = tmp_path / "am-password"
    secret.write_text(PASSWORD + "\n")
    settings = load_settings(
        environ={},
        alertmanager_url=secured_alertmanager,
        alertmanager_username="nethical",
        alertmanager_password_file=str(secret),
    )
    sinks = build_sinks(settings)
    sink = next(s for s in sinks if isinstance(s, AlertmanagerSink))
    now = time.time()
    sink.update(firing_alert(now), now)
    sink.close(timeout_s=10)
    assert sink.delivered == 1
    alerts = httpx.get(f"{secured_alertmanager}/api/v2/alerts", auth=("nethical", PASSWORD), timeout=5).json()
    (alert,) = alerts
    assert alert["labels"]["service"] == "svc" and alert["annotations"]["summary"] == "p95 +40%"
    assert PASSWORD not in caplog.text and PASSWORD not in repr(settings)


def test_wrong_password_is_reported_without_the_secret(secured_alertmanager, caplog):
    caplog.set_level(logging.WARNING)
    sink = AlertmanagerSink(secured_alertmanager, basic_auth=("nethical", "wrong-password"))
    now = time.time()
    sink.update(firing_alert(now), now)
    sink.close(timeout_s=2)
    assert sink.delivered == 0 and sink.failures >= 1
    assert f"cannot deliver alerts to {secured_alertmanager}/api/v2/alerts" in caplog.text
    assert "wrong-password" not in caplog.text


def test_undecodable_label_does_not_stop_delivery(tmp_path):
    """A lone surrogate (a filename's undecodable byte) used to kill the sender thread."""
    import os

    from tests.servers import start_alertmanager

    with start_alertmanager(tmp_path) as am:
        sink = AlertmanagerSink(am.url)
        now = time.time()
        hostile = firing_alert(now)
        hostile.labels["action"] = os.fsdecode(b"bad\xff")
        sink.update(hostile, now)
        good = firing_alert(now)
        good.labels["action"] = "good"
        sink.update(good, now)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and sink.delivered < 2:
            time.sleep(0.05)
        shown = httpx.get(f"{am.url}/api/v2/alerts", timeout=5).json()
        actions = sorted(a["labels"]["action"] for a in shown)
        assert actions == ["bad\ufffd", "good"]
        sink.close(timeout_s=2)  # and close() does not raise
        assert sink.pending == 0


def test_request_logging_and_warnings_carry_no_secret(tmp_path, caplog):
    """httpx logs each request's full URL at INFO; our warnings name the URL redacted."""
    from nethical_otel.detect.sinks import WebhookSink
    from tests.servers import start_alertmanager

    caplog.set_level(logging.DEBUG)
    token = "tok-9f8e7d"
    with start_alertmanager(tmp_path) as am:
        # Alertmanager ignores the query string: the request succeeds and httpx would log it.
        before = len(caplog.records)  # (the readiness polls above are the test's own requests)
        sink = AlertmanagerSink(f"{am.url}/?access_token={token}")
        now = time.time()
        sink.update(firing_alert(now), now)
        sink.close(timeout_s=5)
        assert sink.delivered == 1
    dead = f"http://{LOOPBACK}:{free_port()}"
    webhook = WebhookSink(f"{dead}/hook?token={token}")
    webhook.update(firing_alert(now), now)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not webhook.failures:
        time.sleep(0.05)
    webhook.close(timeout_s=0.5)
    assert not [r for r in caplog.records[before:] if r.name.startswith(("httpx", "httpcore"))]
    assert f"cannot deliver alerts to {dead}/hook?token=***" in caplog.text
    assert token not in caplog.text
