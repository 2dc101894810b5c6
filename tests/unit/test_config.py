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
