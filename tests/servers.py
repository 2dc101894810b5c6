"""Real servers for integration tests, started on loopback in a temp dir and always stopped.

``ServerProcess`` is the one runner: it starts a binary with its log in a file, polls an HTTP
readiness URL until a deadline, and on exit terminates (then kills) the process. When the
server does not come up, the error carries the tail of its log, so a failure says why.
``start_prometheus`` / ``start_alertmanager`` build on it; ``wait_for_query`` polls the
Prometheus HTTP API until a query has an answer (the first ``rate`` needs two scrapes).
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import yaml

LOOPBACK = "127.0.0.1"


def wait_until(condition: Callable[[], object], timeout_s: float, what: str, interval_s: float = 0.05):
    """Poll ``condition`` until it returns something true (returned), or fail naming ``what``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s:.1f} s waiting for {what}")


def active_alerts(am_url: str, **labels: str) -> list[dict]:
    """Alertmanager's active alerts whose labels include ``labels``; [] while it is down."""
    try:
        alerts = httpx.get(f"{am_url}/api/v2/alerts", timeout=5).json()
    except httpx.HTTPError:
        return []
    return [a for a in alerts if all(a["labels"].get(k) == v for k, v in labels.items())]


class ServerStartError(RuntimeError):
    """A server exited or did not become ready in time; the message ends with its log tail."""


def free_port() -> int:
    """A TCP port free on loopback right now (the caller binds it soon after)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def require_binary(*names: str) -> str:
    """Path of the first of ``names`` on PATH; skip the test loudly without it, fail under CI."""
    for name in names:
        path = shutil.which(name)
        if path:
            return path
    reason = f"!!! {' / '.join(names)} not installed: run `make test` which installs it"
    if os.environ.get("CI"):
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


class ServerProcess:
    """``with ServerProcess([...], workdir, ready_url) as server:`` runs a server for the block."""

    def __init__(
        self,
        args: Sequence[str],
        workdir: Path,
        ready_url: str,
        *,
        name: str | None = None,
        ready_timeout_s: float = 20.0,
        env: dict[str, str] | None = None,
    ) -> None:
        self.args = [str(a) for a in args]
        self.workdir = Path(workdir)
        self.ready_url = ready_url
        self.name = name or Path(self.args[0]).name
        self.ready_timeout_s = ready_timeout_s
        self.env = env
        self.log_path = self.workdir / f"{self.name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> ServerProcess:
        self.workdir.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                self.args, cwd=self.workdir, stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, env=self.env)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _wait_ready(self) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + self.ready_timeout_s
        last = "no answer yet"
        while True:
            rc = self.proc.poll()
            if rc is not None:
                raise ServerStartError(f"{self.name} exited with rc {rc} before it was ready\n"
                                       f"{self.log_tail()}")
            try:
                response = httpx.get(self.ready_url, timeout=1.0)
                if response.status_code == 200:
                    return
                last = f"HTTP {response.status_code}"
            except httpx.HTTPError as exc:
                last = f"{type(exc).__name__}: {exc}"
            if time.monotonic() > deadline:
                raise ServerStartError(f"{self.name} not ready at {self.ready_url} after "
                                       f"{self.ready_timeout_s:.0f} s ({last})\n{self.log_tail()}")
            time.sleep(0.05)

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return f"(no log at {self.log_path})"
        tail = "\n".join(text.splitlines()[-lines:])
        return f"--- last {lines} lines of {self.log_path} ---\n{tail}"

    def stop(self, timeout_s: float = 5.0) -> None:
        """SIGTERM, then SIGKILL if it has not exited within ``timeout_s``."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=timeout_s)


@dataclass
class RunningServer:
    url: str  # http://127.0.0.1:PORT, no trailing slash
    process: ServerProcess
    config_path: Path


# -- Prometheus ------------------------------------------------------------------------------


