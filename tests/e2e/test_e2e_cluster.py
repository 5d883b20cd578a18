"""End to end on a live cluster: predict through the ingress, a cache hit, metrics scraped by
Prometheus, the UI served, and the router HPA scaling out under a short bounded load and back in.

Run with `make e2e` after `make kind-up kind-deploy`; skipped with the reason printed otherwise.
"""

from __future__ import annotations

import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from e2e_cluster import Cluster, E2ESettings

from tests.support.waiting import wait_until
from winemeup.schema import SCHEMA

pytestmark = pytest.mark.e2e


def _wine(alcohol: float | None = None) -> dict[str, object]:
    wine: dict[str, object] = dict(SCHEMA.example())
    if alcohol is not None:
        wine["alcohol"] = round(alcohol, 6)
    return wine


def test_predict_through_the_ingress(cluster: Cluster) -> None:
    import json

    status, raw = cluster.http("POST", "/v1/predict", {"features": _wine(9.0 + random.random())})
    assert status == 200, raw[:500]
    answer = json.loads(raw)
    assert 0 <= answer["score"] <= 10 and 0 <= answer["quality"] <= 10
    status, raw = cluster.http("GET", "/v1/models")
    assert status == 200
    assert json.loads(raw)


def test_repeated_prediction_is_a_cache_hit(cluster: Cluster) -> None:
    import json

    wine = _wine(10.0 + random.random())
    first = json.loads(cluster.http("POST", "/v1/predict", {"features": wine})[1])
    second = json.loads(cluster.http("POST", "/v1/predict", {"features": wine})[1])
    assert first["cached"] is False
    assert second["cached"] is True, "the chart's Redis is shared by every router replica"
    assert second["score"] == pytest.approx(first["score"])


def test_prometheus_scrapes_router_runners_and_redis(cluster: Cluster) -> None:
    ns = cluster.settings.namespace
    router = f"{cluster.fullname}-router"
    runners = cluster.apps.list_namespaced_deployment(ns, label_selector="winemeup.io/tier=runner").items
    seen: dict[str, Any] = {}

    def all_scraped() -> bool:
        seen["routers"] = cluster.prometheus(f'up{{namespace="{ns}", service="{router}"}} == 1')
        seen["runners"] = cluster.prometheus(
            f'sum by (model) (up{{namespace="{ns}", container="runner", model!=""}})'
        )
        seen["requests"] = cluster.prometheus(f'sum(winemeup_router_requests_total{{namespace="{ns}"}})')
        seen["redis"] = cluster.prometheus(f'redis_up{{namespace="{ns}"}} == 1')
        return bool(
            seen["routers"] and len(seen["runners"]) == len(runners) and seen["requests"] and seen["redis"]
        )

    wait_until(all_scraped, 120, interval=5, message=lambda: f"Prometheus sees {seen}")
    runners_up = seen["runners"]
    assert all(float(r["value"][1]) >= 1 for r in runners_up)


def test_ui_is_served_through_the_ingress(cluster: Cluster) -> None:
    status, raw = cluster.http("GET", "/")
    assert status == 200
    assert b"<title>" in raw and b"streamlit" in raw.lower()
    status, raw = cluster.http("GET", "/_stcore/health")
    assert status == 200 and raw.strip() == b"ok"


# Its worst case is the load phase plus the scale-in wait, longer than the global 300 s pytest
# timeout: give it its own, derived from the same settings (plus start-up and polling slack).
_HPA_BUDGET = E2ESettings()  # type: ignore[call-arg]
_HPA_TIMEOUT = int(_HPA_BUDGET.load_seconds + _HPA_BUDGET.scale_in_seconds + 120)


@pytest.mark.slow
@pytest.mark.timeout(_HPA_TIMEOUT)
def test_router_hpa_scales_out_under_load_and_back_in(cluster: Cluster) -> None:
    ns = cluster.settings.namespace
    name = f"{cluster.fullname}-router"
    hpa = cluster.autoscaling.read_namespaced_horizontal_pod_autoscaler(name, ns)
    floor = hpa.spec.min_replicas or 1
    assert hpa.spec.max_replicas > floor, "the HPA has no room to scale out"

    def ready() -> int:
        """Replicas that serve: status.replicas would also count Pending pods."""
        return int(cluster.apps.read_namespaced_deployment(name, ns).status.ready_replicas or 0)

    def replicas() -> int:
        """Pods that still exist (Pending, running or not yet terminated), for the scale-in."""
        return int(cluster.apps.read_namespaced_deployment(name, ns).status.replicas or 0)

    stop = threading.Event()
    sent = [0, 0]

    def drive() -> None:
        # Fresh wines (cache misses) keep the router busy: validation, cache, runner calls.
        while not stop.is_set():
            status, _ = cluster.http("POST", "/v1/predict", {"features": _wine(8.5 + random.random() * 5)}, 5)
            sent[0 if status == 200 else 1] += 1

    started = time.monotonic()
    peak = ready()
    with ThreadPoolExecutor(max_workers=24) as pool:
        for _ in range(24):
            pool.submit(drive)
        try:
            while time.monotonic() - started < cluster.settings.load_seconds:
                peak = max(peak, ready())
                if peak > floor:
                    break
                time.sleep(5)
        finally:
            stop.set()
    scaled_out_after = time.monotonic() - started
    assert peak > floor, (
        f"no ready replica beyond {floor} within {cluster.settings.load_seconds:.0f} s of load "
        f"({sent[0]} ok, {sent[1]} failed requests)"
    )
    # Saturation before the new pods are ready may shed a few requests; many means trouble.
    assert sent[1] <= 0.05 * sum(sent), f"{sent[1]} of {sum(sent)} requests failed under load"

    wait_until(
        lambda: replicas() <= floor,
        cluster.settings.scale_in_seconds,
        interval=5,
        message=lambda: f"still {replicas()} replicas after the load stopped",
    )
    print(f"\nrouter scaled {floor} -> {peak} after {scaled_out_after:.0f} s of load, back to {floor}")
