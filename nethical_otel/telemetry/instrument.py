"""``@instrument`` and ``action()``: every call becomes a span and a latency observation.

The hot path is: look up the bound series, note the call in flight, time the call, append
the duration, return. Attribute dicts and series are computed once per (site, pipeline);
span attributes are only built for sampled calls. Instrumentation never raises into the
wrapped function: a failure of ours is logged once and the call goes on; the function's
own exceptions are re-raised unchanged.

The action (and cohort) of the call in progress is kept in a context variable, so a call
made inside it (an ``action()`` block, another ``@instrument``ed function, in the same thread
or an ``asyncio`` task it starts) is recorded as its sub-step (``nethical.action.parent``,
and the parent's cohort when it has none). A sampled call also offers its trace and span ids
as an exemplar of its latency bucket; unsampled and metrics-only calls skip that.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import logging
import os
import threading
import traceback
from collections.abc import Callable
from time import perf_counter
from typing import Any, ClassVar, TypeVar, overload

from opentelemetry import context as otel_context
from opentelemetry.trace import Span, Status, StatusCode

from nethical_otel.config import Settings, load_settings
from nethical_otel.errors import ConfigError
from nethical_otel.names import ACTION, AGENT_ID, COHORT, ERROR_TYPE
from nethical_otel.telemetry.pipeline import Pipeline, api_pipeline
from nethical_otel.text import clean

_log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])

# (action, cohort) of the instrumented call in progress, raw (the registry folds them). A call
# inside it is its sub-step, and takes its cohort when it has none of its own.
_PARENT: contextvars.ContextVar[tuple[str, str | None] | None] = contextvars.ContextVar(
    "nethical_otel_parent", default=None
)


class _State:
    """The pipeline instrumented calls record into; ``generation`` bumps on every switch."""

    def __init__(self) -> None:
        self.pipeline = None
        self.generation = 0
        self.lock = threading.Lock()
        self.settings: Settings | None = None  # for the API pipeline; read on first use if None

    def activate(self, pipeline) -> None:
        with self.lock:
            self.pipeline = pipeline
            self.generation += 1

    def deactivate(self, pipeline) -> None:
        with self.lock:
            if self.pipeline is pipeline:
                self.pipeline = None
                self.generation += 1

    def current(self):
        """The active pipeline, or one on the global API providers when setup() was not called."""
        pipeline = self.pipeline
        if pipeline is None:
            with self.lock:
                if self.pipeline is None:
                    self.pipeline = api_pipeline(self.settings or _api_settings())
                pipeline = self.pipeline
        return pipeline


def _api_settings() -> Settings:
    """The environment's settings (a mistyped variable is a WARNING), or the defaults."""
    try:
        return load_settings(unknown="warn")
    except ConfigError as exc:  # a bad value must not cost the service its calls
        _log.warning("nethical-otel: %s; recording with the default settings", exc)
        return Settings()


STATE = _State()


class FixedPipeline:
    """A pipeline source that never switches: what an instrumentor given providers records into."""

    generation = 0

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline

    def current(self) -> Pipeline:
        return self.pipeline


def _new_lock_after_fork() -> None:
    STATE.lock = threading.Lock()  # another thread may have held it at fork time


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_new_lock_after_fork)

_warned: set[str] = set()


def _warn_once(what: str) -> None:
    if what not in _warned:
        _warned.add(what)
        _log.exception("nethical-otel: %s failed; the call goes on without it (logged once)", what)


def _arg_position(signature: inspect.Signature | None, name: str | None) -> tuple[int | None, str | None]:
    if name is None or signature is None or name not in signature.parameters:
        return None, None
    index = list(signature.parameters).index(name)
    kind = signature.parameters[name].kind
    positional = kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return (index if positional else None), name


def _pick(args: tuple, kwargs: dict, where: tuple[int | None, str | None]) -> str | None:
    index, name = where
    if name is None:
        return None
    value = args[index] if index is not None and index < len(args) else kwargs.get(name)
    return None if value is None else clean(value)


def _span_value(value: Any) -> Any:
    """A span attribute value the SDK and every exporter accept (primitives, or a tuple of them)."""
    if isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, (list, tuple)):
        return tuple(v if isinstance(v, (bool, int, float)) else clean(v) for v in value)
    return clean(value)


def _span_attributes(attributes: dict[str, Any] | None) -> dict[str, Any]:
    return {clean(key): _span_value(value) for key, value in (attributes or {}).items()}