def _scrape_job(job_name: str, targets: Sequence[str], scrape_interval: str) -> dict[str, Any]:
    """One job for ``targets`` given as ``host:port`` or ``http://host:port/path`` (one path)."""
    hosts, paths, schemes = [], set(), set()
    for target in targets:
        parts = urlsplit(target if "://" in target else f"http://{target}")
        hosts.append(parts.netloc)
        paths.add(parts.path or "/metrics")
        schemes.add(parts.scheme)
    if len(paths) > 1 or len(schemes) > 1:
        raise ValueError(f"scrape targets of one job must share scheme and path: {list(targets)}")
    return {
        "job_name": job_name,
        "scrape_interval": scrape_interval,
        "scrape_timeout": scrape_interval,
        "scheme": schemes.pop(),
        "metrics_path": paths.pop(),
        "static_configs": [{"targets": hosts}],
    }


# Prometheus 3 (native histograms, OTLP receiver): built by `make prometheus3` into the cache;
# `make test` passes its path in PROMETHEUS3_BINARY. Debian's 2.42 is `prometheus` on PATH.
PROMETHEUS3_BINARY_ENV = "PROMETHEUS3_BINARY"
PROMETHEUS3_DEFAULT = Path.home() / ".cache/nethical-otel/prometheus3/v0.316.0/prometheus"


def prometheus3_binary() -> str:
    """Path of the Prometheus 3 build; skip loudly without it, fail under CI."""
    path = Path(os.environ.get(PROMETHEUS3_BINARY_ENV) or PROMETHEUS3_DEFAULT)
    if path.is_file() and os.access(path, os.X_OK):
        return str(path)
    reason = f"!!! Prometheus 3 not built at {path}: run `make prometheus3` (or `make test`)"
    if os.environ.get("CI"):
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


def promtool_binary(version: int = 2) -> str:
    """Debian's promtool (2.42, on PATH) or Prometheus 3's, built by `make prometheus3` beside
    its prometheus; skipped loudly without it (failed under CI)."""
    if version == 2:
        return require_binary("promtool")
    path = Path(prometheus3_binary()).with_name("promtool")
    if not path.is_file():
        reason = f"!!! Prometheus 3's promtool not built at {path}: run `make prometheus3`"
        if os.environ.get("CI"):
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    return str(path)


# What a Prometheus 3 started by the tests adds to its config: OTLP names as the Collector's
# prometheus exporter makes them, service.name -> job, and room for late OTLP samples.
PROMETHEUS3_OTLP_CONFIG: dict[str, Any] = {
    "otlp": {"translation_strategy": "UnderscoreEscapingWithSuffixes"},
    "storage": {"tsdb": {"out_of_order_time_window": "30m"}},
}


@contextlib.contextmanager
def start_prometheus(
    tmp_path: Path,
    scrape_targets: Sequence[str],
    scrape_interval: str = "1s",
    *,
    job_name: str = "nethical",
    rule_files: Sequence[Path] = (),
    evaluation_interval: str = "1s",
    alertmanager_url: str | None = None,
    version: int = 2,
    features: Sequence[str] = (),
) -> Iterator[RunningServer]:
    """A Prometheus on 127.0.0.1:free port scraping ``scrape_targets``; stopped on exit.

    ``version=3``: the Prometheus 3 build, with its OTLP receiver on (``/api/v1/otlp``).
    ``features``: ``--enable-feature`` flags (``exemplar-storage``)."""
    config: dict[str, Any] = {
        "global": {"scrape_interval": scrape_interval, "evaluation_interval": evaluation_interval},
        "scrape_configs": [_scrape_job(job_name, scrape_targets, scrape_interval)] if scrape_targets else [],
    }
    if rule_files:
        config["rule_files"] = [str(Path(p).resolve()) for p in rule_files]
    if alertmanager_url:
        config["alerting"] = {"alertmanagers": [
            {"static_configs": [{"targets": [urlsplit(alertmanager_url).netloc]}]}]}
    if version == 3:
        config.update(PROMETHEUS3_OTLP_CONFIG)
    with start_prometheus_with(tmp_path, config, version=version, features=features) as server:
        yield server


