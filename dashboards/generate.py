"""Generates dashboards/nethical-performance.json with grafana-foundation-sdk (Grafana 11.6 schema).

    python dashboards/generate.py           write the JSON
    python dashboards/generate.py --check   exit 1 if the committed JSON is not what this makes
    ... --runbook-base-url URL              the Runbooks link ("" for none; default: this repository's)
    ... --trace-url-template URL            where an exemplar's trace opens, as the agent's
                                            trace_url_template: ``{trace_id}`` at its end

Edit this file, not the JSON: tests/integration/test_dashboards.py fails when they differ, and
runs every query below against a real Prometheus fed by the real collector.

Every threshold drawn (the policy lines of the ratio, throughput and error panels, the "too
quiet" cut of the detection-power table) comes from ``nethical_otel.stats.Policy()``, the
detector's default policy: change the policy, rerun this, commit the JSON.

Queries read two sources, each with its own label names:
- the service's histogram through the collector: ``nethical_action_duration_seconds_*`` with
  ``job`` (= service.name), ``nethical_action``, ``nethical_cohort``, ``error_type``;
- the detector agent's gauges: ``nethical_detector_*`` with ``service``, ``action``, ``cohort``,
  ``quantile`` (the recording rules in deploy/prometheus/rules speak the agent's names too).
Every metric, label and alert name comes from ``nethical_otel.names``.

One dashboard for both kinds of latency histogram: every query of the service's histogram reads
the native histogram where Prometheus has one (3.x fed over OTLP, collector/config.yaml) and
the classic ``le`` buckets otherwise (2.x, collector/config-classic.yaml): ``native or
classic``, the same rule as deploy/prometheus/rules (the absent side is empty and cheap). The
``or`` is between finished results (quantiles, rates), never inside ``histogram_quantile``,
which returns nothing for a series that has both. The heatmap has one query per kind (a
native histogram is drawn from its own buckets, classic ones need the ``heatmap`` format).

Exemplars: the latency queries (quantiles and heatmap) ask for exemplars (``exemplar: true``), the
sampled calls' ``trace_id`` / ``span_id``. Their link to the trace is the Prometheus data source's
``exemplarTraceIdDestinations`` (dashboards/provisioning/datasources/nethical.yml):
``${trace_url}${__value.raw}``, this dashboard's ``trace_url`` variable followed by the trace id.
Grafana applies no panel link or override to exemplars (its query runner gives their frames an
empty field config), but it interpolates dashboard variables into the data source's link; it
does so in one pass, which is why the variable holds the URL up to the id and not a template.

Sub-steps: an instrumented call made inside another one is recorded on the same histogram with
``nethical_action_parent`` (names.PARENT_LABEL) = the enclosing call's action. The sub-steps table
lists the children of ``$action``: p95 now and ``offset 1d`` (the recording rules' fallback
baseline), the change, and the time each spends per call of its parent. Every other query reads
the top-level calls only (``nethical_action_parent=""``), as the rules and the agent do.

Regression alerts, the agent's (``nethical_detector_alerts``) and the Prometheus rules'
(``ALERTS``), are drawn on every time series as an annotation, next to Grafana's own
"Annotations & Alerts".
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from grafana_foundation_sdk.builders import dashboard, heatmap, prometheus, table, timeseries
from grafana_foundation_sdk.builders.common import (
    GraphThresholdsStyleConfig,
    TableSortByFieldState,
    VizLegendOptions,
)
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.common import GraphThresholdsStyleMode, LegendDisplayMode, LegendPlacement
from grafana_foundation_sdk.models.dashboard import (
    DashboardCursorSync,
    DashboardLinkType,
    DashboardRangeMapOptions,
    DataSourceRef,
    DataTransformerConfig,
    DynamicConfigValue,
    MatcherConfig,
    RangeMap,
    Threshold,
    ThresholdsMode,
    ValueMappingResult,
    VariableOption,
    VariableRefresh,
    VariableSort,
)
from grafana_foundation_sdk.models.heatmap import HeatmapColorMode
from grafana_foundation_sdk.models.prometheus import PromQueryFormat

from nethical_otel import names
from nethical_otel.stats import Policy
from nethical_otel.stats.policy import SEVERITIES
from nethical_otel.stats.significance import MDE_POWER

OUTPUT = Path(__file__).resolve().parent / "nethical-performance.json"
UID = "nethical-performance"
DATASOURCE = DataSourceRef(type_val="prometheus", uid="${datasource}")
POLICY = Policy()
QUANTILES = tuple((rule.name, f"{rule.quantile:g}") for rule in POLICY.quantiles)
SEVERITY_COLORS = {"info": "blue", "warning": "orange", "critical": "red"}

RUNBOOK_BASE_URL = names.RUNBOOK_BASE_URL  # the default of --runbook-base-url, as the agent's
# The default of --trace-url-template: the agent's trace_url_template example (Jaeger's UI).
TRACE_URL_TEMPLATE = "http://127.0.0.1:16686/trace/{trace_id}"
TRACE_ID_PLACEHOLDER = "{trace_id}"
# The sub-steps' baseline: the same window one day earlier, as deploy/prometheus/rules' fallback.
BASELINE_OFFSET = "1d"

# The names, as Prometheus shows them (nethical_otel.names).
DURATION = names.DURATION_METRIC
JOB, ACTION, COHORT = names.JOB_LABEL, names.ACTION_LABEL, names.COHORT_LABEL
ERROR_TYPE = names.ERROR_TYPE_LABEL
PARENT = names.PARENT_LABEL
# An up-down counter without a unit: Prometheus shows its name with underscores and no suffix.
ACTIVE = names.ACTIVE_METRIC
REGRESSION_ALERTS = "|".join((names.LATENCY_ALERT, names.ERROR_RATE_ALERT, names.THROUGHPUT_ALERT))

# Selectors for the two label vocabularies (see the module docstring). The service's calls are
# its top-level ones: sub-steps (a parent set) have their own table, and are left out here as the
# recording rules and the agent leave them out.
TOP_LEVEL = f'{PARENT}=""'
SERVICE_SERIES = f'{JOB}=~"$service", {ACTION}=~"$action", {COHORT}=~"$cohort", {TOP_LEVEL}'
AGENT_SERIES = 'service=~"$service", action=~"$action", cohort=~"$cohort"'
ALERT_LABELS = "alertname, severity, service, action, cohort, quantile"
# Firing regression alerts of this selection: the agent's and the Prometheus rules' (same labels).
FIRING_ALERTS = (
    f"max by ({ALERT_LABELS}) "
    f'({names.DETECTOR_ALERTS}{{state="firing", {AGENT_SERIES}}}) '
    f"or max by ({ALERT_LABELS}) "
    f'(ALERTS{{alertstate="firing", alertname=~"{REGRESSION_ALERTS}", {AGENT_SERIES}}})'
)


def _rate(metric: str, selector: str, offset: str = "") -> str:
    series = f"{metric}{{{selector}}}" if selector else metric
    return f"rate({series}[$__rate_interval]{f' offset {offset}' if offset else ''})"


def _sum(by: str, expr: str) -> str:
    return f"sum by ({by}) ({expr})" if by else f"sum({expr})"


def _histogram_quantile(q: str, metric: str, selector: str, by: str = "", offset: str = "") -> str:
    """The ``q`` quantile per ``by``: of the native histogram, else of the ``le`` buckets."""
    classic_by = f"{by}, le" if by else "le"
    return (f"histogram_quantile({q}, {_sum(by, _rate(metric, selector, offset))}) or "
            f"histogram_quantile({q}, {_sum(classic_by, _rate(f'{metric}_bucket', selector, offset))})")


def _calls(by: str, selector: str) -> str:
    """Calls per second per ``by``: the native histogram's count, else the ``_count`` series."""
    return (f"{_sum(by, f'histogram_count({_rate(DURATION, selector)})')} or "
            f"{_sum(by, _rate(f'{DURATION}_count', selector))}")


