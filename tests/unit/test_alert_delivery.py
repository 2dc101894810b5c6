"""The alert sender's failure handling, against a small real HTTP server on loopback.

The server answers what a test tells it (503 with an empty body, 502 with text, 404, ...),
the failures a real Alertmanager behind a proxy or load balancer shows; the happy path and
Alertmanager's own 400 are tested against the real one in tests/integration.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from nethical_otel.detect.alerts import Alert, State
from nethical_otel.detect.sinks import BACKOFF_MAX_S, AlertmanagerSink, WebhookSink, backoff_delay
from tests.servers import wait_until

SENDER_LOG = "nethical_otel.detect.sinks"


class Receiver:
    """An HTTP server that records each POSTed JSON body and answers ``status``/``body``."""

    def __init__(self) -> None:
        self.status, self.body = 200, b""
        self.posts: list[tuple[float, object]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                data = json.loads(self.rfile.read(length) or b"null")
                receiver.posts.append((time.monotonic(), data))
                status, body = receiver.status, receiver.body
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def answer(self, status: int, body: bytes = b"") -> None:
        self.status, self.body = status, body

    def alerts(self) -> list[dict]:
        """Every alert of every post, in order (webhook bodies unwrapped)."""
        out = []
        for _, data in self.posts:
            out.extend(data["alerts"] if isinstance(data, dict) else data)
        return out

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def alert(action: str, state: State = State.FIRING, **labels: object) -> Alert:
    now = time.time()
    return Alert(
        labels={"alertname": "NethicalLatencyRegression", "service": "svc", "action": action, **labels},
        annotations={"summary": f"{action} slow"},
        state=state,
        fired_at=now - 5,
        resolved_at=now if state is State.RESOLVED else None,
    )


def sender_messages(caplog, level: int = logging.WARNING) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == SENDER_LOG and r.levelno >= level]


def test_each_new_kind_of_failure_is_logged_once_with_status_and_body(receiver, caplog):
    caplog.set_level(logging.WARNING, logger=SENDER_LOG)
    receiver.answer(503)  # an empty-body 503 used to be logged as "()"
    sink = WebhookSink(receiver.url)
    try:
        sink.update(alert("query"), time.time())
        wait_until(lambda: len(receiver.posts) >= 3, 5, "three attempts against the 503")
        receiver.answer(502, b"upstream   connect error\n" + b"x" * 500)
        wait_until(lambda: len(receiver.posts) >= 4, 10, "an attempt against the 502")
        receiver.answer(200)
        wait_until(lambda: sink.pending == 0, 15, "the delivery once the receiver is well")
    finally:
        sink.close(timeout_s=1)
    messages = [m for m in sender_messages(caplog) if "cannot deliver" in m]
    assert len(messages) == 2, messages  # one per kind, not one per retry
    assert "HTTP 503 Service Unavailable: empty body" in messages[0]
    assert "HTTP 502 Bad Gateway: 'upstream connect error xxx" in messages[1]
    assert len(messages[1]) < 600  # the body is an excerpt
    assert sum("again" in m for m in sender_messages(caplog)) == 1


def test_backoff_is_exponential_with_jitter_and_capped_at_10_s():
    assert 0.25 <= backoff_delay(1) <= 0.5
    assert 2.0 <= backoff_delay(4) <= 4.0
    for attempt in (6, 10, 100, 10_000):
        assert 5.0 <= backoff_delay(attempt) <= BACKOFF_MAX_S == 10.0
    draws = {round(backoff_delay(3), 6) for _ in range(20)}
    assert len(draws) > 10  # jitter: senders that failed together do not retry together
    assert backoff_delay(3, rng=lambda: 0.0) == 1.0 and backoff_delay(3, rng=lambda: 1.0) == 2.0


def test_after_a_failure_clears_every_firing_alert_is_sent_again_at_once(receiver):
    sink = WebhookSink(receiver.url, resend_interval_s=600)
    try:
        for name in ("a", "b"):
            sink.update(alert(name), time.time())
        wait_until(lambda: sink.delivered == 2, 5, "the first two alerts")
        gone = alert("gone")
        sink.update(gone, time.time())
        wait_until(lambda: sink.delivered == 3, 5, "the third alert")
        gone.state, gone.resolved_at = State.RESOLVED, time.time()
        sink.update(gone, time.time())
        wait_until(lambda: sink.delivered == 4, 5, "the resolved one")
        receiver.answer(503)  # e.g. the receiver restarts: everything it had is gone
        sink.update(alert("c"), time.time())
        wait_until(lambda: sink.failures >= 1, 5, "a failed attempt")
        seen = len(receiver.posts)
        receiver.answer(200)
        wait_until(
            lambda: len(receiver.posts) > seen and receiver.status == 200 and not sink.pending, 5, "recovery"
        )
    finally:
        sink.close(timeout_s=1)
    first_good = next(data for _, data in receiver.posts[seen:])
    # a and b had been delivered long before; the resolved one is not firing any more.
    assert sorted(a["labels"]["action"] for a in first_good["alerts"]) == ["a", "b", "c"]
    assert all(a["endsAt"] > a["startsAt"] for a in first_good["alerts"])


def test_an_alert_the_detector_stopped_confirming_is_not_kept_alive_by_re_sending(receiver):
    """A guard on the re-send above (the old code re-sent nothing, so it passes there too):
    endsAt counts from the detector's last confirmation, so a stale alert still expires."""
    sink = WebhookSink(receiver.url, resend_interval_s=0.25)  # endsAt = confirmed + 1 s
    try:
        sink.update(alert("stale"), time.time())
        wait_until(lambda: sink.delivered == 1, 5, "the first delivery")
        time.sleep(1.2)  # no update() since: the detector no longer says it fires
        receiver.answer(503)
        sink.update(alert("fresh"), time.time())
        wait_until(lambda: sink.failures >= 1, 5, "a failed attempt")
        seen = len(receiver.posts)
        receiver.answer(200)
        wait_until(lambda: not sink.pending, 5, "recovery")
    finally:
        sink.close(timeout_s=1)
    after = [a["labels"]["action"] for _, data in receiver.posts[seen:] for a in data["alerts"]]
    assert after and set(after) == {"fresh"}


