"""The service side is light to import: no CI side, no CLI, no scipy or plotting (DESIGN.md,
"Two sides of one package"). Each check runs in a fresh interpreter and looks at
``sys.modules``; it asserts what gets imported, not how long it takes
(``benchmarks/import_cost.py`` times it)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("nethical_otel.bench", "nethical_otel.cli", "scipy", "matplotlib", "rich", "click", "pandas")
# With no OTLP endpoint nothing of the exporters (grpc is the heaviest import there is) loads.
EXPORTERS = ("grpc", "opentelemetry.exporter.otlp", "opentelemetry.exporter.prometheus")

REPORT = """
import json, sys
print(json.dumps(sorted(m for m in sys.modules if m.startswith(("nethical_otel", "scipy", "matplotlib",
    "rich", "click", "pandas", "grpc", "opentelemetry.exporter")))))
"""


def loaded_after(code: str) -> set[str]:
    """The modules of interest in ``sys.modules`` after running ``code`` in a fresh interpreter."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "NETHICAL_OTEL_"))}
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code) + REPORT],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=REPO_ROOT,
    )
    assert done.returncode == 0, done.stderr
    return set(json.loads(done.stdout.strip().splitlines()[-1]))


def heavy(modules: set[str], names: tuple[str, ...] = HEAVY) -> list[str]:
    return sorted(m for m in modules if any(m == n or m.startswith(n + ".") for n in names))


def test_import_and_instrument_load_nothing_heavy() -> None:
    modules = loaded_after(
        """
        import nethical_otel

        @nethical_otel.instrument
        def process_action(agent_id):
            return agent_id

        process_action("a")
        with nethical_otel.action("other"):
            pass
        """
    )
    assert "nethical_otel.telemetry.instrument" in modules  # the check sees our modules at all
    assert heavy(modules) == []


def test_setup_without_prometheus_or_otlp_loads_nothing_heavy() -> None:
    modules = loaded_after(
        """
        import nethical_otel

        telemetry = nethical_otel.setup(service_name="svc", prometheus_enabled=False)
        nethical_otel.instrument(lambda: 1)()
        telemetry.shutdown()
        """
    )
    assert "nethical_otel.telemetry.setup" in modules
    assert heavy(modules, HEAVY + EXPORTERS) == []


def test_imports_and_runs_without_posix_only_modules() -> None:
    """As on Windows: no ``resource`` module, no ``os.fork`` nor ``os.register_at_fork``."""
    modules = loaded_after(
        """
        import os, sys

        sys.modules["resource"] = None  # `import resource` raises ImportError
        del os.fork, os.register_at_fork  # the standard library checks for fork before using either
        import nethical_otel
        from nethical_otel.bench.sysinfo import cpu_seconds, rss_mb

        telemetry = nethical_otel.setup(service_name="svc", prometheus_enabled=False)
        nethical_otel.instrument(lambda: 1)()
        nethical_otel.NethicalInstrumentor(), nethical_otel.PerformanceProfiler
        telemetry.shutdown()
        assert rss_mb() > 0 and cpu_seconds() > 0
        """
    )
    assert {"nethical_otel.telemetry.setup", "nethical_otel.bench.profiler"} <= modules


def test_lazy_names_resolve_and_stay_listed() -> None:
    import nethical_otel
    from nethical_otel.bench.profiler import PerformanceProfiler
    from nethical_otel.telemetry.instrumentor import NethicalInstrumentor

    assert nethical_otel.PerformanceProfiler is PerformanceProfiler
    assert nethical_otel.NethicalInstrumentor is NethicalInstrumentor
    assert set(nethical_otel.__all__) <= set(dir(nethical_otel))
    with pytest.raises(AttributeError, match="no_such_name"):
        _ = nethical_otel.no_such_name


def test_profiler_alone_does_not_pull_the_rest_of_bench() -> None:
    modules = loaded_after("import nethical_otel; nethical_otel.PerformanceProfiler")
    assert "nethical_otel.bench.profiler" in modules
    assert heavy(modules, ("nethical_otel.bench.loadgen", "nethical_otel.bench.history", "scipy")) == []


def test_scipy_loads_when_a_comparison_runs() -> None:
    modules = loaded_after(
        """
        import numpy as np
        from nethical_otel.stats import LatencyHistogram, Policy, evaluate

        rng = np.random.default_rng(0)
        a, b = LatencyHistogram(), LatencyHistogram()
        a.record_many(rng.lognormal(-5, 0.3, 500))
        b.record_many(rng.lognormal(-5, 0.3, 500))
        assert "scipy" not in __import__("sys").modules
        evaluate(Policy(), a, b, 100.0, 100.0)
        """
    )
    assert "scipy.special" in modules
