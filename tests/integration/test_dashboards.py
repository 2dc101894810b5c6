"""dashboards/: the Grafana dashboard, proven against the real pipeline.

1. The committed JSON is exactly what dashboards/generate.py makes (edit the generator).
2. The model is importable and consistent: unique uid/ids/refIds, the variables service /
   action / cohort / trace_url, a data source on every panel, `$__rate_interval` in every rate, a
   rate unit on every panel of rates; Grafana's own annotations and the firing regression alerts
   as annotations; the Runbooks link is the alerts' runbook base (``--runbook-base-url``). The
   latency queries ask for exemplars, and the data source provisioning links an exemplar's
   trace_id to ``$trace_url`` (``--trace-url-template``); the sub-steps table reads the children
   (``nethical_action_parent``) of ``$action``.
3. The real pipeline, both kinds of latency histogram (one dashboard reads both):
   - classic: the example service (explicit buckets) exports over OTLP to the built collector
     on collector/config-classic.yaml, Debian's Prometheus 2.42 on the shipped
     deploy/prometheus/prometheus-classic.yml scrapes its `le` buckets;
   - native: the service on exponential buckets, the collector on collector/config.yaml
     pushing OTLP to Prometheus 3 on the shipped deploy/prometheus/prometheus.yml (native
     histograms);
   (targets moved to loopback, 1 s intervals, the shipped rules loaded; the collector's own
   metrics and the detector agent scraped). Then, on each:
   - every variable query has the test's service/action/cohort among its values;
   - every query of every panel and annotation, variables substituted, returns data (a query
     that reads one kind only, the heatmap's, on its kind, and is a valid empty query on the
     other; the sub-steps' `offset 1d` baseline is a valid empty query here, and returns data
     at a few seconds' offset), and the alert annotation shows the agent's firing latency alert;
   - the sub-steps table lists the example's instrumented sub-steps of the action, with the
     time each takes per call of it;
   - the recording rules turn the collector's labels into service/action/cohort series.

The service is the example, whose ``process_action`` calls three instrumented sub-steps
(``SUBSTEPS``), recorded with ``nethical.action.parent``.

Exemplars are not queried here (the test's Prometheus runs without exemplar storage).

The real detector agent (`nethical-otel agent`, short windows) reads that Prometheus (the
native or classic histograms: `auto`), learns
its baselines, and a 2x slowdown injected into one action makes its alert fire before the
panel queries run, so the baseline, ratio and alert panels have the agent's real numbers.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import yaml

import nethical_otel
from nethical_otel import names
from nethical_otel.example import GovernanceError, IntegratedGovernance
from nethical_otel.example.governance import CHECK, FETCH, MODEL, SUBSTEPS
from tests.servers import (
    COLLECTOR_CONFIG,
    COLLECTOR_CONFIG_CLASSIC,
    PROMETHEUS_DEPLOY_CONFIG_CLASSIC,
    REPO_ROOT,
    RunningCollector,
    RunningServer,
    deploy_prometheus_config,
    free_port,
    query,
    start_agent,
    start_collector,
    start_prometheus_with,
    wait_for_query,
)

DASHBOARD = REPO_ROOT / "dashboards" / "nethical-performance.json"
GENERATOR = REPO_ROOT / "dashboards" / "generate.py"
DATASOURCES = REPO_ROOT / "dashboards" / "provisioning" / "datasources" / "nethical.yml"
SERVICE, ACTION, COHORT = "dash-svc", "query", "control"
RATE_INTERVAL = "10s"  # what Grafana's $__rate_interval is for 1 s scrapes and a short range
# The agent on short clocks: a 10 s window (learned as the baseline once full), a step a second.
AGENT_SETTINGS = {"detector_window_s": 10, "detector_step_s": 1, "detector_for_s": 2}
QUIET_PANEL = "Detector: too quiet to prove a regression"
LATENCY_PANEL = "Latency p50 / p95 / p99 vs baseline: $action"
SUB_STEPS_PANEL = "Sub-steps of $action: p95 now vs baseline"
BASELINE_OFFSET = "offset 1d"  # the sub-steps' baseline: older than anything this test's Prometheus holds
TEST_OFFSET = "offset 15s"  # ... so it is also run at an offset this test has data for
MDE_GAUGE = "nethical_detector_min_detectable_effect_ratio"
KINDS = ("classic", "native")
AGGREGATION = {"classic": "explicit_bucket_histogram", "native": "base2_exponential_bucket_histogram"}
DURATION = names.DURATION_METRIC
_NATIVE_NAME = re.compile(rf"\b{DURATION}(?=[{{\[])")  # the histogram itself, no _bucket/_count
_CLASSIC_NAME = re.compile(rf"\b{DURATION}_(?:bucket|count|sum)\b")


def _reads(expr: str) -> set[str]:
    """Which kinds of the service's histogram a query reads (both: it reads neither, or both)."""
    found = (("native", _NATIVE_NAME), ("classic", _CLASSIC_NAME))
    kinds = {kind for kind, name in found if name.search(expr)}
    return kinds or set(KINDS)


