"""deploy/alertmanager/alertmanager.yml against the real amtool and Alertmanager 0.25.

1. `amtool check-config` accepts it.
2. Routing: `amtool config routes test` sends critical to the pager, warning to the team
   channel, info to the quiet channel, whatever else the labels say.
3. A real Alertmanager running the shipped file (secrets written to a temp dir, Slack pointed
   at a recorder on loopback, group waits shortened): an info alert is inhibited while a
   warning fires for the same service/action/cohort, not for another cohort; the warning and
   the uninhibited info reach their Slack channels with the runbook link, the inhibited one
   does not.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.servers import LOOPBACK, REPO_ROOT, require_binary, start_alertmanager

pytestmark = pytest.mark.integration

CONFIG = REPO_ROOT / "deploy" / "alertmanager" / "alertmanager.yml"
SECRETS_DIR = "/etc/alertmanager/secrets/"
RUNBOOK = "https://github.com/nethical/nethical-otel/blob/main/docs/runbooks/NethicalLatencyRegression.md"


def test_amtool_check_config() -> None:
    amtool = require_binary("amtool")
    done = subprocess.run([amtool, "check-config", str(CONFIG)], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 inhibit rules" in done.stdout


@pytest.mark.parametrize(("labels", "receiver"), [
    ({"severity": "critical", "alertname": "NethicalErrorRateIncrease"}, "pager"),
    ({"severity": "warning", "alertname": "NethicalLatencyRegression", "quantile": "0.95"}, "team-chat"),
    ({"severity": "warning", "alertname": "NethicalThroughputDrop"}, "team-chat"),
    ({"severity": "info", "alertname": "NethicalLatencyRegression", "quantile": "0.99"}, "team-chat-quiet"),
    ({"alertname": "SomethingElse"}, "team-chat"),
])
def test_routing_by_severity(labels: dict[str, str], receiver: str) -> None:
    amtool = require_binary("amtool")
    args = [f"{k}={v}" for k, v in {**labels, "service": "svc", "action": "query"}.items()]
    done = subprocess.run([amtool, "config", "routes", "test", f"--config.file={CONFIG}",
                           f"--verify.receivers={receiver}", *args],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, f"{labels} -> {done.stdout.strip()} (expected {receiver})"


class _SlackRecorder:
    """An HTTP server on loopback that records what Alertmanager posts to 'Slack'."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                recorder.messages.append(json.loads(body))
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer((LOOPBACK, 0), Handler)
        self.url = f"http://{LOOPBACK}:{self.server.server_port}/slack"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> _SlackRecorder:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def wait_for(self, count: int, timeout_s: float = 15.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout_s
        while len(self.messages) < count and time.monotonic() < deadline:
            time.sleep(0.1)
        return list(self.messages)


@pytest.fixture
def slack() -> Iterator[_SlackRecorder]:
    with _SlackRecorder() as recorder:
        yield recorder


def _shipped_config_for_test(tmp_path: Path, slack_url: str) -> str:
    """The shipped file with its secrets in ``tmp_path`` and waits shortened; nothing else changed."""
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "slack-webhook-url").write_text(slack_url + "\n", encoding="utf-8")
    # Never used: no critical alert is sent here (the pager's default URL is not on loopback).
    (secrets / "pagerduty-routing-key").write_text("test-routing-key\n", encoding="utf-8")
    text = CONFIG.read_text(encoding="utf-8").replace(SECRETS_DIR, f"{secrets}/")
    config = yaml.safe_load(text)
    for route in [config["route"], *config["route"]["routes"]]:
        route["group_wait"] = "0s"
        route["group_interval"] = "1s"
    return yaml.safe_dump(config, sort_keys=False)


def _alert(severity: str, quantile: str, cohort: str) -> dict[str, Any]:
    now = datetime.now(timezone.utc)
    return {
        "labels": {"alertname": "NethicalLatencyRegression", "severity": severity, "service": "svc",
                   "action": "query", "cohort": cohort, "quantile": quantile},
        "annotations": {"summary": f"p{quantile} of svc/query ({cohort}) is slow", "runbook_url": RUNBOOK},
        "startsAt": now.isoformat(),
        "endsAt": (now + timedelta(minutes=5)).isoformat(),
    }


def test_info_inhibited_by_warning_of_the_same_series(tmp_path: Path, slack: _SlackRecorder) -> None:
    with start_alertmanager(tmp_path, _shipped_config_for_test(tmp_path, slack.url)) as am:
        warning = _alert("warning", "0.5", "control")
        muted_info = _alert("info", "0.99", "control")
        other_info = _alert("info", "0.99", "canary")  # another series: not muted
        for alert in (warning, muted_info, other_info):
            httpx.post(f"{am.url}/api/v2/alerts", json=[alert], timeout=5).raise_for_status()

        by_cohort_severity: dict[tuple[str, str], dict[str, Any]] = {}
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            alerts = httpx.get(f"{am.url}/api/v2/alerts", timeout=5).json()
            by_cohort_severity = {(a["labels"]["cohort"], a["labels"]["severity"]): a for a in alerts}
            muted = by_cohort_severity.get(("control", "info"))
            if len(alerts) == 3 and muted and muted["status"]["state"] == "suppressed":
                break
            time.sleep(0.2)
        muted = by_cohort_severity[("control", "info")]
        assert muted["status"]["state"] == "suppressed", muted["status"]
        assert muted["status"]["inhibitedBy"], muted["status"]
        assert by_cohort_severity[("control", "warning")]["status"]["state"] == "active"
        assert by_cohort_severity[("canary", "info")]["status"]["state"] == "active"

        slack.wait_for(2)
        time.sleep(1.5)  # one more group interval: an inhibited alert would have been sent by now
        messages = list(slack.messages)
        channels = sorted(m["channel"] for m in messages)
        assert channels == ["#perf-alerts", "#perf-info"], messages
        texts = {m["channel"]: m["attachments"][0] for m in messages}
        assert "p0.5 of svc/query (control)" in texts["#perf-alerts"]["text"]
        assert "(canary)" in texts["#perf-info"]["text"]
        assert "(control)" not in texts["#perf-info"]["text"]
        assert texts["#perf-alerts"]["actions"][0]["url"] == RUNBOOK
