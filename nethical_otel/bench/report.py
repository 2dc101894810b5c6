"""A comparison as the pull-request comment (markdown), as JSON, or as text for a terminal.

The markdown is the regression guide's comment: a title that says whether anything
regressed, the ``| Metric | Baseline | Current | Change |`` table, one line per breached
threshold or budget, how large a change the runs could have shown (the minimum detectable
effect of each test), and the configuration footer. It starts with an HTML comment
(``MARKER``) that the workflow uses to find and update its own comment instead of adding one
per push.

When something regressed and both runs have a CPU profile (``load --profile``), the markdown
and the text add "Where the time went": the functions whose self time per target call moved
most (``cpuprofile.diff_profiles``); without a profile on one side, one line says how to get
one. The JSON has the profile diff whenever both profiles are there.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from typing import Any

from nethical_otel.bench.budget import BudgetCheck
from nethical_otel.bench.compare import MetricChange, RunComparison
from nethical_otel.bench.cpuprofile import FunctionChange, ProfileDiff, display_name, location
from nethical_otel.bench.results import RunResult
from nethical_otel.stats.attribution import ALL, SubStepChange
from nethical_otel.stats.significance import MDE_POWER

MARKER = "<!-- nethical-otel:performance-benchmark -->"
FORMATS = ("markdown", "json", "text")
_ICONS = {"critical": "❌", "warning": "⚠️", "info": "ℹ️"}


def render(comparison: RunComparison, fmt: str) -> str:
    if fmt == "markdown":
        return markdown(comparison)
    if fmt == "json":
        return json.dumps(to_json(comparison), indent=2, allow_nan=False) + "\n"
    if fmt == "text":
        return text(comparison)
    raise ValueError(f"format must be one of {FORMATS}, got {fmt!r}")


# -- pieces shared by the formats ------------------------------------------------------------


def table_rows(comparison: RunComparison) -> list[MetricChange]:
    """Latency rows, then throughput, then error rate: the guide's order."""
    latency = [m for m in comparison.metrics if m.unit == "ms"]
    by_key = {m.key: m for m in comparison.metrics}
    return [*latency, by_key["throughput"], by_key["error_rate"]]


def value_text(value: float, unit: str) -> str:
    if value is None or not math.isfinite(value):
        return "n/a"
    if unit == "ms":
        return f"{value:.2f} ms"
    if unit == "req/s":
        return f"{value:.1f} req/s"
    return f"{value:.2f}%"


def change_text(m: MetricChange) -> str:
    """``+12.3%`` (or ``+0.40 pp`` for the error rate) and what the change means."""
    if not (math.isfinite(m.baseline) and math.isfinite(m.current)):
        change = "n/a"
    elif m.unit == "%":
        change = f"{m.change_pp:+.2f} pp"
    elif math.isinf(m.change_pct):
        change = "new"
    else:
        change = f"{m.change_pct:+.1f}%"
    known = math.isfinite(m.baseline) and math.isfinite(m.current)
    suffix = {
        "regression": f" {_ICONS.get(m.severity or '', '⚠️')}",
        "improvement": " (improved)",
        "not_significant": " (not significant" + _would_show(m) + ")",
        "inconclusive": " (too few samples)" if known else " (inconclusive)",
    }.get(m.status, "")
    return change + suffix


def _would_show(m: MetricChange) -> str:
    """``"; ≥ +41% would show"``: how large the change must be to be significant."""
    if not math.isfinite(m.mde):
        return ""
    return f"; {mde_text(m, signed=True)} would show"


def mde_text(m: MetricChange, *, signed: bool = False) -> str:
    """A finite minimum detectable effect in the row's unit: ``≥ 7.5%``, ``≥ 0.45 pp``;
    ``signed`` gives the direction that counts (``≥ +7.5%``, ``≤ -6%`` for throughput)."""
    if m.unit == "%":
        return f"≥ {'+' if signed else ''}{m.mde:.2f} pp"
    size = f"{m.mde * 100:.1f}%" if m.mde < 0.1 else f"{m.mde * 100:.0f}%"
    if not signed:
        return f"≥ {size}"
    return f"≤ -{size}" if m.unit == "req/s" else f"≥ +{size}"


def breach_lines(comparison: RunComparison) -> list[str]:
    """One sentence per breached threshold and per exceeded budget."""
    lines = []
    for m in comparison.regressions:
        icon = _ICONS.get(m.severity or "", "⚠️")
        lines.append(f"{icon} **{m.label}** {_breach_sentence(m)}")
    for b in comparison.budget_exceeded:
        lines.append(f"❌ **Budget**: {_budget_sentence(b)}")
    return lines


