"""Metrics of the router's route, ``POST /binary/predict``, which BentoML's own no longer see.

:class:`services.runner.middleware.BinaryRouteMiddleware` answers that route ahead of BentoML's
middleware stack, so ``bentoml_service_request_total`` and
``bentoml_service_request_duration_seconds`` count every route but this one. These two take
their place for it:

- ``winemeup_runner_binary_requests_total{http_response_code}``: answers by status code.
- ``winemeup_runner_binary_request_duration_seconds``: time from the request's arrival at the
  runner's app to the end of its answer.

They live in BentoML's Prometheus client, in multiprocess mode: each worker writes its values
to the runner's multiprocess directory (``PROMETHEUS_MULTIPROC_DIR``, set by ``bentoml
serve``), and both ``/metrics`` and the metrics port (:mod:`services.runner.metrics_listener`)
merge every worker's files. A multiprocess value costs a few µs per update, so a status's
counter child is looked up once and kept.
"""

from __future__ import annotations

from functools import cache
from typing import Any

REQUESTS_TOTAL = "winemeup_runner_binary_requests_total"
REQUEST_SECONDS = "winemeup_runner_binary_request_duration_seconds"
_LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class BinaryRouteMetrics:
    """Request count by status and latency of ``POST /binary/predict``, in BentoML's registry."""

    def __init__(self) -> None:
        from bentoml._internal.configuration.containers import BentoMLContainer

        client = BentoMLContainer.metrics_client.get()
        self._requests = client.Counter(
            name=REQUESTS_TOTAL.removesuffix("_total"),
            documentation="Answers of POST /binary/predict (the router's route), by HTTP status code.",
            labelnames=["http_response_code"],
        )
        self._seconds = client.Histogram(
            name=REQUEST_SECONDS,
            documentation="Time from arrival to the end of the answer of POST /binary/predict.",
            buckets=_LATENCY_BUCKETS,
        )
        self._by_status: dict[int, Any] = {}

    def observe(self, status: int, seconds: float) -> None:
        """Count one answer of ``status`` that took ``seconds``."""
        counter = self._by_status.get(status)
        if counter is None:
            counter = self._by_status[status] = self._requests.labels(http_response_code=str(status))
        counter.inc()
        self._seconds.observe(seconds)


@cache
def binary_route_metrics() -> BinaryRouteMetrics:
    """This process's one :class:`BinaryRouteMetrics` (a metric name registers once per process)."""
    return BinaryRouteMetrics()