def _exception_attributes(exc: BaseException) -> dict[str, str]:
    """What ``Span.record_exception`` records, from values that cannot break an exporter.

    The SDK's own ``record_exception`` calls ``str(exc)`` unguarded and keeps lone surrogates
    (from an exception's message or class name) that make OTLP drop the whole batch.
    """
    cls = type(exc)
    module = getattr(cls, "__module__", None)
    qualified = f"{module}.{cls.__qualname__}" if module and module != "builtins" else cls.__qualname__
    stack = "".join(traceback.format_exception(cls, exc, exc.__traceback__))
    return {
        "exception.type": clean(qualified, None),
        "exception.message": clean(exc, None),
        "exception.stacktrace": clean(stack, None),
        "exception.escaped": "True",  # re-raised to the caller: it leaves the span
    }


def _describe(exc: BaseException, error_type: str) -> str:
    """``"Type: message"`` for the span status; an exception whose ``__str__`` fails is still named."""
    return f"{error_type}: {clean(exc)}"


class _Binding:
    """A site's view of one pipeline: the series and in-flight counter it records into."""

    __slots__ = ("active", "exemplars", "generation", "pipeline", "series", "substeps", "tracing")

    def __init__(self, site: _Site, pipeline, generation: int) -> None:
        self.pipeline = pipeline
        self.generation = generation
        self.tracing = pipeline is not None and pipeline.tracer is not None
        self.exemplars = self.tracing and getattr(pipeline.registry, "keeps_exemplars", False)
        self.substeps = pipeline is not None and getattr(pipeline, "substeps", True)
        static = pipeline is not None and not site.dynamic
        self.series = pipeline.registry.series(site.action, None) if static else None
        self.active = pipeline.registry.active(site.action) if static else None


class _Site:
    """One instrumented callable or action name, with what it takes from each call."""

    def __init__(
        self,
        name: str,
        action: str | None,
        attributes: dict[str, Any] | None,
        signature: inspect.Signature | None,
        action_arg: str | None,
        cohort_arg: str | None,
        agent_id_arg: str | None,
        state: _State | FixedPipeline = STATE,
    ) -> None:
        self.state = state
        self.name = clean(name)
        self.action = clean(action) if action is not None else self.name
        self.static_attributes = _span_attributes(attributes)
        self.action_from = _arg_position(signature, action_arg)
        self.cohort_from = _arg_position(signature, cohort_arg)
        self.agent_from = _arg_position(signature, agent_id_arg)
        self.dynamic = self.action_from[1] is not None or self.cohort_from[1] is not None
        self.traced_args = self.dynamic or self.agent_from[1] is not None
        self.context_value = (self.action, None)  # what a static site's calls are to their sub-steps
        self.binding = _Binding(self, None, -1)

    def bind(self) -> _Binding:
        binding = self.binding
        state = self.state
        if binding.generation != state.generation:
            generation = state.generation
            try:
                pipeline = state.current()
                if pipeline.registry is None:  # telemetry disabled
                    pipeline = None
                binding = _Binding(self, pipeline, generation)
            except Exception:
                _warn_once("binding instrumentation")
                binding = _Binding(self, None, generation)
            self.binding = binding
        return binding

    def values(self, args: tuple, kwargs: dict) -> tuple[str, str | None, str | None]:
        action = _pick(args, kwargs, self.action_from) or self.action
        return action, _pick(args, kwargs, self.cohort_from), _pick(args, kwargs, self.agent_from)

    def span_attributes(self, action: str, cohort: str | None, agent_id: str | None) -> dict[str, Any]:
        attributes = {ACTION: action, **self.static_attributes}
        if cohort is not None:
            attributes[COHORT] = cohort
        if agent_id is not None:
            attributes[AGENT_ID] = agent_id
        return attributes


