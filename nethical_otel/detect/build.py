"""A detector from ``Settings``: baselines, policy, sinks. Shared by embedded mode and the agent."""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path

from nethical_otel.config import Settings
from nethical_otel.detect.alerts import Timing
from nethical_otel.detect.baseline import Baseline, BaselineSet
from nethical_otel.detect.detector import Detector, PolicyBook
from nethical_otel.detect.sinks import AlertmanagerSink, LogSink, Sink, WebhookSink, read_secret
from nethical_otel.detect.sources import Source
from nethical_otel.errors import ConfigError
from nethical_otel.stats import StatsError
from nethical_otel.stats.significance import load_scipy

_log = logging.getLogger(__name__)


def check_settings(settings: Settings) -> PolicyBook:
    """What ``load_settings`` cannot check alone: the policy (with its overrides) and the
    secret files. Raises ``ConfigError`` naming the key or file; prints no secret."""
    try:
        policies = PolicyBook.from_mapping(settings.policy)
    except StatsError as exc:
        raise ConfigError(str(exc)) from None
    read_secret(None, settings.alertmanager_password_file, "alertmanager password")
    read_secret(None, settings.alertmanager_bearer_token_file, "alertmanager token")
    return policies


def build_sinks(settings: Settings) -> list[Sink]:
    """The log always; Alertmanager and a webhook when configured."""
    sinks: list[Sink] = [LogSink()]
    if settings.alertmanager_url:
        password = read_secret(
            settings.alertmanager_password, settings.alertmanager_password_file, "alertmanager password"
        )
        token = read_secret(
            settings.alertmanager_bearer_token, settings.alertmanager_bearer_token_file, "alertmanager token"
        )
        basic_auth = (
            (settings.alertmanager_username, password or "") if settings.alertmanager_username else None
        )
        sinks.append(
            AlertmanagerSink(
                settings.alertmanager_url,
                resend_interval_s=settings.alert_resend_interval_s,
                basic_auth=basic_auth,
                bearer_token=token,
                ca_file=settings.alertmanager_ca_file,
                insecure_skip_verify=settings.alertmanager_insecure_skip_verify,
            )
        )
    if settings.webhook_url:
        sinks.append(WebhookSink(settings.webhook_url, resend_interval_s=settings.alert_resend_interval_s))
    return sinks


def load_baselines(settings: Settings) -> BaselineSet:
    """The configured baseline file, or an empty set when there is none yet."""
    if settings.baseline_file and Path(settings.baseline_file).exists():
        return BaselineSet.load(settings.baseline_file)
    if settings.baseline_file:
        _log.info(
            "nethical-otel: no baseline file at %s yet; learned baselines go there", settings.baseline_file
        )
    return BaselineSet()


# A learned baseline grows every window; the file gets the grown ones at most this often.
REFRESH_SAVE_INTERVAL_S = 300.0


def build_detector(settings: Settings, source: Source) -> Detector:
    load_scipy()  # now, before the service's traffic is being judged (see stats/significance.py)
    baselines = load_baselines(settings)
    saved_at = [-math.inf]

    def persist(_: Baseline) -> None:
        # Learned baselines survive a restart (and go on rolling from there); the write is atomic.
        if settings.baseline_file:
            saved_at[0] = time.monotonic()
            baselines.save(settings.baseline_file, overwrite=True)

    def persist_refreshed(baseline: Baseline) -> None:
        if time.monotonic() - saved_at[0] >= REFRESH_SAVE_INTERVAL_S:
            persist(baseline)

    policies = check_settings(settings)
    return Detector(
        source,
        baselines,
        policies,
        build_sinks(settings),
        timing=Timing(for_s=settings.detector_for_s, keep_firing_for_s=settings.detector_keep_firing_for_s),
        learn=settings.detector_learn,
        runbook_base_url=settings.runbook_base_url,
        dashboard_url=settings.dashboard_url,
        trace_url_template=settings.trace_url_template,
        on_learn=persist,
        on_refresh=persist_refreshed,
        baseline_s=settings.detector_baseline_s,
    )