def _series_of(selector: str = "") -> str:
    """A selector of the histogram's series, native (no suffix) or classic (``_count``)."""
    return f'{{__name__=~"{DURATION}(_count)?"{", " + selector if selector else ""}}}'


def _query(expr: str, legend: str, ref: str) -> prometheus.Dataquery:
    return prometheus.Dataquery().expr(expr).legend_format(legend).ref_id(ref).datasource(DATASOURCE)


def _dashed(name_regex: str) -> list:
    """Overrides that draw series matching ``name_regex`` as dashed lines (the baselines)."""
    return [
        dashboard.DashboardFieldConfigSourceOverrides()
        .matcher(MatcherConfig(id_val="byRegexp", options=name_regex))
        .properties([DynamicConfigValue(id_val="custom.lineStyle", value={"fill": "dash", "dash": [10, 10]})])
    ]


def _policy_line(name_regex: str, severity: str) -> list:
    """Overrides that draw series matching ``name_regex`` as dotted lines in the severity's colour."""
    return [
        dashboard.DashboardFieldConfigSourceOverrides()
        .matcher(MatcherConfig(id_val="byRegexp", options=name_regex))
        .properties([
            DynamicConfigValue(id_val="custom.lineStyle", value={"fill": "dot", "dash": [0, 10]}),
            DynamicConfigValue(id_val="color",
                               value={"mode": "fixed", "fixedColor": SEVERITY_COLORS[severity]}),
        ])
    ]