def _generator():
    pytest.importorskip("grafana_foundation_sdk",
                        reason="!!! install the test extras: pip install -e '.[test]'")
    spec = importlib.util.spec_from_file_location("dashboards_generate", GENERATOR)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _model() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text(encoding="utf-8"))


def _panels(model: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel, those inside collapsed rows included; rows themselves left out."""
    found = []
    for panel in model["panels"]:
        found.extend(panel.get("panels", []))
        if panel["type"] != "row":
            found.append(panel)
    return found


def _targets() -> list[tuple[str, str, str]]:
    """(panel title, refId, expr) of every query in the dashboard, annotations' included."""
    model = _model()
    panels = [(p["title"], t["refId"], t["expr"]) for p in _panels(model) for t in p.get("targets", [])]
    return panels + [(f"annotation {a['name']}", "-", a["expr"]) for a in _prometheus_annotations(model)]


def _prometheus_annotations(model: dict[str, Any]) -> list[dict[str, Any]]:
    return [a for a in model["annotations"]["list"] if a["datasource"]["type"] == "prometheus"]


# Grafana's units for "per second" (throughput): requests, operations, counts, reads, writes, I/O.
RATE_UNITS = {"reqps", "ops", "cps", "rps", "wps", "iops"}
_RATE_QUERY = re.compile(r"sum(?: by \([^)]*\))? ?\(rate\([^/]*\)\)")


def _substitute(expr: str) -> str:
    """Grafana's variables in ``expr`` replaced by the test's values (``$1`` of label_replace is
    no variable: Grafana, too, leaves it alone)."""
    values = {"service": SERVICE, "action": ACTION, "cohort": COHORT,
              "__rate_interval": RATE_INTERVAL, "__interval": "1s", "__range": "1m"}
    expr = re.sub(r"\$\{(\w+)\}", lambda m: values[m.group(1)], expr)
    return re.sub(r"\$([A-Za-z_]\w*)", lambda m: values[m.group(1)], expr)


# -- 1, 2: the model ------------------------------------------------------------------------


def test_committed_dashboard_is_current() -> None:
    generator = _generator()
    assert DASHBOARD.read_text(encoding="utf-8") == generator.render(), \
        "dashboards/nethical-performance.json is stale: run python dashboards/generate.py"


def test_dashboard_model_is_consistent() -> None:
    model = _model()
    assert model["uid"] == "nethical-performance" and model["title"]
    variables = {v["name"]: v for v in model["templating"]["list"]}
    assert set(variables) == {"datasource", "service", "action", "cohort", "trace_url"}
    for name in ("action", "cohort"):
        assert variables[name]["includeAll"] and variables[name]["allValue"] == ".*"
    ids = [p["id"] for p in model["panels"]]
    assert len(ids) == len(set(ids))
    titles = {p["title"] for p in _panels(model)}
    for wanted in (LATENCY_PANEL, "Current / baseline per quantile", "Latency distribution",
                   SUB_STEPS_PANEL, "Throughput", "Error rate", "Firing regression alerts"):
        assert wanted in titles
    for panel in _panels(model):
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]
        for target in panel["targets"]:
            for window in re.findall(r"\(rate\([^\[]*\[([^\]]+)\]", target["expr"]):
                assert window == "$__rate_interval", (panel["title"], target["expr"])
    [heatmap] = [p for p in _panels(model) if p["type"] == "heatmap"]
    native, classic = heatmap["targets"]  # the native histogram as it is; `le` buckets as a heatmap
    assert _reads(native["expr"]) == {"native"} and native.get("format", "time_series") == "time_series"
    assert _reads(classic["expr"]) == {"classic"} and classic["format"] == "heatmap"
    # Every other query of the service's histogram reads both kinds: native, else classic.
    for title, ref, expr in _targets():
        if title != heatmap["title"]:
            assert _reads(expr) == set(KINDS), (title, ref, expr)
    for variable in model["templating"]["list"]:
        if variable["type"] == "query":
            assert f'{{__name__=~"{DURATION}(_count)?"' in variable["query"]["query"], variable["name"]


