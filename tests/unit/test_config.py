"""Settings: precedence, env conventions, clear errors that name the key."""

from __future__ import annotations

import pytest

from nethical_otel import ConfigError, load_settings


def write(tmp_path, text):
    path = tmp_path / "nethical-otel.yaml"
    path.write_text(text)
    return path


def test_defaults():
    s = load_settings(environ={})
    assert (s.prometheus_host, s.prometheus_port, s.otlp_endpoint) == ("127.0.0.1", 9464, None)
    assert s.traces_sampler == "parentbased_always_on" and s.sampling_ratio == 1.0


def test_precedence_kwargs_over_env_over_file_over_defaults(tmp_path):
    path = write(tmp_path, "service_name: from-file\nprometheus_port: 9100\nbuckets_per_octave: 2\n")
    env = {"OTEL_SERVICE_NAME": "from-env", "NETHICAL_OTEL_PROMETHEUS_PORT": "9200"}
    s = load_settings(path, environ=env, prometheus_port=9300)
    assert s.service_name == "from-env"
    assert s.prometheus_port == 9300
    assert s.buckets_per_octave == 2
    assert s.histogram_scale == 6


def test_config_file_from_env_variable(tmp_path):
    path = write(tmp_path, "service_name: governance\n")
    assert load_settings(environ={"NETHICAL_OTEL_CONFIG": str(path)}).service_name == "governance"


def test_standard_otel_variables():
    s = load_settings(
        environ={
            "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=prod,team=gov%20ops",
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4317",
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
            "OTEL_TRACES_SAMPLER_ARG": "0.25",
            "OTEL_METRIC_EXPORT_INTERVAL": "5000",
            "OTEL_EXPORTER_OTLP_TIMEOUT": "2500",
            "OTEL_SDK_DISABLED": "true",
        }
    )
    assert s.resource_attributes == {"deployment.environment": "prod", "team": "gov ops"}
    assert (s.otlp_endpoint, s.otlp_protocol) == ("http://127.0.0.1:4317", "http/protobuf")
    assert s.sampling_ratio == 0.25 and s.parent_based
    assert s.metric_export_interval_ms == 5000 and s.otlp_timeout_s == 2.5 and s.sdk_disabled


def test_our_variable_wins_over_the_standard_one():
    env = {"OTEL_EXPORTER_PROMETHEUS_PORT": "9000", "NETHICAL_OTEL_PROMETHEUS_PORT": "9001"}
    assert load_settings(environ=env).prometheus_port == 9001


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"NETHICAL_OTEL_PROMETHEUS_PORT": "abc"}, "NETHICAL_OTEL_PROMETHEUS_PORT: expected an integer"),
        ({"NETHICAL_OTEL_PROMETHEUS_PORT": "70000"}, "NETHICAL_OTEL_PROMETHEUS_PORT: must be a port"),
        ({"OTEL_TRACES_SAMPLER": "sometimes"}, "OTEL_TRACES_SAMPLER: must be one of"),
        ({"OTEL_TRACES_SAMPLER_ARG": "1.5"}, "OTEL_TRACES_SAMPLER_ARG: must be within 0..1"),
        ({"OTEL_SDK_DISABLED": "maybe"}, "OTEL_SDK_DISABLED: expected true or false"),
        (
            {"NETHICAL_OTEL_PROMETHEUS_PROT": "1"},
            "unknown environment variable NETHICAL_OTEL_PROMETHEUS_PROT",
        ),
    ],
)
def test_bad_environment_names_the_variable(env, message):
    with pytest.raises(ConfigError, match=message):
        load_settings(environ=env)


def test_unknown_yaml_key_names_file_and_key(tmp_path):
    path = write(tmp_path, "service_name: x\nprometheus_prot: 1\n")
    with pytest.raises(ConfigError, match=r"nethical-otel.yaml: unknown key 'prometheus_prot'"):
        load_settings(path, environ={})


def test_bad_yaml_value_names_file_and_key(tmp_path):
    path = write(tmp_path, "buckets_per_octave: 3\n")
    with pytest.raises(ConfigError, match=r"nethical-otel.yaml: buckets_per_octave: must be 1, 2, 4 or 8"):
        load_settings(path, environ={})


