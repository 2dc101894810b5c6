"""Every metric, attribute, label and alert name, in one place at the bottom layer.

Telemetry records under these names, the sources read them back, and the Prometheus rule and
Grafana dashboard generators write queries with them; nothing else spells them. This module
imports nothing, so anything may import it.

Two spellings of one thing: the OpenTelemetry name (dots, unit as metadata) and the name
Prometheus shows after its OTLP/OpenMetrics translation (underscores, unit suffix).
"""

from __future__ import annotations

# --- OpenTelemetry: instrumentation scope, instruments, attributes ----------------------------
SCOPE = "nethical_otel"
DURATION = "nethical.action.duration"  # histogram, unit "s"
ACTIVE = "nethical.action.active"  # up-down counter of calls in flight

ACTION = "nethical.action"
# On the latency series of an instrumented call made inside another one: the enclosing call's
# action (bounded like ``ACTION``), so the detector can say which sub-step a slowdown is in.
PARENT = "nethical.action.parent"
COHORT = "nethical.cohort"
AGENT_ID = "nethical.agent.id"
ERROR_TYPE = "error.type"  # semantic conventions
ERROR_TYPE_OTHER = "_OTHER"  # semantic conventions: the fallback value of error.type
OVERFLOW = "otel.metric.overflow"  # the SDK's overflow attribute (cardinality limit reached)
OTHER = "other"  # the value an attribute takes once its own cap is reached

# --- Prometheus: the same, as Prometheus names them -----------------------------------------------
DURATION_METRIC = "nethical_action_duration_seconds"
ACTIVE_METRIC = "nethical_action_active"
ACTION_LABEL = "nethical_action"
COHORT_LABEL = "nethical_cohort"
PARENT_LABEL = "nethical_action_parent"
ERROR_TYPE_LABEL = "error_type"
SERVICE_NAME_LABEL = "service_name"  # on target_info
JOB_LABEL = "job"  # service.name after the OTLP translation
# Exemplar labels, as OpenMetrics and Prometheus' OTLP translation name them.
TRACE_ID_LABEL = "trace_id"
SPAN_ID_LABEL = "span_id"

# The detector agent's own metrics (labels: service, action, cohort[, quantile]).
DETECTOR_PREFIX = "nethical_detector_"
DETECTOR_BASELINE = "nethical_detector_baseline_seconds"
DETECTOR_CURRENT = "nethical_detector_current_seconds"
DETECTOR_RATIO = "nethical_detector_ratio"
DETECTOR_MDE = "nethical_detector_min_detectable_effect_ratio"
DETECTOR_BASELINE_ERRORS = "nethical_detector_baseline_error_ratio"
DETECTOR_CURRENT_ERRORS = "nethical_detector_current_error_ratio"
DETECTOR_BASELINE_RPS = "nethical_detector_baseline_requests_per_second"
DETECTOR_CURRENT_RPS = "nethical_detector_current_requests_per_second"
DETECTOR_ALERTS = "nethical_detector_alerts"
DETECTOR_EVALUATION_DURATION = "nethical_detector_evaluation_duration_seconds"
DETECTOR_EVALUATIONS = "nethical_detector_evaluations"  # a counter: exposed with _total

# --- Alerts ---------------------------------------------------------------------------------------
LATENCY_ALERT = "NethicalLatencyRegression"
ERROR_RATE_ALERT = "NethicalErrorRateIncrease"
THROUGHPUT_ALERT = "NethicalThroughputDrop"
COLLECTOR_DOWN_ALERT = "NethicalCollectorDown"
DETECTOR_DOWN_ALERT = "NethicalDetectorDown"

# --- Where the documentation lives (links in alerts, dashboards and error messages) ---------------
PROJECT_URL = "https://github.com/nethical/nethical-otel"
DOCS_URL = PROJECT_URL + "/blob/main/docs"
RUNBOOK_BASE_URL = DOCS_URL + "/runbooks"  # + "/<alertname>.md"
