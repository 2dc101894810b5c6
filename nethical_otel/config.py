"""One typed settings object, read from keyword arguments, the environment, a YAML file.

Precedence: keyword arguments > environment > YAML file > defaults. Environment variables
are the standard ``OTEL_*`` ones where OpenTelemetry defines one, and ``NETHICAL_OTEL_<KEY>``
for every key (so a deployment can set anything without a file). An unknown YAML key or
``NETHICAL_OTEL_*`` variable, or a value that does not parse, is a ``ConfigError`` naming
the key and where it came from.

Each field's ``metadata`` carries its help text and its standard variable names; the
configuration reference in ``docs/`` is generated from it.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nethical_otel.errors import ConfigError, has_userinfo, redact_text, redact_url
from nethical_otel.names import DOCS_URL, RUNBOOK_BASE_URL

_log = logging.getLogger(__name__)

ENV_PREFIX = "NETHICAL_OTEL_"
CONFIG_FILE_ENV = "NETHICAL_OTEL_CONFIG"

SAMPLERS = (
    "always_on",
    "always_off",
    "traceidratio",
    "parentbased_always_on",
    "parentbased_always_off",
    "parentbased_traceidratio",
)
OTLP_PROTOCOLS = ("grpc", "http/protobuf")
HISTOGRAM_AGGREGATIONS = ("explicit_bucket_histogram", "base2_exponential_bucket_histogram")
PROMETHEUS_HISTOGRAMS = ("auto", "native", "classic")
EXEMPLAR_FILTERS = ("trace_based", "always_on", "always_off")


def _setting(default: Any, help: str, env: tuple[str, ...] = (), secret: bool = False) -> Any:
    metadata = {"help": help, "env": env, "secret": secret}
    if isinstance(default, dict):
        return field(default_factory=lambda: dict(default), metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass(frozen=True)
class Settings:
    """Everything nethical-otel can be told. See ``docs/configuration.md`` for the table."""

    service_name: str = _setting(
        "unknown_service",
        "Service name on every span and metric (resource `service.name`).",
        ("OTEL_SERVICE_NAME",),
    )
    resource_attributes: dict = _setting(
        {}, "Extra resource attributes, `key=value,key2=value2` in env.", ("OTEL_RESOURCE_ATTRIBUTES",)
    )
    sdk_disabled: bool = _setting(
        False, "Turn all telemetry off; instrumented functions run untouched.", ("OTEL_SDK_DISABLED",)
    )
    otlp_endpoint: str | None = _setting(
        None,
        "OTLP collector endpoint, e.g. http://127.0.0.1:4317; unset means no OTLP export unless an "
        "`*_exporter` setting names `otlp` (then the SDK's default, localhost:4317 or :4318).",
        ("OTEL_EXPORTER_OTLP_ENDPOINT",),
    )
    otlp_protocol: str = _setting(
        "grpc", f"OTLP transport: {' | '.join(OTLP_PROTOCOLS)}.", ("OTEL_EXPORTER_OTLP_PROTOCOL",)
    )
    otlp_headers: dict = _setting(
        {},
        "Headers sent with every OTLP export (`k=v,...`); secret, never logged.",
        ("OTEL_EXPORTER_OTLP_HEADERS",),
        secret=True,
    )
    otlp_timeout_s: float = _setting(
        10.0, "Timeout of one OTLP export, seconds (`OTEL_EXPORTER_OTLP_TIMEOUT` is milliseconds)."
    )
    traces_enabled: bool = _setting(True, "Create spans (metrics are recorded either way).")
    traces_exporter: str | None = _setting(
        None,
        "Span exporters, comma-separated: `otlp`, `console`, `none` or another installed "
        "`opentelemetry_traces_exporter`. Unset: OTLP when `otlp_endpoint` is set.",
        ("OTEL_TRACES_EXPORTER",),
    )
    metrics_exporter: str | None = _setting(
        None,
        "Metric exporters, comma-separated: `otlp`, `console`, `prometheus` (the `/metrics` endpoint, "
        "itself switched by `prometheus_enabled`), `none` or another installed "
        "`opentelemetry_metrics_exporter`. Unset: OTLP when `otlp_endpoint` is set.",
        ("OTEL_METRICS_EXPORTER",),
    )
    traces_sampler: str = _setting(
        "parentbased_always_on", f"Head sampler: {' | '.join(SAMPLERS)}.", ("OTEL_TRACES_SAMPLER",)
    )
    traces_sampler_arg: float = _setting(
        1.0, "Ratio for the `traceidratio` samplers, 0..1.", ("OTEL_TRACES_SAMPLER_ARG",)
    )
    metric_export_interval_ms: int = _setting(
        60_000, "How often metrics are pushed over OTLP, milliseconds.", ("OTEL_METRIC_EXPORT_INTERVAL",)
    )
    histogram_aggregation: str = _setting(
        "explicit_bucket_histogram",
        f"Histogram kind sent over OTLP: {' | '.join(HISTOGRAM_AGGREGATIONS)}.",
        ("OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION",),
    )
    exemplar_filter: str = _setting(
        "trace_based",
        "Which calls give the latency histogram exemplars (trace and span ids per bucket): "
        "`trace_based` (sampled calls), `always_on` (the same here: an unsampled call's trace is never "
        "exported, so its id would lead nowhere) or `always_off`.",
        ("OTEL_METRICS_EXEMPLAR_FILTER",),
    )
    prometheus_enabled: bool = _setting(True, "Serve a Prometheus `/metrics` endpoint.")
    prometheus_host: str = _setting(
        "127.0.0.1", "Address the `/metrics` endpoint binds to.", ("OTEL_EXPORTER_PROMETHEUS_HOST",)
    )
    prometheus_port: int = _setting(
        9464, "Port of the `/metrics` endpoint (0 picks a free one).", ("OTEL_EXPORTER_PROMETHEUS_PORT",)
    )
    bucket_min_s: float = _setting(
        0.0005, "Smallest explicit `le` bucket bound, seconds (rounded down to a power-of-2 step)."
    )
    bucket_max_s: float = _setting(
        60.0, "Largest explicit `le` bucket bound, seconds (rounded up to a power-of-2 step)."
    )
    buckets_per_octave: int = _setting(
        4, "Explicit `le` buckets per doubling of latency: 4 = bounds 19 % apart (1, 2, 4 or 8)."
    )
    histogram_scale: int = _setting(
        6, "Scale of the in-process exponential histogram: 6 = buckets 1.09 % wide, quantiles inside them."
    )
    instrument_targets: str = _setting(
        "nethical.core:IntegratedGovernance.process_action",
        "What `NethicalInstrumentor` wraps: comma-separated `module:Class.method`; the ones not found are "
        "named in one WARNING and skipped.",
    )
    max_attribute_values: int = _setting(
        100, "Distinct values kept per metric attribute (action, cohort); more fold into `other`."
    )
    substeps_enabled: bool = _setting(
        True,
        "Record a call made inside another instrumented call as its sub-step (`nethical.action.parent`), "
        "so alerts and the PR comment say which sub-step a slowdown is in. Costs a context-variable set "
        "and reset per call (about 0.25 us); off, nested calls are series of their own action.",
    )
    max_series: int = _setting(
        2000,
        "Latency series kept per pipeline (the OpenTelemetry SDK's cardinality limit); calls of "
        "further series are recorded in one series marked `otel.metric.overflow=true`.",
    )

    # -- regression detector (embedded thread or `nethical-otel agent`) --------------------
    detector_enabled: bool = _setting(
        False, "Run the regression detector inside the service (embedded mode)."
    )
    detector_window_s: float = _setting(60.0, "Rolling window the live quantiles are computed over, seconds.")
    detector_step_s: float = _setting(10.0, "Seconds between evaluations.")
    detector_for_s: float = _setting(30.0, "A regression must hold this long before its alert fires (`for`).")
    detector_keep_firing_for_s: float = _setting(
        60.0, "A firing alert resolves after its condition has been false this long."
    )
    detector_learn: bool = _setting(
        True,
        "Learn a baseline for a series that has none, and keep it rolling: the merge of its newest "
        "clean windows over `detector_baseline_s` (off: baselines never change).",
    )
    detector_baseline_s: float = _setting(
        3600.0,
        "Window time a learned baseline covers, seconds; windows during a pending or firing alert "
        "of the series are left out. Detection starts once the first windows hold `min_samples` calls.",
    )
    baseline_file: str | None = _setting(
        None, "Baseline file (JSON) to compare against; learned ones are added."
    )
    policy: dict[str, Any] = _setting(
        {},
        "Thresholds: YAML mapping (or JSON in env) with `quantiles`, `error_rate`, `throughput`, "
        "`confidence`, `min_samples` and per-series `overrides`; see " + DOCS_URL + "/detector.md. The same "
        "mapping (or this whole file) is what `nethical-otel compare --policy` reads, and the "
        "default is what `deploy/prometheus/generate.py` and `dashboards/generate.py` turn into "
        "rules and dashboard lines.",
    )
    prometheus_url: str | None = _setting(
        None, "Fleet mode: Prometheus base URL the agent reads fleet-wide histograms from."
    )
    prometheus_service_label: str = _setting(
        "job", "Label that names the service in Prometheus (`job` when fed by the Collector)."
    )
    prometheus_histograms: str = _setting(
        "auto",
        "How the latency histogram is stored in Prometheus: `native` (Prometheus 3, fed over OTLP: "
        "exact buckets, one query per step), `classic` (`le` buckets, Prometheus 2.x) or `auto` "
        "(native when Prometheus has it, else classic).",
    )
    agent_shard: str = _setting(
        "",
        "`i/N`: this agent is replica i of N and evaluates only the series whose hash (as Prometheus' "
        "`hashmod` over service, action, cohort) modulo N is i. Empty: all series.",
    )
    alertmanager_url: str | None = _setting(None, "Alertmanager base URL; alerts go to the log without it.")
    alertmanager_username: str | None = _setting(None, "Basic-auth user for Alertmanager.")
    alertmanager_password: str | None = _setting(None, "Basic-auth password (secret).", secret=True)
    alertmanager_password_file: str | None = _setting(None, "File holding the basic-auth password.")
    alertmanager_bearer_token: str | None = _setting(
        None, "Bearer token for Alertmanager (secret).", secret=True
    )
    alertmanager_bearer_token_file: str | None = _setting(None, "File holding the bearer token.")
    alertmanager_ca_file: str | None = _setting(None, "CA bundle to verify Alertmanager's TLS certificate.")
    alertmanager_insecure_skip_verify: bool = _setting(False, "Do not verify Alertmanager's certificate.")
    alert_resend_interval_s: float = _setting(
        60.0, "Firing alerts are resent this often, with endsAt = now + 4 x this."
    )
    webhook_url: str | None = _setting(None, "Also POST alerts as JSON to this URL.")
    runbook_base_url: str | None = _setting(
        RUNBOOK_BASE_URL,
        "Base URL of the `runbook_url` annotation (`/<alertname>.md` is appended): the same on "
        "the agent's alerts and the generated Prometheus rules. Empty: no `runbook_url`.",
    )
    dashboard_url: str | None = _setting(None, "Grafana dashboard URL put on alerts (`dashboard_url`).")
    trace_url_template: str | None = _setting(
        None,
        "Link to a trace in your tracing UI, with `{trace_id}` where the id goes (e.g. "
        "`http://127.0.0.1:16686/trace/{trace_id}` for Jaeger): latency alerts carry it as `trace_url`, "
        "for the slowest exemplar of the window.",
    )
    agent_host: str = _setting("127.0.0.1", "Address the agent's /metrics and /healthz bind to.")
    agent_port: int = _setting(9465, "Port of the agent's /metrics and /healthz (0 picks a free one).")

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            message = _problem(f.name, getattr(self, f.name))
            if message:
                raise ConfigError(f"setting {f.name!r}: {message} (got {_shown(f, getattr(self, f.name))})")
        for name, _, message in _pair_problems(lambda n: getattr(self, n)):
            raise ConfigError(f"settings: {name} {message}")

    def __repr__(self) -> str:
        return f"Settings({', '.join(f'{name}={value!r}' for name, value in self.display_items())})"

    def display_items(self) -> list[tuple[str, Any]]:
        """``(name, value)`` of every setting, fit to print: secrets are ``<redacted>`` and
        URLs lose their userinfo and credential-looking query parameters (``redact_url``)."""
        shown = []
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.metadata["secret"] and value:
                value = "<redacted>"
            elif isinstance(value, str) and "://" in value:
                value = redact_url(value)
            shown.append((f.name, value))
        return shown

    def to_yaml(self) -> str:
        """These settings as a YAML config file that ``--config`` reads back to the same values.

        The policy is spelled out in full (the effective default policy, plus the overrides as
        given), so the file shows every threshold in effect. Secrets are left out (a comment
        says which are set) and URLs lose their credentials, as in ``display_items``.
        """
        import yaml

        from nethical_otel.stats.policy import PolicyBook

        data: dict[str, Any] = {}
        notes: list[str] = []
        for name, value in self.display_items():
            if value == "<redacted>":
                notes.append(f"# {name}: set, not shown (a secret)")
            elif value != getattr(self, name):  # a URL that carries credentials
                notes.append(f"# {name}: {value} (credentials not shown)")
            elif name == "policy":
                overrides = (self.policy or {}).get("overrides")
                value = PolicyBook.from_mapping(self.policy).default.to_mapping()
                if overrides:
                    value["overrides"] = overrides
                data[name] = value
            else:
                data[name] = value
        text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True, default_flow_style=False)
        header = "# nethical-otel settings in effect (defaults < file < environment); a valid --config file\n"
        return header + "\n".join([*notes, text]) if notes else header + text

    @property
    def sampling_ratio(self) -> float:
        """Probability that a new trace is sampled, for the ratio samplers and always_on/off."""
        if self.traces_sampler.endswith("always_on"):
            return 1.0
        if self.traces_sampler.endswith("always_off"):
            return 0.0
        return self.traces_sampler_arg

    @property
    def parent_based(self) -> bool:
        return self.traces_sampler.startswith("parentbased_")


_SHARD = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")


def parse_shard(spec: str | None) -> tuple[int, int]:
    """``"i/N"`` as ``(i, N)``; empty is ``(0, 1)``, the whole. ``ValueError`` saying what is wrong."""
    if not spec:
        return 0, 1
    match = _SHARD.match(spec)
    if not match:
        raise ValueError("must be i/N, e.g. 0/2")
    index, count = int(match[1]), int(match[2])
    if not 0 <= index < count:
        raise ValueError(f"must be i/N with 0 <= i < N (there is no shard {index} of {count})")
    return index, count


def _shard_problem(value: str) -> str | None:
    try:
        parse_shard(value)
    except ValueError as exc:
        return str(exc)
    return None


def _one_of(choices: tuple[str, ...]) -> Callable[[Any], str | None]:
    return lambda v: None if v in choices else f"must be one of {', '.join(choices)}"


_URL = "must be an http:// or https:// URL"

_CHECKS: dict[str, Callable[[Any], str | None]] = {
    "otlp_protocol": _one_of(OTLP_PROTOCOLS),
    "traces_sampler": _one_of(SAMPLERS),
    "histogram_aggregation": _one_of(HISTOGRAM_AGGREGATIONS),
    "prometheus_histograms": _one_of(PROMETHEUS_HISTOGRAMS),
    "agent_shard": _shard_problem,
    "traces_sampler_arg": lambda v: None if 0.0 <= v <= 1.0 else "must be within 0..1",
    "metric_export_interval_ms": lambda v: None if v > 0 else "must be > 0",
    "otlp_timeout_s": lambda v: None if v > 0 else "must be > 0",
    "prometheus_port": lambda v: None if 0 <= v <= 65535 else "must be a port number 0..65535",
    "bucket_min_s": lambda v: None if v > 0 else "must be > 0",
    "bucket_max_s": lambda v: None if v > 0 else "must be > 0",
    "buckets_per_octave": lambda v: None if v in (1, 2, 4, 8) else "must be 1, 2, 4 or 8",
    "histogram_scale": lambda v: None if 3 <= v <= 10 else "must be within 3..10",
    "max_attribute_values": lambda v: None if v >= 1 else "must be >= 1",
    "max_series": lambda v: None if v >= 2 else "must be >= 2",
    "detector_window_s": lambda v: None if v > 0 else "must be > 0",
    "detector_step_s": lambda v: None if v > 0 else "must be > 0",
    "detector_for_s": lambda v: None if v >= 0 else "must be >= 0",
    "detector_keep_firing_for_s": lambda v: None if v >= 0 else "must be >= 0",
    "detector_baseline_s": lambda v: None if v > 0 else "must be > 0",
    "alert_resend_interval_s": lambda v: None if v > 0 else "must be > 0",
    "agent_port": lambda v: None if 0 <= v <= 65535 else "must be a port number 0..65535",
    "alertmanager_url": lambda v: None if v is None or v.startswith(("http://", "https://")) else _URL,
    "webhook_url": lambda v: None if v is None or v.startswith(("http://", "https://")) else _URL,
    "prometheus_url": lambda v: None if v is None or v.startswith(("http://", "https://")) else _URL,
    # A relative base made links nobody could click: absolute or none at all.
    "runbook_base_url": lambda v: None if v is None or v.startswith(("http://", "https://")) else _URL,
    "dashboard_url": lambda v: None if v is None or v.startswith(("http://", "https://")) else _URL,
    "trace_url_template": lambda v: (
        None
        if v is None or (v.startswith(("http://", "https://")) and "{trace_id}" in v)
        else "must be an http:// or https:// URL with {trace_id} in it"
    ),
    "exemplar_filter": _one_of(EXEMPLAR_FILTERS),
}

# The most `le` buckets the bucket settings may make (the defaults make 69): every one is a
# series per histogram on every scrape.
MAX_LE_BUCKETS = 512


def _problem(name: str, value: Any) -> str | None:
    """What is wrong with one setting's value on its own, or None."""
    if isinstance(value, float) and not math.isfinite(value):
        return "must be a finite number"
    check = _CHECKS.get(name)
    return check(value) if check else None