def test_a_4xx_drops_the_batch_with_an_error_instead_of_retrying_forever(receiver, caplog):
    caplog.set_level(logging.WARNING, logger=SENDER_LOG)
    receiver.answer(404, b"404 page not found")
    sink = WebhookSink(receiver.url)
    try:
        sink.update(alert("query"), time.time())
        wait_until(lambda: sink.pending == 0, 5, "the rejected batch to be dropped")
        time.sleep(1.0)
        assert len(receiver.posts) == 1  # not retried
        assert sink.rejected == 1 and sink.delivered == 0
    finally:
        sink.close(timeout_s=1)
    (error,) = sender_messages(caplog, logging.ERROR)
    assert "HTTP 404 Not Found: '404 page not found'" in error and "action='query'" in error


@pytest.mark.parametrize("status", [408, 429, 500])
def test_timeouts_throttling_and_server_errors_are_retried(receiver, status):
    receiver.answer(status)
    sink = WebhookSink(receiver.url)
    try:
        sink.update(alert("query"), time.time())
        wait_until(lambda: len(receiver.posts) >= 2, 5, "a retry")
        receiver.answer(200)
        wait_until(lambda: sink.delivered == 1, 10, "the delivery")
    finally:
        sink.close(timeout_s=1)
    assert sink.rejected == 0


def test_a_hostile_alert_is_logged_once_and_the_next_one_still_goes(receiver, caplog):
    caplog.set_level(logging.WARNING, logger=SENDER_LOG)

    class Unprintable:
        def __str__(self) -> str:
            raise RuntimeError("no str for you")

    sink = WebhookSink(receiver.url)
    try:
        unsortable = alert("x")
        unsortable.labels[1] = "one"  # labels that cannot even be sorted into a key
        for _ in range(3):
            sink.update(unsortable, time.time())  # must not raise into the detector
        odd = alert("odd", cohort=Unprintable())  # str() raises
        odd.annotations["summary"] = os.fsdecode(b"caf\xe9")  # a lone surrogate
        sink.update(odd, time.time())
        sink.update(alert("good"), time.time())
        wait_until(lambda: sink.delivered == 2, 5, "the two deliverable alerts")
    finally:
        sink.close(timeout_s=1)
    actions = sorted(a["labels"]["action"] for a in receiver.alerts())
    assert actions == ["good", "odd"]
    odd_sent = next(a for a in receiver.alerts() if a["labels"]["action"] == "odd")
    assert odd_sent["labels"]["cohort"] == "<unprintable Unprintable>"
    assert odd_sent["annotations"]["summary"] == "caf\ufffd"
    errors = sender_messages(caplog, logging.ERROR)
    assert len(errors) == 1 and "could not queue alert" in errors[0]