def test_broken_or_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_settings(write(tmp_path, "service_name: [unclosed\n"), environ={})
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_settings(tmp_path / "absent.yaml", environ={})
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_settings(write(tmp_path, "- a\n- b\n"), environ={})


def test_unknown_keyword():
    with pytest.raises(ConfigError, match="unknown setting 'prometheus_prot'"):
        load_settings(environ={}, prometheus_prot=1)


def test_secrets_never_shown():
    s = load_settings(environ={"OTEL_EXPORTER_OTLP_HEADERS": "authorization=Bearer s3cr3t"})
    assert s.otlp_headers == {"authorization": "Bearer s3cr3t"}
    assert "s3cr3t" not in repr(s)
    with pytest.raises(ConfigError) as caught:
        load_settings(environ={"OTEL_EXPORTER_OTLP_HEADERS": "s3cr3t-without-equals"})
    assert "s3cr3t" not in str(caught.value)


def test_configuration_reference_is_current():
    from pathlib import Path

    from nethical_otel.config import reference_markdown

    committed = (Path(__file__).parents[2] / "docs" / "configuration.md").read_text()
    assert committed == reference_markdown(), (
        "docs/configuration.md is stale: run `nethical-otel config reference > docs/configuration.md`"
    )


# -- numbers that parse but cannot work; settings that clash ------------------------------------


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"NETHICAL_OTEL_DETECTOR_STEP_S": "inf"}, "NETHICAL_OTEL_DETECTOR_STEP_S: must be a finite number"),
        ({"NETHICAL_OTEL_DETECTOR_WINDOW_S": "nan"}, "NETHICAL_OTEL_DETECTOR_WINDOW_S: must be a finite"),
        ({"NETHICAL_OTEL_ALERT_RESEND_INTERVAL_S": "Infinity"}, "ALERT_RESEND_INTERVAL_S: must be a finite"),
        ({"NETHICAL_OTEL_BUCKET_MAX_S": "inf"}, "NETHICAL_OTEL_BUCKET_MAX_S: must be a finite number"),
        ({"OTEL_EXPORTER_OTLP_TIMEOUT": "inf"}, "OTEL_EXPORTER_OTLP_TIMEOUT: must be a finite number"),
        (
            {"NETHICAL_OTEL_BUCKET_MIN_S": "2", "NETHICAL_OTEL_BUCKET_MAX_S": "1"},
            r"NETHICAL_OTEL_BUCKET_MIN_S: bucket_min_s must be below bucket_max_s \(1.0\), got 2.0",
        ),
        (
            {"NETHICAL_OTEL_BUCKET_MIN_S": "1e-300", "NETHICAL_OTEL_BUCKET_MAX_S": "1e300"},
            "NETHICAL_OTEL_BUCKET_MAX_S: bucket_max_s .* more than 512",
        ),
        (
            {"NETHICAL_OTEL_DETECTOR_STEP_S": "120"},
            r"NETHICAL_OTEL_DETECTOR_STEP_S: detector_step_s must not exceed detector_window_s \(60.0\)",
        ),
        (
            {"NETHICAL_OTEL_DETECTOR_WINDOW_S": "5"},  # the step keeps its default (10 s)
            "NETHICAL_OTEL_DETECTOR_WINDOW_S: detector_step_s must not exceed detector_window_s",
        ),
    ],
)
def test_numbers_that_cannot_work_name_the_variable(env, message):
    with pytest.raises(ConfigError, match=message):
        load_settings(environ=env)


def test_infinite_yaml_value_and_keyword_are_rejected(tmp_path):
    with pytest.raises(ConfigError, match=r"nethical-otel.yaml: detector_window_s: must be a finite number"):
        load_settings(write(tmp_path, "detector_window_s: .inf\n"), environ={})
    with pytest.raises(ConfigError, match="setting 'detector_step_s': must be a finite number"):
        load_settings(environ={}, detector_step_s=float("inf"))
    with pytest.raises(ConfigError, match="bucket_min_s must be below bucket_max_s"):
        load_settings(environ={}, bucket_min_s=1.0, bucket_max_s=1.0)


