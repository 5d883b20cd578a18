"""Operator mode on a live cluster (kind): WineModels become Ready from what really runs, a
version the router doesn't serve turns Ready False, a bad WineTraffic is not Accepted.

Needs the release installed with ``runners.managedBy=operator`` after ``charts/winemeup-crds``
and the operator image: ``make kind-up kind-deploy-operator e2e-operator`` (the kind workflow
runs it after the Helm-mode e2e); skipped, with the reason, when the cluster or the CRDs or the
WineModels are not there. Never run on the machine this was written on (no docker, no
cluster).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from e2e_cluster import Cluster

pytestmark = pytest.mark.e2e

GROUP, VERSION = "serving.winemeup.io", "v1alpha1"


@pytest.fixture(scope="module")
def custom(cluster: Cluster) -> Any:
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    api = client.CustomObjectsApi(cluster.core.api_client)
    try:
        answer: Any = api.list_namespaced_custom_object(
            GROUP, VERSION, cluster.settings.namespace, "winemodels"
        )
        items = answer["items"]
    except ApiException as e:
        pytest.skip(f"no WineModel CRD ({e.status}): install charts/winemeup-crds")
    if not items:
        pytest.skip("no WineModels: install the release with runners.managedBy=operator")
    return api


def _condition(obj: dict[str, Any], type_: str) -> dict[str, Any]:
    return next((c for c in (obj.get("status") or {}).get("conditions", []) if c["type"] == type_), {})


def _wait(check: Callable[[], bool], seconds: float, what: Callable[[], str]) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"still not so after {seconds:g} s: {what()}")
        time.sleep(2)


def _models(custom: Any, cluster: Cluster) -> list[dict[str, Any]]:
    return list(
        custom.list_namespaced_custom_object(GROUP, VERSION, cluster.settings.namespace, "winemodels")[
            "items"
        ]
    )


def test_every_winemodel_is_ready_at_the_version_the_router_serves(cluster: Cluster, custom: Any) -> None:
    _wait(
        lambda: all(_condition(m, "Ready").get("status") == "True" for m in _models(custom, cluster)),
        300,
        lambda: json.dumps(
            [(m["metadata"]["name"], _condition(m, "Ready")) for m in _models(custom, cluster)]
        ),
    )
    status, body = cluster.http("GET", "/v1/models")
    assert status == 200
    served = {m["name"]: m["version"] for m in json.loads(body)["models"]}
    for m in _models(custom, cluster):
        assert m["status"]["version"] == served[m["metadata"]["name"].replace("-", "_")]
        assert m["status"]["readyReplicas"] >= 1


def test_a_version_the_router_does_not_serve_turns_ready_false(cluster: Cluster, custom: Any) -> None:
    name = _models(custom, cluster)[0]["metadata"]["name"]
    ns = cluster.settings.namespace
    custom.patch_namespaced_custom_object(
        GROUP, VERSION, ns, "winemodels", name, {"spec": {"version": "not-served"}}
    )
    try:
        _wait(
            lambda: (
                _condition(
                    custom.get_namespaced_custom_object(GROUP, VERSION, ns, "winemodels", name), "Ready"
                ).get("reason")
                == "VersionNotServed"
            ),
            120,
            lambda: name,
        )
    finally:
        custom.patch_namespaced_custom_object(
            GROUP, VERSION, ns, "winemodels", name, {"spec": {"version": None}}
        )
    _wait(
        lambda: (
            _condition(
                custom.get_namespaced_custom_object(GROUP, VERSION, ns, "winemodels", name), "Ready"
            ).get("status")
            == "True"
        ),
        120,
        lambda: name,
    )


def test_a_winetraffic_that_does_not_add_up_is_not_accepted(cluster: Cluster, custom: Any) -> None:
    ns = cluster.settings.namespace
    traffic = custom.list_namespaced_custom_object(GROUP, VERSION, ns, "winetraffics")["items"][0]
    name = traffic["metadata"]["name"]
    _, before = cluster.http("GET", "/v1/traffic")
    custom.patch_namespaced_custom_object(
        GROUP,
        VERSION,
        ns,
        "winetraffics",
        name,
        {"spec": {"splits": {"lightgbm": {"lightgbm": 80, "xgboost": 10}}}},
    )
    try:
        _wait(
            lambda: (
                _condition(
                    custom.get_namespaced_custom_object(GROUP, VERSION, ns, "winetraffics", name), "Accepted"
                ).get("status")
                == "False"
            ),
            120,
            lambda: name,
        )
        _, after = cluster.http("GET", "/v1/traffic")
        assert json.loads(after)["splits"] == json.loads(before)["splits"]
    finally:
        custom.patch_namespaced_custom_object(
            GROUP,
            VERSION,
            ns,
            "winetraffics",
            name,
            {"spec": {"splits": traffic["spec"].get("splits") or {}}},
        )