def _shown(f: dataclasses.Field, value: Any) -> str:
    """A value as an error message may show it: secrets never, URLs redacted."""
    return "<redacted>" if f.metadata["secret"] else redact_text(repr(value))


def _le_buckets(min_s: float, max_s: float, per_octave: int) -> int:
    return math.ceil(math.log2(max_s) * per_octave) - math.floor(math.log2(min_s) * per_octave) + 1


def _pair_problems(get: Callable[[str], Any]) -> list[tuple[str, str, str]]:
    """Settings that are fine alone but not together: ``(setting, other setting, message)``."""
    found = []
    lo, hi, per_octave = get("bucket_min_s"), get("bucket_max_s"), get("buckets_per_octave")
    if lo >= hi:
        found.append(("bucket_min_s", "bucket_max_s", f"must be below bucket_max_s ({hi!r}), got {lo!r}"))
    elif _le_buckets(lo, hi, per_octave) > MAX_LE_BUCKETS:
        found.append(
            (
                "bucket_max_s",
                "bucket_min_s",
                f"bucket_min_s..bucket_max_s ({lo!r}..{hi!r} s) at {per_octave} per octave makes "
                f"{_le_buckets(lo, hi, per_octave)} `le` buckets, more than {MAX_LE_BUCKETS}: "
                "narrow the range or lower buckets_per_octave",
            )
        )
    step, window = get("detector_step_s"), get("detector_window_s")
    if step > window:
        found.append(
            (
                "detector_step_s",
                "detector_window_s",
                f"must not exceed detector_window_s ({window!r}), got {step!r}: "
                "calls between two windows would never be looked at",
            )
        )
    baseline_s = get("detector_baseline_s")
    if baseline_s < window:
        found.append(
            (
                "detector_baseline_s",
                "detector_window_s",
                f"must be at least detector_window_s ({window!r}), got {baseline_s!r}: "
                "a learned baseline is made of whole windows",
            )
        )
    password = get("alertmanager_password") or get("alertmanager_password_file")
    token = get("alertmanager_bearer_token") or get("alertmanager_bearer_token_file")
    username, url = get("alertmanager_username"), get("alertmanager_url")
    for value, file in (("alertmanager_password", "alertmanager_password_file"),
                        ("alertmanager_bearer_token", "alertmanager_bearer_token_file")):  # fmt: skip
        if get(value) and get(file):
            found.append((file, value, f"set only one of {value} and {file}"))
    if password and not username:
        found.append(
            ("alertmanager_password", "alertmanager_username", "is set but alertmanager_username is not")
        )
    if username and token:
        found.append(
            (
                "alertmanager_bearer_token",
                "alertmanager_username",
                "and alertmanager_username are both set: Alertmanager takes basic auth or a bearer "
                "token, not both",
            )
        )
    if has_userinfo(url) and token:
        found.append(
            (
                "alertmanager_url",
                "alertmanager_bearer_token",
                f"{redact_url(url)} carries user:password@, which would replace the bearer token: "
                "give one of them (basic auth goes in alertmanager_username / alertmanager_password)",
            )
        )
    elif has_userinfo(url) and username:
        found.append(
            (
                "alertmanager_url",
                "alertmanager_username",
                f"{redact_url(url)} carries user:password@ and alertmanager_username is set too: "
                "give the credentials once",
            )
        )
    return found