class _Call:
    """One call in progress: begin() before the wrapped code, ok()/failed() after it."""

    __slots__ = ("action", "active", "binding", "cohort", "parent", "parent_token", "series", "span", "token")

    def __init__(self, site: _Site, binding: _Binding, args: tuple, kwargs: dict) -> None:
        self.binding = binding
        self.span = self.token = self.parent_token = None
        parent = _PARENT.get() if binding.substeps else None
        if site.dynamic:
            action, cohort, agent_id = site.values(args, kwargs)
            if parent is not None and cohort is None:
                cohort = parent[1]
            registry = binding.pipeline.registry
            self.series = registry.series(action, cohort, None, None if parent is None else parent[0])
            self.active = registry.active(action)
            mine = (action, cohort)
        else:
            action, cohort = site.action, None
            agent_id = _pick(args, kwargs, site.agent_from) if site.traced_args else None
            self.active = binding.active
            if parent is None:
                self.series, mine = binding.series, site.context_value
            else:
                cohort = parent[1]
                self.series = binding.pipeline.registry.series(action, cohort, None, parent[0])
                mine = (action, cohort)
        self.action, self.cohort, self.parent = action, cohort, parent
        if binding.tracing:
            try:
                self.span, self.token = binding.pipeline.start_span(
                    site.name, site.span_attributes(action, cohort, agent_id)
                )
            except Exception:
                _warn_once("starting a span")
        self.active.append(None)
        if binding.substeps:
            self.parent_token = _PARENT.set(mine)  # last: nothing after it can fail

    def _leave(self) -> None:
        try:  # noqa: SIM105 - contextlib.suppress is two Python calls on the hot path
            self.active.pop()
        except IndexError:  # emptied by fork() while this call was in flight
            pass

    def _parent_not_restored(self) -> None:
        """The context variable could not be reset with our token: set it back by value."""
        try:
            _PARENT.set(self.parent)  # a generator or callback left the context it began in
        except Exception:
            _warn_once("restoring the parent action")

    def _offer(self, series, seconds: float) -> None:
        """A sampled call's trace and span ids, as an exemplar of its latency bucket."""
        span = self.span  # only a sampled (recording) span is kept on the call
        if span is not None and self.binding.exemplars:
            series.offer(seconds, span.get_span_context())

    def ok(self, seconds: float) -> None:
        # The hot path, inlined: a Python call is 3-5 % of a metrics-only call.
        if self.parent_token is not None:
            try:
                _PARENT.reset(self.parent_token)
            except Exception:
                self._parent_not_restored()
        if self.token is not None:
            self._end_span(None)
        try:
            try:  # noqa: SIM105 - as in _leave
                self.active.pop()
            except IndexError:  # emptied by fork() while this call was in flight
                pass
            series = self.series
            series.observe(seconds)
            if self.span is not None:  # sampled: its exemplar (a call only for those)
                self._offer(series, seconds)
        except Exception:
            _warn_once("recording a call")

    def failed(self, seconds: float, exc: BaseException) -> None:
        if self.parent_token is not None:
            try:
                _PARENT.reset(self.parent_token)
            except Exception:
                self._parent_not_restored()
        error_type = type(exc).__qualname__
        self._end_span(exc, error_type)
        try:
            self._leave()
            parent = None if self.parent is None else self.parent[0]
            series = self.binding.pipeline.registry.series(self.action, self.cohort, error_type, parent)
            series.observe(seconds)
            self._offer(series, seconds)
        except Exception:
            _warn_once("recording a failed call")

    def _end_span(self, exc: BaseException | None, error_type: str = "") -> None:
        # The context is restored first and whatever else fails: a leaked span would
        # become the parent of every later call on this thread.
        if self.token is None:
            return
        try:
            otel_context.detach(self.token)
        except Exception:
            _warn_once("restoring the context")
        span: Span | None = self.span
        if span is None:
            return
        try:
            if exc is not None:
                error_type = clean(error_type)
                span.set_attribute(ERROR_TYPE, error_type)
                span.set_status(Status(StatusCode.ERROR, _describe(exc, error_type)))
                if span.is_recording():  # formatting a traceback is work a no-op span must not cost
                    span.add_event("exception", _exception_attributes(exc))
        except Exception:
            _warn_once("recording the exception on a span")
        finally:
            try:
                span.end()
            except Exception:
                _warn_once("ending a span")


def _begin(site: _Site, args: tuple, kwargs: dict) -> _Call | None:
    binding = site.binding
    if binding.generation != site.state.generation:
        binding = site.bind()
    if binding.pipeline is None:
        return None
    try:
        return _Call(site, binding, args, kwargs)
    except Exception:
        _warn_once("starting instrumentation")
        return None


