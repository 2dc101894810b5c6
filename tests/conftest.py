"""Shared fixtures. The machinery lives in ``tests/servers.py`` and ``tests/otlp_receiver.py``."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

# Test modules import helpers as `tests.servers`; plain `pytest` (unlike `python -m pytest`)
# does not put the repository root on sys.path, so put it there.
_ROOT = str(Path(__file__).resolve().parent.parent)
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from tests.otlp_receiver import GrpcReceiver, HttpReceiver, make_receiver  # noqa: E402


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
    """``make_telemetry(**overrides)`` calls ``nethical_otel.setup``; every pipeline is shut down."""
    import nethical_otel

    made = []

    def make(**overrides: Any) -> Any:
        overrides.setdefault("prometheus_enabled", False)
        tel = nethical_otel.setup(**overrides)
        made.append(tel)
        return tel

    yield make
    for tel in reversed(made):
        tel.shutdown()