def test_rates_are_drawn_in_a_rate_unit() -> None:
    """A time series panel of nothing but summed rates shows "per second", not a bare number."""
    checked = []
    for panel in _panels(_model()):
        exprs = [t["expr"] for t in panel["targets"]]
        if panel["type"] == "timeseries" and all(_RATE_QUERY.fullmatch(e) for e in exprs):
            assert panel["fieldConfig"]["defaults"]["unit"] in RATE_UNITS, panel["title"]
            checked.append(panel["title"])
    assert "Collector: metric points accepted / refused" in checked, checked


def test_annotations_and_runbook_link() -> None:
    model = _model()
    builtin, alerts = model["annotations"]["list"]
    assert builtin["builtIn"] == 1 and builtin["name"] == "Annotations & Alerts"
    assert builtin["datasource"] == {"type": "grafana", "uid": "-- Grafana --"}
    assert [alerts] == _prometheus_annotations(model) and alerts["enable"]
    assert alerts["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
    # The agent's alerts and the rules' (ALERTS), for this selection, titled by alertname.
    assert names.DETECTOR_ALERTS in alerts["expr"] and "ALERTS{" in alerts["expr"]
    for alertname in (names.LATENCY_ALERT, names.ERROR_RATE_ALERT, names.THROUGHPUT_ALERT):
        assert alertname in alerts["expr"]
    assert 'service=~"$service"' in alerts["expr"] and alerts["titleFormat"] == "{{alertname}}"
    [link] = model["links"]
    assert (link["title"], link["url"]) == ("Runbooks", names.RUNBOOK_BASE_URL)


def test_latency_panels_show_exemplars_linked_to_the_trace() -> None:
    """Every query of the service's latency histogram on the latency panels asks for exemplars
    (the detector's baseline gauges have none), and each exemplar's trace_id links to the
    dashboard's trace_url variable + the id, through the provisioned Prometheus data source."""
    model = _model()
    panels = {p["title"]: p for p in _panels(model)}
    for title in (LATENCY_PANEL, "Latency distribution"):
        targets = panels[title]["targets"]
        histogram = [t for t in targets if DURATION in t["expr"]]
        assert histogram and all(t.get("exemplar") is True for t in histogram), title
        assert not any(t.get("exemplar") for t in targets if t not in histogram), title
    assert len([t for t in panels[LATENCY_PANEL]["targets"] if t.get("exemplar")]) == 3  # p50/p95/p99
    for panel in _panels(model):  # nothing else asks for them (a table cannot draw them)
        if panel["title"] not in (LATENCY_PANEL, "Latency distribution"):
            assert not any(t.get("exemplar") for t in panel["targets"]), panel["title"]
    variables = {v["name"]: v for v in model["templating"]["list"]}
    trace_url = variables["trace_url"]
    assert trace_url["type"] == "textbox" and trace_url["current"]["value"] == trace_url["query"]
    # The agent's trace_url_template example, less its {trace_id}: the link appends the id.
    assert trace_url["query"] + "{trace_id}" == "http://127.0.0.1:16686/trace/{trace_id}"

    [prometheus] = [d for d in yaml.safe_load(DATASOURCES.read_text(encoding="utf-8"))["datasources"]
                    if d["type"] == "prometheus"]
    [destination] = prometheus["jsonData"]["exemplarTraceIdDestinations"]
    assert destination["name"] == names.TRACE_ID_LABEL
    # Grafana expands environment variables in provisioning files; `$$` is its literal `$`.
    url = destination["url"].replace("$$", "$")
    assert url == "${trace_url}${__value.raw}" and "$" not in destination["url"].replace("$$", "")


def test_generator_trace_url_option() -> None:
    generator = _generator()
    jaeger = "https://jaeger.example.com/trace/{trace_id}"
    [trace_url] = [v for v in generator.build(trace_url_template=jaeger)["templating"]["list"]
                   if v["name"] == "trace_url"]
    assert trace_url["query"] == "https://jaeger.example.com/trace/"
    assert generator.main(["--check", "--trace-url-template", jaeger]) == 1
    for bad in ("https://tempo.example.com/{trace_id}/view", "jaeger:16686/trace/{trace_id}"):
        with pytest.raises(SystemExit) as exit_info:  # argparse: the id must end the URL
            generator.main(["--check", "--trace-url-template", bad])
        assert exit_info.value.code == 2


def test_sub_steps_table_reads_the_children_of_the_action() -> None:
    [panel] = [p for p in _panels(_model()) if p["title"] == SUB_STEPS_PANEL]
    assert panel["type"] == "table"
    targets = {t["refId"]: t for t in panel["targets"]}
    assert set(targets) == {"A", "B", "C", "D"}
    parent = names.PARENT_LABEL
    for ref, target in targets.items():
        assert target["instant"] and target["format"] == "table", ref
        # `=~".*"` (All) also matches no label: the top-level calls are kept out by `!=""`.
        assert f'{parent}=~"$action", {parent}!=""' in target["expr"], ref
    now, baseline = targets["A"]["expr"], targets["B"]["expr"]
    assert baseline == now.replace("[$__rate_interval]", f"[$__rate_interval] {BASELINE_OFFSET}")
    assert BASELINE_OFFSET not in now and "0.95" in now
    assert targets["C"]["expr"] == f"({now}) / ({baseline}) - 1"
    parents = f'{names.ACTION_LABEL}=~"$action", {names.COHORT_LABEL}=~"$cohort"}}'
    assert parents in targets["D"]["expr"]  # over the calls of the action itself
    renamed = next(t for t in panel["transformations"] if t["id"] == "organize")["options"]["renameByName"]
    assert renamed[parent] == "parent" and renamed[names.ACTION_LABEL] == "sub-step"
    [change] = panel["fieldConfig"]["overrides"]
    assert change["matcher"]["options"] == renamed["Value #C"] == "change"
    # Every other query of the service's histogram reads its top-level calls only, as the rules do.
    histogram_selectors = re.compile(rf"\b{DURATION}(?:_bucket|_count|_sum)?\{{[^}}]*\}}")
    checked = 0
    for title, ref, expr in _targets():
        for selector in histogram_selectors.findall(expr) if title != SUB_STEPS_PANEL else ():
            assert f'{parent}=""' in selector, (title, ref, selector)
            checked += 1
    assert checked >= 10, checked


def test_generator_runbook_option() -> None:
    generator = _generator()
    assert generator.build("").get("links", []) == []  # no runbooks: no link rather than a broken one
    [link] = generator.build("https://wiki.example.com/sre/runbooks/")["links"]
    assert link["url"] == "https://wiki.example.com/sre/runbooks"
    assert generator.main(["--check", "--runbook-base-url", ""]) == 1
    assert generator.main(["--check", "--runbook-base-url", names.RUNBOOK_BASE_URL]) == 0


def test_dashboard_draws_the_default_policy() -> None:
    """A line per quantile rule at 1 + threshold in its severity's colour, the error-rate and
    throughput lines, and the quiet-series cut at each rule's threshold: all from Policy()."""
    from nethical_otel.stats import Policy

    policy, colors = Policy(), {"info": "blue", "warning": "orange", "critical": "red"}
    panels = {p["title"]: p for p in _panels(_model())}
    steps = panels["Current / baseline per quantile"]["fieldConfig"]["defaults"]["thresholds"]["steps"]
    assert [(s["value"], s["color"]) for s in steps[1:]] == [
        (pytest.approx(rule.ratio_limit), colors[rule.severity]) for rule in policy.quantiles
    ]
    assert len({s["value"] for s in steps[1:]}) == 3  # p50 1.10, p95 1.15, p99 1.20
    errors = {t["refId"]: t["expr"] for t in panels["Error rate"]["targets"]}
    assert errors["C"] == f"{errors['B']} + {policy.error_rate_pp / 100:.2f}"
    throughput = {t["refId"]: t["expr"] for t in panels["Throughput"]["targets"]}
    assert throughput["C"] == f"{throughput['B']} * {1 - policy.throughput_drop:.2f}"
    [quiet] = panels[QUIET_PANEL]["targets"]
    for rule in policy.quantiles:
        assert f'quantile="{rule.quantile:g}"}}) > {rule.threshold:.2f}' in quiet["expr"]
    assert MDE_GAUGE in quiet["expr"] and quiet["instant"]


# -- 3: the real pipeline -------------------------------------------------------------------


class ServiceLoad:
    """The example service under steady load on a thread, exporting to the collector over OTLP."""

    def __init__(self, collector: RunningCollector, kind: str) -> None:
        self.telemetry = nethical_otel.setup(
            service_name=SERVICE, otlp_endpoint=collector.otlp_grpc_endpoint, otlp_protocol="grpc",
            metric_export_interval_ms=1000, traces_sampler="always_on", prometheus_enabled=False,
            histogram_aggregation=AGGREGATION[kind], set_global=False)
        self.gov = IntegratedGovernance(seed=3, error_rate=0.05, latency_scale=0.25)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="dashboard-load", daemon=True)

    def _run(self) -> None:
        i = 0
        while not self._stop.is_set():
            with contextlib.suppress(GovernanceError):
                self.gov.process_action("agent-1", "check the refund", cohort=("control", "canary")[i % 2],
                                        action_type=("query", "tool_call")[i % 3 == 0])
            i += 1

    def __enter__(self) -> ServiceLoad:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)
        self.telemetry.shutdown()