@contextlib.contextmanager
def start_prometheus_with(
    tmp_path: Path, config: dict[str, Any], version: int = 2, features: Sequence[str] = ()
) -> Iterator[RunningServer]:
    """A Prometheus on 127.0.0.1:free port running the complete ``config``; stopped on exit.

    ``version=3`` runs the Prometheus 3 build with ``--web.enable-otlp-receiver``."""
    binary = prometheus3_binary() if version == 3 else require_binary("prometheus")
    workdir = tmp_path / ("prometheus3" if version == 3 else "prometheus")
    workdir.mkdir(parents=True, exist_ok=True)
    config_path = workdir / "prometheus.yml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    port = free_port()
    url = f"http://{LOOPBACK}:{port}"
    args = [
        binary,
        f"--config.file={config_path}",
        f"--storage.tsdb.path={workdir / 'data'}",
        f"--web.listen-address={LOOPBACK}:{port}",
        "--storage.tsdb.retention.time=1h",
    ]
    if version == 3:
        args.append("--web.enable-otlp-receiver")
    args += [f"--enable-feature={feature}" for feature in features]
    with ServerProcess(args, workdir, f"{url}/-/ready", name=workdir.name) as process:
        yield RunningServer(url, process, config_path)


def query(prometheus_url: str, promql: str, timeout_s: float = 5.0) -> list[dict[str, Any]]:
    """The ``result`` of an instant query (``/api/v1/query``); raises on an API error."""
    response = httpx.get(f"{prometheus_url}/api/v1/query", params={"query": promql}, timeout=timeout_s)
    body = response.json()
    if response.status_code != 200 or body.get("status") != "success":
        raise AssertionError(f"query {promql!r} failed: HTTP {response.status_code} {body}")
    return body["data"]["result"]


def _has_number(result: list[dict[str, Any]]) -> bool:
    return any(not math.isnan(float(sample["value"][1])) for sample in result if "value" in sample)


def wait_for_query(
    prometheus_url: str,
    promql: str,
    *,
    timeout_s: float = 30.0,
    interval_s: float = 0.5,
    accept: Callable[[list[dict[str, Any]]], bool] = _has_number,
) -> list[dict[str, Any]]:
    """Poll an instant query until ``accept(result)`` (default: a sample that is not NaN)."""
    deadline = time.monotonic() + timeout_s
    result: list[dict[str, Any]] = []
    while True:
        result = query(prometheus_url, promql)
        if accept(result):
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"no acceptable answer to {promql!r} after {timeout_s:.0f} s; "
                                 f"last result: {result}")
        time.sleep(interval_s)


def scalar(result: list[dict[str, Any]]) -> float:
    """The value of a one-sample instant-query result."""
    assert len(result) == 1, f"expected one sample, got {result}"
    return float(result[0]["value"][1])


# -- Alertmanager ----------------------------------------------------------------------------

_DEFAULT_ALERTMANAGER_CONFIG: dict[str, Any] = {
    "route": {"receiver": "blackhole", "group_wait": "0s", "group_interval": "1s", "repeat_interval": "1h"},
    "receivers": [{"name": "blackhole"}],
}


