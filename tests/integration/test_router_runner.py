"""The router in front of real BentoML runners (the runner engineer's ``runner_fleet``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.support.raw_http import Connections, request_bytes
from tests.support.waiting import wait_until
from tests.support.wines import WINES
from winemeup.runtimes import MODEL_NAMES
from winemeup.schema import SCHEMA

pytestmark = [pytest.mark.integration, pytest.mark.slow]

EXAMPLE = SCHEMA.example()


@pytest.fixture(scope="module")
def runner_router(
    model_store: Path,
    runner_fleet: Any,
    tmp_path_factory: pytest.TempPathFactory,
    router_launcher: Callable[..., Any],
) -> Iterator[Any]:
    handle = router_launcher(
        tmp_path_factory.mktemp("router-runner"),
        model_store,
        placement="runner",
        runner_urls=runner_fleet.urls,
        health_interval_seconds=0.5,
        runner_timeout_seconds=5.0,  # generous: seven runners share two busy cores
    )
    try:
        handle.wait_ready()
        yield handle
    finally:
        handle.process.stop()


@pytest.fixture
def client(runner_router: Any) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=runner_router.url, headers=runner_router.headers(), timeout=10) as c:
        yield c


@pytest.fixture(scope="module")
def expected(model_store: Path, reference_scorer: Callable[..., dict]) -> dict[str, list[float]]:
    return reference_scorer(model_store, [SCHEMA.validate(w) for w in WINES])


def test_each_model_through_its_runner(client: httpx.Client, expected: dict[str, list[float]]) -> None:
    listing = {m["name"]: m for m in client.get("/v1/models").json()["models"]}
    for model in MODEL_NAMES:
        assert listing[model]["placement"] == "runner"
        assert listing[model]["status"] == "ready", listing[model]
        assert listing[model]["metrics"], listing[model]
        for wine, want in zip(WINES, expected[model], strict=True):
            r = client.post("/v1/predict", json={"features": wine, "model": model})
            assert r.status_code == 200, r.text
            body = r.json()
            assert body["score"] == pytest.approx(want, rel=1e-9, abs=1e-9), model
            assert body["model_version"] == listing[model]["version"]
        fresh = [{**w, "sulphates": 0.61} for w in WINES]
        answer = client.post("/v1/predict/batch", json={"instances": [*fresh, *WINES], "model": model})
        assert answer.status_code == 200, answer.text
        batch = answer.json()
        assert [p["cached"] for p in batch["predictions"]] == [False] * len(fresh) + [True] * len(WINES)
        assert [p["score"] for p in batch["predictions"]][len(fresh) :] == pytest.approx(
            expected[model], rel=1e-9
        )


def test_concurrent_misses_are_micro_batched(
    runner_router: Any, client: httpx.Client, metric_reader: Callable[..., float]
) -> None:
    """Misses that arrive while runner calls are in flight share a call.

    The batching is adaptive (a request waits only while every call slot is busy), so the
    misses must reach the router together: 64 requests prepared as bytes are written back to
    back on 64 warm keep-alive connections (an HTTP client library spreads them over
    milliseconds, long enough for a runner to answer each one alone). Up to three bursts are
    sent; one must need fewer runner calls than requests. With batching broken, every burst
    needs 64.
    """

    def figures() -> tuple[float, float]:
        text = client.get("/metrics").text
        return (
            metric_reader(text, "winemeup_router_runner_call_rows_sum", model="extra_trees"),
            metric_reader(text, "winemeup_router_runner_call_rows_count", model="extra_trees"),
        )

    headers = {**runner_router.headers(), "Content-Type": "application/json"}
    warm = request_bytes(runner_router.url, "GET", "/healthz", {})
    calls_per_burst = []
    with Connections(runner_router.url, 64, warm) as connections:
        for attempt in range(3):
            bodies = [
                orjson.dumps(
                    {
                        "features": {**EXAMPLE, "alcohol": 10 + (64 * attempt + i) / 997},
                        "model": "extra_trees",
                    }
                )
                for i in range(64)
            ]
            requests = [request_bytes(runner_router.url, "POST", "/v1/predict", headers, b) for b in bodies]
            rows_before, calls_before = figures()
            assert set(connections.burst(requests)) == {200}
            rows, calls = figures()
            assert rows - rows_before == 64  # every miss reached the runner exactly once
            calls_per_burst.append(calls - calls_before)
            if calls_per_burst[-1] < 64:
                break
    assert min(calls_per_burst) < 64, f"no runner call carried more than one request's row: {calls_per_burst}"


def test_runner_killed_then_restarted(
    runner_router: Any, runner_fleet: Any, client: httpx.Client, metric_reader: Callable[..., float]
) -> None:
    wine = {"features": {**EXAMPLE, "alcohol": 11.111}, "model": "svr"}

    def runner_failures() -> tuple[float, float]:
        text = client.get("/metrics").text
        return (
            metric_reader(text, "winemeup_router_runner_errors_total", model="svr"),
            metric_reader(text, "winemeup_router_runner_timeouts_total", model="svr"),
        )

    _, timeouts = runner_failures()
    runner_fleet.kill("svr")
    try:
        r = client.post("/v1/predict", json=wine)
        assert r.status_code == 503, r.text
        assert r.json()["error"].startswith("model 'svr' is unavailable")
        # Refused at once (by the call or by a probe that saw it first), not held until
        # runner_timeout_seconds: no timeout is counted.
        after_first = runner_failures()
        assert after_first[1] == timeouts
        # Once marked unavailable, further requests fail fast without calling the runner.
        assert client.post("/v1/predict", json=wine).status_code == 503
        assert runner_failures() == after_first
        for model in ("lightgbm", "catboost"):
            ok = client.post("/v1/predict", json={**wine, "model": model})
            assert ok.status_code == 200, ok.text
        assert client.get("/readyz").status_code == 200
        svr = next(m for m in client.get("/v1/models").json()["models"] if m["name"] == "svr")
        assert svr["status"] == "unavailable"
    finally:
        runner_fleet.restart("svr")
    wait_until(lambda: client.post("/v1/predict", json=wine).status_code == 200, timeout=10)


def test_default_runner_down_keeps_router_ready(
    runner_router: Any, runner_fleet: Any, client: httpx.Client
) -> None:
    """A runner outage is that model's 503, not the pod's: every router pod leaving the
    Service would take the other models, cached answers and the UI down with it."""
    runner_fleet.kill("lightgbm")
    try:
        wait_until(
            lambda: client.get("/readyz").json().get("default_model_status") == "unavailable", timeout=5
        )
        ready = client.get("/readyz")
        assert ready.status_code == 200
        assert "lightgbm" in ready.json()["models_not_ready"]
        # A wine no test has cached: the default model's own outage answers 503.
        r = client.post("/v1/predict", json={"features": {**EXAMPLE, "alcohol": 11.7171}})
        assert r.status_code == 503 and "lightgbm" in r.json()["error"]
    finally:
        runner_fleet.restart("lightgbm")
    wait_until(lambda: client.get("/readyz").json()["models_not_ready"] == [], timeout=10)