def _number(value: float) -> str:
    """A policy bound in PromQL and text: 1.10, 0.70, 0.01, 1.125."""
    text = f"{round(value, 9):.2f}"
    return text if float(text) == round(value, 9) else repr(round(value, 9))


def _percent(fraction: float) -> str:
    return f"{round(fraction * 100, 6):g}%"


def _ratio_steps() -> list[Threshold]:
    """One threshold line per quantile rule at its ratio limit, in its severity's colour (the
    most severe one where two rules share a line)."""
    lines: dict[float, str] = {}
    for rule in POLICY.quantiles:
        shared = lines.get(rule.ratio_limit)
        if shared is None or SEVERITIES.index(rule.severity) > SEVERITIES.index(shared):
            lines[rule.ratio_limit] = rule.severity
    return [Threshold(value=None, color="green")] + [
        Threshold(value=float(_number(limit)), color=SEVERITY_COLORS[severity])
        for limit, severity in sorted(lines.items())
    ]


def _legend() -> VizLegendOptions:
    return (VizLegendOptions().display_mode(LegendDisplayMode.TABLE).placement(LegendPlacement.BOTTOM)
            .show_legend(True).calcs(["lastNotNull", "max"]))


def latency_panel() -> timeseries.Panel:
    """p50/p95/p99 per cohort, one panel per action (repeated), baselines dashed on top."""
    panel = (
        timeseries.Panel()
        .title("Latency p50 / p95 / p99 vs baseline: $action")
        .description("Quantiles of nethical.action.duration from the services' histograms "
                     "(all instances merged; native where Prometheus has them, else `le` buckets); "
                     "dashed: the detector's baseline for the same quantile. Dots: exemplars, sampled "
                     "calls with a link to their trace ($trace_url).")
        .repeat("action").repeat_direction("h").max_per_row(3)
        .unit("s").height(9).span(24).legend(_legend())
    )
    ref = iter("ABCDEFGH")
    for name, q in QUANTILES:
        panel.with_target(_query(_histogram_quantile(q, DURATION, SERVICE_SERIES, COHORT),
                                 f"{name} {{{{{COHORT}}}}}", next(ref)).exemplar(True))
    for name, q in QUANTILES:
        panel.with_target(_query(
            f'max by (cohort) ({names.DETECTOR_BASELINE}{{{AGENT_SERIES}, quantile="{q}"}})',
            f"{name} baseline {{{{cohort}}}}", next(ref)))
    panel.overrides(_dashed(".* baseline .*"))
    return panel


