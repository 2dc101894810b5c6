"""fork() inside an instrumented service: children never hang, start empty, and keep working.

Each scenario runs in a fresh interpreter (``python -c``) so the forks see a process like a
service's (threads recording, a /metrics server, the embedded detector), not pytest's.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="fork() is POSIX")


def run_script(source: str, timeout: float = 120) -> dict:
    """Run ``source`` in its own session; whatever it forked is killed with it at the end."""
    process = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(source)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={"PATH": "/usr/bin:/bin", "OTEL_TRACES_SAMPLER": "always_on"},
        start_new_session=True,
    )
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # hung children too
        process.wait()
    assert process.returncode == 0, stderr[-3000:]
    return json.loads(stdout.strip().splitlines()[-1])


def test_50_forks_while_3_threads_record_children_finish_within_2s() -> None:
    result = run_script(
        """
        import json, os, threading, time
        import nethical_otel

        telemetry = nethical_otel.setup(service_name="fork", prometheus_enabled=False, set_global=False)

        @nethical_otel.instrument(action_arg="action")
        def work(action, cohort=None):
            return None

        stop = threading.Event()
        def record(i):
            while not stop.is_set():
                work(f"parent-{i % 2}", cohort="c")
        threads = [threading.Thread(target=record, args=(i,)) for i in range(3)]
        for t in threads:
            t.start()
        time.sleep(0.2)

        def parent_count():
            return sum(h.count for _, h in telemetry.registry.histograms())

        before = parent_count()
        slow, failed = [], []
        for _ in range(50):
            pid = os.fork()
            if pid == 0:  # child: only this thread exists
                start = time.monotonic()
                for _ in range(5000):
                    work("child", cohort="c")
                counts = {a["nethical.action"]: h.count for a, h in telemetry.registry.histograms()}
                ok = counts.get("child") == 5000 and sum(counts.values()) == 5000
                os._exit(0 if ok and time.monotonic() - start < 2.0 else 3)
            deadline = time.monotonic() + 2.0
            while True:
                done, status = os.waitpid(pid, os.WNOHANG)
                if done:
                    if os.waitstatus_to_exitcode(status) != 0:
                        failed.append(os.waitstatus_to_exitcode(status))
                    break
                if time.monotonic() > deadline:
                    slow.append(pid)
                    os.kill(pid, 9)
                    os.waitpid(pid, 0)
                    break
                time.sleep(0.005)
        stop.set()
        for t in threads:
            t.join()
        after = parent_count()
        telemetry.shutdown()
        print(json.dumps({"hung": len(slow), "failed": failed, "parent_grew": after > before}))
        """
    )
    assert result == {"hung": 0, "failed": [], "parent_grew": True}


def test_multiprocessing_fork_pool_workers_record_their_own_calls() -> None:
    result = run_script(
        """
        import json, multiprocessing, threading
        import nethical_otel

        telemetry = nethical_otel.setup(service_name="pool", prometheus_enabled=False, set_global=False)

        @nethical_otel.instrument
        def work(n):
            return n * n

        def task(n):
            for _ in range(1000):
                work(n)
            return sum(h.count for _, h in telemetry.registry.histograms())

        stop = threading.Event()
        def background():
            while not stop.is_set():
                work(0)
        thread = threading.Thread(target=background)
        thread.start()
        ctx = multiprocessing.get_context("fork")
        with ctx.Pool(4, maxtasksperchild=1) as pool:
            counts = pool.map(task, range(8), chunksize=1)
        stop.set()
        thread.join()
        telemetry.shutdown()
        print(json.dumps({"counts": counts}))
        """
    )
    # maxtasksperchild=1: each task ran in a freshly forked worker, so each saw only its own calls.
    assert result["counts"] == [1000] * 8


def test_preload_style_setup_then_fork_workers_serve_metrics_and_detect() -> None:
    result = run_script(
        """
        import json, os, threading, time, urllib.request
        import nethical_otel

        telemetry = nethical_otel.setup(
            service_name="preload", prometheus_port=0, set_global=False, detector=True,
            detector_window_s=2, detector_step_s=0.2,
        )
        parent_url = telemetry.prometheus_url

        @nethical_otel.instrument(action_arg="action")
        def work(action):
            return None

        for _ in range(100):
            work("parent")

        def scrape(url):
            return urllib.request.urlopen(url, timeout=10).read().decode()

        workers = []
        for i in range(2):
            r, w = os.pipe()
            pid = os.fork()
            if pid == 0:
                os.close(r)
                for _ in range(300):
                    work(f"worker-{i}")
                text = scrape(telemetry.prometheus_url)
                time.sleep(1.0)  # a few detector steps in this process
                report = {
                    "url_changed": telemetry.prometheus_url != parent_url,
                    "own": f'nethical_action="worker-{i}"' in text,
                    "parent_series": 'seconds_count{nethical_action="parent"' in text,
                    "count": f'nethical_action_duration_seconds_count{{nethical_action="worker-{i}"' in text,
                    "detector_alive": telemetry.detector is not None and any(
                        t.name == "nethical-detector" and t.is_alive() for t in threading.enumerate()
                    ),
                    "detector_sees": sorted(k.action for k in telemetry.detector.source.cumulative()),
                }
                os.write(w, json.dumps(report).encode())
                os.close(w)
                os._exit(0)
            os.close(w)
            workers.append((pid, r))
        reports = []
        for pid, r in workers:
            with os.fdopen(r) as f:
                reports.append(json.loads(f.read()))
            os.waitpid(pid, 0)
        parent_text = scrape(parent_url)
        telemetry.shutdown()
        print(json.dumps({"reports": reports, "parent_ok": 'seconds_count{nethical_action="parent"'
                          in parent_text and "worker-" not in parent_text}))
        """
    )
    assert result["parent_ok"]
    for i, report in enumerate(result["reports"]):
        assert report == {
            "url_changed": True,
            "own": True,
            "parent_series": False,
            "count": True,
            "detector_alive": True,
            "detector_sees": [f"worker-{i}"],
        }
