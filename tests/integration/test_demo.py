"""`nethical-otel demo` as a new user runs it, on a compressed timeline."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow

INJECT_AT, INJECT_FOR = 10.0, 9.0
# The demo's timing at --window 3: an alert fires within window + for + step (4.8 s) of a change.
FIRE_AFTER = 3 + 1.2 + 0.6


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
        tmp_path, "--inject-at", str(INJECT_AT), "--inject-for", str(INJECT_FOR), "--inject-action", "query",
        duration=36,
    )  # fmt: skip
    alerts = summary["alerts"]
    end = INJECT_AT + INJECT_FOR
    # The slowdown's alerts: those that fire while it lasts or until it has left the window.
    # Other actions share the demo's process (its event loop and the GIL) with the slowed one,
    # so while query is slowed they can really get slower too (seen: tool_call's p50 +18 % at
    # 16 s of a 10-19 s slowdown, on 2 loaded cores): theirs count as the slowdown's as well.
    fired = [a for a in alerts if a["state"] == "firing"]
    episode = [a for a in fired if INJECT_AT < a["t"] <= end + FIRE_AFTER]
    firing = [a for a in episode if a["action"] == "query"]
    assert firing, result.stdout
    assert summary["baselines_learned_at_s"] < INJECT_AT
    # Every one of them resolves before the end of the run; query's once the slowdown is over.
    for alert in episode:
        later = [a for a in alerts if a["t"] > alert["t"] and a["alertname"] == alert["alertname"]
                 and (a["action"], a["quantile"]) == (alert["action"], alert["quantile"])]  # fmt: skip
        assert later and later[0]["state"] == "resolved", (alert, alerts)
        assert later[0]["t"] > end or alert["action"] != "query", (alert, alerts)
    # On a shared machine the host itself can slow down for a few seconds before or after that
    # (seen: query and tool_call p50 +16 % together at 41 s, 15 s after a slowdown ended; and
    # alerts before it began, on a baseline a few windows old), which the demo's 3 s window and
    # 1.2 s `for` catch. Such an alert is not the slowdown's, and the outcome must say so rather
    # than count it as the injected one.
    before = [a for a in fired if a["t"] <= INJECT_AT]
    after = [a for a in fired if a["t"] > end + FIRE_AFTER]
    named = (before, "fired before the slowdown began"), (after, "fired after the slowdown was over")
    for events, said in named:
        assert bool(events) == any(said in line for line in summary["outcome"]), (said, alerts)
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
    # The plan fits the window: no warning at the start, and the end says the slowdown's
    # alerts all resolved (only one of the machine's own may still fire).
    assert "Warning:" not in result.stdout
    assert summary["plan_warnings"] == []
    assert all(a in after for a in summary["still_firing"]), summary["still_firing"]
    fired, unresolved = sum(a["state"] == "firing" for a in alerts), len(summary["still_firing"])
    assert summary["outcome"][0] == (
        f"{fired} alerts fired, {fired - unresolved} resolved before the end."
        if unresolved
        else f"{fired} alerts fired, all resolved before the end."
        if fired > 1
        else "1 alert fired and resolved before the end."
    )
    # The slowdown went into query's policy_store.fetch: the alert, the outcome, summary.md say so.
    assert "mostly in policy_store.fetch" in result.stdout
    [where] = [line for line in summary["outcome"] if " put the slowdown in " in line]
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
