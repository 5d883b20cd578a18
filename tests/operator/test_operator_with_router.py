"""The operator's WineTraffic and WineModel passes against REAL router processes.

Two routers share one Redis (private, started for the test); their runner-placed models are
served by the stub runner of :mod:`tests.support.slow_runner`. The routers are real: the
operator's ``PUT /v1/traffic`` and ``PUT /v1/models/default`` go through their admin API, and
convergence is read back from each replica's ``GET /v1/traffic`` and ``GET /v1/models``.
The router's in-flight gauge, which KEDA scales on, is read from a real router's /metrics
while requests wait on a slow runner.

What is NOT real here: the Kubernetes API server. ``FakeCluster`` below is a FAKE, an
in-memory stand-in for :class:`services.operator.kube.Cluster` (list, apply, get, status
writes, the router's endpoints); its Deployments report themselves rolled out at once. It
lets the operator's pass run end to end; it says nothing about the real API server's
behaviour (server-side apply, RBAC, admission), which was never exercised here.
"""

from __future__ import annotations

import copy
import dataclasses
import sys
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.operator.kube import Operator
from services.operator.release import ReleaseContext
from services.operator.resources import WINEMODELS, WINETRAFFICS
from services.operator.status import condition
from services.operator.traffic import RouterAdmin, accept, convergence
from services.stack.processes import free_port, http_status
from tests.chart.chart_render import helm_template, parse
from tests.support.router import RouterHandle, launch_router
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration

MODELS = ["lightgbm", "xgboost", "catboost"]
CHART = Path(__file__).resolve().parents[2] / "charts" / "winemeup"


@pytest.fixture(scope="module")
def routers(tmp_path_factory: pytest.TempPathFactory, redis_launcher: Any) -> Iterator[list[RouterHandle]]:
    """Two router replicas on one private Redis, every model on one stub runner."""
    import subprocess

    logs = tmp_path_factory.mktemp("operator-routers")
    port = free_port()
    stub = subprocess.Popen([sys.executable, "-m", "tests.support.slow_runner", str(port)])
    redis = redis_launcher(logs)
    handles: list[RouterHandle] = []
    try:
        wait_until(lambda: http_status(f"http://127.0.0.1:{port}/readyz") == 200, 20, interval=0.05)
        settings = {
            "models": MODELS,
            "default_model": "lightgbm",
            "placement": "runner",
            "runner_urls": {m: f"http://127.0.0.1:{port}" for m in MODELS},
            "redis_url": redis.url,
            "default_sync_seconds": 0.2,
        }
        first = launch_router(logs, None, **settings)
        handles.append(first)
        # One set of keys for both, as one release's Secret gives every replica the same keys.
        second = launch_router(logs, None, **settings, api_keys=first.api_key, admin_api_keys=first.admin_key)
        handles.append(dataclasses.replace(second, api_key=first.api_key, admin_key=first.admin_key))
        for h in handles:
            h.wait_ready()
            wait_until(partial(_models_ready, h), 30, interval=0.1, message=h.process.log_tail)
        yield handles
    finally:
        for h in handles:
            h.process.stop()
        redis.stop()
        stub.terminate()
        stub.wait(10)


def _models_ready(handle: RouterHandle) -> bool:
    answer = httpx.get(handle.url + "/v1/models", headers=handle.headers()).json()
    return all(m["status"] == "ready" for m in answer["models"])


def _traffic(handle: RouterHandle) -> dict[str, Any]:
    return httpx.get(handle.url + "/v1/traffic", headers=handle.headers()).json()


def test_a_winetraffic_is_applied_and_converges_on_every_replica(routers: list[RouterHandle]) -> None:
    a, b = routers
    spec = {
        "default": "xgboost",
        "splits": {"lightgbm": {"lightgbm": 80, "xgboost": 20}},
        "shadows": {"lightgbm": {"target": "catboost", "fraction": 0.25}},
    }
    admin_a, admin_b = RouterAdmin(a.admin_key), RouterAdmin(b.admin_key)
    views = lambda: [admin_a.view(a.url), admin_b.view(b.url)]  # noqa: E731
    assert convergence(spec, views())[0].status == "False"  # nothing applied yet
    assert accept(spec, MODELS).status == "True"
    applied = admin_a.apply(a.url, spec)
    assert (applied.status, applied.reason) == ("True", "RouterAccepted"), applied.message
    # Level-based: the next pass finds it in force and sends nothing.
    again = admin_a.apply(a.url, spec)
    assert (again.status, again.reason) == ("True", "InForce"), again.message
    # Replica B adopts it through Redis, as the operator sees when it reads every replica.
    wait_until(
        lambda: convergence(spec, views())[0].status == "True",
        10,
        interval=0.1,
        message=lambda: str(convergence(spec, views())),
    )
    assert _traffic(b)["splits"] == {"lightgbm": {"lightgbm": 80.0, "xgboost": 20.0}}
    assert httpx.get(b.url + "/v1/models", headers=b.headers()).json()["default"] == "xgboost"


