"""Errors a user can cause. The CLI turns each into one line on stderr and a non-zero exit.

Also the two things every message about a URL or a failure needs: ``redact_url`` (the one
place that decides what of a URL is secret) and ``FailureLog`` (a background thread logs a
failure once per kind, not once per retry). Nothing here imports anything of ours.
"""

from __future__ import annotations

import contextlib
import logging
import re
from urllib.parse import urlsplit, urlunsplit


class NethicalOtelError(Exception):
    """Base of every error nethical-otel raises on purpose; the message says what to do."""


class ConfigError(NethicalOtelError):
    """A bad setting: unknown key, bad value, unreadable config file."""


# -- secrets in URLs ---------------------------------------------------------------------------

REDACTED = "***"
# Query / fragment parameter names that carry credentials (compared lower-case, "-" as "_").
_SECRET_PARAMS = frozenset(
    {
        "token", "access_token", "id_token", "refresh_token", "auth_token", "api_token", "apitoken",
        "api_key", "apikey", "key", "access_key", "secret_key", "private_key", "client_secret",
        "password", "passwd", "pwd", "pass", "secret", "signature", "sig", "auth", "authorization",
        "credential", "credentials", "session", "session_id", "sessionid", "jwt", "bearer",
        "x_amz_signature", "x_amz_credential", "x_amz_security_token", "x_goog_signature",
        "x_goog_credential", "code",
    }
)  # fmt: skip
_SECRET_WORDS = ("token", "secret", "passw", "signature", "credential", "apikey", "api_key", "auth")
_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://[^\s'\"<>`]+")
_USERINFO = re.compile(r"(//)[^/?#@\s]*@")


def _secret_param(name: str) -> bool:
    lowered = name.strip().lower().replace("-", "_")
    return (
        lowered in _SECRET_PARAMS
        or lowered.endswith(("_key", "_token", "_secret", "_sig", "_password"))
        or any(word in lowered for word in _SECRET_WORDS)
    )


def _redact_params(text: str) -> str:
    parts = []
    for part in text.split("&"):
        name, sep, value = part.partition("=")
        parts.append(f"{name}={REDACTED}" if sep and value and _secret_param(name) else part)
    return "&".join(parts)


def redact_url(url: str | None) -> str | None:
    """``url`` fit to print: userinfo and credential-looking query parameters become ``***``.

    ``http://user:pw@am:9093/x?token=abc&x=1`` -> ``http://***@am:9093/x?token=***&x=1``.
    Everything else is kept as written, so the URL still says where it points. Anything that
    does not parse as a URL has its ``//userinfo@`` part redacted all the same.
    """
    if not url:
        return url
    url = str(url)
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if "@" in netloc:
            netloc = f"{REDACTED}@{netloc.rpartition('@')[2]}"
        query = _redact_params(parts.query) if parts.query else parts.query
        fragment = _redact_params(parts.fragment) if "=" in parts.fragment else parts.fragment
        if (netloc, query, fragment) == (parts.netloc, parts.query, parts.fragment):
            return url
        return urlunsplit((parts.scheme, netloc, parts.path, query, fragment))
    except ValueError:  # e.g. an unclosed IPv6 bracket: still never show userinfo
        return _USERINFO.sub(rf"\1{REDACTED}@", url)


def redact_text(text: object) -> str:
    """``str(text)`` with every URL in it passed through ``redact_url`` (for exception texts)."""
    return _URL_IN_TEXT.sub(lambda m: redact_url(m.group(0)) or "", str(text))


def has_userinfo(url: str | None) -> bool:
    """True when ``url`` carries ``user[:password]@``."""
    if not url:
        return False
    try:
        return "@" in urlsplit(url).netloc
    except ValueError:
        return bool(_USERINFO.search(url))


def quiet_http_logging() -> None:
    """httpx and httpcore log every request at INFO / DEBUG with its full URL, secrets
    included: keep them at WARNING while our sinks, sources and agent run."""
    for name in ("httpx", "httpcore"):
        logger = logging.getLogger(name)
        if logger.getEffectiveLevel() < logging.WARNING:
            logger.setLevel(logging.WARNING)


# -- failures in background threads ----------------------------------------------------------


class FailureLog:
    """Logs a failure once per *kind* (a new kind logs again), and the recovery once.

    For background threads that retry: the first failure says what happened with its
    context, the hundredth identical one says nothing. ``ok()`` after failures logs that it
    works again. Never raises.
    """

    def __init__(self, logger: logging.Logger, what: str) -> None:
        self._log = logger
        self.what = what
        self.kind: object = None
        self.count = 0

    def failed(
        self, kind: object, message: str, *args: object, level: int = logging.WARNING, exc_info=None
    ) -> bool:
        """Record a failure; log it when its kind differs from the last one. True when logged."""
        self.count += 1
        if kind == self.kind:
            return False
        self.kind = kind
        with contextlib.suppress(Exception):  # a broken handler must not take the thread down
            self._log.log(level, message, *args, exc_info=exc_info)
        return True

    def ok(self, message: str | None = None, *args: object) -> bool:
        """Record a success; log ``message`` (default: "<what> works again") after failures."""
        if self.kind is None:
            return False
        failures, self.kind, self.count = self.count, None, 0
        with contextlib.suppress(Exception):
            if message is None:
                self._log.warning("nethical-otel: %s works again after %d failure(s)", self.what, failures)
            else:
                self._log.warning(message, *args)
        return True