# -- standard OTEL_* variables the OpenTelemetry SDK reads itself ------------------------------
# The SDK raises (or logs a traceback) deep inside setup, or at import, on values it does not
# know. Checked here so a bad one is our one-line error naming the variable.

_SPAN_LIMITS = (
    "OTEL_ATTRIBUTE_COUNT_LIMIT",
    "OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT",
    "OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT",
    "OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT",
    "OTEL_EVENT_ATTRIBUTE_COUNT_LIMIT",
    "OTEL_LINK_ATTRIBUTE_COUNT_LIMIT",
    "OTEL_SPAN_EVENT_COUNT_LIMIT",
    "OTEL_SPAN_LINK_COUNT_LIMIT",
)
_BATCH_SPAN_PROCESSOR = (
    "OTEL_BSP_SCHEDULE_DELAY",
    "OTEL_BSP_EXPORT_TIMEOUT",
    "OTEL_BSP_MAX_QUEUE_SIZE",
    "OTEL_BSP_MAX_EXPORT_BATCH_SIZE",
)
_COMPRESSION = (
    "OTEL_EXPORTER_OTLP_COMPRESSION",
    "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION",
    "OTEL_EXPORTER_OTLP_METRICS_COMPRESSION",
)
_INTEGER = re.compile(r"\s*\+?\d+\s*")