def test_settings_built_directly_are_checked_too():
    from nethical_otel.config import Settings

    with pytest.raises(ConfigError, match="'detector_step_s': must be a finite number"):
        Settings(detector_step_s=float("inf"))
    with pytest.raises(ConfigError, match="detector_step_s must not exceed detector_window_s"):
        Settings(detector_step_s=30.0, detector_window_s=10.0)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            {"alertmanager_url": "http://nethical:pw-in-url@am:9093", "alertmanager_bearer_token": "tok"},
            r"alertmanager_url http://\*\*\*@am:9093 carries user:password@, which would replace",
        ),
        (
            {"alertmanager_url": "http://nethical:pw-in-url@am:9093", "alertmanager_bearer_token_file": "/t"},
            "which would replace the bearer token",
        ),
        (
            {"alertmanager_url": "http://nethical:pw-in-url@am:9093", "alertmanager_username": "u"},
            "alertmanager_username is set too",
        ),
        (
            {"alertmanager_username": "u", "alertmanager_bearer_token": "tok"},
            "basic auth or a bearer token, not both",
        ),
        ({"alertmanager_password": "pw-in-url"}, "alertmanager_password is set but alertmanager_username"),
        (
            {
                "alertmanager_username": "u",
                "alertmanager_password": "pw-in-url",
                "alertmanager_password_file": "/p",
            },
            "set only one of alertmanager_password and alertmanager_password_file",
        ),
    ],
)
def test_clashing_credentials_are_a_config_error_without_the_secret(values, message):
    env = {f"NETHICAL_OTEL_{k.upper()}": v for k, v in values.items()}
    with pytest.raises(ConfigError, match=message) as caught:
        load_settings(environ=env)
    assert "pw-in-url" not in str(caught.value) and "tok" not in str(caught.value).replace("token", "")


# -- OTEL_* values the OpenTelemetry SDK would choke on ---------------------------------------


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"OTEL_PROPAGATORS": "bogus"}, "OTEL_PROPAGATORS: unknown propagator 'bogus'; installed: baggage"),
        ({"OTEL_PROPAGATORS": "tracecontext,"}, "OTEL_PROPAGATORS: an empty propagator name"),
        ({"OTEL_EXPORTER_OTLP_COMPRESSION": "zstd"}, "OTEL_EXPORTER_OTLP_COMPRESSION: must be gzip"),
        (
            {
                "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4317",
                "OTEL_EXPORTER_OTLP_COMPRESSION": "none",
            },
            "OTEL_EXPORTER_OTLP_COMPRESSION: the grpc OTLP exporter takes only gzip",
        ),
        ({"OTEL_EXPORTER_OTLP_TRACES_COMPRESSION": "br"}, "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION: must be"),
        (
            {"OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT": "-1"},
            "OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT: must be a non-negative",
        ),
        (
            {"OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT": "lots"},
            "OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT: must be a non-neg",
        ),
        ({"OTEL_BSP_MAX_QUEUE_SIZE": "0"}, "OTEL_BSP_MAX_QUEUE_SIZE: must be a positive integer"),
        (
            {"OTEL_BSP_MAX_QUEUE_SIZE": "10", "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "20"},
            "OTEL_BSP_MAX_EXPORT_BATCH_SIZE: must not exceed OTEL_BSP_MAX_QUEUE_SIZE",
        ),
        ({"OTEL_METRICS_EXEMPLAR_FILTER": "sometimes"}, "OTEL_METRICS_EXEMPLAR_FILTER: must be one of"),
        ({"OTEL_METRIC_EXPORT_TIMEOUT": "soon"}, "OTEL_METRIC_EXPORT_TIMEOUT: must be a positive number"),
        ({"OTEL_PYTHON_CONTEXT": "bogus"}, "OTEL_PYTHON_CONTEXT: unknown context"),
    ],
)
def test_otel_values_the_sdk_would_choke_on_name_the_variable(env, message):
    with pytest.raises(ConfigError, match=message):
        load_settings(environ=env)


