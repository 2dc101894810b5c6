"""How much of a parent's latency change a sub-step carries: one rule for the detector and CI.

A sub-step is an instrumented call made inside calls of another one (its parent). Its part in
the parent's change is the change of its time *per parent call*,

    (sub-step time per second) / (parent calls per second),  now against before,

which is robust to the two sides covering different lengths of time, and adds up over the
sub-steps to at most the parent's change of mean latency (the rest is the parent's own code).
``detect.attribution`` ranks a regressed series' sub-steps with it for the alert;
``bench.substeps`` ranks those of two load runs for the pull-request comment.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from nethical_otel.stats.histogram import LatencyHistogram
from nethical_otel.stats.policy import Finding

TOP_SUBSTEPS = 3
# A sub-step is named when its own change is significant or it carries this much of the
# parent's slowdown (noise in a steady sub-step is a few per cent of it), and said to hold
# "most" of it from half.
MIN_SHARE = 0.1
MOST = 0.5
ALL = 0.95


@dataclass(frozen=True)
class SubStepChange:
    """One sub-step's part in its parent's change (seconds per parent call)."""

    action: str
    baseline_per_call_s: float
    current_per_call_s: float
    share: float  # of the parent's change of mean latency; NaN when the parent's did not grow
    metric: str  # the quantile compared ("p50"), as the parent's alert
    change_pct: float  # the sub-step's own change at that quantile
    significant: bool  # that change is a regression under the sub-step's policy

    @property
    def delta_s(self) -> float:
        return self.current_per_call_s - self.baseline_per_call_s

    @property
    def named(self) -> bool:
        """Worth naming: significant, or a real part of the parent's slowdown."""
        return self.significant or (math.isfinite(self.share) and self.share >= MIN_SHARE)

    @property
    def carries_most(self) -> bool:
        """Half the parent's slowdown or more (when that is unknown: significant on its own)."""
        return self.share >= MOST if math.isfinite(self.share) else self.significant

    def text(self) -> str:
        """``db.fetch +1.60 ms per call (92% of the slowdown), p50 +41.0% (significant)``"""
        if not math.isfinite(self.share):
            share = ""
        elif self.share >= ALL:  # beyond 100 %: the parent's other parts got faster, by chance or not
            share = " (all of the slowdown)"
        else:
            share = f" ({self.share:.0%} of the slowdown)"
        own = "n/a" if math.isnan(self.change_pct) else f"{self.change_pct:+.1f}%"
        mark = " (significant)" if self.significant else ""
        return f"{self.action} {self.delta_s * 1000:+.2f} ms per call{share}, {self.metric} {own}{mark}"


@dataclass(frozen=True)
class Side:
    """What one side (the window, or the baseline) holds of a series: its histogram and the
    time it covers."""

    histogram: LatencyHistogram
    seconds: float


def _per_call(step: Side, parent: Side) -> float:
    """The sub-step's time per parent call, seconds."""
    if not (step.seconds > 0 and parent.histogram.count > 0 and parent.seconds > 0):
        return math.nan
    return (step.histogram.sum / step.seconds) / (parent.histogram.count / parent.seconds)


def substep_change(
    action: str,
    parent_now: Side,
    parent_then: Side,
    now: Side,
    then: Side,
    finding: Finding | None,
    metric: str,
) -> SubStepChange | None:
    """The sub-step's part in its parent's change (None when its time per parent call did not
    grow, or cannot be told). ``finding``: the sub-step's own comparison at ``metric``."""
    if not (parent_now.histogram.count and parent_then.histogram.count and now.histogram.count):
        return None
    after, before = _per_call(now, parent_now), _per_call(then, parent_then)
    if not (math.isfinite(after) and math.isfinite(before)) or after <= before:
        return None
    p_now, p_then = parent_now.histogram, parent_then.histogram
    parent_delta = p_now.sum / p_now.count - p_then.sum / p_then.count
    return SubStepChange(
        action=action,
        baseline_per_call_s=before,
        current_per_call_s=after,
        share=(after - before) / parent_delta if parent_delta > 0 else math.nan,
        metric=metric,
        change_pct=finding.comparison.change_pct if finding else math.nan,
        significant=bool(finding and finding.regressed),
    )


def ranked(changes: Iterable[SubStepChange | None]) -> list[SubStepChange]:
    """The ones worth naming (``named``), most time per parent call first, ``TOP_SUBSTEPS`` at most."""
    kept = sorted((c for c in changes if c is not None and c.named), key=lambda c: -c.delta_s)
    return kept[:TOP_SUBSTEPS]