def _installed_propagators() -> list[str]:
    from importlib.metadata import entry_points

    return sorted({ep.name for ep in entry_points(group="opentelemetry_propagator")})


def _check_otel_environment(environ: Mapping[str, str], settings: Settings) -> None:
    """ConfigError for an ``OTEL_*`` value the SDK would choke on (it reads these itself)."""

    def bad(var: str, message: str) -> ConfigError:
        return ConfigError(f"{var}: {message} (got {redact_text(repr(environ[var]))})")

    if environ.get("OTEL_PROPAGATORS"):
        names = [name.strip() for name in environ["OTEL_PROPAGATORS"].split(",")]
        if not any(name.lower() == "none" for name in names):
            installed = _installed_propagators()
            for name in names:
                if name not in installed:
                    what = f"unknown propagator {name!r}" if name else "an empty propagator name"
                    raise bad("OTEL_PROPAGATORS", f"{what}; installed: {', '.join(installed)}, or none")
    if environ.get("OTEL_PYTHON_CONTEXT"):
        from importlib.metadata import entry_points

        contexts = sorted({ep.name for ep in entry_points(group="opentelemetry_context")})
        if environ["OTEL_PYTHON_CONTEXT"] not in contexts:
            raise bad("OTEL_PYTHON_CONTEXT", f"unknown context; installed: {', '.join(contexts)}")
    grpc = settings.otlp_endpoint and settings.otlp_protocol == "grpc"
    for var in _COMPRESSION:
        if var not in environ:
            continue
        value = environ[var].strip().lower()
        if grpc and value != "gzip":
            raise bad(var, "the grpc OTLP exporter takes only gzip (unset it for no compression)")
        if value not in ("gzip", "deflate", "none", ""):
            raise bad(var, "must be gzip, deflate or none")
    for var in _SPAN_LIMITS:
        value = environ.get(var)
        if value is not None and value.strip().lower() != "unset" and not _INTEGER.fullmatch(value):
            raise bad(var, "must be a non-negative integer or unset")
    for var in _BATCH_SPAN_PROCESSOR:
        value = environ.get(var)
        zero_ok = var == "OTEL_BSP_EXPORT_TIMEOUT"
        if value is not None and (not _INTEGER.fullmatch(value) or (int(value) == 0 and not zero_ok)):
            raise bad(var, "must be a non-negative integer" if zero_ok else "must be a positive integer")
    batch, queue = environ.get("OTEL_BSP_MAX_EXPORT_BATCH_SIZE"), environ.get("OTEL_BSP_MAX_QUEUE_SIZE")
    if batch is not None and queue is not None and int(batch) > int(queue):
        raise bad("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "must not exceed OTEL_BSP_MAX_QUEUE_SIZE")
    if "OTEL_METRIC_EXPORT_TIMEOUT" in environ:
        try:
            timeout = float(environ["OTEL_METRIC_EXPORT_TIMEOUT"])
        except ValueError:
            timeout = math.nan
        if not (math.isfinite(timeout) and timeout > 0):
            raise bad("OTEL_METRIC_EXPORT_TIMEOUT", "must be a positive number of milliseconds")


# -- parsing ---------------------------------------------------------------------------------


def _parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ValueError("expected true or false")


def _parse_mapping(text: str) -> dict[str, str]:
    """``k=v,k2=v2`` as the OTel spec has it (values may be percent-encoded)."""
    from urllib.parse import unquote

    out = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError("expected key=value pairs separated by commas")
        out[unquote(key.strip())] = unquote(value.strip())
    return out


def _field_type(f: dataclasses.Field) -> str:
    return str(f.type).replace(" ", "")


def _coerce(f: dataclasses.Field, value: Any) -> Any:
    """Turn an env string or a YAML value into the field's type, or raise ValueError."""
    kind = _field_type(f)
    if kind == "dict[str,Any]":  # nested YAML, or YAML/JSON text from the environment
        if isinstance(value, str):
            import yaml  # only when there is YAML to read: not on `import nethical_otel`

            try:
                value = yaml.safe_load(value) if value.strip() else {}
            except yaml.YAMLError:
                raise ValueError("expected a YAML or JSON mapping") from None
        if not isinstance(value, Mapping):
            raise ValueError("expected a mapping")
        return dict(value)
    if kind == "dict":
        if isinstance(value, Mapping):
            return {str(k): str(v) for k, v in value.items()}
        if isinstance(value, str):
            return _parse_mapping(value)
        raise ValueError("expected a mapping")
    if kind == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, str):
            return _parse_bool(value)
        raise ValueError("expected true or false")
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise ValueError("expected an integer")
        try:
            return int(value)
        except ValueError:
            raise ValueError("expected an integer") from None
    if kind == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise ValueError("expected a number")
        try:
            return float(value)
        except ValueError:
            raise ValueError("expected a number") from None
    if kind == "str|None":
        return None if value in (None, "") else str(value)
    if not isinstance(value, str):
        raise ValueError("expected a string")
    return value


