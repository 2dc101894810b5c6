"""A Prometheus text exposition served on loopback, for a real Prometheus to scrape.

Tests and ``benchmarks/agent_step.py`` use it to put exactly known samples into Prometheus by
scrape, as the Collector's ``prometheus`` exporter or the detector agent would serve them.
It imports nothing of pytest: the benchmark runs without the test extra.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOOPBACK = "127.0.0.1"
CONTENT_TYPE = "text/plain; version=0.0.4"

# What a GET answers: these bytes; a callable of the request path (``/metrics``, as Prometheus'
# ``metrics_path`` has it) returning them, called at each scrape; or None: HTTP 503.
Body = bytes | Callable[[str], bytes | None] | None


class ExpositionServer:
    """``with ExpositionServer(body) as server:`` serves ``body`` on 127.0.0.1:free port for the block.

    Every path is served (the callable form tells them apart). Assign ``server.body`` at any
    time to swap what the next scrape gets; None (or a callable returning None) answers 503, so
    the scrape fails as for a target that is down. ``scrapes`` counts the GETs answered 200.
    ``target`` is the ``host:port`` for a Prometheus scrape job. ``start()`` / ``stop()`` do
    what the ``with`` block does; stopping twice is harmless.
    """

    def __init__(self, body: Body = None) -> None:
        self.body = body
        self.scrapes = 0
        self._lock = threading.Lock()
        self._httpd = _Server((LOOPBACK, 0), _Handler)
        self._httpd.exposition = self
        self._thread: threading.Thread | None = None
        self._closed = False

    @property
    def port(self) -> int:
        return self._httpd.server_port

    @property
    def target(self) -> str:
        """``host:port``, for a Prometheus scrape job's ``static_configs``."""
        return f"{LOOPBACK}:{self.port}"

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``, no trailing slash."""
        return f"http://{self.target}"

    def start(self) -> ExpositionServer:
        if self._thread is None:
            self._thread = threading.Thread(target=self._httpd.serve_forever, name="exposition-server",
                                            daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join(5)
        self._httpd.server_close()

    def __enter__(self) -> ExpositionServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _answer(self, path: str) -> bytes | None:
        body = self.body
        body = body(path) if callable(body) else body
        if body is not None:
            with self._lock:
                self.scrapes += 1
        return body


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    exposition: ExpositionServer


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        body = self.server.exposition._answer(self.path)
        if body is None:
            self.send_error(503)
            return
        self.send_response(200)
        self.send_header("Content-Type", CONTENT_TYPE)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass
