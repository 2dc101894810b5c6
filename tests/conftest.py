"""Shared fixtures. The machinery lives in ``tests/servers.py`` and ``tests/otlp_receiver.py``."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.otlp_receiver import GrpcReceiver, HttpReceiver, make_receiver


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No OTEL_* / NETHICAL_OTEL_* from the developer's shell leaks into a test."""
    for name in list(os.environ):
        if name.startswith(("OTEL_", "NETHICAL_OTEL_")):
            monkeypatch.delenv(name)


@pytest.fixture
def grpc_receiver() -> Iterator[GrpcReceiver]:
    with GrpcReceiver() as receiver:
        yield receiver


@pytest.fixture
def http_receiver() -> Iterator[HttpReceiver]:
    with HttpReceiver() as receiver:
        yield receiver


@pytest.fixture(params=["grpc", "http/protobuf"])
def otlp_receiver(request: pytest.FixtureRequest) -> Iterator[GrpcReceiver | HttpReceiver]:
    """A receiver per OTLP transport; ``otlp_receiver.protocol`` is the setting value."""
    with make_receiver(request.param) as receiver:
        yield receiver


@pytest.fixture
def make_telemetry(clean_env: None) -> Iterator[Callable[..., Any]]:
    """``make_telemetry(**overrides)`` calls ``nethical_otel.setup``; every pipeline is shut down.

    Defaults differ from a service's: no /metrics server unless asked (ports collide) and no
    global providers (OpenTelemetry lets a process set those once).
    """
    import nethical_otel

    made = []

    def make(**overrides: Any) -> Any:
        overrides.setdefault("prometheus_enabled", False)
        overrides.setdefault("set_global", False)
        tel = nethical_otel.setup(**overrides)
        made.append(tel)
        return tel

    yield make
    for tel in reversed(made):
        tel.shutdown()