def _breach_sentence(m: MetricChange) -> str:
    severity = m.severity or "untracked"
    c = m.comparison
    if m.unit == "%":
        detail = ""
        if c is not None and math.isfinite(c.ci_low):
            detail = f"; {c.confidence:.0%} interval {c.ci_low:+.2f} to {c.ci_high:+.2f} pp"
        return f"rose by {m.change_pp:.2f} pp (threshold {m.threshold:g} pp, {severity}){detail}"
    if m.unit == "req/s":
        detail = ""
        if c is not None and c.interval == "ratio" and math.isfinite(c.ci_high):
            detail = f"; {c.confidence:.0%} interval of the ratio {c.ci_low:.3f} to {c.ci_high:.3f}"
        return f"fell by {-m.change_pct:.1f}% (allowed drop {m.threshold:.0%}, {severity}){detail}"
    if m.tested and c is not None:
        detail = f"; {c.confidence:.0%} interval of the ratio {c.ci_low:.3f} to {c.ci_high:.3f}"
    else:
        detail = "; point estimates, not tested for significance"
    return f"increased by {m.change_pct:.1f}% (threshold {m.threshold:.0%}, {severity}){detail}"


def _budget_sentence(b: BudgetCheck) -> str:
    op = ">" if b.upper else "<"
    kind = "budget" if b.upper else "minimum"
    return f"{b.label} {value_text(b.value, b.unit)} {op} {kind} {value_text(b.limit, b.unit)}"


def _config(run: RunResult) -> str:
    def num(value: float | None, noun: str = "") -> str:
        text = "?" if value is None else f"{value:g}"
        if not noun:
            return text
        return f"{text} {noun[:-1] if value == 1 else noun}"  # "1 agent", "2 agents"

    return f"{num(run.agents, 'agents')}, {num(run.target_rps)} RPS, {num(run.duration_s, 'seconds')}"


def _sample_note(comparison: RunComparison) -> str | None:
    if comparison.point_estimates_only:
        return None
    p = comparison.policy
    return (
        f"Latency changes tested at {p.confidence:.0%} confidence on the full histograms "
        f"({comparison.baseline.requests:,} vs {comparison.current.requests:,} requests); "
        "*not significant* means beyond the threshold but within noise."
    )


def sensitivity_note(comparison: RunComparison) -> str | None:
    """What the runs could have caught where nothing was flagged, from each test's minimum
    detectable effect: "No regression; a slowdown of ≥ 7.5% at p50 ... would have been detected
    at 99% confidence (80% power); too few calls to prove anything at p99". None when no
    test computed one."""
    slowdowns, others, blind_quantiles, blind = [], [], [], []
    for m in table_rows(comparison):
        if m.status == "regression" or math.isnan(m.mde):
            continue
        if math.isinf(m.mde):
            if m.unit == "ms":
                blind_quantiles.append(m.key)
            else:
                blind.append("about the error rate" if m.unit == "%" else "about throughput")
        elif m.unit == "ms":
            slowdowns.append(f"{mde_text(m)} at {m.key}")
        elif m.unit == "%":
            others.append(f"a rise in the error rate of {mde_text(m)}")
        else:
            others.append(f"a throughput drop of {mde_text(m)}")
    if blind_quantiles:
        blind.insert(0, f"at {_join(blind_quantiles, 'or')}")
    if not (slowdowns or others or blind):
        return None
    phrases = ([f"a slowdown of {_join(slowdowns, 'or')}"] if slowdowns else []) + others
    parts = []
    if phrases:
        level = f"{comparison.policy.confidence:.0%} confidence ({MDE_POWER:.0%} power)"
        parts.append(f"{_join(phrases, 'or')} would have been detected at {level}")
    if blind:
        parts.append(f"too few calls to prove anything {_join(blind, 'or')}")
    if comparison.regressions:
        return "Where nothing was flagged, " + "; ".join(parts) + "."
    return ("No regression; " if phrases else "No regression, but ") + "; ".join(parts) + "."


def _join(items: list[str], word: str) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + f" {word} " + items[-1]


# -- where the time went (CPU profiles) -----------------------------------------------------

PROFILE_HEADER = ("Function", "Where", "Baseline ms/call", "Current ms/call", "Change", "Cumulative ms/call")


