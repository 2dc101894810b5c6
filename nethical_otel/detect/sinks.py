"""Where alerts go: Alertmanager (API v2), a JSON webhook, the log.

The one place that talks to Alertmanager. Its contract, as Prometheus keeps it:
``POST /api/v2/alerts`` with ``labels``, ``annotations``, a stable ``startsAt`` and an
``endsAt``. A firing alert is resent every ``resend_interval_s`` with
``endsAt = now + 4 * resend_interval_s``, so the alerts of an agent that died expire by
themselves; a resolved one is sent with ``endsAt = now``.

Delivery never blocks the detector and never raises into it: the latest payload per alert
waits in a bounded table and a background thread posts them.

- A failure (unreachable, 5xx, 408, 429) is logged once per kind, with the HTTP status and
  the start of the answer, and retried with exponential backoff (jitter, at most 10 s).
- Any other 4xx is the payload's fault, so retrying cannot fix it: the alerts and the
  answer are logged at ERROR and those payloads dropped. A rejected batch is split in
  halves first, so one bad alert does not take the good ones with it.
- Once a failure clears, every alert still firing is sent again at once (the receiver may
  have restarted empty: Alertmanager keeps alerts in memory only). While alerts fire, the
  sender also asks Alertmanager when it started (``GET /api/v2/status``), so a restart
  between two sends costs seconds, not a resend interval.
- ``close(timeout_s)`` returns within ``timeout_s``, whatever the receiver does.
- In a forked child the sender starts afresh: new locks, connections and thread, and an
  empty table (the parent's alerts are the parent's to send).
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import math
import os
import random
import re
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

import httpx

from nethical_otel.detect.alerts import Alert, State, iso
from nethical_otel.errors import (
    ConfigError,
    FailureLog,
    has_userinfo,
    quiet_http_logging,
    redact_text,
    redact_url,
)
from nethical_otel.text import clean

_log = logging.getLogger(__name__)

BACKOFF_START_S = 0.5
BACKOFF_MAX_S = 10.0
PROBE_INTERVAL_S = 2.0
BODY_EXCERPT_CHARS = 200
_RETRYABLE = frozenset({408, 425, 429})  # and every 5xx
_SPLITTABLE = frozenset({400, 413, 422})  # a batch may hold one bad alert among good ones
_JSON_HEADERS = {"Content-Type": "application/json"}


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
        secret = Path(file).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"cannot read {what} file {file}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{what} file {file} is not UTF-8 text: is it the right file?") from None
    if not secret:
        raise ConfigError(f"{what} file {file} is empty")
    return secret


def backoff_delay(attempt: int, rng: Callable[[], float] = random.random) -> float:
    """Seconds to wait before retry ``attempt`` (1, 2, ...): 0.5 s doubling up to 10 s,
    each drawn from 50-100 % of that so that many senders do not retry in step."""
    base = min(BACKOFF_MAX_S, BACKOFF_START_S * 2.0 ** min(max(attempt, 1) - 1, 30))
    return base * (0.5 + 0.5 * rng())


def _clean_map(mapping: Mapping[Any, Any]) -> dict[str, str]:
    return {clean(k, None): clean(v, None) for k, v in mapping.items()}


def _describe(labels: Mapping[str, str]) -> str:
    return "{" + ", ".join(f"{k}={v!r}" for k, v in sorted(labels.items())) + "}"


def _excerpt(response: httpx.Response) -> str:
    try:
        text = " ".join(response.text.split())
    except Exception:
        text = ""
    if not text:
        return "empty body"
    cut = text[:BODY_EXCERPT_CHARS] + ("..." if len(text) > BODY_EXCERPT_CHARS else "")
    return repr(redact_text(cut))


def _retry_after(response: httpx.Response) -> float:
    try:
        return min(BACKOFF_MAX_S, max(0.0, float(response.headers.get("retry-after", "0"))))
    except ValueError:
        return 0.0


def _started_at(status: object) -> float | None:
    """Alertmanager's start time (``uptime`` of ``GET /api/v2/status``) as a Unix time."""
    uptime = status.get("uptime") if isinstance(status, dict) else None
    match = re.fullmatch(
        r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)?", str(uptime or "").strip()
    )
    if not match:
        return None
    whole, fraction, zone = match.groups()
    zone = "+00:00" if zone in (None, "Z") else zone
    try:
        return datetime.fromisoformat(f"{whole}{zone}").timestamp() + float(f"0.{fraction or 0}")
    except ValueError:
        return None


