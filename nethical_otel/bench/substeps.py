"""The instrumented sub-steps of a load run, and how they changed between two runs.

While ``load`` drives an in-process target, every ``@instrument``ed call and ``action()``
block of the target records into a metrics-only pipeline (no spans, no exporter, no
``/metrics``: about a microsecond per call, the same on both sides of a comparison), or into
the target's own pipeline when it called ``nethical_otel.setup()`` itself. The calls that end
after the warm-up are kept in the run's sidecar (``details["substeps"]``): per parent action,
its calls and time, and the histogram of each of its sub-steps (calls nested in it).

``compare`` ranks the sub-steps of each parent the way the detector's alerts do
(``stats.attribution``: the change of their time per parent call, with their own quantile
change and its significance under the policy), for "Where the time went" in the comment.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from nethical_otel.names import ACTION, COHORT, PARENT
from nethical_otel.stats import LatencyHistogram, Policy, StatsError, evaluate
from nethical_otel.stats.attribution import Side, SubStepChange, ranked, substep_change

_log = logging.getLogger(__name__)

Key = tuple[str, str, str]  # (action, parent or "", cohort or "")


class SubStepRecorder:
    """Cumulative histograms of the instrumented calls, taken at the warm-up's end and at the end."""

    def __init__(self, registry: Any) -> None:
        self._registry = registry
        self._start: dict[Key, LatencyHistogram] = {}

    def _snapshot(self) -> dict[Key, LatencyHistogram]:
        out: dict[Key, LatencyHistogram] = {}
        for attributes, hist in self._registry.histograms():
            if ACTION not in attributes:  # the overflow series
                continue
            key = (attributes[ACTION], attributes.get(PARENT, ""), attributes.get(COHORT, ""))
            if key in out:
                out[key].merge(hist)
            else:
                out[key] = hist
        return out

    def mark_start(self) -> None:
        """The measured run starts now: what came before (the warm-up) is left out."""
        self._start = self._snapshot()

    def document(self) -> dict[str, Any] | None:
        """The sidecar's ``substeps``: None when the target made no nested instrumented call."""
        end = self._snapshot()
        windows = {}
        for key, hist in end.items():
            before = self._start.get(key)
            try:
                windows[key] = hist.subtract(before) if before is not None else hist
            except StatsError:  # a series reset under us: the whole of it
                windows[key] = hist
        steps = [(key, h) for key, h in windows.items() if key[1] and h.count]
        if not steps:
            return None
        parents = {(parent, cohort) for (_, parent, cohort), _ in steps}
        return {
            "parents": [
                {"action": a, "cohort": c, "histogram": windows[(a, "", c)].to_dict()}
                for a, c in sorted(parents)
                if (a, "", c) in windows
            ],
            "steps": [
                {"action": a, "parent": p, "cohort": c, "histogram": h.to_dict()}
                for (a, p, c), h in sorted(steps)
            ],
        }


@contextlib.contextmanager
def recording() -> Iterator[SubStepRecorder | None]:
    """Record the target's instrumented calls for the run (None: nothing to record into)."""
    from nethical_otel.telemetry.instrument import STATE

    own = STATE.pipeline
    registry = getattr(own, "registry", None)
    if registry is not None:  # the target's own setup() (the API path's registry yields no data)
        yield SubStepRecorder(registry)
        return
    if own is not None:  # telemetry disabled (OTEL_SDK_DISABLED)
        yield None
        return
    from nethical_otel.config import Settings
    from nethical_otel.telemetry.setup import Telemetry

    telemetry = Telemetry(
        Settings(
            service_name="nethical-load",
            traces_enabled=False,
            prometheus_enabled=False,
            metrics_exporter="none",
            traces_exporter="none",
        ),
        set_global=False,
    )
    try:
        yield SubStepRecorder(telemetry.registry)
    finally:
        telemetry.shutdown()


@dataclass(frozen=True)
class ParentChanges:
    """The ranked sub-steps of one parent action of the runs."""

    action: str
    cohort: str
    changes: list[SubStepChange]


def _read(document: Any) -> tuple[dict[tuple[str, str], LatencyHistogram], dict[Key, LatencyHistogram]]:
    parents = {
        (p["action"], p["cohort"]): LatencyHistogram.from_dict(p["histogram"]) for p in document["parents"]
    }
    steps = {
        (s["action"], s["parent"], s["cohort"]): LatencyHistogram.from_dict(s["histogram"])
        for s in document["steps"]
    }
    return parents, steps


def diff_substeps(
    baseline: dict[str, Any] | None,
    current: dict[str, Any] | None,
    policy: Policy,
    where: str = "the runs",
) -> list[ParentChanges]:
    """Each parent's sub-steps whose time per parent call grew, ranked (parents with none left
    out). Sub-steps of one run's own are compared against nothing: they are not ranked."""
    if not baseline or not current:
        return []
    try:
        then_parents, then_steps = _read(baseline)
        now_parents, now_steps = _read(current)
    except (KeyError, TypeError, ValueError, StatsError) as exc:
        _log.warning("nethical-otel: the sub-steps of %s cannot be read (%s); left out", where, exc)
        return []
    metric = policy.quantiles[0].name if policy.quantiles else "p50"
    out = []
    for (action, cohort), parent_now in sorted(now_parents.items()):
        parent_then = then_parents.get((action, cohort))
        if parent_then is None:
            continue
        # Both sides are whole runs: "per second" is per run, the same seconds for parent and step.
        changes = []
        for (step, parent, step_cohort), now in now_steps.items():
            then = then_steps.get((step, parent, step_cohort))
            if parent != action or step_cohort != cohort or then is None:
                continue
            findings = evaluate(policy, then, now)
            finding = next((f for f in findings if f.metric == metric), None)
            changes.append(
                substep_change(
                    step, Side(parent_now, 1.0), Side(parent_then, 1.0), Side(now, 1.0), Side(then, 1.0),
                    finding, metric,
                )
            )  # fmt: skip
        found = ranked(changes)
        if found:
            out.append(ParentChanges(action, cohort, found))
    return out