@contextlib.contextmanager
def start_alertmanager(
    tmp_path: Path, config: dict[str, Any] | str | None = None, port: int | None = None
) -> Iterator[RunningServer]:
    """An Alertmanager on 127.0.0.1:free port, no gossip listener; stopped on exit.

    ``config`` is the alertmanager.yml as a mapping or YAML text; default: one receiver that
    drops everything (alerts are still listed by the API).
    """
    binary = require_binary("prometheus-alertmanager", "alertmanager")
    workdir = tmp_path / "alertmanager"
    workdir.mkdir(parents=True, exist_ok=True)
    if config is None:
        config = _DEFAULT_ALERTMANAGER_CONFIG
    text = config if isinstance(config, str) else yaml.safe_dump(config, sort_keys=False)
    config_path = workdir / "alertmanager.yml"
    config_path.write_text(text, encoding="utf-8")
    port = port or free_port()
    url = f"http://{LOOPBACK}:{port}"
    args = [
        binary,
        f"--config.file={config_path}",
        f"--storage.path={workdir / 'data'}",
        f"--web.listen-address={LOOPBACK}:{port}",
        "--cluster.listen-address=",
    ]
    with ServerProcess(args, workdir, f"{url}/-/ready", name="alertmanager") as process:
        yield RunningServer(url, process, config_path)


# -- Deploy files ----------------------------------------------------------------------------

REPO_ROOT = Path(__file__).resolve().parent.parent
PROMETHEUS_DEPLOY_CONFIG = REPO_ROOT / "deploy" / "prometheus" / "prometheus.yml"  # native (Prometheus 3)
PROMETHEUS_DEPLOY_CONFIG_CLASSIC = PROMETHEUS_DEPLOY_CONFIG.with_name("prometheus-classic.yml")  # 2.x


def deploy_prometheus_config(
    targets: dict[str, Sequence[str]],
    *,
    interval: str = "1s",
    alertmanager_url: str | None = None,
    path: Path | None = None,
) -> dict[str, Any]:
    """``deploy/prometheus/prometheus.yml`` (or ``path``, e.g. ``PROMETHEUS_DEPLOY_CONFIG_CLASSIC``)
    as shipped, pointed at servers on loopback.

    Each scrape job keeps its own settings (``honor_labels``, paths) but its targets become
    ``targets[job_name]``; jobs not named in ``targets`` are dropped. Rule files become
    absolute paths, scrape and evaluation intervals become ``interval``.
    """
    path = path or PROMETHEUS_DEPLOY_CONFIG
    config = yaml.safe_load(path.read_text(encoding="utf-8"))
    unknown = set(targets) - {job["job_name"] for job in config["scrape_configs"]}
    if unknown:
        raise ValueError(f"{path} has no scrape job {sorted(unknown)}")
    config["global"].update(scrape_interval=interval, scrape_timeout=interval, evaluation_interval=interval)
    jobs = []
    for job in config["scrape_configs"]:
        if job["job_name"] not in targets:
            continue
        for key in ("scrape_interval", "scrape_timeout"):
            job.pop(key, None)
        job["static_configs"] = [{"targets": list(targets[job["job_name"]])}]
        jobs.append(job)
    config["scrape_configs"] = jobs
    base = path.parent
    config["rule_files"] = [str(base / pattern) for pattern in config.get("rule_files", [])]
    if alertmanager_url:
        config["alerting"] = {"alertmanagers": [
            {"static_configs": [{"targets": [urlsplit(alertmanager_url).netloc]}]}]}
    else:
        config.pop("alerting", None)
    return config


# -- OpenTelemetry Collector -----------------------------------------------------------------

COLLECTOR_DIR = REPO_ROOT / "collector"
COLLECTOR_CONFIG = COLLECTOR_DIR / "config.yaml"  # native histograms: OTLP to Prometheus 3
COLLECTOR_CONFIG_CLASSIC = COLLECTOR_DIR / "config-classic.yaml"  # `le` buckets on :8889 for 2.x
COLLECTOR_CONFIGS = (COLLECTOR_CONFIG, COLLECTOR_CONFIG_CLASSIC)
COLLECTOR_MANIFEST = COLLECTOR_DIR / "builder-config.yaml"
COLLECTOR_BINARY_ENV = "OTELCOL_BINARY"  # use this collector binary instead of the cached build


