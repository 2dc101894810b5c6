"""The no-code-change path with the real ``opentelemetry-instrument`` and ``opentelemetry-distro``.

Each test runs a small script in a temporary directory under ``.venv/bin/opentelemetry-instrument``,
as a user would, with the console exporters so that what is exported can be read off stdout:

- with the default targets (not in this project, nor in the user's code) nothing is wrapped,
  and one WARNING says which targets were not found and how to name one's own;
- with ``NETHICAL_OTEL_INSTRUMENT_TARGETS`` naming a class of the user's module, its calls become
  spans and ``nethical.action.duration`` points, and nothing is warned about;
- a service that calls ``nethical_otel.setup()`` itself honours ``--traces_exporter console``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from nethical_otel.names import ACTION, COHORT, DURATION

REPO_ROOT = Path(__file__).resolve().parents[2]
INSTRUMENT = Path(sys.executable).with_name("opentelemetry-instrument")
DEFAULT_TARGET = "nethical.core:IntegratedGovernance.process_action"

SHOP = """
class Checkout:
    def process_action(self, agent_id, action, cohort=None, action_type="query"):
        return action_type
"""
MAIN = """
import shop

checkout = shop.Checkout()
for kind in ("generate", "generate", "query"):
    checkout.process_action("agent-1", "buy", cohort="beta", action_type=kind)
print(json.dumps({"wrapped": hasattr(shop.Checkout.process_action, "__nethical_site__")}))
"""


def run_instrumented(tmp_path: Path, script: str, *args: str, **environ: str) -> subprocess.CompletedProcess:
    (tmp_path / "shop.py").write_text(SHOP)
    (tmp_path / "main.py").write_text("import json\n" + textwrap.dedent(script))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "NETHICAL_OTEL_"))}
    env.update(
        # No collector here: the distro's default (otlp) would only log connection errors.
        OTEL_TRACES_EXPORTER="none",
        OTEL_METRICS_EXPORTER="none",
        OTEL_LOGS_EXPORTER="none",
        OTEL_METRIC_EXPORT_INTERVAL="600000",  # metrics are exported once, at exit
        PYTHONPATH=os.pathsep.join([str(tmp_path), str(REPO_ROOT)]),
    )
    env.update(environ)
    command = [str(INSTRUMENT), *args, sys.executable, "main.py"]
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done


def json_documents(text: str) -> list:
    """The JSON documents printed one after another (the console exporters' and the script's)."""
    decoder, docs, i = json.JSONDecoder(), [], 0
    while True:
        while i < len(text) and text[i].isspace():
            i += 1
        if i == len(text):
            return docs
        doc, i = decoder.raw_decode(text, i)
        docs.append(doc)


def duration_points(docs: list) -> list[dict]:
    return [
        point
        for doc in docs
        for rm in doc.get("resource_metrics", ())
        for sm in rm["scope_metrics"]
        for metric in sm["metrics"]
        if metric["name"] == DURATION
        for point in metric["data"]["data_points"]
    ]


pytestmark = pytest.mark.skipif(not INSTRUMENT.exists(), reason="opentelemetry-instrument is not installed")


def test_default_targets_not_found_say_so_once(tmp_path: Path) -> None:
    done = run_instrumented(tmp_path, MAIN)
    assert json_documents(done.stdout) == [{"wrapped": False}]
    assert done.stderr.count(DEFAULT_TARGET) == 1, done.stderr
    (line,) = [line for line in done.stderr.splitlines() if DEFAULT_TARGET in line]
    assert "not found" in line
    assert "NETHICAL_OTEL_INSTRUMENT_TARGETS=module:Class.method" in line


def test_named_target_becomes_spans_and_metrics(tmp_path: Path) -> None:
    done = run_instrumented(
        tmp_path,
        MAIN,
        NETHICAL_OTEL_INSTRUMENT_TARGETS="shop:Checkout.process_action",
        OTEL_TRACES_EXPORTER="console",
        OTEL_METRICS_EXPORTER="console",
    )
    assert done.stderr == ""  # no warning, nothing else either
    docs = json_documents(done.stdout)
    assert {"wrapped": True} in docs
    spans = [doc for doc in docs if "context" in doc and "name" in doc]
    assert [span["name"] for span in spans] == ["process_action"] * 3
    assert [span["attributes"][ACTION] for span in spans] == ["generate", "generate", "query"]
    counts = {point["attributes"][ACTION]: point["count"] for point in duration_points(docs)}
    assert counts == {"generate": 2, "query": 1}
    assert {point["attributes"][COHORT] for point in duration_points(docs)} == {"beta"}


def test_setup_in_the_service_honours_the_traces_exporter_option(tmp_path: Path) -> None:
    script = """
    import nethical_otel

    telemetry = nethical_otel.setup(service_name="shop", prometheus_enabled=False)

    @nethical_otel.instrument
    def checkout():
        return "done"

    checkout()
    telemetry.shutdown()
    """
    done = run_instrumented(tmp_path, script, "--traces_exporter", "console")
    spans = [doc for doc in json_documents(done.stdout) if "context" in doc and "name" in doc]
    assert [span["name"] for span in spans] == ["checkout"]
    assert spans[0]["resource"]["attributes"]["service.name"] == "shop"
