"""Faults under load, on the played release: fresh random wines (every request a cache miss)
from several threads to the router container, while a container is killed.

* A runner container killed (SIGKILL to its main process, as an OOM kill does): the other
  models see 0 errors; its own model answers 503, fast (well inside the router's runner
  timeout, read from the render), and serves again once the pod's restart policy has
  restarted the container.
* The Redis container killed the same way and restarted: no 5xx at all, and the cache comes
  back (Redis holds the predictions of wines scored after the restart, and the router stops
  counting cache errors)."""

from __future__ import annotations

import os
import random
import signal
import time

import httpx
import pytest

from tests.containers.harness import PlayedRelease, Workload, podman
from tests.containers.load import Answer, Load, random_wine
from tests.support.metrics import metric_value
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.containers, pytest.mark.slow]

VICTIM = "xgboost"


def _kill_main_process(release: PlayedRelease, w: Workload, container: str) -> int:
    """SIGKILL the container's main process; returns the restart count before."""
    name = w.container_name(container)
    before = release.restart_count(name)
    pid = int(podman("inspect", "--type", "container", "--format", "{{.State.Pid}}", name).strip())
    os.kill(pid, signal.SIGKILL)
    return before


def _router_setting(release: PlayedRelease, key: str) -> str:
    router = release.workload("router")
    name = next(
        e["configMapRef"]["name"] for e in router.container("router")["envFrom"] if "configMapRef" in e
    )
    config_map = next(d for d in release.docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == name)
    return str(config_map["data"][key])


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]


def test_runner_killed_under_load(
    release: PlayedRelease, router: httpx.Client, router_url: str, api_key: str, models: list[str]
) -> None:
    victim = release.by_label("winemeup.io/model", VICTIM)
    runner_timeout = float(_router_setting(release, "WINEMEUP_ROUTER_RUNNER_TIMEOUT_SECONDS"))
    rng = random.Random()

    def victim_serves() -> bool:
        answer = router.post("/v1/predict", json={"features": random_wine(rng), "model": VICTIM})
        return answer.status_code == 200

    first = router.post("/v1/predict", json={"features": random_wine(rng), "model": VICTIM})
    assert first.status_code == 200, first.text
    with Load(router_url, api_key, models, workers=4) as load:
        time.sleep(2)
        killed_at = time.monotonic()
        restarts = _kill_main_process(release, victim, "runner")
        wait_until(
            lambda: release.restart_count(victim.container_name("runner")) > restarts,
            30,
            message="the runner container was not restarted",
        )
        wait_until(
            victim_serves, 120, interval=0.5, message=lambda: release.logs(victim.container_name("runner"))
        )
        served_again_at = time.monotonic()
        time.sleep(1)
    answers = load.answers

    others = [a for a in answers if a.model != VICTIM]
    assert len(others) > 50, len(others)
    errors = [a for a in others if a.status != 200]
    assert not errors, f"{len(errors)} errors on the other models: {_summary(errors)}"

    down = [a for a in answers if a.model == VICTIM and killed_at + 0.5 <= a.started < served_again_at - 0.5]
    unavailable = [a for a in down if a.status == 503]
    assert unavailable, f"no 503 for {VICTIM} while its runner was down: {_summary(down)}"
    assert {a.status for a in down} <= {200, 503}, _summary(down)
    assert _p95([a.seconds for a in unavailable]) < runner_timeout / 2, (
        f"503s of {VICTIM} took p95 {_p95([a.seconds for a in unavailable]):.3f} s "
        f"(runner timeout {runner_timeout} s): not fast"
    )
    after = [a for a in answers if a.model == VICTIM and a.started >= served_again_at]
    assert after and all(a.status == 200 for a in after), _summary(after)


def test_redis_restarted_under_load(
    release: PlayedRelease, router: httpx.Client, router_url: str, api_key: str, models: list[str]
) -> None:
    redis = release.workload("redis")
    redis_container = redis.container_name("redis")

    def dbsize() -> int:
        out = podman("exec", redis_container, "redis-cli", "dbsize", check=False).strip()
        return int(out) if out.isdigit() else -1

    def cache_errors() -> float:
        return metric_value(router.get("/metrics").text, "winemeup_router_cache_errors_total")

    with Load(router_url, api_key, models[:3], workers=4) as load:
        time.sleep(2)
        assert dbsize() > 0
        restarts = _kill_main_process(release, redis, "redis")
        wait_until(
            lambda: release.restart_count(redis_container) > restarts,
            30,
            message="the Redis container was not restarted",
        )
        readiness = next(p for p in redis.probes(redis.container("redis")) if p.kind == "readinessProbe")
        wait_until(lambda: readiness.run(redis.address, redis_container)[0], 60, interval=0.2)
        after_restart = dbsize()
        time.sleep(4)
    answers = load.answers
    assert len(answers) > 50, len(answers)
    failed = [a for a in answers if a.status >= 500 or a.status == 0]
    assert not failed, f"{len(failed)} of {len(answers)} failed while Redis restarted: {_summary(failed)}"

    # The cache is back: new predictions land in Redis, and the router no longer errs on it.
    errors_before = cache_errors()
    rng = random.Random()
    for _ in range(20):
        assert (
            router.post("/v1/predict", json={"features": random_wine(rng), "model": models[0]}).status_code
            == 200
        )
    assert dbsize() >= after_restart + 20, (after_restart, dbsize())
    assert cache_errors() == errors_before


def _summary(answers: list[Answer]) -> str:
    counts: dict[tuple[str, int], int] = {}
    for a in answers:
        counts[(a.model, a.status)] = counts.get((a.model, a.status), 0) + 1
    return ", ".join(f"{m} {s}: {n}" for (m, s), n in sorted(counts.items()))
