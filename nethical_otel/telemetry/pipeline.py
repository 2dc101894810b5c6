"""What instrumentation records into, and how it starts spans cheaply.

A ``Pipeline`` is either one that ``setup()`` built (we own the providers: latencies go to
our ``RecorderRegistry`` and head sampling is decided before any SDK span exists) or, when
the service configured OpenTelemetry itself, one on the global API providers (plain
``start_span`` and ``Histogram.record``: slower, but any SDK set-up works).

Head sampling without an SDK span: for a root call we draw the trace id ourselves with
the provider's id generator and apply the ``TraceIdRatioBased`` rule to it. Sampled out,
the call gets a ``NonRecordingSpan`` with that trace id in its context (downstream calls
and propagators see a valid, unsampled parent: the same thing the SDK would produce) at
about a fifth of the cost. Sampled in, the trace id is handed to the SDK's id generator
so the SDK's own sampler sees the very id we decided on: one decision, not two.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING

from opentelemetry import context as otel_context
from opentelemetry import metrics, trace
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.sdk.trace.sampling import TraceIdRatioBased
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from nethical_otel._version import __version__
from nethical_otel.names import ACTION, ACTIVE, DURATION, SCOPE
from nethical_otel.telemetry.bridge import DURATION_DESCRIPTION, explicit_bounds
from nethical_otel.telemetry.recorder import RecorderRegistry

if TYPE_CHECKING:
    from nethical_otel.config import Settings

_log = logging.getLogger(__name__)

_TRACE_ID_LIMIT = TraceIdRatioBased.TRACE_ID_LIMIT
_UNSAMPLED = TraceFlags(TraceFlags.DEFAULT)


class HandoffIdGenerator(RandomIdGenerator):
    """Random ids, except a trace id we already drew for a sampling decision."""

    def __init__(self) -> None:
        self._next = threading.local()

    def hand_off(self, trace_id: int) -> None:
        self._next.trace_id = trace_id

    def generate_trace_id(self) -> int:
        trace_id = getattr(self._next, "trace_id", None)
        if trace_id is None:
            return super().generate_trace_id()
        self._next.trace_id = None
        return trace_id


class HeadSampler:
    """The sampling rule of a sampler we built (ratio, parent-based or not), evaluated early."""

    __slots__ = ("bound", "id_generator", "parent_based", "sample_all")

    def __init__(self, ratio: float, parent_based: bool, id_generator: HandoffIdGenerator) -> None:
        self.bound = TraceIdRatioBased.get_bound_for_rate(ratio)
        self.sample_all = ratio >= 1.0
        self.parent_based = parent_based
        self.id_generator = id_generator

    def decide(self) -> tuple[bool, SpanContext | None]:
        """(start an SDK span?, context of a non-recording span to attach instead, if any)."""
        parent = trace.get_current_span().get_span_context()
        if parent.is_valid:
            if self.parent_based:
                return parent.trace_flags.sampled, None
            return (parent.trace_id & _TRACE_ID_LIMIT) < self.bound, None
        if self.sample_all:
            return True, None
        trace_id = self.id_generator.generate_trace_id()
        if (trace_id & _TRACE_ID_LIMIT) < self.bound:
            self.id_generator.hand_off(trace_id)
            return True, None
        span_id = self.id_generator.generate_span_id()
        return False, SpanContext(trace_id, span_id, is_remote=False, trace_flags=_UNSAMPLED)


class Pipeline:
    """Tracer, head sampler and recorders that instrumented calls use."""

    def __init__(
        self,
        *,
        registry: RecorderRegistry,
        tracer: trace.Tracer | None,
        head_sampler: HeadSampler | None = None,
        meter: metrics.Meter | None = None,
        substeps: bool = True,
    ) -> None:
        """``substeps``: calls inside calls are recorded as sub-steps (``substeps_enabled``)."""
        self.registry = registry
        self.tracer = tracer
        self.head_sampler = head_sampler
        self.substeps = substeps
        if meter is not None:
            meter.create_observable_up_down_counter(
                ACTIVE,
                callbacks=[self._observe_active],
                unit="{call}",
                description="Instrumented actions in flight.",
            )

    def _observe_active(self, options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(n, {ACTION: action}) for action, n in self.registry.active_counts()]

    def start_span(self, name: str, attributes: dict) -> tuple[trace.Span | None, object | None]:
        """Start the call's span and make it current: (recording span or None, context token)."""
        if self.head_sampler is not None:
            sampled, unsampled_context = self.head_sampler.decide()
            if not sampled:
                if unsampled_context is None:  # the current context already says "not sampled"
                    return None, None
                span = NonRecordingSpan(unsampled_context)
                return None, otel_context.attach(trace.set_span_in_context(span))
        span = self.tracer.start_span(name, attributes=attributes)
        return span, otel_context.attach(trace.set_span_in_context(span))


class _ApiSeries:
    """A series recorded through the global API histogram (a service's own SDK set-up)."""

    __slots__ = ("_histogram", "attributes", "error_type")

    def __init__(self, histogram: metrics.Histogram, attributes: dict[str, str], error_type: str | None):
        self.attributes = attributes
        self.error_type = error_type
        self._histogram = histogram

    def observe(self, seconds: float) -> None:
        self._histogram.record(seconds, self.attributes)

    def offer(self, seconds: float, trace_id: int, span_id: int) -> None:
        """Exemplars on this path are the SDK's own (its exemplar filter and reservoirs)."""


def api_pipeline(
    settings: Settings,
    tracer_provider: trace.TracerProvider | None = None,
    meter_provider: metrics.MeterProvider | None = None,
) -> Pipeline:
    """A pipeline on these providers (default: the global ones), whatever SDK set-up they have.

    The histogram's advisory ``le`` bounds are the ones ``setup()`` uses, from the same settings
    (``bucket_min_s``, ``bucket_max_s``, ``buckets_per_octave``): one bucket layout either way.
    """
    meter = metrics.get_meter(SCOPE, __version__, meter_provider)
    histogram = meter.create_histogram(
        DURATION,
        unit="s",
        description=DURATION_DESCRIPTION,
        explicit_bucket_boundaries_advisory=explicit_bounds(
            settings.bucket_min_s, settings.bucket_max_s, settings.buckets_per_octave
        ),
    )
    registry = RecorderRegistry(
        scale=0,
        max_attribute_values=settings.max_attribute_values,
        max_series=settings.max_series,
        make_series=lambda attributes, error_type: _ApiSeries(histogram, attributes, error_type),
    )
    tracer = trace.get_tracer(SCOPE, __version__, tracer_provider)
    return Pipeline(registry=registry, tracer=tracer, meter=meter, substeps=settings.substeps_enabled)