def _http_url(value: str | None) -> bool:
    try:
        parts = urlsplit(value or "")
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.netloc)


# -- fork safety ---------------------------------------------------------------------------------

_LIVE: weakref.WeakSet = weakref.WeakSet()  # weak: registering for fork keeps nothing alive
_ABANDONED: list[Any] = []  # the parent's HTTP clients in a child: never used, never closed


def _after_fork_in_child() -> None:
    for obj in list(_LIVE):
        try:
            obj._after_fork_in_child()
        except Exception:  # the child must go on whatever happens here
            _log.exception("nethical-otel: could not restart %r after fork", obj)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


class LogSink:
    """Writes firing and resolved transitions to the log (the embedded default)."""

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self._log = logger or logging.getLogger("nethical_otel.alerts")
        self._firing: set[tuple] = set()
        self._errors = FailureLog(_log, "the log sink")
        _LIVE.add(self)

    def update(self, alert: Alert, now: float) -> None:
        try:
            labels = _clean_map(alert.labels)
            shown = " ".join(f"{k}={v}" for k, v in sorted(labels.items()) if k != "alertname")
            if alert.state is State.FIRING and alert.key not in self._firing:
                self._firing.add(alert.key)
                summary = clean(alert.annotations.get("summary", ""), None)
                self._log.warning("FIRING %s %s: %s", labels.get("alertname", "?"), shown, summary)
            elif alert.state is State.RESOLVED and alert.key in self._firing:
                self._firing.discard(alert.key)
                self._log.warning("RESOLVED %s %s", labels.get("alertname", "?"), shown)
        except Exception as exc:
            self._errors.failed(
                type(exc).__name__,
                "nethical-otel: cannot log alert %r",
                alert,
                level=logging.ERROR,
                exc_info=True,
            )

    def close(self, timeout_s: float = 5.0) -> None:
        return None

    def _after_fork_in_child(self) -> None:
        self._firing = set()


@dataclass(frozen=True)
class _Update:
    """One alert as it will be posted; a firing one gets a fresh ``endsAt`` at each post."""

    payload: dict[str, Any]
    firing: bool
    fired_at: float

    @property
    def labels(self) -> dict[str, str]:
        return self.payload["labels"]