def test_a_change_the_router_refuses_is_not_applied(routers: list[RouterHandle]) -> None:
    a, _ = routers
    before = _traffic(a)
    # Accepted=False: the operator never sends it (weights add up to 90) ...
    bad = {"splits": {"lightgbm": {"lightgbm": 80, "xgboost": 10}}}
    assert accept(bad, MODELS).status == "False"
    # ... and what the router itself refuses (a model it does not serve) is Applied=False with
    # the router's reason, the policy in force kept.
    applied = RouterAdmin(a.admin_key).apply(a.url, {"splits": {"lightgbm": {"lightgbm": 50, "svr": 50}}})
    assert (applied.status, applied.reason) == ("False", "RouterAnswered422")
    assert "splits.lightgbm" in applied.message and "svr" in applied.message
    assert _traffic(a)["splits"] == before["splits"]
    unreachable = RouterAdmin(a.admin_key, timeout_seconds=1).apply(f"http://127.0.0.1:{free_port()}", bad)
    assert (unreachable.status, unreachable.reason) == ("False", "RouterUnreachable")
    wrong_key = RouterAdmin("not-a-key").apply(a.url, {"splits": {}})
    assert (wrong_key.status, wrong_key.reason) == ("False", "RouterAnswered401")


class FakeCluster:
    """A FAKE API server (see the module docstring): in-memory objects, Deployments rolled out at once."""

    def __init__(self, namespace: str, items: dict[str, list[dict[str, Any]]], routers: list[str]):
        self.namespace = namespace
        self.items = items
        self.objects: dict[tuple[str, str], dict[str, Any]] = {}
        self.routers = routers
        self.deleted: list[tuple[str, str]] = []
        self.applied: list[dict[str, Any]] = []

    def list_custom(self, plural: str) -> list[dict[str, Any]]:
        return copy.deepcopy(self.items[plural])

    def apply(self, obj: dict[str, Any], manager: str = "") -> None:
        self.applied.append(copy.deepcopy(obj))
        live = copy.deepcopy(obj)
        if obj["kind"] == "Deployment":
            replicas = obj["spec"].get("replicas", 2)
            live["spec"]["replicas"] = replicas
            live["metadata"]["generation"] = 1
            live["status"] = {
                "observedGeneration": 1,
                "replicas": replicas,
                "updatedReplicas": replicas,
                "readyReplicas": replicas,
            }
        self.objects[(obj["kind"], obj["metadata"]["name"])] = live

    def get(self, api_version: str, kind: str, name: str) -> dict[str, Any] | None:
        return copy.deepcopy(self.objects.get((kind, name)))

    def runner_objects(self, instance: str) -> list[dict[str, Any]]:
        return list(self.objects.values())

    def delete(self, obj: dict[str, Any]) -> None:
        key = (obj["kind"], obj["metadata"]["name"])
        self.deleted.append(key)
        self.objects.pop(key)

    def pods(self, selector: dict[str, str]) -> list[dict[str, Any]]:
        return []

    def patch_status(self, plural: str, name: str, status: dict[str, Any]) -> None:
        for item in self.items[plural]:
            if item["metadata"]["name"] == name:
                item["status"] = status

    def router_addresses(self, service: str, port: int) -> list[str]:
        return list(self.routers)


