"""The performance-regression workflow: valid for actionlint, and it does what the guide asks."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from nethical_otel.bench.report import MARKER

REPO_ROOT = Path(__file__).resolve().parents[2]
WORKFLOW = REPO_ROOT / ".github" / "workflows" / "performance-regression.yml"


def actionlint() -> str:
    """The actionlint `make test` builds from the Go module proxy; skip loudly without it, fail in CI."""
    tools = Path.home() / ".cache" / "nethical-otel" / "bin"
    found = shutil.which("actionlint", path=f"{tools}{os.pathsep}{os.environ.get('PATH', '')}")
    if found:
        return found
    reason = "!!! actionlint not installed: run `make test` (it builds it with Go)"
    if os.environ.get("CI"):
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


def test_actionlint_finds_nothing() -> None:
    result = subprocess.run(
        [actionlint(), "-no-color", str(WORKFLOW)], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_actionlint_would_catch_a_broken_workflow(tmp_path: Path) -> None:
    """The check can fail: an undefined step output and a bad expression are reported."""
    broken = WORKFLOW.read_text().replace("steps.compare.outputs.status", "steps.nope.outputs.status")
    (tmp_path / ".github" / "workflows").mkdir(parents=True)
    path = tmp_path / ".github" / "workflows" / "broken.yml"
    path.write_text(broken)
    result = subprocess.run(
        [actionlint(), "-no-color", str(path)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1 and "nope" in result.stdout


def test_triggers_jobs_and_artifacts() -> None:
    workflow = yaml.safe_load(WORKFLOW.read_text())
    triggers = workflow[True]  # YAML 1.1 reads the key `on` as a boolean
    assert triggers["pull_request"]["branches"] == ["main", "develop"]
    assert triggers["push"]["branches"] == ["main"]
    assert set(triggers["workflow_dispatch"]["inputs"]) == {"agents", "rps", "duration"}
    pr, main = workflow["jobs"]["pull-request"], workflow["jobs"]["main"]
    pr_text = _scripts(pr)
    assert "$BASE_SHA" in pr_text and pr_text.count('nethical-otel" load --agents') == 2  # base and head
    assert "compare performance-results/baseline.csv performance-results/current.csv" in pr_text
    # CPU profiles for "Where the time went": the head always, a base that knows the option.
    assert '--quiet --profile' in pr_text and '--quiet "${profile[@]}"' in pr_text
    assert "memory --actions 1000 --output memory-profile.txt" in pr_text
    assert MARKER in pr_text and "updateComment" in pr_text and "createComment" in pr_text
    uploads = [s for s in pr["steps"] if str(s.get("uses", "")).startswith("actions/upload-artifact")]
    assert uploads and "performance-results/" in uploads[0]["with"]["path"]
    assert "memory-profile.txt" in uploads[0]["with"]["path"]
    main_text = _scripts(main)
    assert "history add performance-results/current.csv --dir" in main_text
    assert "benchmark-history" in main_text and "history plot" in main_text


def _scripts(job: dict) -> str:
    """Every step's shell script and github-script, joined."""
    return "\n".join(
        str(step.get("run", "")) + str(step.get("with", {}).get("script", "")) for step in job["steps"]
    )