def ratio_panel() -> timeseries.Panel:
    lines = ", ".join(f"{r.name} {_number(r.ratio_limit)} ({r.severity})" for r in POLICY.quantiles)
    expr = (
        f"max by (quantile, cohort) ({names.DETECTOR_RATIO}{{{AGENT_SERIES}}} "
        f"or on (service, action, cohort, quantile) nethical:action_duration_seconds:ratio{{{AGENT_SERIES}}})"
    )
    return (
        timeseries.Panel()
        .title("Current / baseline per quantile")
        .description(f"1.0 = as fast as the baseline. Policy lines: {lines}. From the detector agent; "
                     "from the recording rules where it is absent.")
        .unit("percentunit").height(8).span(12).legend(_legend())
        .with_target(_query(expr, "p{{quantile}} {{cohort}}", "A"))
        .thresholds(dashboard.ThresholdsConfig().mode(ThresholdsMode.ABSOLUTE).steps(_ratio_steps()))
        .thresholds_style(GraphThresholdsStyleConfig().mode(GraphThresholdsStyleMode.DASHED))
    )


def heatmap_panel() -> heatmap.Panel:
    return (
        heatmap.Panel()
        .title("Latency distribution")
        .description(f"Calls per second in each bucket of {DURATION}: the native histogram's own "
                     "buckets (A, Prometheus 3) or the `le` buckets (B, Prometheus 2.x); the other "
                     "query is empty. Dots: exemplars, sampled calls with a link to their trace.")
        .height(8).span(12)
        .with_target(_query(_sum("", _rate(DURATION, SERVICE_SERIES)), "", "A").exemplar(True))
        .with_target(_query(_sum("le", _rate(f"{DURATION}_bucket", SERVICE_SERIES)), "{{le}}", "B")
                     .format(PromQueryFormat.HEATMAP).exemplar(True))
        .calculate(False)
        .y_axis(heatmap.YAxisConfig().unit("s"))
        .color(heatmap.HeatmapColorOptions().mode(HeatmapColorMode.SCHEME).scheme("Oranges"))
    )


# The children of the selected actions (a regex matcher `.*` also matches no label: hence `!=""`),
# and the calls of those actions themselves, whatever their own parent. A child carries its
# parent's cohort.
CHILD_SERIES = f'{JOB}=~"$service", {PARENT}=~"$action", {PARENT}!="", {COHORT}=~"$cohort"'
PARENT_SERIES = f'{JOB}=~"$service", {ACTION}=~"$action", {COHORT}=~"$cohort"'
SUB_STEP_COLUMNS = {  # refId: column
    "A": "p95 now", "B": f"p95 {BASELINE_OFFSET} ago", "C": "change", "D": "time per parent call",
}


def _per_parent_call(child_sum: str, parent_count: str) -> str:
    """Seconds per parent call: each child's summed time over its parent's calls (joined by name)."""
    parents = f'label_replace({_sum(ACTION, parent_count)}, "{PARENT}", "$1", "{ACTION}", "(.*)")'
    return f"{_sum(f'{PARENT}, {ACTION}', child_sum)} / on ({PARENT}) group_left () {parents}"