def _wrap(func: Callable, site: _Site) -> Callable:
    if inspect.iscoroutinefunction(func):

        @functools.wraps(func)
        async def async_wrapper(*args, **kwargs):
            call = _begin(site, args, kwargs)
            if call is None:
                return await func(*args, **kwargs)
            start = perf_counter()
            try:
                result = await func(*args, **kwargs)
            except BaseException as exc:
                call.failed(perf_counter() - start, exc)
                raise
            call.ok(perf_counter() - start)
            return result

        async_wrapper.__nethical_site__ = site
        return async_wrapper

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        call = _begin(site, args, kwargs)
        if call is None:
            return func(*args, **kwargs)
        start = perf_counter()
        try:
            result = func(*args, **kwargs)
        except BaseException as exc:
            call.failed(perf_counter() - start, exc)
            raise
        call.ok(perf_counter() - start)
        return result

    wrapper.__nethical_site__ = site
    return wrapper


@overload
def instrument(func: F) -> F: ...
@overload
def instrument(
    func: None = None,
    *,
    name: str | None = None,
    action: str | None = None,
    attributes: dict[str, Any] | None = None,
    action_arg: str | None = None,
    cohort_arg: str | None = "cohort",
    agent_id_arg: str | None = "agent_id",
) -> Callable[[F], F]: ...


def instrument(
    func=None,
    *,
    name=None,
    action=None,
    attributes=None,
    action_arg=None,
    cohort_arg="cohort",
    agent_id_arg="agent_id",
):
    """Make every call of ``func`` a span and an observation of ``nethical.action.duration``.

    Use bare (``@instrument``) or with options:

    - ``name``: span name (default: the function's ``__name__``);
    - ``action``: value of the ``nethical.action`` attribute (default: ``name``);
    - ``action_arg``: take ``nethical.action`` from this argument of each call instead;
    - ``cohort_arg`` / ``agent_id_arg``: arguments giving ``nethical.cohort`` (span and
      metric) and ``nethical.agent.id`` (span only: unbounded values never become metric
      labels), used when the function has a parameter of that name;
    - ``attributes``: constant span attributes.

    Works on functions, methods and ``async def`` functions.
    """

    def decorate(f: F) -> F:
        return _instrument(f, STATE, name, action, attributes, action_arg, cohort_arg, agent_id_arg)

    return decorate(func) if func is not None else decorate


def instrument_into(
    pipeline: FixedPipeline, func: F, *, name: str | None = None, action_arg: str | None = None
) -> F:
    """``instrument(func, name=..., action_arg=...)``, recording into ``pipeline`` whatever
    ``setup()`` does (an instrumentor given its own providers)."""
    return _instrument(func, pipeline, name, None, None, action_arg, "cohort", "agent_id")


def _instrument(f, state, name, action, attributes, action_arg, cohort_arg, agent_id_arg):
    try:
        signature = inspect.signature(f)
    except (TypeError, ValueError):
        signature = None
    site = _Site(
        name or f.__name__, action, attributes, signature, action_arg, cohort_arg, agent_id_arg, state
    )
    return _wrap(f, site)


class action:
    """Context manager: the block becomes a span and a latency observation.

    ``with nethical_otel.action("score", cohort="a", agent_id="agent-7"): ...``
    Keyword arguments other than ``cohort`` and ``agent_id`` become span attributes.
    """

    __slots__ = ("_call", "_kwargs", "_site", "_start")

    _sites: ClassVar[dict[tuple, _Site]] = {}

    _SIGNATURE = inspect.Signature(
        [inspect.Parameter(p, inspect.Parameter.KEYWORD_ONLY) for p in ("cohort", "agent_id")]
    )

    def __init__(self, name: str, **attributes: Any) -> None:
        cohort, agent_id = attributes.pop("cohort", None), attributes.pop("agent_id", None)
        self._kwargs = {"cohort": cohort, "agent_id": agent_id}
        self._call = None
        try:
            self._site = self._site_for(name, attributes)
        except Exception:
            _warn_once("preparing an action")
            self._site = None

    @classmethod
    def _site_for(cls, name: Any, attributes: dict[str, Any]) -> _Site:
        cleaned = _span_attributes(attributes)
        key = (clean(name), tuple(sorted(cleaned.items())))  # clean values are hashable
        site = cls._sites.get(key)
        if site is None:
            site = _Site(key[0], None, cleaned, cls._SIGNATURE, None, "cohort", "agent_id")
            if len(cls._sites) < 1000:
                cls._sites[key] = site
        return site

    def __enter__(self) -> action:
        if self._site is not None:
            self._call = _begin(self._site, (), self._kwargs)
        self._start = perf_counter()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if self._call is None:
            return
        elapsed = perf_counter() - self._start
        if exc is None:
            self._call.ok(elapsed)
        else:
            self._call.failed(elapsed, exc)
