"""Concurrent identical misses call the model once: single-flight, with a predict that waits.

The model is a stub runner whose gate holds every call, so the first miss is still being
computed while the others arrive (an inline model's single-row predict never yields to the
event loop, so it cannot show a missing single-flight). Twelve identical requests are sent
on their own connections, a later ``/healthz`` is answered (the router has read them all),
then the gate opens: one runner call, one cache miss, twelve equal answers. With the
in-process cache and with Redis in front of it.
"""

from __future__ import annotations

import http.client
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.support.slow_runner import SlowRunner
from tests.support.waiting import wait_until
from winemeup.schema import SCHEMA

pytestmark = pytest.mark.integration

CONCURRENT = 12


@pytest.fixture(scope="module")
def stub() -> Iterator[SlowRunner]:
    runner = SlowRunner()
    try:
        yield runner
    finally:
        runner.stop()


@pytest.mark.parametrize("cache", ["memory", "redis"])
def test_concurrent_identical_misses_call_the_model_once(
    cache: str,
    stub: SlowRunner,
    model_store: Path,
    router: Callable[..., Any],
    redis_server: Callable[..., Any],
    metric_reader: Callable[..., float],
) -> None:
    handle = router(
        model_store,
        models=["lightgbm", "svr"],
        default_model="lightgbm",
        placements={"svr": "runner"},
        runner_urls={"svr": stub.url},
        runner_timeout_seconds=60,  # the held call must not time out while the test looks
        redis_url=redis_server().url if cache == "redis" else None,
    )
    handle.wait_ready()
    headers = {**handle.headers(), "Content-Type": "application/json"}
    body = orjson.dumps({"features": {**SCHEMA.example(), "alcohol": 13.1415}, "model": "svr"})
    with httpx.Client(base_url=handle.url, headers=handle.headers(), timeout=10) as client:

        def svr_ready() -> bool:
            listing = client.get("/v1/models").json()["models"]
            return {m["name"]: m["status"] for m in listing}["svr"] == "ready"

        wait_until(svr_ready, 30, interval=0.1, message=lambda: handle.process.log_tail())
        misses_before = metric_reader(client.get("/metrics").text, "winemeup_router_cache_misses_total")
        calls_before = stub.calls
        stub.delay = 0.0
        stub.close_gate()
        connections = []
        try:
            port = int(handle.url.rsplit(":", 1)[1])
            for _ in range(CONCURRENT):
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                connection.request("POST", "/v1/predict", body=body, headers=headers)  # sent, not read
                connections.append(connection)
            # Answered after the twelve were sent: the router has read them, and they all wait.
            assert client.get("/healthz").status_code == 200
            wait_until(lambda: stub.blocked == 1, 10, message="the first miss never reached the runner")
        finally:
            stub.open_gate()
        answers = []
        for connection in connections:
            response = connection.getresponse()
            assert response.status == 200
            answers.append(orjson.loads(response.read()))
            connection.close()
        metrics_text = client.get("/metrics").text
    assert {a["score"] for a in answers} == {5.5}
    assert stub.calls - calls_before == 1
    assert metric_reader(metrics_text, "winemeup_router_cache_misses_total") == misses_before + 1
