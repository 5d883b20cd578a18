"""Autoscaling under load on a live cluster: fresh wines (cache misses) through the Ingress
drive the router past its HPA's CPU target and a runner past its own, and the HPAs must add a
ready router pod and a ready runner pod within ``WINEMEUP_E2E_LOAD_SECONDS`` (180 s by
default) while **no request fails**: new pods join the Services only once ready, so the
clients must never see an error while they are added.

k8s/values/winemeup-kind.yaml gives the router an HPA (1 to 3) and extra_trees' runner one
(1 to 2); the runner load goes to whichever runner has an HPA. Run with `make e2e` after
`make kind-up kind-deploy`; skipped with the reason printed without a cluster.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import pytest
from e2e_cluster import Cluster, E2ESettings

from winemeup.schema import SCHEMA

pytestmark = pytest.mark.e2e

# After both HPAs have added a pod, the load goes on this long, so requests are served while
# the new pods join and through them.
SETTLE_SECONDS = 30.0
ROUTER_CLIENTS = 16  # default-model misses: the router's CPU (validation, cache, runner call)
RUNNER_CLIENTS = 6  # misses of the runner's model: its CPU (12 ms of trees per extra_trees row)

_BUDGET = E2ESettings()  # type: ignore[call-arg]


@dataclass
class Load:
    """Requests sent by the load clients, with every failure kept."""

    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    ok: int = 0
    failures: list[tuple[float, int, bytes]] = field(default_factory=list)

    def drive(self, cluster: Cluster, started: float, model: str | None) -> None:
        while not self.stop.is_set():
            wine: dict[str, object] = dict(SCHEMA.example())
            wine["alcohol"] = round(8.5 + random.random() * 5, 9)  # a fresh wine: a cache miss
            body: dict[str, object] = {"features": wine}
            if model is not None:
                body["model"] = model
            status, raw = cluster.http("POST", "/v1/predict", body, timeout=15)
            with self.lock:
                if status == 200:
                    self.ok += 1
                else:
                    self.failures.append((time.monotonic() - started, status, raw[:200]))


def _ready(cluster: Cluster, deployment: str) -> int:
    status = cluster.apps.read_namespaced_deployment(deployment, cluster.settings.namespace).status
    return int(status.ready_replicas or 0)


def _hpa_state(cluster: Cluster, name: str) -> str:
    hpa = cluster.autoscaling.read_namespaced_horizontal_pod_autoscaler(name, cluster.settings.namespace)
    metrics = [
        f"{m.resource.name} {m.resource.current.average_utilization}%"
        for m in hpa.status.current_metrics or []
        if m.resource is not None
    ]
    replicas = f"{hpa.status.current_replicas} -> {hpa.status.desired_replicas}"
    return f"{name}: {replicas} ({', '.join(metrics) or 'no metrics'})"


@pytest.mark.slow
@pytest.mark.timeout(int(_BUDGET.load_seconds + SETTLE_SECONDS + 120))
def test_router_and_a_runner_scale_up_under_load_without_a_failed_request(cluster: Cluster) -> None:
    ns = cluster.settings.namespace
    router = f"{cluster.fullname}-router"
    router_hpa = cluster.autoscaling.read_namespaced_horizontal_pod_autoscaler(router, ns)
    assert router_hpa.spec.max_replicas > (router_hpa.spec.min_replicas or 1), "the router HPA has no room"
    runner_hpas = [
        h
        for h in cluster.autoscaling.list_namespaced_horizontal_pod_autoscaler(
            ns, label_selector="winemeup.io/tier=runner"
        ).items
        if h.spec.max_replicas > (h.spec.min_replicas or 1)
    ]
    assert runner_hpas, (
        "no runner has an HPA with room to scale (k8s/values/winemeup-kind.yaml gives extra_trees one)"
    )
    runner_hpa = runner_hpas[0]
    runner = runner_hpa.spec.scale_target_ref.name
    model = runner_hpa.metadata.labels["winemeup.io/model"]
    floors = {router: _ready(cluster, router), runner: _ready(cluster, runner)}
    # Scale-up is measured from the pods the HPAs keep at rest; more would already be scaled.
    assert floors[router] == (router_hpa.spec.min_replicas or 1), f"router not at rest: {floors}"
    assert floors[runner] == (runner_hpa.spec.min_replicas or 1), f"{runner} not at rest: {floors}"

    load = Load()
    scaled_after: dict[str, float] = {}
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=ROUTER_CLIENTS + RUNNER_CLIENTS) as pool:
        for _ in range(ROUTER_CLIENTS):
            pool.submit(load.drive, cluster, started, None)
        for _ in range(RUNNER_CLIENTS):
            pool.submit(load.drive, cluster, started, model)
        try:
            while time.monotonic() - started < cluster.settings.load_seconds and len(scaled_after) < 2:
                for deployment, floor in floors.items():
                    if deployment not in scaled_after and _ready(cluster, deployment) > floor:
                        scaled_after[deployment] = time.monotonic() - started
                time.sleep(3)
            if len(scaled_after) == 2:
                time.sleep(SETTLE_SECONDS)
            states = [_hpa_state(cluster, router), _hpa_state(cluster, runner_hpa.metadata.name)]
        finally:
            load.stop.set()
    statuses = Counter(status for _, status, _ in load.failures)
    summary = (
        f"{load.ok} ok, {len(load.failures)} failed {dict(statuses)}; scaled up after {scaled_after} s; "
        f"HPAs: {states}"
    )
    print(f"\nautoscaling under load: {summary}")
    for deployment in floors:
        assert deployment in scaled_after, (
            f"{deployment} got no ready pod beyond {floors[deployment]} within "
            f"{cluster.settings.load_seconds:.0f} s of load: {summary}"
        )
    assert load.ok > 0, summary
    assert not load.failures, f"requests failed while pods were added: {summary}; first: {load.failures[:5]}"
