"""The performance-regression workflow's own logic, run for real outside GitHub.

(tests/integration/test_bench_workflow.py runs actionlint on it and checks what it calls.)

1. Every third-party action is pinned to a full commit SHA with its tag in a comment, and
   .github/dependabot.yml (valid against its schema) proposes weekly updates of the actions
   and of the Python dependencies.
2. The concurrency comment says what GitHub does: at most one pending run per group.
3. "Benchmark the base", run by bash as the runner does with a base that fails or succeeds:
   a base that cannot run writes the pull-request comment saying so (marker, commit, its
   error) and the comment step runs for it; a base that runs writes none.
4. The comment step's github-script, run by node against a fake API: it edits the comment
   the bot wrote with the marker, never someone else's comment quoting the marker.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from nethical_otel.bench.report import MARKER
from tests.servers import REPO_ROOT, require_binary

WORKFLOW = REPO_ROOT / ".github" / "workflows" / "performance-regression.yml"
DEPENDABOT = REPO_ROOT / ".github" / "dependabot.yml"
BOT = {"login": "github-actions[bot]", "type": "Bot"}


def _workflow() -> dict:
    return yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))


def _step(job: str, name: str) -> dict:
    [step] = [s for s in _workflow()["jobs"][job]["steps"] if s.get("name") == name]
    return step


# -- 1, 2 -------------------------------------------------------------------------------------


def test_actions_are_pinned_to_commit_shas() -> None:
    uses = re.findall(r"^\s*(?:-\s+)?uses:\s*(.+)$", WORKFLOW.read_text(encoding="utf-8"), re.MULTILINE)
    assert uses
    for line in uses:
        if line.startswith("./"):
            continue  # an action of this repository
        assert re.fullmatch(r"[\w.-]+/[\w./-]+@[0-9a-f]{40} # v\d+\.\d+\.\d+", line), line


def test_dependabot_updates_actions_and_pip_weekly() -> None:
    config = yaml.safe_load(DEPENDABOT.read_text(encoding="utf-8"))
    updates = {u["package-ecosystem"]: u for u in config["updates"]}
    assert set(updates) == {"github-actions", "pip"}
    for update in updates.values():
        assert update["directory"] == "/" and update["schedule"]["interval"] == "weekly"
    tool = shutil.which("check-jsonschema")
    if not tool:
        pytest.fail("check-jsonschema is missing: install the test extras (pip install -e '.[test]')",
                    pytrace=False)
    done = subprocess.run([tool, "--builtin-schema", "vendor.dependabot", str(DEPENDABOT)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def test_concurrency_comment_says_what_github_does() -> None:
    text = WORKFLOW.read_text(encoding="utf-8")
    comment = text[text.index("concurrency:"):text.index("cancel-in-progress:")]
    assert "queue" not in comment
    assert "at most one pending run per group" in comment.replace("\n  #", "")


# -- 3: the base that cannot run --------------------------------------------------------------


def _run_base_step(tmp_path: Path, load_script: str) -> tuple[subprocess.CompletedProcess[str], Path]:
    """The step's script, with a fake base `nethical-otel` running ``load_script``."""
    step = _step("pull-request", "Benchmark the base")
    workspace, temp = tmp_path / "workspace", tmp_path / "runner-temp"
    (workspace / "performance-results").mkdir(parents=True)
    fake = temp / "venv-base" / "bin" / "nethical-otel"
    fake.parent.mkdir(parents=True)
    fake.write_text(f"#!/usr/bin/env bash\n{load_script}\n")
    fake.chmod(0o755)
    (temp / "base").mkdir()
    env = {
        "PATH": os.environ["PATH"], "RUNNER_TEMP": str(temp), "GITHUB_WORKSPACE": str(workspace),
        "GITHUB_OUTPUT": str(tmp_path / "output"), "GITHUB_STEP_SUMMARY": str(tmp_path / "summary"),
        "AGENTS": "100", "RPS": "50", "DURATION": "30",
        **{k: v.replace("${{ github.base_ref }}", "main").replace(
            "${{ github.event.pull_request.base.sha }}", "0123456789abcdef0123456789abcdef01234567")
           for k, v in step["env"].items()},
    }
    done = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", step["run"]],
                          cwd=temp / "base", env=env, capture_output=True, text=True, timeout=60)
    return done, workspace / "performance-results"