@dataclass
class Pipeline:
    kind: str  # "classic" (Prometheus 2.42, `le` buckets) or "native" (Prometheus 3, native histograms)
    prometheus: RunningServer
    collector: RunningCollector
    jobs: set[str]  # the shipped scrape jobs it runs


@contextlib.contextmanager
def _servers(tmp_path, kind: str, agent_port: int) -> Iterator[Pipeline]:
    """Collector and Prometheus of one kind, each on its shipped config."""
    agent = {"nethical-detector": [f"127.0.0.1:{agent_port}"]}
    if kind == "classic":
        with start_collector(tmp_path, COLLECTOR_CONFIG_CLASSIC) as collector:
            targets = {**agent, "otel-collector": [collector.metrics_target],
                       "otelcol": [collector.telemetry_target]}
            config = deploy_prometheus_config(targets, path=PROMETHEUS_DEPLOY_CONFIG_CLASSIC)
            with start_prometheus_with(tmp_path, config) as prometheus:
                yield Pipeline(kind, prometheus, collector, set(targets))
        return
    # Prometheus first (the collector pushes to it), so the collector's telemetry port is chosen here.
    telemetry_port = free_port()
    targets = {**agent, "otelcol": [f"127.0.0.1:{telemetry_port}"]}
    config = deploy_prometheus_config(targets)  # prometheus.yml, its otlp: block included
    with start_prometheus_with(tmp_path, config, version=3) as prometheus, \
            start_collector(tmp_path, COLLECTOR_CONFIG, prometheus_url=prometheus.url,
                            env={"OTELCOL_TELEMETRY_PORT": str(telemetry_port)}) as collector:
        yield Pipeline(kind, prometheus, collector, set(targets))


