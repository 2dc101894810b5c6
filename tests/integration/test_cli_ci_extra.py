"""The CLI without the CI extra, and what `nethical-otel --help` costs.

"Without the extra" is simulated: a ``sitecustomize`` on ``PYTHONPATH`` puts a finder first on
``sys.meta_path`` that answers ``import matplotlib`` / ``rich`` the way Python does
for a package that is not installed (``ModuleNotFoundError`` with its ``name``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nethical_otel import cli
from nethical_otel.bench.results import write_run
from tests.unit.test_bench_results import make_run

REPO_ROOT = Path(__file__).resolve().parents[2]

BLOCKER = """
import sys

BLOCKED = {"matplotlib", "rich"}  # what the `ci` extra installs


class NotInstalled:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


sys.meta_path.insert(0, NotInstalled())
"""


def _cli() -> list[str]:
    script = Path(sys.executable).parent / "nethical-otel"
    return [str(script)] if script.exists() else [sys.executable, "-m", "nethical_otel.cli"]


@pytest.fixture(scope="module")
def without_extra(tmp_path_factory) -> dict[str, str]:
    site = tmp_path_factory.mktemp("site")
    (site / "sitecustomize.py").write_text(BLOCKER)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "NETHICAL_OTEL_"))}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site), str(REPO_ROOT), env.get("PYTHONPATH")]))
    return env


def _run(cwd: Path, env: dict[str, str], *args: str) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    result = subprocess.run([*_cli(), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    return result, time.monotonic() - started


@pytest.mark.parametrize(
    ("args", "command", "module"),
    [
        (("load", "--duration", "30", "--rps", "20", "-o", "run.csv"), "load", "rich"),
        (("load", "--duration", "30", "--rps", "20", "-q", "-o", "run.csv"), "load", "rich"),
        (("demo", "--duration", "30", "--port", "0", "--output-dir", "demo"), "demo", "matplotlib"),
        (("history", "plot", "--dir", "history", "-o", "trend.png"), "history plot", "matplotlib"),
    ],
    ids=["load", "load-quiet", "demo", "history-plot"],
)
def test_a_ci_command_without_the_extra_says_so_in_one_line_at_once(
    tmp_path: Path, without_extra: dict[str, str], args: tuple[str, ...], command: str, module: str
) -> None:
    write_run(make_run(), tmp_path / "history" / "benchmark_20250301_120000.csv")
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    result, seconds = _run(tmp_path, without_extra, *args)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        f"nethical-otel: error: 'nethical-otel {command}' needs the CI extra ({module} is not installed): "
        "pip install 'nethical-otel[ci]'"
    ]
    assert seconds < 15, f"{seconds:.0f} s: the missing extra was found after the run"
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before, "nothing written"


def test_the_base_install_still_compares_and_shows_baselines(tmp_path: Path, without_extra) -> None:
    write_run(make_run(), tmp_path / "a.csv")
    write_run(make_run(seed=2), tmp_path / "b.csv")
    compared, _ = _run(tmp_path, without_extra, "compare", "a.csv", "b.csv", "--format", "json")
    assert compared.returncode == 0, compared.stderr
    assert json.loads(compared.stdout)["regression"] is False
    created, _ = _run(
        tmp_path, without_extra, "baseline", "create", "--from-run", "a.csv", "--service", "s",
        "--action", "process_action", "-o", "b.json",
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    shown, _ = _run(tmp_path, without_extra, "baseline", "show", "b.json")
    assert shown.returncode == 0, shown.stderr
    assert "s/process_action/benchmark" in shown.stdout and "2000" in shown.stdout
    helped, _ = _run(tmp_path, without_extra, "--help")
    assert helped.returncode == 0 and "history" in helped.stdout, helped.stderr


def test_help_imports_no_ci_side(tmp_path: Path) -> None:
    probe = (
        "import sys\n"
        "from nethical_otel.cli import main\n"
        "try:\n"
        "    main(['--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "heavy = ('nethical_otel.bench', 'scipy', 'matplotlib', 'rich', 'pandas')\n"
        "print(sorted(m for m in sys.modules if m.startswith(heavy)), file=sys.stderr)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert "load" in result.stdout and "compare" in result.stdout  # listed all the same
    assert result.stderr.strip() == "[]"


@pytest.mark.parametrize("name", ["budget", "compare", "history", "load", "memory"])
def test_the_help_summary_of_a_lazy_command_is_its_own(name: str) -> None:
    import click

    real = cli.main.get_command(click.Context(cli.main), name)
    assert real is not None and real.name == name
    stub = click.Command(name, help=cli.LAZY_COMMANDS[name][2])
    for width in (40, 70, 200):
        assert stub.get_short_help_str(width) == real.get_short_help_str(width)
