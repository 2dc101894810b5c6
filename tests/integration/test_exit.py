"""A service that exits without shutdown(), its collector down, still exits promptly and quietly."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

import pytest

from tests.servers import free_port

SCRIPT = """
import sys, time
import nethical_otel
telemetry = nethical_otel.setup(service_name="exit", otlp_endpoint="{endpoint}", otlp_protocol="{protocol}",
                                prometheus_enabled=False, metric_export_interval_ms=60000)

@nethical_otel.instrument
def work():
    return 1

for _ in range(500):
    work()
print(time.time(), file=sys.stderr, flush=True)  # the service's own work is done
{ending}
"""


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
@pytest.mark.parametrize("ending", ["", "telemetry.shutdown()"])
def test_exit_with_the_collector_down_is_bounded_and_warns_once(protocol: str, ending: str) -> None:
    endpoint = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    script = textwrap.dedent(SCRIPT.format(endpoint=endpoint, protocol=protocol, ending=ending))
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin"},
    )
    elapsed = time.time() - float(done.stderr.splitlines()[0])
    assert done.returncode == 0, done.stderr[-2000:]
    assert elapsed <= 5.0, f"exit took {elapsed:.1f} s\n{done.stderr[-2000:]}"
    assert "can only be called once" not in done.stderr
    assert "Traceback" not in done.stderr
