"""``python -m services.operator``: lead through the Lease, then reconcile every resync period.

Serves ``/metrics`` and ``/healthz`` (200 while passes keep completing; 503 when the last one
is older than three resync periods) on the metrics port. Needs an API server (in-cluster
config): it was never run against one on the machine it was written on.
"""

from __future__ import annotations

import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from services.operator import metrics
from services.operator.kube import Cluster, Operator
from services.operator.release import ReleaseContext
from services.operator.settings import OperatorSettings
from services.operator.traffic import RouterAdmin

logger = logging.getLogger("services.operator")


class _Health:
    last_pass = time.monotonic()
    limit = 45.0


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        if self.path == "/metrics":
            status, body, kind = 200, metrics.exposition(), "text/plain; version=0.0.4"
        elif self.path == "/healthz":
            fresh = time.monotonic() - _Health.last_pass < _Health.limit
            status, body, kind = (200 if fresh else 503), (b"ok" if fresh else b"stalled"), "text/plain"
        else:
            status, body, kind = 404, b"not found", "text/plain"
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def main() -> None:
    settings = OperatorSettings()  # type: ignore[call-arg]  # from the environment
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    release = ReleaseContext.model_validate_json(settings.release_file.read_text())
    _Health.limit = 3 * max(settings.resync_seconds, settings.lease_duration_seconds)
    server = ThreadingHTTPServer(("0.0.0.0", settings.metrics_port), _Handler)  # all interfaces: a pod port
    threading.Thread(target=server.serve_forever, daemon=True).start()
    cluster = Cluster(settings.namespace)
    operator = Operator(cluster, release, RouterAdmin(settings.admin_key(), settings.router_timeout_seconds))
    logger.info("operator %s for release %s in %s", settings.identity, release.release, settings.namespace)
    while True:
        try:
            leading = cluster.hold_lease(
                settings.lease_name, settings.identity, settings.lease_duration_seconds
            )
            metrics.LEADER.set(1.0 if leading else 0.0)
            if leading:
                operator.run_pass()
            _Health.last_pass = time.monotonic()
        except Exception:
            logger.exception("reconcile pass failed; retrying at the next resync")
        time.sleep(settings.resync_seconds)


if __name__ == "__main__":
    main()