def collector_binary() -> str:
    """Path of the collector to test: ``$OTELCOL_BINARY``, else the cached build of the manifest.

    ``collector/build.sh --path`` names the build without running it (building takes
    minutes; ``make test`` does it first). No binary: the test skips loudly, or fails under CI.
    """
    explicit = os.environ.get(COLLECTOR_BINARY_ENV)
    if explicit:
        if not os.access(explicit, os.X_OK):
            pytest.fail(f"{COLLECTOR_BINARY_ENV}={explicit} is not an executable file", pytrace=False)
        return explicit
    done = subprocess.run(["bash", str(COLLECTOR_DIR / "build.sh"), "--path"], capture_output=True,
                          text=True, timeout=30, check=False)
    path = done.stdout.strip().splitlines()[-1] if done.returncode == 0 and done.stdout.strip() else ""
    if path and os.access(path, os.X_OK):
        return path
    why = f"collector/build.sh --path failed: {done.stderr.strip()}" if not path else f"no build at {path}"
    hint = "run `make test` or `collector/build.sh`" if shutil.which("go") else \
        "install Go (https://go.dev/dl), then run `make test` or `collector/build.sh`"
    reason = f"!!! OpenTelemetry Collector not built ({why}): {hint}"
    if os.environ.get("CI"):
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


@dataclass
class RunningCollector:
    process: ServerProcess
    config_path: Path
    otlp_grpc_endpoint: str  # http://127.0.0.1:PORT, for setup(otlp_endpoint=..., otlp_protocol="grpc")
    otlp_http_endpoint: str  # http://127.0.0.1:PORT, for otlp_protocol="http/protobuf"
    metrics_url: str  # the `prometheus` exporter (config-classic.yaml): http://127.0.0.1:PORT/metrics
    telemetry_url: str  # the collector's own metrics: http://127.0.0.1:PORT/metrics
    health_url: str
    prometheus_otlp_endpoint: str | None  # where `otlp_http` (config.yaml) sends, when given

    @property
    def telemetry_target(self) -> str:
        """``host:port`` of the collector's own metrics, for a Prometheus scrape job."""
        return urlsplit(self.telemetry_url).netloc

    def otlp_endpoint(self, protocol: str) -> str:
        return self.otlp_grpc_endpoint if protocol == "grpc" else self.otlp_http_endpoint

    @property
    def metrics_target(self) -> str:
        """``host:port`` of the exporter, for a Prometheus scrape job."""
        return urlsplit(self.metrics_url).netloc

    def scrape(self) -> str:
        response = httpx.get(self.metrics_url, timeout=5.0)
        response.raise_for_status()
        return response.text


