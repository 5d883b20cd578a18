"""The operator's desired objects, played as containers, serve.

The chart is rendered in operator mode with the container e2e's values
(k8s/values/containers-local.yaml, local images): Helm's router, Redis, Secret and
ConfigMaps, plus the runner Deployment and Service that the operator's pure reconcile makes
from the rendered WineModel with the rendered release context. Those are played with the
container harness (tests/containers/harness.py, podman ``kube play``; what it changes from a
cluster is listed there) and a prediction goes through the router to the operator-made runner.
The operator itself does not run (no API server, and no operator image is built yet); the
runner objects it would apply do. One model, to keep the run short.

Skipped, with the reason, without podman or the images (``make images``); fails under CI=true.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from services.operator.reconcile import desired_objects
from services.operator.release import ReleaseContext
from tests.containers.conftest import ContainersSettings, image_sets, unavailable, wait_models_ready
from tests.containers.harness import (
    REPO_ROOT,
    PlayedRelease,
    engine_problem,
    ensure_standin_images,
    helm_template,
    interrupt_on_sigterm,
    missing_images,
    remove_run,
)
from winemeup.schema import QUALITY_MAX, QUALITY_MIN, SCHEMA

pytestmark = [pytest.mark.containers, pytest.mark.slow]

OFF = ("xgboost", "catboost", "random_forest", "extra_trees", "hist_gradient_boosting", "svr")


def _played_docs(
    settings: ContainersSettings, release: str
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(what is played, the operator's objects among it)."""
    docs = helm_template(
        REPO_ROOT / "charts" / "winemeup",
        release,
        "winemeup",
        [settings.values_file],
        [
            *image_sets(settings.image_tag),
            *settings.extra_set,
            "runners.managedBy=operator",
            "ui.enabled=false",
            *(f"models.{m}.enabled=false" for m in OFF),
        ],
    )
    config = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("-operator"))
    context = ReleaseContext.model_validate_json(config["data"]["release.json"])
    made: list[dict[str, Any]] = []
    for wine_model in (d for d in docs if d["kind"] == "WineModel"):
        wine_model["metadata"] |= {"generation": 1, "uid": "00000000-0000-4000-8000-000000000001"}
        made += desired_objects(wine_model, context)
    helm_side = [
        d
        for d in docs
        if d["kind"] not in ("WineModel", "WineTraffic")
        and d["metadata"].get("labels", {}).get("app.kubernetes.io/component") != "operator"
    ]
    return helm_side + made, made


@pytest.fixture(scope="module")
def played() -> Iterator[tuple[PlayedRelease, list[dict[str, Any]]]]:
    problem = engine_problem()
    if problem:
        unavailable(problem)
    settings = ContainersSettings()
    remove_run()
    docs, made = _played_docs(settings, "op-e2e")
    ensure_standin_images(docs)
    missing = missing_images(docs)
    if missing:
        unavailable(
            f"images missing: {', '.join(missing)} "
            f"(build them with `make images IMAGE_TAG={settings.image_tag}`)"
        )
    release = PlayedRelease(docs)
    with interrupt_on_sigterm():
        try:
            release.up(ready_timeout=settings.ready_timeout_seconds)
            wait_models_ready(release, settings.ready_timeout_seconds)
            yield release, made
        finally:
            release.down()


def test_the_operators_runner_serves_through_the_router(
    played: tuple[PlayedRelease, list[dict[str, Any]]],
) -> None:
    release, made = played
    deployment = next(o for o in made if o["kind"] == "Deployment")
    runner = release.workload(deployment["metadata"]["name"])
    assert runner.labels["winemeup.io/model"] == "lightgbm"
    assert deployment["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "winemeup-operator"
    key = release.secret_data()["api-keys"].split(",")[0]
    router = release.workload("router").url("router")
    answer = httpx.post(
        router + "/v1/predict",
        json={"features": SCHEMA.example(), "model": "lightgbm"},
        headers={"X-API-Key": key},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["model"] == "lightgbm" and QUALITY_MIN <= body["score"] <= QUALITY_MAX
    # The runner answers its own readiness probe, as the operator's Deployment declares it.
    probe = deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["path"]
    assert httpx.get(runner.url("runner") + probe, timeout=5).status_code == 200
