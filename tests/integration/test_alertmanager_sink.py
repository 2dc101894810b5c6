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
