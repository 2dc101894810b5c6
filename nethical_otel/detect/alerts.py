"""Alert life cycle, as Prometheus has it: inactive -> pending -> firing -> resolved.

A condition that becomes true makes its alert *pending*; true for ``for_s`` it *fires*;
once firing it stays firing until the condition has been false for ``keep_firing_for_s``
(so a series hovering at the threshold does not flap), then it is *resolved* and sent
once more with ``endsAt`` = now. An evaluation that cannot decide (too few samples)
holds the current state instead of counting as "false".

The rule engine knows nothing about Alertmanager: sinks receive ``Alert`` objects.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime, timezone


class State(enum.Enum):
    INACTIVE = "inactive"
    PENDING = "pending"
    FIRING = "firing"
    RESOLVED = "resolved"


@dataclass
class Alert:
    """One alert instance; ``labels`` identify it (they include ``alertname``)."""

    labels: dict[str, str]
    annotations: dict[str, str] = field(default_factory=dict)
    state: State = State.INACTIVE
    active_since: float | None = None  # condition first true (pending since)
    fired_at: float | None = None  # startsAt
    last_true: float | None = None
    resolved_at: float | None = None

    @property
    def key(self) -> tuple[tuple[str, str], ...]:
        return tuple(sorted(self.labels.items()))

    @property
    def name(self) -> str:
        return self.labels["alertname"]


def iso(ts: float) -> str:
    """RFC 3339 in UTC with milliseconds, as Alertmanager's API wants it."""
    return (
        datetime.fromtimestamp(ts, tz=timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    )


@dataclass(frozen=True)
class Timing:
    for_s: float = 60.0
    keep_firing_for_s: float = 120.0


class AlertBook:
    """The state of every alert a detector knows, advanced once per evaluation step."""

    def __init__(self, timing: Timing) -> None:
        self.timing = timing
        self._alerts: dict[tuple, Alert] = {}

    def observe(
        self,
        labels: dict[str, str],
        condition: bool | None,
        annotations: dict[str, str],
        now: float,
        key: tuple[tuple[str, str], ...] | None = None,
    ) -> Alert:
        """Advance one alert: ``condition`` True/False, or None when the data cannot tell.
        ``key``: ``Alert.key`` of these labels, when the caller keeps it from step to step."""
        key = key or tuple(sorted(labels.items()))
        alert = self._alerts.get(key)
        if alert is None:
            if not condition:  # inactive and staying so: nothing to keep (most series, most steps)
                return Alert(labels=labels)
            alert = self._alerts[key] = Alert(labels=dict(labels))
        if condition is None:
            return alert
        if condition:
            alert.annotations = annotations
            alert.last_true = now
            if alert.state in (State.INACTIVE, State.RESOLVED):
                alert.state, alert.active_since = State.PENDING, now
                alert.fired_at = alert.resolved_at = None
            if alert.state is State.PENDING and now - alert.active_since >= self.timing.for_s:
                alert.state, alert.fired_at = State.FIRING, now
            return alert
        if alert.state is State.PENDING:
            alert.state, alert.active_since = State.INACTIVE, None
        elif alert.state is State.FIRING and now - alert.last_true >= self.timing.keep_firing_for_s:
            alert.state, alert.resolved_at = State.RESOLVED, now
        return alert

    def alerts(self, *states: State) -> list[Alert]:
        return [a for a in self._alerts.values() if not states or a.state in states]

    def forget_resolved(self) -> None:
        """Drop resolved alerts once the sinks have been told (keeps memory bounded)."""
        for key in [k for k, a in self._alerts.items() if a.state is State.RESOLVED]:
            self._alerts[key].state = State.INACTIVE