def unknown_variables(environ: Mapping[str, str]) -> list[str]:
    """The ``NETHICAL_OTEL_*`` variables in ``environ`` that name no setting (typos), sorted."""
    known = {ENV_PREFIX + f.name.upper() for f in dataclasses.fields(Settings)} | {CONFIG_FILE_ENV}
    return sorted(k for k in environ if k.startswith(ENV_PREFIX) and k not in known)


def unknown_variable_message(name: str) -> str:
    """What to say about an unknown variable: its name, the setting it was probably meant to be."""
    import difflib

    known = [ENV_PREFIX + f.name.upper() for f in dataclasses.fields(Settings)]
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.75)
    hint = f"; did you mean {close[0]}?" if close else ""
    return f"unknown environment variable {name}{hint} (see {DOCS_URL}/configuration.md)"


def _from_env(environ: Mapping[str, str], unknown: str = "error") -> dict[str, tuple[Any, str]]:
    """Values set in the environment, with the variable that set each."""
    fields = {f.name: f for f in dataclasses.fields(Settings)}
    names = unknown_variables(environ)
    if names and unknown == "error":
        raise ConfigError(unknown_variable_message(names[0]))
    for name in names:
        _log.warning("nethical-otel: %s; it is ignored", unknown_variable_message(name))
    found: dict[str, tuple[Any, str]] = {}
    for name, f in fields.items():
        # Our own variable wins over the standard one: it is the more specific request.
        for var in (ENV_PREFIX + name.upper(), *f.metadata["env"]):
            if var in environ:
                found[name] = (environ[var], var)
                break
    if "otlp_timeout_s" not in found and "OTEL_EXPORTER_OTLP_TIMEOUT" in environ:
        raw = environ["OTEL_EXPORTER_OTLP_TIMEOUT"]
        try:
            found["otlp_timeout_s"] = (float(raw) / 1000.0, "OTEL_EXPORTER_OTLP_TIMEOUT")
        except ValueError:
            raise ConfigError(f"OTEL_EXPORTER_OTLP_TIMEOUT: expected milliseconds, got {raw!r}") from None
    return found