def test_a_base_that_cannot_run_gets_a_comment_saying_so(tmp_path: Path) -> None:
    done, results = _run_base_step(tmp_path, "echo 'Error: No such command load.' >&2; exit 2")
    assert done.returncode == 0, done.stderr  # the job goes on: the head is still measured
    assert "available=false" in (tmp_path / "output").read_text()
    comment = (results / "comment.md").read_text()
    assert comment.startswith(MARKER + "\n")
    assert "`0123456789ab` (`main`) cannot run `nethical-otel load`" in comment
    assert "exit status 2" in comment and "Error: No such command load." in comment
    assert comment in (tmp_path / "summary").read_text()
    assert "Error: No such command load." in done.stderr  # and in the log, as before
    # The comment step runs for it (as for a comparison), and reads this file.
    post = _step("pull-request", "Post or update the pull-request comment")
    assert "steps.base.outputs.available == 'false'" in post["if"]
    assert "performance-results/comment.md" in post["with"]["script"]


def test_a_base_that_runs_writes_no_note(tmp_path: Path) -> None:
    done, results = _run_base_step(tmp_path, 'echo "a,b" > "${@: -1}"')
    assert done.returncode == 0, done.stderr
    assert "available=true" in (tmp_path / "output").read_text()
    assert not (results / "comment.md").exists() and (results / "baseline.csv").exists()


# -- 4: which comment is edited ---------------------------------------------------------------

HARNESS = """
const fs = require('fs');
const [script, comments] = [fs.readFileSync(process.argv[2], 'utf8'), JSON.parse(process.argv[3])];
const calls = [];
const github = {
  paginate: async (method, params) => { calls.push(['list', params]); return comments; },
  rest: { issues: {
    listComments: () => {},
    updateComment: async (params) => { calls.push(['update', params]); },
    createComment: async (params) => { calls.push(['create', params]); },
  } },
};
const context = { repo: { owner: 'nethical', repo: 'nethical-otel' }, issue: { number: 7 } };
const AsyncFunction = Object.getPrototypeOf(async function () {}).constructor;
new AsyncFunction('require', 'github', 'context', script)(require, github, context)
  .then(() => console.log(JSON.stringify(calls)));
"""


def _post(tmp_path: Path, comments: list[dict]) -> list:
    node = require_binary("node")
    script = _step("pull-request", "Post or update the pull-request comment")["with"]["script"]
    (tmp_path / "performance-results").mkdir(exist_ok=True)
    (tmp_path / "performance-results" / "comment.md").write_text(f"{MARKER}\n## new report\n")
    (tmp_path / "script.js").write_text(script)
    (tmp_path / "harness.js").write_text(HARNESS)
    done = subprocess.run([node, "harness.js", "script.js", json.dumps(comments)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    calls = json.loads(done.stdout)
    assert calls[0] == ["list", {"owner": "nethical", "repo": "nethical-otel", "issue_number": 7,
                                 "per_page": 100}]
    return calls[1:]


def test_the_bots_marked_comment_is_updated_not_a_quote_of_it(tmp_path: Path) -> None:
    comments = [
        {"id": 1, "user": {"login": "reviewer", "type": "User"}, "body": f"> {MARKER}\n> quoted report"},
        {"id": 2, "user": BOT, "body": "another workflow's comment"},
        {"id": 3, "user": BOT, "body": f"{MARKER}\n## old report"},
    ]
    [(kind, params)] = _post(tmp_path, comments)
    assert kind == "update" and params["comment_id"] == 3
    assert params["body"] == f"{MARKER}\n## new report\n"


@pytest.mark.parametrize("comments", [
    [],
    [{"id": 1, "user": {"login": "reviewer", "type": "User"}, "body": f"{MARKER} pasted"}],
    [{"id": 2, "user": BOT, "body": "another workflow's comment"}],
], ids=["none", "a-quote-only", "the-bot-unmarked"])
def test_without_the_bots_marked_comment_a_new_one_is_created(tmp_path: Path, comments: list[dict]) -> None:
    [(kind, params)] = _post(tmp_path, comments)
    assert kind == "create" and params["issue_number"] == 7 and params["body"].startswith(MARKER)