def sub_steps_panel() -> table.Panel:
    """The sub-steps of the selected action: p95 now vs a day ago, and their share of a call."""
    q = dict(QUANTILES)["p95"]
    rule = next(r for r in POLICY.quantiles if r.name == "p95")
    by = f"{PARENT}, {ACTION}"
    now = _histogram_quantile(q, DURATION, CHILD_SERIES, by)
    baseline = _histogram_quantile(q, DURATION, CHILD_SERIES, by, BASELINE_OFFSET)
    native = _per_parent_call(f"histogram_sum({_rate(DURATION, CHILD_SERIES)})",
                              f"histogram_count({_rate(DURATION, PARENT_SERIES)})")
    classic = _per_parent_call(_rate(f"{DURATION}_sum", CHILD_SERIES),
                               _rate(f"{DURATION}_count", PARENT_SERIES))
    exprs = {"A": now, "B": baseline, "C": f"({now}) / ({baseline}) - 1", "D": f"({native}) or ({classic})"}
    panel = (
        table.Panel()
        .title("Sub-steps of $action: p95 now vs baseline")
        .description(
            f"Instrumented calls made inside $action ({names.PARENT} = $action; the cohorts merged): their "
            f"p95 over the last rate window, the same {BASELINE_OFFSET} earlier (the recording rules' "
            f"fallback baseline), the change (coloured from the p95 rule's {_percent(rule.threshold)}, "
            f"{rule.severity}) and the time each takes per call of its parent. The other panels "
            "show top-level calls only.")
        .height(8).span(24).unit("s")
        .no_value("No sub-steps recorded inside this action")
        .sort_by([TableSortByFieldState().display_name("change").desc(True)])
        .with_transformation(DataTransformerConfig(id_val="merge", options={}))
        .with_transformation(DataTransformerConfig(id_val="organize", options={
            "excludeByName": {"Time": True},
            "indexByName": {PARENT: 0, ACTION: 1, **{f"Value #{ref}": i for i, ref in enumerate(exprs, 2)}},
            "renameByName": {PARENT: "parent", ACTION: "sub-step",
                             **{f"Value #{ref}": SUB_STEP_COLUMNS[ref] for ref in exprs}},
        }))
        .override_by_name("change", [
            DynamicConfigValue(id_val="unit", value="percentunit"),
            DynamicConfigValue(id_val="decimals", value=1),
            DynamicConfigValue(id_val="custom.cellOptions", value={"type": "color-text"}),
            DynamicConfigValue(id_val="thresholds", value={"mode": "absolute", "steps": [
                {"value": None, "color": "green"},
                {"value": float(_number(rule.threshold)), "color": SEVERITY_COLORS[rule.severity]},
            ]}),
        ])
    )
    for ref, expr in exprs.items():
        panel.with_target(_query(expr, "", ref).instant().format(PromQueryFormat.TABLE))
    return panel


def throughput_panel() -> timeseries.Panel:
    by = f"{ACTION}, {COHORT}"
    floor = POLICY.throughput_floor
    baseline = f"max by (action, cohort) ({names.DETECTOR_BASELINE_RPS}{{{AGENT_SERIES}}})"
    return (
        timeseries.Panel()
        .title("Throughput")
        .description(f"Calls per second, failed ones included; dashed: the detector's baseline rate; "
                     f"dotted: the policy's line, a drop below {_percent(floor)} of the baseline is a "
                     f"{POLICY.throughput_severity}.")
        .unit("reqps").height(8).span(8).legend(_legend())
        .with_target(_query(_calls(by, SERVICE_SERIES), SERVICE_LEGEND, "A"))
        .with_target(_query(baseline, "{{action}} {{cohort}} baseline", "B"))
        .with_target(_query(f"{baseline} * {_number(floor)}", "{{action}} {{cohort}} policy line", "C"))
        .overrides(_dashed(".* baseline") + _policy_line(".* policy line", POLICY.throughput_severity))
    )


def error_panel() -> timeseries.Panel:
    by = f"{ACTION}, {COHORT}"
    calls = f"({_calls(by, SERVICE_SERIES)})"
    failed = "(" + _calls(by, f'{SERVICE_SERIES}, {ERROR_TYPE}!=""') + ")"
    baseline = f"max by (action, cohort) ({names.DETECTOR_BASELINE_ERRORS}{{{AGENT_SERIES}}})"
    points = POLICY.error_rate_pp
    return (
        timeseries.Panel()
        .title("Error rate")
        .description(f"Share of calls that raised (error_type set); 0 when none did. Dashed: baseline; "
                     f"dotted: the policy's line, +{points:g} percentage point{'' if points == 1 else 's'} "
                     f"over the baseline is {POLICY.error_rate_severity}.")
        .unit("percentunit").height(8).span(8).legend(_legend())
        .with_target(_query(f"({failed} or 0 * {calls}) / {calls}", SERVICE_LEGEND, "A"))
        .with_target(_query(baseline, "{{action}} {{cohort}} baseline", "B"))
        .with_target(_query(f"{baseline} + {_number(POLICY.error_rate_limit)}",
                            "{{action}} {{cohort}} policy line", "C"))
        .overrides(_dashed(".* baseline") + _policy_line(".* policy line", POLICY.error_rate_severity))
    )