def _per_call(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def profile_cells(row: FunctionChange) -> tuple[str, ...]:
    """A row of the table: name, file:line, own ms per target call on each side, the change
    (ms and %), cumulative ms per call baseline -> current."""
    pct = row.change_pct
    change = f"{row.change_ms:+.3f} ms" + (" (new)" if pct is None else f" ({pct:+.1f}%)")
    cumulative = f"{_per_call(row.base_cumulative_ms)} → {_per_call(row.current_cumulative_ms)}"
    via = f" ← {display_name(row.via.function)}" if row.via is not None else ""
    return (
        display_name(row.function) + via,
        location(row.file, row.line),
        _per_call(row.base_ms),
        _per_call(row.current_ms),
        change,
        cumulative,
    )


def profile_intro(diff: ProfileDiff) -> str:
    return (
        f"CPU profiles after the measured runs (cProfile, one call at a time: {diff.base_calls:,} calls "
        f"on the baseline, {diff.current_calls:,} on the current run); profiled code "
        f"{diff.base_ms:.3f} → {diff.current_ms:.3f} ms per call. Ranked by the change of self time per "
        "call (own code and the built-ins it calls); cumulative adds its callees; "
        "f ← g: g is the caller through which a shared function's time moved most."
    )


SUBSTEP_HEADER = (
    "Action", "Sub-step", "Baseline ms/call", "Current ms/call", "Change", "Share", "Own change"
)  # fmt: skip
SUBSTEP_INTRO = (
    "Instrumented sub-steps (calls nested in the action), in ms per call of the action, ranked "
    "as the detector's alerts rank them; share: of the action's change of mean latency."
)


def substep_cells(action: str, change: SubStepChange) -> tuple[str, ...]:
    if not math.isfinite(change.share):
        share = "–"
    else:
        share = "all" if change.share >= ALL else f"{change.share:.0%}"
    own = "n/a" if math.isnan(change.change_pct) else f"{change.metric} {change.change_pct:+.1f}%"
    base, now = change.baseline_per_call_s * 1e3, change.current_per_call_s * 1e3
    return (
        action,
        change.action,
        f"{base:.3f}",
        f"{now:.3f}",
        f"{change.delta_s * 1e3:+.3f} ms ({(now / base - 1) * 100:+.1f}%)" if base > 0 else f"{now:+.3f} ms",
        share,
        own + (" (significant)" if change.significant else ""),
    )


def _substep_rows(comparison: RunComparison) -> list[tuple[str, ...]]:
    return [substep_cells(g.action, c) for g in comparison.substeps for c in g.changes]


def _show_where(comparison: RunComparison) -> bool:
    return comparison.regressed and (comparison.profile is not None or bool(comparison.substeps))


def _missing_profile_note(comparison: RunComparison) -> str | None:
    if not comparison.regressed or comparison.profile is not None or not comparison.profile_missing:
        return None
    names = " and ".join(f"`{m}`" for m in comparison.profile_missing)
    return (
        f"No CPU profile for {names}: run `nethical-otel load --profile` on both sides to see "
        "where the time went."
    )


def _substeps_markdown(comparison: RunComparison) -> list[str]:
    rows = _substep_rows(comparison)
    if not rows:
        return []
    lines = [SUBSTEP_INTRO, "", "| " + " | ".join(SUBSTEP_HEADER) + " |"]
    lines.append("|" + "|".join("---" for _ in SUBSTEP_HEADER) + "|")
    for action, step, *rest in rows:
        lines.append("| " + " | ".join([f"`{action}`", f"`{step}`", *rest]) + " |")
    return [*lines, ""]


def _profile_markdown(diff: ProfileDiff) -> list[str]:
    lines = [profile_intro(diff), ""]
    if not diff.rows:
        return [*lines, "No function's time per call changed by 0.001 ms or more.", ""]
    lines += ["| " + " | ".join(PROFILE_HEADER) + " |", "|" + "|".join("---" for _ in PROFILE_HEADER) + "|"]
    for row in diff.rows:
        name, where, *rest = profile_cells(row)
        function, arrow, caller = name.partition(" ← ")
        shown = f"`{function}`" + (f" ← `{caller}`" if arrow else "")
        cells = [shown, f"`{where}`", *rest]
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return [*lines, ""]


def _table_text(rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  " + "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in rows]


def _substeps_text(comparison: RunComparison) -> list[str]:
    rows = _substep_rows(comparison)
    return ["  " + SUBSTEP_INTRO, *_table_text([SUBSTEP_HEADER, *rows])] if rows else []


def _profile_text(diff: ProfileDiff) -> list[str]:
    lines = ["  " + profile_intro(diff)]
    if not diff.rows:
        return [*lines, "  No function's time per call changed by 0.001 ms or more."]
    return [*lines, *_table_text([PROFILE_HEADER, *(profile_cells(row) for row in diff.rows)])]


# -- formats ---------------------------------------------------------------------------------


def markdown(comparison: RunComparison) -> str:
    if comparison.regressed:
        lines = [
            MARKER,
            "## ⚠️ Performance Benchmark Results",
            "",
            "### **Performance Regression Detected**",
            "",
        ]
    else:
        lines = [MARKER, "## ✅ Performance Benchmark Results", "", "### No Performance Regression", ""]
    lines += ["| Metric | Baseline | Current | Change |", "|--------|----------|---------|--------|"]
    for m in table_rows(comparison):
        cells = (m.label, value_text(m.baseline, m.unit), value_text(m.current, m.unit), change_text(m))
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    breaches = breach_lines(comparison)
    if breaches:
        lines += [f"- {line}" for line in breaches] + [""]
    if _show_where(comparison):
        lines += ["### Where the time went", "", *_substeps_markdown(comparison)]
        if comparison.profile is not None:
            lines += _profile_markdown(comparison.profile)
    notes = [
        n
        for n in (
            sensitivity_note(comparison),
            _sample_note(comparison),
            *comparison.notes,
            _missing_profile_note(comparison),
        )
        if n
    ]
    for note in notes:
        lines += [f"> {note}", ""]
    lines += [
        "---",
        f"*Benchmark Configuration: {_config(comparison.current)}*",
        f"*Baseline: `{comparison.baseline.branch}`*",
    ]
    return "\n".join(lines) + "\n"


def text(comparison: RunComparison) -> str:
    verdict = "REGRESSION DETECTED" if comparison.regressed else "no performance regression"
    out = [
        f"Performance benchmark: {verdict}",
        f"  baseline {comparison.baseline.label()} ({comparison.baseline.source or 'in memory'})",
        f"  current  {comparison.current.label()} ({comparison.current.source or 'in memory'})",
        "",
    ]
    rows = [("Metric", "Baseline", "Current", "Change")] + [
        (m.label, value_text(m.baseline, m.unit), value_text(m.current, m.unit), change_text(m))
        for m in table_rows(comparison)
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    for row in rows:
        out.append("  ".join(cell.ljust(widths[i]) if i < 3 else cell for i, cell in enumerate(row)).rstrip())
    out.append("")
    for line in breach_lines(comparison):
        out.append(line.replace("**", ""))
    for check in comparison.budget:
        if not check.exceeded:
            out.append(check.line())
    if _show_where(comparison):
        out += ["Where the time went:", *_substeps_text(comparison)]
        if comparison.profile is not None:
            out += _profile_text(comparison.profile)
    for note in (sensitivity_note(comparison), _sample_note(comparison), *comparison.notes):
        if note:
            out.append(note.replace("*", ""))
    missing = _missing_profile_note(comparison)
    if missing:
        out.append(missing.replace("`", ""))
    out.append(
        f"Benchmark configuration: {_config(comparison.current)}; baseline: {comparison.baseline.branch}"
    )
    return "\n".join(out) + "\n"


def to_json(comparison: RunComparison) -> dict[str, Any]:
    def clean(value: Any) -> Any:
        if isinstance(value, float) and not math.isfinite(value):
            return None
        return value

    def metric(m: MetricChange) -> dict[str, Any]:
        c = m.comparison
        return {
            "metric": m.key,
            "label": m.label,
            "unit": m.unit,
            "baseline": clean(m.baseline),
            "current": clean(m.current),
            "change_pct": clean(m.change_pct),
            "change_pp": clean(m.change_pp) if m.unit == "%" else None,
            "status": m.status,
            "severity": m.severity,
            "threshold": m.threshold,
            "tested": m.tested,
            "interval": c.interval if c is not None and m.tested else None,
            "ci_low": clean(c.ci_low) if c is not None and m.tested else None,
            "ci_high": clean(c.ci_high) if c is not None and m.tested else None,
            "mde": clean(m.mde),
            "mde_unbounded": math.isinf(m.mde),
            "reason": m.reason,
        }

    def run(r: RunResult) -> dict[str, Any]:
        return {**{k: clean(v) for k, v in r.row().items()}, "source": r.source, "histogram": r.has_histogram}

    return {
        "regression": comparison.regressed,
        "failed": comparison.failed,
        "exit_code": comparison.exit_code,
        "fail_on": comparison.fail_on,
        "point_estimates_only": comparison.point_estimates_only,
        "confidence": comparison.policy.confidence,
        "series": comparison.series.labels(),
        "policy": comparison.policy.to_mapping(),
        "baseline": run(comparison.baseline),
        "current": run(comparison.current),
        "metrics": [metric(m) for m in table_rows(comparison)],
        "budget": [
            {
                "budget": b.key,
                "label": b.label,
                "unit": b.unit,
                "limit": b.limit,
                "value": clean(b.value),
                "exceeded": b.exceeded,
            }
            for b in comparison.budget
        ],
        "notes": comparison.notes,
        "profile": _clean_tree(comparison.profile.to_dict()) if comparison.profile is not None else None,
        "profile_missing": comparison.profile_missing,
        "substeps": [
            {
                "action": group.action,
                "cohort": group.cohort,
                "changes": [_clean_tree(asdict(c)) for c in group.changes],
            }
            for group in comparison.substeps
        ],
    }


def _clean_tree(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _clean_tree(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean_tree(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