class _Deliverer:
    """Latest payload per alert, posted by a background thread with retry and backoff."""

    def __init__(
        self,
        url: str,
        *,
        make_client: Callable[[], httpx.Client],
        timeout_s: float,
        resend_interval_s: float,
        max_pending: int,
        wrap: Callable[[list[dict]], Any] | None = None,
        probe_url: str | None = None,
        probe_interval_s: float = PROBE_INTERVAL_S,
        what: str = "alerts",
    ) -> None:
        for name, value in (("timeout_s", timeout_s), ("resend_interval_s", resend_interval_s)):
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ConfigError(f"{what} sink: {name} must be a finite number > 0, got {value!r}")
        self.url = url
        self.shown_url = redact_url(url)
        self.resend_interval_s = float(resend_interval_s)
        self.timeout_s = float(timeout_s)
        self.probe_interval_s = probe_interval_s
        self._probe_url_configured = probe_url
        self._make_client = make_client
        self._wrap = wrap or (lambda payloads: payloads)
        self._max_pending = max(1, int(max_pending))
        quiet_http_logging()
        self._closed = False
        self._worker_closes = False
        self._client = make_client()
        self._fresh_state()
        _LIVE.add(self)
        self._thread.start()

    def _fresh_state(self) -> None:
        """Everything a new process starts with (also the child after a fork)."""
        self._pending: OrderedDict[tuple, _Update] = OrderedDict()  # still to post
        self._firing: OrderedDict[tuple, _Update] = OrderedDict()  # latest of each firing alert
        self._last_sent: OrderedDict[tuple, tuple[float, State]] = OrderedDict()
        self._confirmed: OrderedDict[tuple, float] = OrderedDict()  # last update() while firing
        self._rejected_keys: OrderedDict[tuple, None] = OrderedDict()
        self._lock = threading.Lock()
        self._sending = threading.Lock()  # one post at a time: the worker or close()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._failing_since: float | None = None
        self._attempt = 0
        self._retry_after = 0.0
        self._resend_all = False
        self._probe_url = self._probe_url_configured
        self._next_probe = 0.0
        self._probe_failures = 0  # in a row, while posts went through
        self._last_ok_post = 0.0  # wall time a successful post started
        self._handled_start: float | None = None
        self._failure_log = FailureLog(_log, f"alert delivery to {self.shown_url}")
        self._internal = FailureLog(_log, f"the alert sender for {self.shown_url}")
        self._update_errors = FailureLog(_log, f"queueing alerts for {self.shown_url}")
        self._overflow = FailureLog(_log, "the alert queue")
        self.delivered = 0
        self.failures = 0
        self.rejected = 0
        self._thread = threading.Thread(target=self._run, name="nethical-alert-sender", daemon=True)

    # -- the detector's side -------------------------------------------------------------------

    def update(self, alert: Alert, now: float) -> None:
        try:
            self._update(alert, now)
        except Exception as exc:
            self._update_errors.failed(
                ("update", type(exc).__name__),
                "nethical-otel: could not queue alert %r for %s (%s: %s); later alerts still go",
                getattr(alert, "labels", alert),
                self.shown_url,
                type(exc).__name__,
                redact_text(exc),
                level=logging.ERROR,
                exc_info=True,
            )

    def _update(self, alert: Alert, now: float) -> None:
        if alert.state not in (State.FIRING, State.RESOLVED) or alert.fired_at is None:
            return
        key = alert.key
        with self._lock:  # the detector still vouches for it: endsAt counts from now
            if alert.state is State.FIRING:
                self._confirmed[key] = time.time()
                self._confirmed.move_to_end(key)
                while len(self._confirmed) > 2 * self._max_pending:
                    self._confirmed.popitem(last=False)
            else:
                self._confirmed.pop(key, None)
        last = self._last_sent.get(key)
        if (
            last is not None
            and last[1] is alert.state
            and (alert.state is State.RESOLVED or now - last[0] < self.resend_interval_s)
        ):
            return
        labels = _clean_map(alert.labels)
        annotations = _clean_map(alert.annotations)
        payload: dict[str, Any] = {
            "labels": labels,
            "annotations": annotations,
            "startsAt": iso(alert.fired_at),
        }
        if _http_url(annotations.get("dashboard_url")):
            payload["generatorURL"] = annotations["dashboard_url"]
        firing = alert.state is State.FIRING
        if firing:
            payload["endsAt"] = iso(self._firing_ends_at(key, alert.fired_at))
        else:  # resolved: endsAt now, and never before startsAt (Alertmanager rejects that)
            payload["endsAt"] = iso(max(alert.resolved_at or now, alert.fired_at + 0.001))
        item = _Update(payload, firing, alert.fired_at)
        with self._lock:
            self._put(self._pending, key, item)
            if firing:
                self._put(self._firing, key, item)
            else:
                self._firing.pop(key, None)
        self._last_sent[key] = (now, alert.state)
        self._last_sent.move_to_end(key)
        while len(self._last_sent) > 2 * self._max_pending:
            self._last_sent.popitem(last=False)
        self._wake.set()

    def _firing_ends_at(self, key: tuple, fired_at: float) -> float:
        """As Prometheus has it: last confirmed firing + 4 resend intervals. A re-sent alert
        the detector no longer confirms is not kept alive by re-sending."""
        return max(self._confirmed.get(key, 0.0), fired_at) + 4 * self.resend_interval_s

    def _put(self, table: OrderedDict, key: tuple, item: _Update) -> None:
        table[key] = item
        table.move_to_end(key)
        while len(table) > self._max_pending:
            dropped, _ = table.popitem(last=False)
            self._overflow.failed(
                "full",
                "nethical-otel: more than %d alerts for %s; dropping the oldest (%s)",
                self._max_pending,
                self.shown_url,
                dict(dropped),
            )

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._pending)

    # -- the sender thread ---------------------------------------------------------------------

    def _run(self) -> None:
        stop, wake = self._stop, self._wake  # this thread's own, even if a fork replaces them
        try:
            while not stop.is_set():
                if self._failing_since is not None:
                    stop.wait(max(backoff_delay(self._attempt), self._retry_after))
                else:
                    wake.wait(self._idle_wait())
                    wake.clear()
                if stop.is_set():
                    break
                try:
                    with self._sending:
                        if stop.is_set():
                            break
                        self._cycle()
                    self._internal.ok()
                except Exception as exc:
                    self._attempt += 1
                    if self._failing_since is None:
                        self._failing_since = time.monotonic()
                    self._internal.failed(
                        ("internal", type(exc).__name__),
                        "nethical-otel: the alert sender for %s failed (%s: %s); it goes on",
                        self.shown_url,
                        type(exc).__name__,
                        redact_text(exc),
                        level=logging.ERROR,
                        exc_info=True,
                    )
        finally:
            if self._worker_closes and self._stop is stop:
                self._close_client()

    def _idle_wait(self) -> float:
        if self._probe_url and self._firing:
            return min(5.0, max(0.05, self._next_probe - time.monotonic()))
        return 5.0

    def _cycle(self) -> None:
        self._flush(None)
        if self._failing_since is not None or not self._probe_url or not self._firing:
            return
        if time.monotonic() >= self._next_probe and not self.pending:
            self._next_probe = time.monotonic() + self.probe_interval_s
            self._probe(None)
            if self._resend_all and self._flush(None) == "retry":
                self._probe_failures = 0  # the receiver is down, not just its status page

    def _flush(self, deadline: float | None) -> str:
        """Post what is pending: ``"idle"`` (nothing to post), ``"ok"`` or ``"retry"``."""
        with self._lock:
            if self._failing_since is not None or self._resend_all:
                # The receiver may have lost everything: whatever still fires goes again.
                now = time.time()
                for key, item in list(self._firing.items()):
                    if self._firing_ends_at(key, item.fired_at) <= now:
                        del self._firing[key]  # not confirmed for 4 resends: let it expire
                    else:
                        self._pending.setdefault(key, item)
                self._resend_all = False
            batch = list(self._pending.items())
        if not batch:
            return "idle"
        return self._post(batch, deadline)

    def _timeout(self, deadline: float | None) -> float:
        if deadline is None:
            return self.timeout_s
        return max(0.01, min(self.timeout_s, deadline - time.monotonic()))

    def _body(self, batch: list[tuple[tuple, _Update]]) -> bytes:
        alerts = []
        for key, item in batch:
            payload = dict(item.payload)
            if item.firing:
                payload["endsAt"] = iso(self._firing_ends_at(key, item.fired_at))
            alerts.append(payload)
        return json.dumps(self._wrap(alerts), allow_nan=False, separators=(",", ":")).encode("ascii")

    def _split(self, batch: list[tuple[tuple, _Update]], deadline: float | None) -> str:
        half = len(batch) // 2
        outcomes = (self._post(batch[:half], deadline), self._post(batch[half:], deadline))
        return "retry" if "retry" in outcomes else "ok"

    def _post(self, batch: list[tuple[tuple, _Update]], deadline: float | None) -> str:
        started = time.time()
        try:
            body = self._body(batch)
        except Exception as exc:  # cannot happen with cleaned strings; if it does, only that alert goes
            if len(batch) > 1:
                return self._split(batch, deadline)
            self._rejected(batch, f"it cannot be encoded ({type(exc).__name__}: {exc})")
            return "ok"
        try:
            response = self._client.post(
                self.url, content=body, headers=_JSON_HEADERS, timeout=self._timeout(deadline)
            )
        except httpx.HTTPError as exc:
            return self._failed(
                ("transport", type(exc).__name__), f"{type(exc).__name__}: {redact_text(exc)}"
            )
        code = response.status_code
        if 200 <= code < 300:
            self._delivered(batch, started)
            return "ok"
        detail = f"HTTP {code} {response.reason_phrase}: {_excerpt(response)}"
        if code >= 500 or code in _RETRYABLE or code < 200:
            self._retry_after = _retry_after(response)
            return self._failed(("http", code), detail)
        # The receiver is up and refuses these payloads: retrying cannot change its mind.
        self._recovered(started)
        if code in _SPLITTABLE and len(batch) > 1 and (deadline is None or time.monotonic() < deadline):
            return self._split(batch, deadline)
        self._rejected(batch, detail)
        return "ok"

    def _settle(self, batch: list[tuple[tuple, _Update]], *, forget_firing: bool) -> None:
        with self._lock:
            for key, item in batch:
                if self._pending.get(key) is item:
                    del self._pending[key]
                if forget_firing and self._firing.get(key) is item:
                    del self._firing[key]

    def _delivered(self, batch: list[tuple[tuple, _Update]], started: float) -> None:
        self._settle(batch, forget_firing=False)
        self.delivered += len(batch)
        self._recovered(started)

    def _recovered(self, started: float) -> None:
        self._last_ok_post = max(self._last_ok_post, started)
        if self._failing_since is None:
            return
        self._failure_log.ok(
            "nethical-otel: alerts reach %s again after %d failed attempt(s) over %.1f s; "
            "every firing alert was sent again",
            self.shown_url,
            self._attempt,
            time.monotonic() - self._failing_since,
        )
        self._failing_since, self._attempt, self._retry_after = None, 0, 0.0

    def _failed(self, kind: tuple, detail: str) -> str:
        self.failures += 1
        self._attempt += 1
        if self._failing_since is None:
            self._failing_since = time.monotonic()
        self._failure_log.failed(
            kind,
            "nethical-otel: cannot deliver alerts to %s (%s); retrying with backoff, %d alert(s) waiting",
            self.shown_url,
            detail,
            self.pending,
        )
        return "retry"

    def _rejected(self, batch: list[tuple[tuple, _Update]], detail: str) -> None:
        self.failures += 1
        self.rejected += len(batch)
        self._settle(batch, forget_firing=True)
        new = [item for key, item in batch if key not in self._rejected_keys]
        for key, _ in batch:
            self._rejected_keys[key] = None
            self._rejected_keys.move_to_end(key)
        while len(self._rejected_keys) > self._max_pending:
            self._rejected_keys.popitem(last=False)
        if not new:  # these very alerts were refused before and said so then
            _log.debug("nethical-otel: %s rejected %d alert(s) again: %s", self.shown_url, len(batch), detail)
            return
        shown = "; ".join(_describe(item.labels) for item in new[:5])
        more = f" and {len(new) - 5} more" if len(new) > 5 else ""
        _log.error(
            "nethical-otel: cannot deliver alerts to %s: %d alert(s) refused (%s); "
            "dropped them, retrying cannot fix a payload the receiver refuses: %s%s",
            self.shown_url,
            len(batch),
            detail,
            shown,
            more,
        )

    def _probe(self, deadline: float | None) -> None:
        """Ask Alertmanager when it started: if after our last successful post, it restarted
        empty, so everything that fires goes again now. A probe that fails (Alertmanager
        down or restarting) sends everything that fires right away too: if that post fails
        as well, the usual retry and backoff take over."""
        assert self._probe_url is not None
        try:
            response = self._client.get(self._probe_url, timeout=self._timeout(deadline))
        except httpx.HTTPError:
            self._probe_failed()
            return
        code = response.status_code
        if (code >= 500 and code != 501) or code in _RETRYABLE:
            self._probe_failed()
            return
        try:
            started = _started_at(response.json()) if 200 <= code < 300 else None
        except ValueError:
            started = None
        if started is None:
            self._stop_probing(f"tells no start time (HTTP {code})")
            return
        self._probe_failures = 0
        if self._last_ok_post and started > self._last_ok_post and started != self._handled_start:
            self._handled_start = started
            self._resend_all = True
            _log.warning(
                "nethical-otel: %s restarted since the last delivery; sending its %d firing alert(s) again",
                self.shown_url,
                len(self._firing),
            )

    def _probe_failed(self) -> None:
        self._probe_failures += 1
        if self._probe_failures > 5:
            self._stop_probing("keeps failing while alerts go through")
        else:
            self._resend_all = True

    def _stop_probing(self, why: str) -> None:
        _log.info(
            "nethical-otel: %s %s; a restart of Alertmanager is noticed at the next resend only",
            redact_url(self._probe_url),
            why,
        )
        self._probe_url = None

    # -- shutdown and fork ---------------------------------------------------------------------

    def close(self, timeout_s: float = 5.0) -> None:
        """Try to deliver what is pending, then stop; returns within ``timeout_s``."""
        try:
            self._close(timeout_s)
        except Exception:
            _log.exception("nethical-otel: closing the alert sender for %s failed", self.shown_url)

    def _close(self, timeout_s: float) -> None:
        timeout_s = float(timeout_s)
        timeout_s = 5.0 if math.isnan(timeout_s) else min(max(timeout_s, 0.0), 300.0)
        deadline = time.monotonic() + timeout_s
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        self._wake.set()
        if self._sending.acquire(timeout=max(0.0, deadline - time.monotonic())):
            try:
                while deadline - time.monotonic() > 0.01:
                    outcome = self._flush(deadline)
                    if outcome == "idle" or (outcome == "ok" and not self.pending):
                        break
                    if outcome == "retry":
                        time.sleep(max(0.0, min(0.2, deadline - time.monotonic())))
            finally:
                self._sending.release()
        if self.pending:
            _log.warning(
                "nethical-otel: %d alert update(s) for %s not delivered at shutdown",
                self.pending,
                self.shown_url,
            )
        self._worker_closes = True  # still inside a post past the deadline: it closes the client
        if self._thread.ident is not None:
            self._thread.join(timeout=max(0.0, deadline - time.monotonic()))
        if not self._thread.is_alive():
            self._close_client()

    def _close_client(self) -> None:
        with contextlib.suppress(Exception):
            self._client.close()

    def _after_fork_in_child(self) -> None:
        _ABANDONED.append(self._client)  # its pooled connections are the parent's sockets
        self._client = self._make_client()
        self._fresh_state()
        if self._closed:
            self._stop.set()
        else:
            self._thread.start()


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


