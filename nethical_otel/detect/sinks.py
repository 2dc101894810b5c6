"""Where alerts go: Alertmanager (API v2), a JSON webhook, the log.

The one place that talks to Alertmanager. Its contract, as Prometheus keeps it:
``POST /api/v2/alerts`` with ``labels``, ``annotations``, a stable ``startsAt`` and an
``endsAt``. A firing alert is resent every ``resend_interval_s`` with
``endsAt = now + 4 * resend_interval_s``, so the alerts of an agent that died expire by
themselves; a resolved one is sent with ``endsAt = now``.

Delivery never blocks the detector: the latest payload per alert waits in a bounded
table and a background thread posts them, retrying with exponential backoff. An
Alertmanager that is down, or starts late, gets every alert once it is up.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any, Protocol

import httpx

from nethical_otel.detect.alerts import Alert, State, iso
from nethical_otel.errors import ConfigError

_log = logging.getLogger(__name__)


class Sink(Protocol):
    def update(self, alert: Alert, now: float) -> None:
        """Called every step for each firing alert and once for each newly resolved one."""

    def close(self, timeout_s: float = 5.0) -> None: ...


def read_secret(value: str | None, file: str | None, what: str) -> str | None:
    """A secret given directly (from env) or as a file path (e.g. a mounted Kubernetes secret)."""
    if value:
        return value
    if not file:
        return None
    try:
        return Path(file).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"cannot read {what} file {file}: {exc.strerror}") from None


class LogSink:
    """Writes firing and resolved transitions to the log (the embedded default)."""

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self._log = logger or logging.getLogger("nethical_otel.alerts")
        self._firing: set[tuple] = set()

    def update(self, alert: Alert, now: float) -> None:
        labels = " ".join(f"{k}={v}" for k, v in sorted(alert.labels.items()) if k != "alertname")
        if alert.state is State.FIRING and alert.key not in self._firing:
            self._firing.add(alert.key)
            self._log.warning("FIRING %s %s: %s", alert.name, labels, alert.annotations.get("summary", ""))
        elif alert.state is State.RESOLVED and alert.key in self._firing:
            self._firing.discard(alert.key)
            self._log.warning("RESOLVED %s %s", alert.name, labels)

    def close(self, timeout_s: float = 5.0) -> None:
        return None


class _Deliverer:
    """Latest payload per alert, posted by a background thread with retry and backoff."""

    def __init__(
        self,
        url: str,
        *,
        client: httpx.Client,
        resend_interval_s: float,
        max_pending: int,
        wrap: Any = None,
    ) -> None:
        self.url = url
        self.resend_interval_s = resend_interval_s
        self._client = client
        self._wrap = wrap or (lambda payloads: payloads)
        self._max_pending = max_pending
        self._pending: OrderedDict[tuple, dict] = OrderedDict()
        self._last_sent: dict[tuple, tuple[float, State]] = {}
        self._lock = threading.Lock()
        self._sending = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._failing_since: float | None = None
        self.delivered = 0
        self.failures = 0
        self._thread = threading.Thread(target=self._run, name="nethical-alert-sender", daemon=True)
        self._thread.start()

    def update(self, alert: Alert, now: float) -> None:
        if alert.state not in (State.FIRING, State.RESOLVED) or alert.fired_at is None:
            return
        last = self._last_sent.get(alert.key)
        if (
            last is not None
            and last[1] is alert.state
            and (alert.state is State.RESOLVED or now - last[0] < self.resend_interval_s)
        ):
            return
        if alert.state is State.FIRING:
            ends_at = now + 4 * self.resend_interval_s
        else:  # resolved: endsAt now, and never before startsAt (Alertmanager rejects that)
            ends_at = max(alert.resolved_at or now, alert.fired_at + 0.001)
        payload = {
            "labels": dict(alert.labels),
            "annotations": dict(alert.annotations),
            "startsAt": iso(alert.fired_at),
            "endsAt": iso(ends_at),
        }
        if "dashboard_url" in alert.annotations:
            payload["generatorURL"] = alert.annotations["dashboard_url"]
        with self._lock:
            self._pending[alert.key] = payload
            self._pending.move_to_end(alert.key)
            while len(self._pending) > self._max_pending:
                dropped, _ = self._pending.popitem(last=False)
                _log.warning("nethical-otel: alert queue full; dropped the oldest update (%s)", dropped)
        self._last_sent[alert.key] = (now, alert.state)
        self._wake.set()

    def _run(self) -> None:
        backoff = 0.5
        while not self._stop.is_set():
            self._wake.wait(timeout=1.0)
            self._wake.clear()
            if self._flush_once():
                backoff = 0.5
            else:
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 30.0)

    def _flush_once(self) -> bool:
        with self._sending:  # the worker and close() must not post the same batch twice
            return self._post_pending()

    def _post_pending(self) -> bool:
        with self._lock:
            batch = list(self._pending.items())
        if not batch:
            return True
        try:
            response = self._client.post(self.url, json=self._wrap([p for _, p in batch]))
            response.raise_for_status()
        except httpx.HTTPError as exc:
            self.failures += 1
            if self._failing_since is None:
                self._failing_since = time.monotonic()
                detail = exc.response.text.strip()[:200] if isinstance(exc, httpx.HTTPStatusError) else exc
                _log.warning("nethical-otel: cannot deliver alerts to %s (%s); retrying", self.url, detail)
            return False
        if self._failing_since is not None:
            _log.warning("nethical-otel: alerts delivered to %s again", self.url)
            self._failing_since = None
        with self._lock:
            for key, payload in batch:
                if self._pending.get(key) is payload:
                    del self._pending[key]
        self.delivered += len(batch)
        return True

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._pending)

    def close(self, timeout_s: float = 5.0) -> None:
        """Try to deliver what is pending (up to ``timeout_s``), then stop."""
        deadline = time.monotonic() + timeout_s
        while self.pending and time.monotonic() < deadline:
            if not self._flush_once():
                time.sleep(0.2)
        if self.pending:
            _log.warning(
                "nethical-otel: %d alert update(s) for %s not delivered at shutdown", self.pending, self.url
            )
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=2.0)
        self._client.close()


def _client(
    *,
    timeout_s: float,
    basic_auth: tuple[str, str] | None,
    bearer_token: str | None,
    ca_file: str | None,
    insecure_skip_verify: bool,
    headers: dict[str, str] | None = None,
) -> httpx.Client:
    all_headers = dict(headers or {})
    if bearer_token:
        all_headers["Authorization"] = f"Bearer {bearer_token}"
    verify: Any = False if insecure_skip_verify else (ca_file or True)
    return httpx.Client(timeout=timeout_s, auth=basic_auth, headers=all_headers, verify=verify)


class AlertmanagerSink(_Deliverer):
    """Alertmanager API v2. ``url`` is the base, e.g. ``http://127.0.0.1:9093``."""

    def __init__(
        self,
        url: str,
        *,
        resend_interval_s: float = 60.0,
        timeout_s: float = 5.0,
        basic_auth: tuple[str, str] | None = None,
        bearer_token: str | None = None,
        ca_file: str | None = None,
        insecure_skip_verify: bool = False,
        max_pending: int = 10_000,
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise ConfigError(f"alertmanager_url {url!r}: expected http:// or https://")
        super().__init__(
            url.rstrip("/") + "/api/v2/alerts",
            client=_client(
                timeout_s=timeout_s,
                basic_auth=basic_auth,
                bearer_token=bearer_token,
                ca_file=ca_file,
                insecure_skip_verify=insecure_skip_verify,
            ),
            resend_interval_s=resend_interval_s,
            max_pending=max_pending,
        )


class WebhookSink(_Deliverer):
    """POSTs ``{"receiver": "nethical-otel", "alerts": [...]}`` (Alertmanager's alert shape) to a URL."""

    def __init__(
        self,
        url: str,
        *,
        resend_interval_s: float = 60.0,
        timeout_s: float = 5.0,
        bearer_token: str | None = None,
        max_pending: int = 10_000,
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise ConfigError(f"webhook_url {url!r}: expected http:// or https://")
        super().__init__(
            url,
            client=_client(
                timeout_s=timeout_s,
                basic_auth=None,
                bearer_token=bearer_token,
                ca_file=None,
                insecure_skip_verify=False,
            ),
            resend_interval_s=resend_interval_s,
            max_pending=max_pending,
            wrap=lambda alerts: {"receiver": "nethical-otel", "alerts": alerts},
        )
