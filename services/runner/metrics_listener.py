"""The runner's Prometheus metrics on a port of their own, apart from the API.

BentoML serves ``/metrics`` on the API port only, so a NetworkPolicy letting Prometheus scrape
a runner also let Prometheus call ``/predict`` and ``/explain``. This listener answers
``GET /metrics`` on ``metrics_port`` with the same exposition as BentoML's own route: BentoML
runs in Prometheus multiprocess mode, and its metrics client merges every worker's files in
the process's multiprocess directory (``$BENTOML_HOME/prometheus_multiproc_dir``), so one
listener, in the first worker, serves the whole runner. Anything but ``GET /metrics`` gets 404.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

logger = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
"""The Prometheus text exposition format (what every Prometheus scrapes)."""


def bentoml_exposition() -> bytes:
    """BentoML's merged multiprocess metrics, exactly what its ``/metrics`` route answers."""
    from bentoml._internal.container import BentoMLContainer

    return bytes(BentoMLContainer.metrics_client.get().generate_latest())


def start_metrics_listener(
    host: str, port: int, exposition: Callable[[], bytes] = bentoml_exposition
) -> ThreadingHTTPServer:
    """Serve ``GET /metrics`` on ``host:port`` from a daemon thread; the server (``shutdown()`` stops it).

    Raises OSError when the port cannot be bound.
    """

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.split("?", 1)[0] != "/metrics":
                self._answer(404, b"only GET /metrics here\n", "text/plain")
                return
            try:
                body = exposition()
            except Exception:
                logger.exception("could not gather the metrics")
                self._answer(500, b"could not gather the metrics\n", "text/plain")
                return
            self._answer(200, body, CONTENT_TYPE)

        def _answer(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            return  # scrapes every few seconds: not worth a log line each

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="metrics-listener", daemon=True).start()
    logger.info("metrics on http://%s:%d/metrics", host, server.server_address[1])
    return server