def in_flight_panel() -> timeseries.Panel:
    return (
        timeseries.Panel()
        .title("In flight")
        .description(f"Calls running right now ({names.ACTIVE}), summed over instances.")
        .unit("short").height(8).span(8).legend(_legend())
        .with_target(_query(
            f'sum by ({ACTION}) ({ACTIVE}{{{JOB}=~"$service", {ACTION}=~"$action"}})',
            f"{{{{{ACTION}}}}}", "A"))
    )


def span_status_panel() -> timeseries.Panel:
    return (
        timeseries.Panel()
        .title("Spans by status (span metrics)")
        .description("The collector's span_metrics connector: the same calls counted from traces.")
        .unit("reqps").height(8).span(12).legend(_legend())
        .with_target(_query(
            f"sum by (span_name, status_code) (rate(traces_span_metrics_calls_total{{{SERVICE_SERIES}}}"
            f"[$__rate_interval]))", "{{span_name}} {{status_code}}", "A"))
    )


def alerts_panel() -> table.Panel:
    return (
        table.Panel()
        .title("Firing regression alerts")
        .description("Firing alerts of the detector agent and of the Prometheus rules for this "
                     "selection. Empty means nothing is firing.")
        .height(8).span(12).no_value("No regression alert is firing")
        .with_target(_query(FIRING_ALERTS, "", "A").instant().format(PromQueryFormat.TABLE))
        .with_transformation(DataTransformerConfig(
            id_val="organize", options={"excludeByName": {"Time": True, "Value": True}}))
    )


def detector_panel() -> timeseries.Panel:
    return (
        timeseries.Panel()
        .title("Detector: evaluation time and rate")
        .description("What regression detection costs: p99 of one evaluation pass, and passes per second.")
        .unit("s").height(8).span(12).legend(_legend())
        .with_target(_query(_histogram_quantile("0.99", names.DETECTOR_EVALUATION_DURATION, ""),
                            "evaluation p99", "A"))
        .with_target(_query(f"sum(rate({names.DETECTOR_EVALUATIONS}_total[$__rate_interval]))",
                            "evaluations/s", "B"))
        .override_by_name("evaluations/s", [DynamicConfigValue(id_val="unit", value="ops")])
    )


def collector_panel() -> timeseries.Panel:
    # The collector's own counters: `_total` or not depends on its version, accept both.
    def points(what: str) -> str:
        return f'sum(rate({{__name__=~"otelcol_receiver_{what}_metric_points(_total)?"}}[$__rate_interval]))'

    return (
        timeseries.Panel()
        .title("Collector: metric points accepted / refused")
        .description("Metric points per second the collector's receivers accepted and refused. Refused "
                     "points mean the memory_limiter is shedding load: scale the collectors out.")
        .unit("cps").height(8).span(12).legend(_legend())
        .with_target(_query(points("accepted"), "accepted/s", "A"))
        .with_target(_query(points("refused"), "refused/s", "B"))
    )


def quiet_series_panel() -> table.Panel:
    """Series whose detector comparison could not catch a change of its threshold's size."""
    by = "service, action, cohort, quantile"
    gauge = names.DETECTOR_MDE
    expr = "sort_desc(" + " or ".join(
        f'max by ({by}) ({gauge}{{{AGENT_SERIES}, quantile="{q}"}}) > {_number(rule.threshold)}'
        for (_, q), rule in zip(QUANTILES, POLICY.quantiles, strict=True)
    ) + ")"
    thresholds = ", ".join(f"{rule.name} {_percent(rule.threshold)}" for rule in POLICY.quantiles)
    return (
        table.Panel()
        .title("Detector: too quiet to prove a regression")
        .description(
            "Series whose last comparison could not have caught a slowdown of the policy's size: the "
            f"smallest rise it would detect ({MDE_POWER:.0%} power at the policy's confidence; "
            f"{gauge}) is above the threshold ({thresholds}; the default policy, a series with an "
            "override has its own). Too few calls in the window or too noisy a baseline: lengthen "
            "the detector window or accept that only larger changes alert. Empty: every series can "
            "prove a regression of its threshold's size.")
        .height(8).span(24).unit("percentunit").decimals(0)
        .no_value("Every series can prove a regression of its threshold's size")
        .mappings([RangeMap(options=DashboardRangeMapOptions(
            from_val=1e9, to=None, result=ValueMappingResult(text="unbounded: too few calls")))])
        .with_target(_query(expr, "", "A").instant().format(PromQueryFormat.TABLE))
        .with_transformation(DataTransformerConfig(id_val="organize", options={
            "excludeByName": {"Time": True},
            "renameByName": {"Value": "smallest detectable rise"},
        }))
    )