@contextlib.contextmanager
def start_collector(
    tmp_path: Path,
    config: Path | str | dict[str, Any] = COLLECTOR_CONFIG,
    *,
    prometheus_url: str | None = None,
    env: dict[str, str] | None = None,
    ready_timeout_s: float = 30.0,
) -> Iterator[RunningCollector]:
    """The built collector on 127.0.0.1 free ports, running ``config``; stopped on exit.

    ``config`` is a file (default: the shipped ``collector/config.yaml``, native histograms
    pushed over OTLP; ``COLLECTOR_CONFIG_CLASSIC``: the ``prometheus`` exporter on
    ``metrics_url`` for Prometheus 2.x to scrape), or YAML text or a mapping written to the
    temp dir. Every listener is set through the ``OTELCOL_*`` variables the shipped configs
    read, so a custom config must read them too. ``prometheus_url`` (a Prometheus 3 started
    with its OTLP receiver) becomes ``OTELCOL_PROMETHEUS_OTLP_ENDPOINT`` =
    ``<url>/api/v1/otlp``, where config.yaml's ``otlp_http`` exporter sends; without it that
    exporter keeps its production default (and only retries). Span metrics flush every second
    here (production: 15 s); ``env`` overrides any variable.
    """
    binary = collector_binary()
    workdir = tmp_path / "otelcol"
    workdir.mkdir(parents=True, exist_ok=True)
    if isinstance(config, Path):
        config_path = config
    else:
        config_path = workdir / "config.yaml"
        text = config if isinstance(config, str) else yaml.safe_dump(config, sort_keys=False)
        config_path.write_text(text, encoding="utf-8")
    grpc, http, exporter, telemetry, health = (free_port() for _ in range(5))
    settings = {
        "OTELCOL_OTLP_GRPC_ENDPOINT": f"{LOOPBACK}:{grpc}",
        "OTELCOL_OTLP_HTTP_ENDPOINT": f"{LOOPBACK}:{http}",
        "OTELCOL_PROMETHEUS_ENDPOINT": f"{LOOPBACK}:{exporter}",
        "OTELCOL_TELEMETRY_HOST": LOOPBACK,
        "OTELCOL_TELEMETRY_PORT": str(telemetry),
        "OTELCOL_HEALTH_ENDPOINT": f"{LOOPBACK}:{health}",
        "OTELCOL_SPANMETRICS_FLUSH_INTERVAL": "1s",
        "OTELCOL_BATCH_TIMEOUT": "200ms",
    }
    otlp_endpoint = f"{prometheus_url.rstrip('/')}/api/v1/otlp" if prometheus_url else None
    if otlp_endpoint:
        settings["OTELCOL_PROMETHEUS_OTLP_ENDPOINT"] = otlp_endpoint
    full_env = {**os.environ, **settings, **(env or {})}
    health_url = f"http://{LOOPBACK}:{health}/"
    args = [binary, f"--config={config_path}"]
    with ServerProcess(args, workdir, health_url, name="otelcol", env=full_env,
                       ready_timeout_s=ready_timeout_s) as process:
        yield RunningCollector(
            process=process,
            config_path=config_path,
            otlp_grpc_endpoint=f"http://{LOOPBACK}:{grpc}",
            otlp_http_endpoint=f"http://{LOOPBACK}:{http}",
            metrics_url=f"http://{LOOPBACK}:{exporter}/metrics",
            telemetry_url=f"http://{LOOPBACK}:{telemetry}/metrics",
            health_url=health_url,
            prometheus_otlp_endpoint=otlp_endpoint,
        )


# -- The detector agent ----------------------------------------------------------------------


@dataclass
class RunningAgent:
    url: str  # http://127.0.0.1:PORT: /metrics and /healthz
    process: ServerProcess

    @property
    def target(self) -> str:
        """``host:port``, for a Prometheus scrape job."""
        return urlsplit(self.url).netloc


@contextlib.contextmanager
def start_agent(
    tmp_path: Path,
    prometheus_url: str,
    *,
    port: int | None = None,
    settings: dict[str, Any] | None = None,
    ready_timeout_s: float = 30.0,
) -> Iterator[RunningAgent]:
    """``nethical-otel agent`` reading ``prometheus_url``, serving on 127.0.0.1:``port``; stopped on exit.

    ``settings`` are Settings fields, passed as ``NETHICAL_OTEL_<KEY>`` (nothing else of the
    caller's OTEL_*/NETHICAL_OTEL_* environment leaks in). Ready once /healthz answers 200,
    i.e. after its first successful evaluation, so Prometheus must be up first. Pass ``port``
    to put the agent in Prometheus' scrape config before either starts.
    """
    port = port or free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "NETHICAL_OTEL_"))}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    env.update(NETHICAL_OTEL_PROMETHEUS_URL=prometheus_url, NETHICAL_OTEL_AGENT_HOST=LOOPBACK,
               NETHICAL_OTEL_AGENT_PORT=str(port))
    env.update({f"NETHICAL_OTEL_{key.upper()}": str(value) for key, value in (settings or {}).items()})
    url = f"http://{LOOPBACK}:{port}"
    args = [sys.executable, "-m", "nethical_otel.cli", "agent"]
    with ServerProcess(args, tmp_path / "agent", f"{url}/healthz", name="nethical-agent", env=env,
                       ready_timeout_s=ready_timeout_s) as process:
        yield RunningAgent(url, process)
