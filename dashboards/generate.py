"""Generates dashboards/nethical-performance.json with grafana-foundation-sdk (Grafana 11.6 schema).

    python dashboards/generate.py           write the JSON
    python dashboards/generate.py --check   exit 1 if the committed JSON is not what this makes

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
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from grafana_foundation_sdk.builders import dashboard, heatmap, prometheus, table, timeseries
from grafana_foundation_sdk.builders.common import GraphThresholdsStyleConfig, VizLegendOptions
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

from nethical_otel.stats import Policy
from nethical_otel.stats.policy import SEVERITIES
from nethical_otel.stats.significance import MDE_POWER

OUTPUT = Path(__file__).resolve().parent / "nethical-performance.json"
UID = "nethical-performance"
DATASOURCE = DataSourceRef(type_val="prometheus", uid="${datasource}")
POLICY = Policy()
QUANTILES = tuple((rule.name, f"{rule.quantile:g}") for rule in POLICY.quantiles)
SEVERITY_COLORS = {"info": "blue", "warning": "orange", "critical": "red"}

# Selectors for the two label vocabularies (see the module docstring).
SERVICE_SERIES = 'job=~"$service", nethical_action=~"$action", nethical_cohort=~"$cohort"'
AGENT_SERIES = 'service=~"$service", action=~"$action", cohort=~"$cohort"'
DURATION = "nethical_action_duration_seconds"


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
                     "(all instances merged); dashed: the detector's baseline for the same quantile.")
        .repeat("action").repeat_direction("h").max_per_row(3)
        .unit("s").height(9).span(24).legend(_legend())
    )
    ref = iter("ABCDEFGH")
    for name, q in QUANTILES:
        panel.with_target(_query(
            f"histogram_quantile({q}, sum by (nethical_cohort, le) "
            f"(rate({DURATION}_bucket{{{SERVICE_SERIES}}}[$__rate_interval])))",
            f"{name} {{{{nethical_cohort}}}}", next(ref)))
    for name, q in QUANTILES:
        panel.with_target(_query(
            f'max by (cohort) (nethical_detector_baseline_seconds{{{AGENT_SERIES}, quantile="{q}"}})',
            f"{name} baseline {{{{cohort}}}}", next(ref)))
    panel.overrides(_dashed(".* baseline .*"))
    return panel


def ratio_panel() -> timeseries.Panel:
    lines = ", ".join(f"{r.name} {_number(r.ratio_limit)} ({r.severity})" for r in POLICY.quantiles)
    expr = (
        f"max by (quantile, cohort) (nethical_detector_ratio{{{AGENT_SERIES}}} "
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
        .description("Calls per second in each `le` bucket of nethical_action_duration_seconds.")
        .height(8).span(12)
        .with_target(_query(f"sum by (le) (rate({DURATION}_bucket{{{SERVICE_SERIES}}}[$__rate_interval]))",
                            "{{le}}", "A").format(PromQueryFormat.HEATMAP))
        .calculate(False)
        .y_axis(heatmap.YAxisConfig().unit("s"))
        .color(heatmap.HeatmapColorOptions().mode(HeatmapColorMode.SCHEME).scheme("Oranges"))
    )


def throughput_panel() -> timeseries.Panel:
    by = "nethical_action, nethical_cohort"
    floor = POLICY.throughput_floor
    baseline = f"max by (action, cohort) (nethical_detector_baseline_requests_per_second{{{AGENT_SERIES}}})"
    return (
        timeseries.Panel()
        .title("Throughput")
        .description(f"Calls per second, failed ones included; dashed: the detector's baseline rate; "
                     f"dotted: the policy's line, a drop below {_percent(floor)} of the baseline is a "
                     f"{POLICY.throughput_severity}.")
        .unit("reqps").height(8).span(8).legend(_legend())
        .with_target(_query(f"sum by ({by}) (rate({DURATION}_count{{{SERVICE_SERIES}}}[$__rate_interval]))",
                            "{{nethical_action}} {{nethical_cohort}}", "A"))
        .with_target(_query(baseline, "{{action}} {{cohort}} baseline", "B"))
        .with_target(_query(f"{baseline} * {_number(floor)}", "{{action}} {{cohort}} policy line", "C"))
        .overrides(_dashed(".* baseline") + _policy_line(".* policy line", POLICY.throughput_severity))
    )


def error_panel() -> timeseries.Panel:
    by = "nethical_action, nethical_cohort"
    calls = f"sum by ({by}) (rate({DURATION}_count{{{SERVICE_SERIES}}}[$__rate_interval]))"
    failed = f'sum by ({by}) (rate({DURATION}_count{{{SERVICE_SERIES}, error_type!=""}}[$__rate_interval]))'
    baseline = f"max by (action, cohort) (nethical_detector_baseline_error_ratio{{{AGENT_SERIES}}})"
    points = POLICY.error_rate_pp
    return (
        timeseries.Panel()
        .title("Error rate")
        .description(f"Share of calls that raised (error_type set); 0 when none did. Dashed: baseline; "
                     f"dotted: the policy's line, +{points:g} percentage point{'' if points == 1 else 's'} "
                     f"over the baseline is {POLICY.error_rate_severity}.")
        .unit("percentunit").height(8).span(8).legend(_legend())
        .with_target(_query(f"({failed} or 0 * {calls}) / {calls}",
                            "{{nethical_action}} {{nethical_cohort}}", "A"))
        .with_target(_query(baseline, "{{action}} {{cohort}} baseline", "B"))
        .with_target(_query(f"{baseline} + {_number(POLICY.error_rate_limit)}",
                            "{{action}} {{cohort}} policy line", "C"))
        .overrides(_dashed(".* baseline") + _policy_line(".* policy line", POLICY.error_rate_severity))
    )


def in_flight_panel() -> timeseries.Panel:
    return (
        timeseries.Panel()
        .title("In flight")
        .description("Calls running right now (nethical.action.active), summed over instances.")
        .unit("short").height(8).span(8).legend(_legend())
        .with_target(_query(
            'sum by (nethical_action) (nethical_action_active{job=~"$service", nethical_action=~"$action"})',
            "{{nethical_action}}", "A"))
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
    # The agent's alerts and the Prometheus rules' ALERTS carry the same series labels.
    expr = (
        "max by (alertname, severity, service, action, cohort, quantile) "
        f'(nethical_detector_alerts{{state="firing", {AGENT_SERIES}}}) '
        "or max by (alertname, severity, service, action, cohort, quantile) "
        f'(ALERTS{{alertstate="firing", alertname=~"Nethical.*", {AGENT_SERIES}}})'
    )
    return (
        table.Panel()
        .title("Firing regression alerts")
        .description("Firing alerts of the detector agent and of the Prometheus rules for this "
                     "selection. Empty means nothing is firing.")
        .height(8).span(12).no_value("No regression alert is firing")
        .with_target(_query(expr, "", "A").instant().format(PromQueryFormat.TABLE))
        .with_transformation(DataTransformerConfig(
            id_val="organize", options={"excludeByName": {"Time": True, "Value": True}}))
    )


def detector_panel() -> timeseries.Panel:
    return (
        timeseries.Panel()
        .title("Detector: evaluation time and rate")
        .description("What regression detection costs: p99 of one evaluation pass, and passes per second.")
        .unit("s").height(8).span(12).legend(_legend())
        .with_target(_query(
            "histogram_quantile(0.99, sum by (le) "
            "(rate(nethical_detector_evaluation_duration_seconds_bucket[$__rate_interval])))",
            "evaluation p99", "A"))
        .with_target(_query("sum(rate(nethical_detector_evaluations_total[$__rate_interval]))",
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
        .description("Refused points mean the memory_limiter is shedding load: scale the collectors out.")
        .unit("short").height(8).span(12).legend(_legend())
        .with_target(_query(points("accepted"), "accepted/s", "A"))
        .with_target(_query(points("refused"), "refused/s", "B"))
    )


def quiet_series_panel() -> table.Panel:
    """Series whose detector comparison could not catch a change of its threshold's size."""
    by = "service, action, cohort, quantile"
    gauge = "nethical_detector_min_detectable_effect_ratio"
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


