"""``NethicalInstrumentor``: instruments ``process_action`` without touching the service's code.

Registered under the ``opentelemetry_instrumentor`` entry point, so
``opentelemetry-instrument python service.py`` picks it up with everything else and wraps the
methods named in ``NETHICAL_OTEL_INSTRUMENT_TARGETS`` (``module:Class.method,...``). Targets
that cannot be found are named in one WARNING; nothing raises into the service's start. Or::

    NethicalInstrumentor().instrument(targets=[(IntegratedGovernance, "process_action")])
    ...
    NethicalInstrumentor().uninstrument()   # restores the original methods

As contrib instrumentors do, ``instrument(tracer_provider=..., meter_provider=...)`` records
into those providers (the global ones for a provider not given) instead of ``setup()``'s.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import logging
from collections.abc import Collection, Iterable

from opentelemetry.instrumentation.instrumentor import BaseInstrumentor

from nethical_otel.config import load_settings
from nethical_otel.errors import ConfigError
from nethical_otel.names import DOCS_URL
from nethical_otel.telemetry.instrument import STATE, FixedPipeline, instrument, instrument_into
from nethical_otel.telemetry.pipeline import api_pipeline

_log = logging.getLogger(__name__)

# process_action(agent_id, action, cohort=..., action_type=...): the kind of action is the
# bounded label; the action text itself is unbounded and never becomes one.
ACTION_ARG = "action_type"
TARGETS_VARIABLE = "NETHICAL_OTEL_INSTRUMENT_TARGETS"


def _resolve(spec: str) -> tuple[type, str] | str:
    """``(class, method)`` for ``module:Class.method``, or why there is none."""
    module_name, _, path = spec.partition(":")
    class_path, _, method = path.rpartition(".")
    if not (module_name and class_path and method):
        return "expected module:Class.method"
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # the user's module may fail any way at import: not our start-up's end
        return f"{type(exc).__name__}: {exc}"[:200]
    try:
        cls = functools.reduce(getattr, class_path.split("."), module)
    except AttributeError:
        return f"module {module_name} has no {class_path}"
    if not isinstance(cls, type):
        return f"{module_name}:{class_path} is not a class"
    if not callable(cls.__dict__.get(method)):
        return f"{cls.__qualname__} defines no method {method!r} (a base class's method: name that class)"
    return cls, method


class NethicalInstrumentor(BaseInstrumentor):
    """Wraps ``Class.method`` pairs with ``@instrument`` and restores them on uninstrument."""

    # BaseInstrumentor is a singleton: state lives on the class's one instance, set lazily.
    _originals: list[tuple[type, str, object]]

    def instrumentation_dependencies(self) -> Collection[str]:
        # None. Contrib declares the library it patches ("flask >= 1.0") so that auto-instrumentation
        # skips it when that library is absent; our targets are the user's own classes, named in
        # settings, and a declared package would make `opentelemetry-instrument` skip us for every
        # service without it. A target that is not there is reported by `_instrument` instead.
        return ()

    def _instrument(self, **kwargs) -> None:
        if not hasattr(self, "_originals"):
            self._originals = []
        targets: Iterable[tuple[type, str]] | None = kwargs.get("targets")
        tracer_provider, meter_provider = kwargs.get("tracer_provider"), kwargs.get("meter_provider")
        own_providers = tracer_provider is not None or meter_provider is not None
        if targets is None or own_providers:
            try:
                # A typo in a NETHICAL_OTEL_* variable is a WARNING here, as it is in setup().
                settings = load_settings(unknown="warn")
            except ConfigError as exc:  # under opentelemetry-instrument: the service starts anyway
                _log.warning("nethical-otel: nothing instrumented: %s", exc)
                return
            STATE.settings = STATE.settings or settings  # the API pipeline's too: read once
            if targets is None:
                targets = self._configured_targets(settings.instrument_targets)
        pipeline = None
        if own_providers:
            pipeline = FixedPipeline(api_pipeline(settings, tracer_provider, meter_provider))
        for cls, method in targets:
            original = cls.__dict__.get(method)
            if original is None or not callable(original):
                raise ValueError(f"{cls.__qualname__} defines no method {method!r} to instrument")
            if hasattr(original, "__nethical_site__"):
                _log.debug("nethical-otel: %s.%s is already instrumented", cls.__qualname__, method)
                continue
            params = inspect.signature(original).parameters
            action_arg = ACTION_ARG if ACTION_ARG in params else None
            if pipeline is None:
                wrapped = instrument(original, name=method, action_arg=action_arg)
            else:
                wrapped = instrument_into(pipeline, original, name=method, action_arg=action_arg)
            self._originals.append((cls, method, original))
            setattr(cls, method, wrapped)

    @staticmethod
    def _configured_targets(specs: str) -> list[tuple[type, str]]:
        found, missing = [], []
        for spec in filter(None, (s.strip() for s in specs.split(","))):
            resolved = _resolve(spec)
            if isinstance(resolved, str):
                missing.append(f"{spec} ({resolved})")
            else:
                found.append(resolved)
        if missing:
            # One line, at start-up: with the default target (or a typo) nothing would be recorded,
            # and a DEBUG line is what nobody sees.
            _log.warning(
                "nethical-otel: instrument targets not found, nothing is recorded for them: %s. Name the "
                "methods to instrument as %s=module:Class.method,... (see %s/getting-started.md), or "
                "set OTEL_PYTHON_DISABLED_INSTRUMENTATIONS=nethical to not load this instrumentor",
                "; ".join(missing),
                TARGETS_VARIABLE,
                DOCS_URL,
            )
        return found

    def _uninstrument(self, **kwargs) -> None:
        while getattr(self, "_originals", None):
            cls, method, original = self._originals.pop()
            setattr(cls, method, original)