def _check_url(url: str, setting: str) -> None:
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise ConfigError(f"{setting} {redact_url(str(url))!r}: expected http:// or https://")
    try:
        httpx.URL(url)
    except (httpx.InvalidURL, ValueError, TypeError) as exc:
        raise ConfigError(f"{setting} {redact_url(url)!r}: not a valid URL ({redact_text(exc)})") from None


def _join(base: str, path: str) -> str:
    """``path`` under the base URL's own path; its query (if any) kept."""
    parts = urlsplit(base)
    return urlunsplit(parts._replace(path=parts.path.rstrip("/") + path))


def _check_token(token: str | None, what: str) -> None:
    if token and not (token.isascii() and token.isprintable() and " " not in token):
        raise ConfigError(f"{what} holds characters an HTTP header cannot carry (space, control, non-ASCII)")


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
        probe_interval_s: float = PROBE_INTERVAL_S,
    ) -> None:
        _check_url(url, "alertmanager_url")
        if has_userinfo(url) and (bearer_token or basic_auth):
            raise ConfigError(
                f"alertmanager_url {redact_url(url)!r} carries user:password@ and other credentials are "
                "set too (they would be replaced): give them once"
            )
        _check_token(bearer_token, "the alertmanager bearer token")
        super().__init__(
            _join(url, "/api/v2/alerts"),
            make_client=functools.partial(
                _client,
                timeout_s=timeout_s,
                basic_auth=basic_auth,
                bearer_token=bearer_token,
                ca_file=ca_file,
                insecure_skip_verify=insecure_skip_verify,
            ),
            timeout_s=timeout_s,
            resend_interval_s=resend_interval_s,
            max_pending=max_pending,
            probe_url=_join(url, "/api/v2/status"),
            probe_interval_s=probe_interval_s,
            what="alertmanager",
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
        _check_url(url, "webhook_url")
        if has_userinfo(url) and bearer_token:
            raise ConfigError(
                f"webhook_url {redact_url(url)!r} carries user:password@, which would replace the bearer "
                "token: give one of them"
            )
        _check_token(bearer_token, "the webhook bearer token")
        super().__init__(
            url,
            make_client=functools.partial(
                _client,
                timeout_s=timeout_s,
                basic_auth=None,
                bearer_token=bearer_token,
                ca_file=None,
                insecure_skip_verify=False,
            ),
            timeout_s=timeout_s,
            resend_interval_s=resend_interval_s,
            max_pending=max_pending,
            wrap=lambda alerts: {"receiver": "nethical-otel", "alerts": alerts},
            what="webhook",
        )