def _from_file(path: Path) -> dict[str, tuple[Any, str]]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"config file {path} is not UTF-8 text (byte {exc.start}): is it the right file?"
        ) from None
    import yaml  # only when there is YAML to read: not on `import nethical_otel`

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(f"config file {path}{where} is not valid YAML") from None
    except RecursionError:
        raise ConfigError(f"config file {path} nests too deeply to be a settings file") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must be a mapping of settings")
    names = {f.name for f in dataclasses.fields(Settings)}
    for key in data:
        if key not in names:
            raise ConfigError(f"config file {path}: unknown key {key!r} (see {DOCS_URL}/configuration.md)")
    return {key: (value, f"{path}: {key}") for key, value in data.items()}


def load_settings(
    config_file: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
    *,
    unknown: str = "error",
    **overrides: Any,
) -> Settings:
    """Settings from defaults < YAML file < environment < ``overrides``.

    The YAML file is ``config_file`` or else ``$NETHICAL_OTEL_CONFIG`` when set. An unknown
    ``NETHICAL_OTEL_*`` variable (a typo) is an error, or with ``unknown="warn"`` a WARNING
    log line and otherwise ignored: inside a service telemetry must not stop it starting.
    """
    environ = os.environ if environ is None else environ
    fields = {f.name: f for f in dataclasses.fields(Settings)}
    for key in overrides:
        if key not in fields:
            raise ConfigError(f"unknown setting {key!r} (see {DOCS_URL}/configuration.md)")
    path = config_file if config_file is not None else environ.get(CONFIG_FILE_ENV)
    layered: dict[str, tuple[Any, str]] = {}
    if path:
        layered.update(_from_file(Path(path)))
    layered.update(_from_env(environ, unknown))
    values: dict[str, Any] = {}
    for name, (raw, source) in layered.items():
        shown = _shown(fields[name], raw)
        if isinstance(raw, str) and _SURROGATE.search(raw):
            raise ConfigError(f"{source}: not valid UTF-8 (undecodable bytes in the value)")
        try:
            values[name] = _coerce(fields[name], raw)
        except ValueError as exc:
            raise ConfigError(f"{source}: {exc} (got {shown})") from None
        problem = _problem(name, values[name])
        if problem:
            raise ConfigError(f"{source}: {problem} (got {shown})")
    for name, value in overrides.items():
        problem = _problem(name, value)
        if problem:
            raise ConfigError(f"setting {name!r}: {problem} (got {_shown(fields[name], value)})")
    values.update(overrides)
    sources = {name: source for name, (_, source) in layered.items()}
    sources.update((name, f"setting {name!r}") for name in overrides)
    defaults = Settings.__dataclass_fields__

    def get(name: str) -> Any:
        if name in values:
            return values[name]
        f = defaults[name]
        return f.default_factory() if f.default is dataclasses.MISSING else f.default

    for name, other, message in _pair_problems(get):
        # Named after the variable / key that set it (or the one it clashes with).
        raise ConfigError(f"{sources.get(name) or sources.get(other) or 'settings'}: {name} {message}")
    settings = Settings(**values)
    _check_otel_environment(environ, settings)
    return settings


