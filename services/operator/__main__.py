"""``python -m services.operator``: lead through the Lease, then reconcile every resync period.

Serves ``/metrics`` and ``/healthz`` (200 while passes keep completing; 503 when the last one
is older than three resync periods) on the metrics port. Needs an API server (in-cluster
config): it was never run against one on the machine it was written on.

Failing cleanly: settings that don't validate, a missing release file or no in-cluster
configuration each end the process with one log line naming the cause and exit status 2 (the
kubelet restarts it with its own back-off). An API server that does not answer costs one
warning line per resync period, without a traceback; /healthz then turns 503 after three
periods, and the liveness probe restarts the pod. Any other failure of a pass is logged with
its traceback.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from pydantic import ValidationError

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


def _unreachable(error: Exception) -> str | None:
    """One line for an API server (or network) that does not answer, else None (a real bug)."""
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError as Urllib3Error

    if isinstance(error, ApiException):
        return f"the API server answered {error.status} {error.reason}"
    if isinstance(error, Urllib3Error | OSError):
        return f"the API server cannot be reached: {type(error).__name__}: {error}"
    return None


def _one_line(error: ValidationError, prefix: str) -> str:
    """Every problem of a validation error on one line, each naming its field."""
    fields = ("_" if prefix else ".").join
    return "; ".join(
        f"{prefix}{fields(map(str, e['loc'])).upper() if prefix else fields(map(str, e['loc']))}: {e['msg']}"
        for e in error.errors()
    )


def main() -> int:
    """Run until stopped; the exit status when the operator cannot start (2)."""
    logging.basicConfig(level="INFO", format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = OperatorSettings()  # type: ignore[call-arg]  # from the environment
    except ValidationError as e:
        logger.error("cannot start: settings: %s", _one_line(e, "WINEMEUP_OPERATOR_"))
        return 2
    logging.getLogger().setLevel(settings.log_level.upper())
    # The client's urllib3 logs each of its three connection retries; the pass logs one line.
    logging.getLogger("urllib3.connectionpool").setLevel(logging.ERROR)
    try:
        release = ReleaseContext.model_validate_json(settings.release_file.read_text())
    except ValidationError as e:
        logger.error("cannot start: release context %s: %s", settings.release_file, _one_line(e, ""))
        return 2
    except OSError as e:
        logger.error("cannot start: release context %s: %s", settings.release_file, e)
        return 2
    from kubernetes.config import ConfigException

    try:
        cluster = Cluster(settings.namespace)
    except ConfigException as e:
        logger.error(
            "cannot start: no in-cluster Kubernetes configuration (%s); the operator runs in a pod "
            "with a service account, as the chart's operator Deployment runs it",
            e,
        )
        return 2
    _Health.limit = 3 * max(settings.resync_seconds, settings.lease_duration_seconds)
    server = ThreadingHTTPServer(("0.0.0.0", settings.metrics_port), _Handler)  # all interfaces: a pod port
    threading.Thread(target=server.serve_forever, daemon=True).start()
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
        except Exception as e:
            reason = _unreachable(e)
            if reason is None:
                logger.exception("reconcile pass failed; retrying at the next resync")
            else:
                metrics.LEADER.set(0.0)
                logger.warning("%s; retrying in %gs", reason, settings.resync_seconds)
        time.sleep(settings.resync_seconds)


if __name__ == "__main__":
    sys.exit(main())
