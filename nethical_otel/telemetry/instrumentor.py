"""``NethicalInstrumentor``: instruments ``process_action`` without touching the service's code.

Registered under the ``opentelemetry_instrumentor`` entry point, so
``opentelemetry-instrument python service.py`` picks it up with everything else. Or::

    NethicalInstrumentor().instrument(targets=[(IntegratedGovernance, "process_action")])
    ...
    NethicalInstrumentor().uninstrument()   # restores the original methods
"""

from __future__ import annotations

import importlib
import inspect
import logging
from collections.abc import Collection, Iterable

from opentelemetry.instrumentation.instrumentor import BaseInstrumentor

from nethical_otel.config import load_settings
from nethical_otel.telemetry.instrument import instrument

_log = logging.getLogger(__name__)

# process_action(agent_id, action, cohort=..., action_type=...): the kind of action is the
# bounded label; the action text itself is unbounded and never becomes one.
ACTION_ARG = "action_type"


def _resolve(spec: str) -> tuple[type, str] | None:
    module_name, _, path = spec.strip().partition(":")
    class_name, _, method = path.rpartition(".")
    if not (module_name and class_name and method):
        raise ValueError(f"instrument target {spec!r}: expected module:Class.method")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError):
        _log.debug("nethical-otel: instrument target %s not importable; skipped", spec)
        return None
    return cls, method


class NethicalInstrumentor(BaseInstrumentor):
    """Wraps ``Class.method`` pairs with ``@instrument`` and restores them on uninstrument."""

    # BaseInstrumentor is a singleton: state lives on the class's one instance, set lazily.
    _originals: list[tuple[type, str, object]]

    def instrumentation_dependencies(self) -> Collection[str]:
        return ()

    def _instrument(self, **kwargs) -> None:
        if not hasattr(self, "_originals"):
            self._originals = []
        targets: Iterable[tuple[type, str]] | None = kwargs.get("targets")
        if targets is None:
            specs = load_settings().instrument_targets.split(",")
            targets = [t for t in (_resolve(spec) for spec in specs if spec.strip()) if t]
        for cls, method in targets:
            original = cls.__dict__.get(method)
            if original is None or not callable(original):
                raise ValueError(f"{cls.__qualname__} defines no method {method!r} to instrument")
            if hasattr(original, "__nethical_site__"):
                _log.debug("nethical-otel: %s.%s is already instrumented", cls.__qualname__, method)
                continue
            params = inspect.signature(original).parameters
            wrapped = instrument(
                original,
                name=method,
                action_arg=ACTION_ARG if ACTION_ARG in params else None,
            )
            self._originals.append((cls, method, original))
            setattr(cls, method, wrapped)

    def _uninstrument(self, **kwargs) -> None:
        while getattr(self, "_originals", None):
            cls, method, original = self._originals.pop()
            setattr(cls, method, original)