def test_forked_child_gets_a_fresh_sender_and_the_parent_keeps_its_own(receiver):
    receiver.answer(503)
    sink = WebhookSink(receiver.url, resend_interval_s=600)
    try:
        sink.update(alert("parent"), time.time())
        wait_until(lambda: sink.failures >= 1, 5, "the parent's first failure")
        pid = os.fork()
        if pid == 0:  # the child: the parent's alert is not ours to send; ours goes
            code = 1
            try:
                ok = sink.pending == 0 and sink.failures == 0
                sink.update(alert("child"), time.time())
                deadline = time.monotonic() + 10
                while time.monotonic() < deadline and sink.delivered < 1:
                    time.sleep(0.02)
                ok = ok and sink.delivered == 1
                sink.close(timeout_s=1)
                code = 0 if ok else 3
            finally:
                os._exit(code)
        receiver.answer(200)  # the server runs in the parent and serves both processes
        wait_until(lambda: sink.delivered == 1, 10, "the parent's own alert")
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
    finally:
        sink.close(timeout_s=1)
    assert sorted({a["labels"]["action"] for a in receiver.alerts()}) == ["child", "parent"]
    child_posts = [d for _, d in receiver.posts if any(a["labels"]["action"] == "child" for a in d["alerts"])]
    assert all(a["labels"]["action"] == "child" for d in child_posts for a in d["alerts"])


def test_a_receiver_without_alertmanagers_status_page_gets_no_resend_loop(receiver, caplog):
    """Behind a proxy that only passes POST /api/v2/alerts, restart detection stops quietly
    (GET answers 501 here) instead of resending every probe interval. A guard for the probe
    added with the restart handling: the old code had no probe, so it passes there too."""
    caplog.set_level(logging.INFO, logger=SENDER_LOG)
    sink = AlertmanagerSink(receiver.url, probe_interval_s=0.05)
    try:
        sink.update(alert("query"), time.time())
        wait_until(lambda: sink.delivered == 1, 5, "the delivery")
        time.sleep(1.0)
    finally:
        sink.close(timeout_s=1)
    assert len(receiver.posts) == 1
    assert sum("noticed at the next resend only" in m for m in sender_messages(caplog, logging.INFO)) == 1


# -- secrets: files, tokens, URLs ------------------------------------------------------------


def test_binary_empty_or_directory_secret_file_is_a_config_error_naming_it(tmp_path):
    from nethical_otel.config import load_settings
    from nethical_otel.detect.build import check_settings
    from nethical_otel.errors import ConfigError

    binary = tmp_path / "token.bin"
    binary.write_bytes(b"\xff\xfe\x00secret")
    empty = tmp_path / "empty-token"
    empty.write_text("\n")
    for path, message in (
        (binary, "alertmanager token file .*token.bin is not UTF-8 text"),
        (empty, "alertmanager token file .*empty-token is empty"),
        (tmp_path, "cannot read alertmanager token file .*: Is a directory"),
    ):
        settings = load_settings(
            environ={}, alertmanager_url="http://127.0.0.1:9", alertmanager_bearer_token_file=str(path)
        )
        with pytest.raises(ConfigError, match=message) as caught:
            check_settings(settings)  # what `config show` and `agent --once` check
        assert "secret" not in str(caught.value)


def test_credentials_given_twice_or_unsendable_are_config_errors_without_the_secret():
    from nethical_otel.errors import ConfigError

    with pytest.raises(ConfigError, match=r"http://\*\*\*@127.0.0.1:9' carries user:password@") as caught:
        AlertmanagerSink("http://user:url-pw@127.0.0.1:9", bearer_token="tok")
    assert "url-pw" not in str(caught.value)
    with pytest.raises(ConfigError, match="cannot carry") as caught:
        AlertmanagerSink("http://127.0.0.1:9", bearer_token="line1\nHost: evil")
    assert "evil" not in str(caught.value)
    with pytest.raises(ConfigError, match=r"webhook_url 'ftp://\*\*\*@h/\?token=\*\*\*'"):
        WebhookSink("ftp://u:p@h/?token=abc")