def _variable(name: str, label: str, query: str, *, multi: bool) -> dashboard.QueryVariable:
    variable = (
        dashboard.QueryVariable(name).label(label).datasource(DATASOURCE)
        .query({"query": query, "refId": f"{name}-variable"})
        .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED).sort(VariableSort.ALPHABETICAL_ASC)
    )
    if multi:
        # `.*` rather than a list of values: also matches series without the label (no cohort).
        variable = (variable.multi(True).include_all(True).all_value(".*")
                    .current(VariableOption(selected=True, text="All", value="$__all")))
    return variable


def _trace_url_variable(template: str) -> dashboard.TextBoxVariable:
    """``trace_url``: the trace URL up to the id, the data source's exemplar link prefix."""
    variable = (
        dashboard.TextBoxVariable("trace_url").label("Trace URL")
        .description("Where an exemplar's trace opens: this, then the trace id (the Prometheus data "
                     "source's exemplar link is ${trace_url}${__value.raw}). The agent's "
                     "trace_url_template without its trailing {trace_id}.")
    )
    prefix = template.removesuffix(TRACE_ID_PLACEHOLDER)
    return variable.default_value(prefix).current(VariableOption(selected=True, text=prefix, value=prefix))


SERVICE_LEGEND = f"{{{{{ACTION}}}}} {{{{{COHORT}}}}}"
IN_SERVICE, IN_ACTION = f'{JOB}=~"$service", {TOP_LEVEL}', f'{ACTION}=~"$action"'


def annotations() -> list[dict]:
    """Grafana's own annotations, and the firing regression alerts as regions on every time
    series (titled by alertname, tagged by its labels). Plain JSON: the SDK's AnnotationQuery
    has no fields for the Prometheus annotation's step, titleFormat, textFormat and tagKeys."""
    return [
        {
            "builtIn": 1,
            "datasource": {"type": "grafana", "uid": "-- Grafana --"},
            "enable": True,
            "hide": True,
            "iconColor": "rgba(0, 211, 255, 1)",
            "name": "Annotations & Alerts",
            "target": {"limit": 100, "matchAny": False, "tags": [], "type": "dashboard"},
            "type": "dashboard",
        },
        {
            "datasource": {"type": DATASOURCE.type_val, "uid": DATASOURCE.uid},
            "enable": True,
            "hide": False,
            "iconColor": SEVERITY_COLORS["critical"],
            "name": "Regression alerts",
            "expr": FIRING_ALERTS,
            "step": "30s",
            "titleFormat": "{{alertname}}",
            "textFormat": "{{severity}}: {{service}}/{{action}} (cohort {{cohort}}) {{quantile}}",
            "tagKeys": "severity,service,action,cohort,quantile",
            "useValueForTime": False,
        },
    ]