@pytest.fixture(scope="module", params=KINDS)
def pipeline(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    kind = request.param
    tmp_path = tmp_path_factory.mktemp(f"pipeline-{kind}")
    agent_port = free_port()
    with _servers(tmp_path, kind, agent_port) as running, ServiceLoad(running.collector, kind) as load, \
            start_agent(tmp_path, running.prometheus.url, port=agent_port, settings=AGENT_SETTINGS):
        prometheus = running.prometheus
        # The agent learns its baseline from the first full window, then reports against it.
        series = f'service="{SERVICE}", action="{ACTION}", cohort="{COHORT}"'
        wait_for_query(prometheus.url, f"nethical_detector_baseline_seconds{{{series}}}", timeout_s=40)
        load.gov.slowdown_by_action[ACTION] = 2.0  # the regression it has to catch
        wait_for_query(prometheus.url, 'nethical_detector_alerts{state="firing"} > 0', timeout_s=40)
        yield running


def _has_data(result: list[dict[str, Any]]) -> bool:
    """A number that is not NaN, or a native histogram (the heatmap's native query)."""
    return any("histogram" in s or ("value" in s and s["value"][1] != "NaN") for s in result)


@pytest.mark.integration
@pytest.mark.slow
def test_prometheus_scrapes_every_shipped_job(pipeline: Pipeline) -> None:
    jobs = pipeline.jobs
    up = wait_for_query(pipeline.prometheus.url, "up == 1",
                        accept=lambda result: {s["metric"]["job"] for s in result} >= jobs)
    assert {s["metric"]["job"] for s in up} == jobs
    # The service's own job (service.name), not the collector's: honor_labels / OTLP's job.
    name = DURATION if pipeline.kind == "native" else f"{DURATION}_count"
    [series] = wait_for_query(pipeline.prometheus.url, f'count by (job) ({name}{{job="{SERVICE}"}})')
    assert series["metric"]["job"] == SERVICE


@pytest.mark.integration
@pytest.mark.slow
def test_variables_offer_the_running_service(pipeline: Pipeline) -> None:
    wanted = {"service": SERVICE, "action": ACTION, "cohort": COHORT}
    for variable in _model()["templating"]["list"]:
        if variable["type"] != "query":
            continue
        match = re.fullmatch(r"label_values\((.+), (\w+)\)", variable["query"]["query"])
        assert match, variable["query"]
        selector, label = _substitute(match.group(1)), match.group(2)
        response = httpx.get(f"{pipeline.prometheus.url}/api/v1/label/{label}/values",
                             params={"match[]": selector}, timeout=5).json()
        assert wanted[variable["name"]] in response["data"], (variable["name"], selector, response)


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.parametrize(("panel", "ref", "expr"), _targets(), ids=lambda v: str(v)[:40])
def test_every_panel_query_returns_data(pipeline: Pipeline, panel: str, ref: str, expr: str) -> None:
    promql = _substitute(expr)
    if pipeline.kind not in _reads(expr):  # the heatmap's query of the other kind
        assert query(pipeline.prometheus.url, promql) == [], f"{panel} / {ref}: {promql}"  # valid, empty
        return
    if BASELINE_OFFSET in promql:  # a day ago: before this Prometheus started, so empty
        assert query(pipeline.prometheus.url, promql) == [], f"{panel} / {ref}: {promql}"  # but valid
        promql = promql.replace(BASELINE_OFFSET, TEST_OFFSET)  # a past this test has seen
    if panel == QUIET_PANEL:  # lists only series too quiet to judge: may rightly be empty
        query(pipeline.prometheus.url, promql)  # but must be a valid query
        series = f'service="{SERVICE}", action="{ACTION}", cohort="{COHORT}"'
        promql = f"{MDE_GAUGE}{{{series}}}"  # over the gauge the agent exports
    result = wait_for_query(pipeline.prometheus.url, promql, timeout_s=30, accept=_has_data)
    assert result, f"{panel} / {ref}: {promql}"
    if "histogram" in result[0]:  # native: the query Grafana draws as a heatmap from its buckets
        assert pipeline.kind == "native" and result[0]["histogram"][1]["buckets"], result


@pytest.mark.integration
@pytest.mark.slow
def test_sub_steps_table_on_the_real_pipeline(pipeline: Pipeline) -> None:
    """The children of the action, each with its p95 and its time per call of the action: the
    policy fetch (60 % of the simulated I/O) and the risk model (40 %) are most of a call, the
    check (CPU work of microseconds) a sliver of it."""
    [panel] = [p for p in _panels(_model()) if p["title"] == SUB_STEPS_PANEL]
    targets = {t["refId"]: _substitute(t["expr"]) for t in panel["targets"]}
    url, key = pipeline.prometheus.url, names.ACTION_LABEL

    def by_step(promql: str) -> dict[str, float]:
        def every_step(result: list[dict[str, Any]]) -> bool:
            return {s["metric"].get(key) for s in result} >= set(SUBSTEPS)

        result = wait_for_query(url, promql, accept=every_step)
        assert {s["metric"][names.PARENT_LABEL] for s in result} == {ACTION}, result
        return {s["metric"][key]: float(s["value"][1]) for s in result}

    p95 = by_step(targets["A"])
    assert set(p95) == set(SUBSTEPS) and all(0 < v < 1 for v in p95.values()), p95
    per_call = by_step(targets["D"])
    assert set(per_call) == set(SUBSTEPS), per_call
    selector = f'{{job="{SERVICE}", {key}="{ACTION}", {names.COHORT_LABEL}="{COHORT}"}}'
    mean = (f"sum(histogram_sum(rate({DURATION}{selector}[{RATE_INTERVAL}]))) / "
            f"sum(histogram_count(rate({DURATION}{selector}[{RATE_INTERVAL}])))")
    if pipeline.kind == "classic":
        mean = (f"sum(rate({DURATION}_sum{selector}[{RATE_INTERVAL}])) / "
                f"sum(rate({DURATION}_count{selector}[{RATE_INTERVAL}]))")
    [call] = query(url, mean)  # the action's mean time per call, its sub-steps included
    mean_s = float(call["value"][1])
    fetch, check, model = per_call[FETCH], per_call[CHECK], per_call[MODEL]
    assert 0 < check < model < fetch, per_call
    assert 0.5 * mean_s < fetch + check + model <= 1.1 * mean_s, (per_call, mean_s)  # inside the call


@pytest.mark.integration
@pytest.mark.slow
def test_alert_annotation_marks_the_firing_regression(pipeline: Pipeline) -> None:
    [annotation] = _prometheus_annotations(_model())
    firing = wait_for_query(pipeline.prometheus.url, _substitute(annotation["expr"]), timeout_s=30)
    alerts = {(s["metric"]["alertname"], s["metric"]["action"]) for s in firing}
    assert (names.LATENCY_ALERT, ACTION) in alerts, firing


@pytest.mark.integration
@pytest.mark.slow
def test_recording_rules_on_the_real_pipeline(pipeline: Pipeline) -> None:
    url = pipeline.prometheus.url
    selector = f'{{service="{SERVICE}", action="{ACTION}", cohort="{COHORT}"}}'
    quantiles = wait_for_query(url, f"nethical:action_duration_seconds:quantile5m{selector}",
                               accept=lambda r: len(r) == 3)
    by_q = {s["metric"]["quantile"]: float(s["value"][1]) for s in quantiles}
    assert 0 < by_q["0.5"] <= by_q["0.95"] <= by_q["0.99"] < 1.0, by_q
    for record in ("nethical:action_requests:rate5m", "nethical:action_error_ratio:rate5m"):
        [sample] = wait_for_query(url, f"{record}{selector}")
        assert set(sample["metric"]) == {"__name__", "service", "action", "cohort"}
    # Where the agent runs, its baseline gauge is the rules' baseline, and the ratio is over it.
    rules_baseline = wait_for_query(url, f"nethical:action_duration_seconds:baseline{selector}",
                                    accept=lambda r: len(r) == 3)
    agent_baseline = query(url, f"max by (service, action, cohort, quantile) "
                                f"(nethical_detector_baseline_seconds{selector})")
    as_map = {s["metric"]["quantile"]: float(s["value"][1]) for s in agent_baseline}
    assert {s["metric"]["quantile"]: float(s["value"][1]) for s in rules_baseline} == as_map
    ratios = wait_for_query(url, f"nethical:action_duration_seconds:ratio{selector}",
                            accept=lambda r: len(r) == 3)
    for sample in ratios:
        assert float(sample["value"][1]) > 0, sample


def test_generator_check_mode() -> None:
    generator = _generator()
    assert generator.main(["--check"]) == 0