def test_operator_passes_against_a_fake_cluster_and_real_routers(routers: list[RouterHandle]) -> None:
    """Two passes of Operator.run_pass: WineModels become Ready from the real routers' reports,
    then the WineTraffic is Accepted, Applied and Converged on both replicas; a WineModel
    removed has its objects deleted at the next pass (level-based)."""
    a, b = routers
    docs = parse(
        helm_template(
            "-f",
            str(CHART / "ci" / "operator-values.yaml"),
            "--set",
            "models.svr.enabled=false",
            "--set",
            "models.hist_gradient_boosting.enabled=false",
        )
    )
    config = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("-operator"))
    release = ReleaseContext.model_validate_json(config["data"]["release.json"])
    release = release.model_copy(update={"router_url": a.url})
    wine_models = [
        dict(d, metadata=d["metadata"] | {"generation": 1, "uid": f"uid-{i}"})
        for i, d in enumerate(d for d in docs if d["kind"] == "WineModel")
    ]
    assert sorted(w["metadata"]["name"] for w in wine_models) == ["catboost", "lightgbm", "xgboost"]
    traffic = next(d for d in docs if d["kind"] == "WineTraffic") | {"status": {}}
    traffic["metadata"]["generation"] = 1
    cluster = FakeCluster("winemeup", {WINEMODELS: wine_models, WINETRAFFICS: [traffic]}, [a.url, b.url])
    operator = Operator(cluster, release, RouterAdmin(a.admin_key))  # type: ignore[arg-type]

    operator.run_pass()
    statuses = {w["metadata"]["name"]: w["status"] for w in cluster.items[WINEMODELS]}
    for name, status in statuses.items():
        ready = condition(status, "Ready")
        assert (ready["status"], ready["reason"]) == ("True", "Serving"), (name, ready["message"])
        assert status["version"] == "stub-1"
    kinds = sorted(k for k, _ in cluster.objects)
    # Three runners and lightgbm's candidate runner (ci/operator-values.yaml).
    assert kinds.count("Deployment") == 4 and kinds.count("ScaledObject") == 4 and kinds.count("Service") == 4
    assert ("Deployment", f"{release.fullname}-runner-lightgbm-candidate") in cluster.objects
    assert all("ownerReferences" in o["metadata"] for o in cluster.objects.values())
    # Autoscaled (KEDA) runners: the operator never sets their replica count.
    deployments = [o for o in cluster.applied if o["kind"] == "Deployment"]
    assert len(deployments) == 4 and not any("replicas" in d["spec"] for d in deployments)

    def converged() -> bool:
        operator.run_pass()
        return condition(cluster.items[WINETRAFFICS][0]["status"], "Converged")["status"] == "True"

    wait_until(converged, 10, interval=0.2, message=lambda: str(cluster.items[WINETRAFFICS][0]["status"]))
    status = cluster.items[WINETRAFFICS][0]["status"]
    assert [condition(status, t)["status"] for t in ("Accepted", "Applied", "Converged")] == ["True"] * 3
    assert _traffic(b)["shadows"] == {"lightgbm": {"target": "catboost", "fraction": 0.1}}

    # A WineTraffic naming a model that is not Ready is not Accepted, and nothing is sent.
    cluster.items[WINETRAFFICS][0]["spec"]["splits"] = {"lightgbm": {"lightgbm": 50, "svr": 50}}
    operator.run_pass()
    status = cluster.items[WINETRAFFICS][0]["status"]
    accepted = condition(status, "Accepted")
    assert (accepted["status"], accepted["reason"]) == ("False", "Invalid")
    assert "spec.splits.lightgbm.svr: model svr is not Ready" in accepted["message"]
    assert [c["type"] for c in status["conditions"]] == ["Accepted"]
    assert _traffic(a)["splits"] == {"lightgbm": {"lightgbm": 90.0, "xgboost": 10.0}}

    # Level-based pruning: a WineModel gone, its objects go at the next pass.
    cluster.items[WINEMODELS] = [w for w in cluster.items[WINEMODELS] if w["metadata"]["name"] != "catboost"]
    operator.run_pass()
    assert ("Deployment", "wm-winemeup-runner-catboost") in cluster.deleted
    assert not any(name.endswith("catboost") for _, name in cluster.objects)


def test_the_router_gauge_keda_scales_on_counts_requests_waiting_on_a_runner(
    routers: list[RouterHandle],
) -> None:
    """``winemeup_router_runner_inflight_requests{model}`` (what the recording rule sums and KEDA
    reads): six concurrent cache misses on a runner that takes 1 s show as six waiting, then 0."""
    from concurrent.futures import ThreadPoolExecutor

    from tests.support.metrics import metric_value
    from winemeup.schema import SCHEMA

    a, _ = routers
    stub = next(iter(_stub_urls(a)))
    httpx.post(stub + "/_delay", content=b"1.0")
    seen: list[float] = []

    def gauge() -> float:
        text = httpx.get(a.url + "/metrics").text
        return metric_value(text, "winemeup_router_runner_inflight_requests", model="catboost")

    def predict(i: int) -> int:
        wine = {**SCHEMA.example(), "alcohol": 9.037 + i * 0.1, "residual_sugar": 1.013 + i * 0.07}
        body = {"model": "catboost", "features": wine}
        return httpx.post(a.url + "/v1/predict", json=body, headers=a.headers(), timeout=10).status_code

    try:
        with ThreadPoolExecutor(6) as pool:
            answers = [pool.submit(predict, i) for i in range(6)]
            while not all(f.done() for f in answers):
                seen.append(gauge())
            assert [f.result() for f in answers] == [200] * 6
    finally:
        httpx.post(stub + "/_delay", content=b"0.02")
    assert max(seen) == 6, seen
    assert gauge() == 0


def _stub_urls(handle: RouterHandle) -> set[str]:
    """The stub runner's URL, from the router's own settings."""
    import json

    return set(json.loads(handle.env["WINEMEUP_ROUTER_RUNNER_URLS"]).values())