@pytest.mark.parametrize(
    "env",
    [
        {"OTEL_PROPAGATORS": "tracecontext, baggage"},
        {"OTEL_PROPAGATORS": "none"},
        {"OTEL_EXPORTER_OTLP_COMPRESSION": "gzip", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4317"},
        {
            "OTEL_EXPORTER_OTLP_COMPRESSION": "none",
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318",
        },
        {"OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT": "unset", "OTEL_SPAN_EVENT_COUNT_LIMIT": " 64 "},
        {"OTEL_BSP_SCHEDULE_DELAY": "500", "OTEL_BSP_EXPORT_TIMEOUT": "0"},
    ],
)
def test_good_otel_values_pass(env):
    load_settings(environ=env)


# -- files: binary, truncated, a directory -------------------------------------------------------


def test_binary_truncated_or_directory_config_file_names_the_file(tmp_path):
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe")
    with pytest.raises(ConfigError, match=r"config file .*binary.yaml is not UTF-8 text"):
        load_settings(binary, environ={})
    truncated = tmp_path / "truncated.yaml"
    truncated.write_bytes("service_name: caf\u00e9".encode()[:-1])  # cut inside a UTF-8 character
    with pytest.raises(ConfigError, match=r"config file .*truncated.yaml is not UTF-8 text"):
        load_settings(truncated, environ={})
    with pytest.raises(ConfigError, match=r"cannot read config file .*: Is a directory"):
        load_settings(tmp_path, environ={})
    deep = tmp_path / "deep.yaml"
    deep.write_text("policy: " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(ConfigError, match=r"deep.yaml"):
        load_settings(deep, environ={})


def test_undecodable_environment_value_is_named():
    import os

    with pytest.raises(ConfigError, match="NETHICAL_OTEL_SERVICE_NAME: not valid UTF-8"):
        load_settings(environ={"NETHICAL_OTEL_SERVICE_NAME": os.fsdecode(b"svc\xff")})


# -- secrets in URLs -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("http://user:pw@am:9093/x?token=abc&page=2", "http://***@am:9093/x?token=***&page=2"),
        (
            "https://h/p?api_key=1&sig=2&access_token=3&X-Amz-Signature=4",
            "https://h/p?api_key=***&sig=***&access_token=***&X-Amz-Signature=***",
        ),
        (
            "https://h/p?password=1&apikey=2&secret=3&key=4&auth=5&client_secret=6",
            "https://h/p?password=***&apikey=***&secret=***&key=***&auth=***&client_secret=***",
        ),
        ("http://am:9093", "http://am:9093"),
        ("http://user@h", "http://***@h"),
        ("http://u:p@[::1", "http://***@[::1"),  # does not parse: userinfo still goes
        ("https://h/cb#access_token=abc", "https://h/cb#access_token=***"),
    ],
)
def test_redact_url(url, shown):
    from nethical_otel.errors import redact_text, redact_url

    assert redact_url(url) == shown
    assert redact_text(f"error for url '{url}': refused") == f"error for url '{shown}': refused"


def test_settings_show_urls_redacted_everywhere():
    env = {
        "NETHICAL_OTEL_PROMETHEUS_URL": "http://reader:pr0m-pw@prom:9090",
        "NETHICAL_OTEL_WEBHOOK_URL": "https://hooks.example/x?token=hook-tok",
        "OTEL_EXPORTER_OTLP_ENDPOINT": "https://otel:c0ll-pw@collector:4317",
    }
    s = load_settings(environ=env)
    shown = dict(s.display_items())
    assert shown["prometheus_url"] == "http://***@prom:9090"
    assert shown["webhook_url"] == "https://hooks.example/x?token=***"
    for text in (repr(s), str(shown)):
        for secret in ("pr0m-pw", "hook-tok", "c0ll-pw"):
            assert secret not in text
    assert s.prometheus_url == env["NETHICAL_OTEL_PROMETHEUS_URL"]  # the value itself is intact
    with pytest.raises(ConfigError) as caught:
        load_settings(environ={"NETHICAL_OTEL_ALERTMANAGER_URL": "ftp://u:ftp-pw@h/?token=ftp-tok"})
    assert "ftp-pw" not in str(caught.value) and "ftp-tok" not in str(caught.value)