def build() -> dict:
    board = (
        dashboard.Dashboard("nethical-otel: performance")
        .uid(UID)
        .description("Latency, throughput and errors of instrumented actions against their baseline, the "
                     "regression alerts, and the cost of the pipeline. Generated by dashboards/generate.py.")
        .tags(["nethical-otel", "performance", "opentelemetry"])
        .editable().tooltip(DashboardCursorSync.CROSSHAIR).refresh("30s").time("now-3h", "now")
        .timezone("browser")
        .link(dashboard.DashboardLink("Runbooks").type(DashboardLinkType.LINK).url(
            "https://github.com/nethical/nethical-otel/tree/main/docs/runbooks").target_blank(True))
        .with_variable(dashboard.DatasourceVariable("datasource").label("Data source").type("prometheus"))
        .with_variable(_variable("service", "Service", f"label_values({DURATION}_count, job)", multi=False))
        .with_variable(_variable(
            "action", "Action", f'label_values({DURATION}_count{{job=~"$service"}}, nethical_action)',
            multi=True))
        .with_variable(_variable(
            "cohort", "Cohort",
            f'label_values({DURATION}_count{{job=~"$service", nethical_action=~"$action"}}, nethical_cohort)',
            multi=True))
        .with_row(dashboard.Row("Latency"))
        .with_panel(latency_panel())
        .with_panel(ratio_panel())
        .with_panel(heatmap_panel())
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
    ).build()
    model = json.loads(json.dumps(board, cls=JSONEncoder))
    # Stable ids (Grafana would number them on import; links to ?viewPanel=N should not move).
    for number, panel in enumerate(model["panels"], start=1):
        panel["id"] = number
        if panel["type"] != "row":
            panel["datasource"] = {"type": DATASOURCE.type_val, "uid": DATASOURCE.uid}
    return model


def render() -> str:
    return json.dumps(build(), indent=2, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the committed JSON is out of date")
    args = parser.parse_args(argv)
    text = render()
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