_SURROGATE = re.compile("[\ud800-\udfff]")


def reference_markdown() -> str:
    """The configuration reference (docs/configuration.md), generated from ``Settings``."""
    lines = [
        "# Configuration reference",
        "",
        "Generated from `nethical_otel/config.py` by `nethical-otel config reference`; a test fails",
        "when it is stale.",
        "",
        "Precedence: keyword arguments to `nethical_otel.setup()` > environment > YAML file",
        f"(`--config` or `{CONFIG_FILE_ENV}`) > defaults. Every key can be set as",
        f"`{ENV_PREFIX}<KEY>`; where OpenTelemetry defines a standard variable, it works too",
        "(ours wins when both are set). Secrets are never logged or shown.",
        "",
        "| YAML key | environment | default | meaning |",
        "|---|---|---|---|",
    ]
    for f in dataclasses.fields(Settings):
        env = [f"`{ENV_PREFIX}{f.name.upper()}`", *(f"`{name}`" for name in f.metadata["env"])]
        if f.name == "otlp_timeout_s":
            env.append("`OTEL_EXPORTER_OTLP_TIMEOUT` (ms)")
        default = f.default_factory() if f.default is dataclasses.MISSING else f.default
        shown = "(none)" if default in (None, {}, "") else f"`{default}`"
        help_text = f.metadata["help"].replace("|", "\\|")
        lines.append(f"| `{f.name}` | {'<br>'.join(env)} | {shown} | {help_text} |")
    return "\n".join(lines) + "\n"
