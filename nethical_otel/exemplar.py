"""``Exemplar``: one sampled call of a latency series, with what a trace backend needs to show it.

At the bottom layer (imports nothing): the recorder keeps them, the bridge and ``/metrics``
export them, the detector's sources read them back (in-process, or from Prometheus'
``/api/v1/query_exemplars``) and alerts carry their trace ids.
"""

from __future__ import annotations

from typing import NamedTuple


class Exemplar(NamedTuple):
    value: float  # seconds
    trace_id: int
    span_id: int
    time_ns: int  # wall clock, Unix nanoseconds

    @property
    def trace_id_hex(self) -> str:
        return f"{self.trace_id:032x}"

    @property
    def span_id_hex(self) -> str:
        return f"{self.span_id:016x}"
