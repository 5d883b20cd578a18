"""The chart's rendered workloads, played once per session as podman containers.

``helm template`` with k8s/values/containers-local.yaml (local images, the values a user of a
private registry sets) renders the release; :mod:`tests.containers.harness` plays every
Deployment and the Redis StatefulSet with ``podman kube play`` and waits until the probes the
render declares pass. Every test here talks to those containers over their pod addresses.

Without podman (or as a non-root user) every test is skipped with the reason; under
``CI=true`` that fails instead. Images missing: ``make images`` builds them; the Redis
stand-ins (docker/redis-standin.Dockerfile) are built here when missing.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

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
from tests.support.binaries import in_ci
from tests.support.waiting import wait_until

logger = logging.getLogger(__name__)


class ContainersSettings(BaseSettings):
    """What the container e2e plays (env prefix WINEMEUP_CONTAINERS_)."""

    model_config = SettingsConfigDict(env_prefix="WINEMEUP_CONTAINERS_", extra="ignore")

    image_tag: str = Field(default="e2e", description="Tag of the images `make images IMAGE_TAG=...` built.")
    values_file: Path = Field(
        default=REPO_ROOT / "k8s" / "values" / "containers-local.yaml",
        description="Values file of the render (local image references).",
    )
    extra_set: list[str] = Field(default_factory=list, description="Extra `--set` items (JSON list).")
    ready_timeout_seconds: float = Field(
        default=300.0, gt=0, description="Longest wait for every pod to be ready."
    )


def unavailable(reason: str) -> None:
    """Skip with ``reason``; under CI=true, fail: a CI run must run these tests."""
    if in_ci():
        pytest.fail(f"{reason}; CI=true, so the container e2e fails instead of skipping", pytrace=False)
    pytest.skip(reason)


def image_sets(tag: str) -> list[str]:
    """``--set`` items giving every WineMeUp image (and the Redis stand-ins) ``tag``."""
    return [
        f"router.image.tag={tag}",
        f"router.inlineImage.tag={tag}",
        f"runnerDefaults.image.tag={tag}",
        f"ui.image.tag={tag}",
        f"redis.image.tag={tag}",
        f"redis.exporter.image.tag={tag}",
    ]


def render(settings: ContainersSettings, release: str, *sets: str) -> list[dict[str, Any]]:
    """The chart, rendered as the container e2e plays it."""
    return helm_template(
        REPO_ROOT / "charts" / "winemeup",
        release,
        "winemeup",
        [settings.values_file],
        [*image_sets(settings.image_tag), *settings.extra_set, *sets],
    )


@pytest.fixture(scope="session")
def containers_settings() -> ContainersSettings:
    return ContainersSettings()


@pytest.fixture(scope="session")
def engine_ready(containers_settings: ContainersSettings) -> None:
    """Podman works here and has every image the render names (or the test is skipped)."""
    problem = engine_problem()
    if problem:
        unavailable(problem)
    docs = render(containers_settings, "probe")
    ensure_standin_images(docs)
    missing = missing_images(docs)
    if missing:
        unavailable(
            f"images missing: {', '.join(missing)} (build them with `make images IMAGE_TAG="
            f"{containers_settings.image_tag}`)"
        )


@pytest.fixture(scope="session")
def release(containers_settings: ContainersSettings, engine_ready: None) -> Iterator[PlayedRelease]:
    """Every workload of the chart, played and ready; removed at the end of the session, also
    when a test fails or the run is interrupted (Ctrl-C, SIGTERM)."""
    remove_run()  # what a killed run left behind
    run_id = uuid.uuid4().hex[:6]
    played = PlayedRelease(render(containers_settings, f"e2e-{run_id}"), run_id=run_id)
    with interrupt_on_sigterm():
        try:
            played.up(ready_timeout=containers_settings.ready_timeout_seconds)
            wait_models_ready(played, containers_settings.ready_timeout_seconds)
            logger.info("ready after kube play: %s", {w.name: w.ready_after for w in played.workloads})
            yield played
        finally:
            played.down()


def wait_models_ready(played: PlayedRelease, timeout: float) -> None:
    """Wait until the router lists every model `ready`: a runner pod passes its readiness probe
    a health interval before the router has seen it (a cluster has the same lag)."""
    router = played.workload("router")
    key = played.secret_data()["api-keys"].split(",")[0]

    def statuses() -> dict[str, str]:
        try:
            listed = httpx.get(
                router.url("router") + "/v1/models", headers={"X-API-Key": key}, timeout=5
            ).json()
        except (httpx.HTTPError, ValueError):
            return {}
        return {m["name"]: m["status"] for m in listed.get("models", [])}

    wait_until(
        lambda: statuses() and all(s == "ready" for s in statuses().values()),
        timeout,
        interval=0.5,
        message=lambda: f"models as the router sees them: {statuses()}",
    )


@pytest.fixture(scope="session")
def api_key(release: PlayedRelease) -> str:
    return release.secret_data()["api-keys"].split(",")[0]


@pytest.fixture(scope="session")
def router_url(release: PlayedRelease) -> str:
    return release.workload("router").url("router")


@pytest.fixture(scope="session")
def models(release: PlayedRelease) -> list[str]:
    """The models the render serves (each in its runner)."""
    return sorted(w.labels["winemeup.io/model"] for w in release.workloads if "winemeup.io/model" in w.labels)


@pytest.fixture
def router(router_url: str, api_key: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=router_url, headers={"X-API-Key": api_key}, timeout=30) as client:
        yield client
