"""Where a latency regression went: its sub-steps over the same windows, and exemplars.

The detector compares each sub-step (``SeriesKey.parent``) with its own baseline as it does
any series, without alerts of its own. When a parent's latency alert holds, its sub-steps are
ranked by the change of their time per parent call (``stats.attribution``); the alert names
the top ones and carries up to three exemplar trace ids from the window's slow tail, with a
link when a trace URL template is configured.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from nethical_otel.stats.attribution import Side, SubStepChange, ranked, substep_change

if TYPE_CHECKING:
    from nethical_otel.detect.baseline import Baseline
    from nethical_otel.detect.detector import SeriesReport
    from nethical_otel.detect.sources import Window

TOP_EXEMPLARS = 3


def rank_substeps(
    window: Window, baseline: Baseline, substeps: list[SeriesReport], metric: str
) -> list[SubStepChange]:
    """The detector's: a parent's window and baseline against those of its sub-steps."""
    parent_now = Side(window.histogram, window.seconds)
    parent_then = Side(baseline.histogram, baseline.window_s)
    return ranked(
        substep_change(
            report.key.action,
            parent_now,
            parent_then,
            Side(report.window.histogram, report.window.seconds),
            Side(report.baseline.histogram, report.baseline.window_s),
            next((f for f in report.findings if f.metric == metric), None),
            metric,
        )
        for report in substeps
        if report.baseline is not None
    )


def slow_exemplars(source: Any, key: Any, start: float, end: float) -> list[Any]:
    """Up to ``TOP_EXEMPLARS`` exemplars of the window's slow tail, slowest first ([] when the
    source keeps none)."""
    find = getattr(source, "exemplars", None)
    return list(find(key, start, end))[:TOP_EXEMPLARS] if find is not None else []


def trace_link(template: str | None, trace_id: str) -> str | None:
    """``template`` with ``{trace_id}`` replaced (plain replacement: other braces stay as they are)."""
    return template.replace("{trace_id}", trace_id) if template else None


def annotations(
    changes: list[SubStepChange], exemplars: list[Any], trace_url_template: str | None
) -> dict[str, str]:
    """The alert annotations saying where the time went (none when there is nothing to say)."""
    out: dict[str, str] = {}
    if changes:
        out["substeps"] = "; ".join(c.text() for c in changes)
        if changes[0].carries_most:
            out["top_substep"] = changes[0].action
    if exemplars:
        ids = [e.trace_id_hex for e in exemplars]
        out["exemplar_trace_ids"] = ",".join(ids)
        link = trace_link(trace_url_template, ids[0])
        if link:
            out["trace_url"] = link
    return out
