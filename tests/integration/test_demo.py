"""`nethical-otel demo` as a new user runs it, on a compressed timeline."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow

INJECT_AT, INJECT_FOR = 10.0, 9.0


def run_demo(tmp_path, *extra: str, duration: float = 30) -> tuple[subprocess.CompletedProcess, dict]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "NETHICAL_OTEL_"))}
    out = tmp_path / "demo-output"
    args = [sys.executable, "-m", "nethical_otel.cli", "demo", "--duration", str(duration), "--window", "3",
            "--port", "0", "--seed", "7", "--output-dir", str(out), *extra]  # fmt: skip
    result = subprocess.run(args, capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    return result, json.loads((out / "summary.json").read_text())


def test_injected_regression_fires_after_injection_and_resolves_after_removal(tmp_path):
    result, summary = run_demo(
        tmp_path, "--inject-at", str(INJECT_AT), "--inject-for", str(INJECT_FOR), "--inject-action", "query"
    )
    alerts = summary["alerts"]
    firing = [a for a in alerts if a["state"] == "firing" and a["action"] == "query"]
    resolved = [a for a in alerts if a["state"] == "resolved" and a["action"] == "query"]
    assert firing, result.stdout
    # The other actions share the demo's process (its event loop and the GIL) with the slowed
    # one: while query is slowed they can really get slower too (seen here: tool_call's p50
    # +18 % at 16 s of a 10-19 s slowdown, on 2 loaded cores). So an alert on another action is
    # honest only while the slowdown lasts: it must fire after the slowdown began and be resolved
    # by the end. (The steady run below must raise none at all.)
    others = [a for a in alerts if a["action"] != "query"]
    assert all(a["t"] > INJECT_AT for a in others if a["state"] == "firing"), others
    assert {(a["action"], a["quantile"]) for a in others if a["state"] == "firing"} == {
        (a["action"], a["quantile"]) for a in others if a["state"] == "resolved"
    }, others
    assert "query" in {a["action"] for a in firing}, "the slowed action alerts"
    assert summary["baselines_learned_at_s"] < INJECT_AT
    assert all(INJECT_AT < a["t"] < INJECT_AT + INJECT_FOR + 3 for a in firing), "fired after the injection"
    assert {(a["alertname"], a["quantile"]) for a in resolved} == {
        (a["alertname"], a["quantile"]) for a in firing
    }
    assert all(a["t"] > INJECT_AT + INJECT_FOR for a in resolved), "resolved after the removal"
    # The terminal showed the alert with its confidence interval; the plain (non-TTY) lines ran.
    assert "FIRING NethicalLatencyRegression action=query" in result.stdout
    assert "99% interval" in result.stdout and "alert=firing" in result.stdout

    out = tmp_path / "demo-output"
    png = (out / "latency.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 20_000
    markdown = (out / "summary.md").read_text()
    assert (
        "![latency](latency.png)" in markdown and "| firing | NethicalLatencyRegression | query |" in markdown
    )
    assert f"Wrote {out / 'latency.png'} and {out / 'summary.md'}" in result.stdout
    # The plan fits the window: no warning at the start, and the end says it all resolved.
    assert "Warning:" not in result.stdout
    assert summary["plan_warnings"] == [] and summary["still_firing"] == []
    fired = sum(a["state"] == "firing" for a in alerts)  # the outcome counts every action's
    assert summary["outcome"][0] == (
        f"{fired} alerts fired, all resolved before the end."
        if fired > 1
        else "1 alert fired and resolved before the end."
    )
    # The slowdown went into query's policy_store.fetch: the alert, the outcome, summary.md say so.
    assert "mostly in policy_store.fetch" in result.stdout
    [where] = summary["outcome"][1:]
    assert "alert on query put the slowdown in policy_store.fetch: policy_store.fetch +" in where
    assert any(a["substep"] == "policy_store.fetch" for a in firing)
    assert f"- {where}" in markdown
    assert summary["outcome"][0] in result.stdout and f"- {summary['outcome'][0]}" in markdown


def test_steady_run_ends_with_zero_alerts(tmp_path):
    result, summary = run_demo(tmp_path, "--no-inject", duration=12)
    assert summary["alerts"] == []
    assert summary["baselines_learned_at_s"] is not None
    assert "0 alerts fired (steady run: none expected)." in result.stdout
    assert "None fired." in (tmp_path / "demo-output" / "summary.md").read_text()