def build(
    runbook_base_url: str | None = RUNBOOK_BASE_URL, trace_url_template: str = TRACE_URL_TEMPLATE
) -> dict:
    """The dashboard model; ``runbook_base_url`` is the Runbooks link (None or "": no link),
    ``trace_url_template`` (``{trace_id}`` at its end) the default of the ``trace_url`` variable."""
    board = (
        dashboard.Dashboard("nethical-otel: performance")
        .uid(UID)
        .description("Latency, throughput and errors of instrumented actions against their baseline, the "
                     "regression alerts, and the cost of the pipeline. Generated by dashboards/generate.py.")
        .tags(["nethical-otel", "performance", "opentelemetry"])
        .editable().tooltip(DashboardCursorSync.CROSSHAIR).refresh("30s").time("now-3h", "now")
        .timezone("browser")
        .with_variable(dashboard.DatasourceVariable("datasource").label("Data source").type("prometheus"))
        .with_variable(_variable("service", "Service", f"label_values({_series_of()}, {JOB})", multi=False))
        .with_variable(_variable(
            "action", "Action", f"label_values({_series_of(IN_SERVICE)}, {ACTION})", multi=True))
        .with_variable(_variable(
            "cohort", "Cohort", f"label_values({_series_of(f'{IN_SERVICE}, {IN_ACTION}')}, {COHORT})",
            multi=True))
        .with_variable(_trace_url_variable(trace_url_template))
        .with_row(dashboard.Row("Latency"))
        .with_panel(latency_panel())
        .with_panel(ratio_panel())
        .with_panel(heatmap_panel())
        .with_panel(sub_steps_panel())
        .with_row(dashboard.Row("Traffic and errors"))
        .with_panel(throughput_panel())
        .with_panel(error_panel())
        .with_panel(in_flight_panel())
        .with_row(dashboard.Row("Regression alerts"))
        .with_panel(alerts_panel())
        .with_panel(span_status_panel())
        .with_row(dashboard.Row("Pipeline"))
        .with_panel(detector_panel())
        .with_panel(collector_panel())
        .with_panel(quiet_series_panel())
    )
    base = (runbook_base_url or "").rstrip("/")
    if base:  # the same runbooks the alerts' runbook_url annotations link
        board.link(dashboard.DashboardLink("Runbooks").type(DashboardLinkType.LINK).url(base).target_blank(True))
    model = json.loads(json.dumps(board.build(), cls=JSONEncoder))
    model["annotations"] = {"list": annotations()}
    # Stable ids (Grafana would number them on import; links to ?viewPanel=N should not move).
    for number, panel in enumerate(model["panels"], start=1):
        panel["id"] = number
        if panel["type"] != "row":
            panel["datasource"] = {"type": DATASOURCE.type_val, "uid": DATASOURCE.uid}
    return model


def render(
    runbook_base_url: str | None = RUNBOOK_BASE_URL, trace_url_template: str = TRACE_URL_TEMPLATE
) -> str:
    return json.dumps(build(runbook_base_url, trace_url_template), indent=2, sort_keys=True) + "\n"


def _url(value: str) -> str:
    if value and not value.startswith(("http://", "https://")):
        raise argparse.ArgumentTypeError(f'expected an http:// or https:// URL, or "" for none: {value!r}')
    return value


def _trace_url_template(value: str) -> str:
    if not (value.startswith(("http://", "https://")) and value.endswith(TRACE_ID_PLACEHOLDER)):
        raise argparse.ArgumentTypeError(
            f"expected an http:// or https:// URL ending in {TRACE_ID_PLACEHOLDER} (Grafana appends the "
            f"trace id to the rest): {value!r}")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the committed JSON is out of date")
    parser.add_argument(
        "--runbook-base-url", type=_url, default=RUNBOOK_BASE_URL, metavar="URL",
        help="the Runbooks link, as the agent's runbook_base_url setting and the Prometheus rules' "
        f'--runbook-base-url; "" for none (default: {RUNBOOK_BASE_URL})',
    )
    parser.add_argument(
        "--trace-url-template", type=_trace_url_template, default=TRACE_URL_TEMPLATE, metavar="URL",
        help="where an exemplar's trace opens, as the agent's trace_url_template, with {trace_id} at its "
        f"end: the default of the dashboard's trace_url variable (default: {TRACE_URL_TEMPLATE})",
    )
    args = parser.parse_args(argv)
    text = render(args.runbook_base_url, args.trace_url_template)
    if args.check:
        if OUTPUT.read_text(encoding="utf-8") != text:
            print(f"{OUTPUT} is out of date: run python dashboards/generate.py", file=sys.stderr)
            return 1
        return 0
    OUTPUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUTPUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
