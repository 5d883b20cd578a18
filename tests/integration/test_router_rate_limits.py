"""Per-key budgets of real routers: two replicas share one budget through a real Redis.

One key spends its budget across both routers and gets 429s with ``Retry-After`` and the
RateLimit headers; another key at the same time is unaffected; with Redis gone, each router
keeps serving on a budget of its own (a refusal never comes from Redis being away).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.support.redis import RedisServer
from tests.support.router import RouterHandle

pytestmark = pytest.mark.integration

RATE = 2.0
BURST = 6.0
KEYS = ("key-a-0123456789abcdef", "key-b-0123456789abcdef")
BUDGETS = {
    "user": {"requests_per_second": RATE, "request_burst": BURST, "rows_per_second": 1000, "row_burst": 1000},
    "admin": {"requests_per_second": 100, "request_burst": 100, "rows_per_second": 1000, "row_burst": 1000},
}


def test_two_replicas_share_one_budget_and_another_key_is_unaffected(
    router: Callable[..., RouterHandle], redis_server: Callable[..., RedisServer], model_store: Path
) -> None:
    redis = redis_server()
    settings = {
        "models": ["lightgbm"],
        "default_model": "lightgbm",
        "redis_url": redis.url,
        "api_keys": ",".join(KEYS),
        "admin_api_keys": "admin-0123456789abcdef",
        "rate_limits": BUDGETS,
        # A slow Redis command falls back to local budgets (by design): not on a busy test box.
        "redis_timeout_seconds": 1.0,
    }
    replicas = [router(model_store=model_store, **settings) for _ in range(2)]
    for replica in replicas:
        replica.wait_ready()

    def features(replica: RouterHandle, key: str) -> httpx.Response:
        return httpx.get(replica.url + "/v1/features", headers={"X-API-Key": key})

    started = time.monotonic()
    answers = [features(replicas[i % 2], KEYS[0]) for i in range(24)]
    elapsed = time.monotonic() - started
    statuses = [a.status_code for a in answers]
    admitted = statuses.count(200)
    # One budget for both replicas: the burst plus what refilled meanwhile, never twice that.
    assert BURST <= admitted <= BURST + RATE * elapsed + 1, (admitted, elapsed, statuses)
    assert set(statuses) == {200, 429}
    refused = next(a for a in answers if a.status_code == 429)
    assert int(refused.headers["retry-after"]) >= 1
    assert refused.json()["code"] == "too_many_requests"
    assert re.fullmatch(r'"requests";q=6;w=3, "rows";q=1000;w=1', refused.headers["ratelimit-policy"])
    assert re.fullmatch(r'"requests";r=0;t=\d+', refused.headers["ratelimit"])
    assert "ratelimit" in answers[0].headers

    # Another key at the same moment, on either replica: its own budget.
    assert [features(r, KEYS[1]).status_code for r in replicas] == [200, 200]

    # Redis away: each replica falls back to a budget of its own and keeps serving.
    redis.stop()
    assert features(replicas[0], KEYS[1]).status_code == 200
    assert all(features(r, KEYS[1]).status_code in (200, 429) for r in replicas)


def test_overload_beyond_limit_concurrency_is_shed_with_503(
    router: Callable[..., RouterHandle], model_store: Path
) -> None:
    handle = router(
        model_store=model_store, models=["lightgbm"], default_model="lightgbm", limit_concurrency=2
    )
    handle.wait_ready()
    clients = [httpx.Client(base_url=handle.url) for _ in range(3)]
    try:
        # Each client keeps its connection open: uvicorn counts them with the one asking.
        answers = [c.get("/healthz") for c in clients]
    finally:
        for c in clients:
            c.close()
    statuses = [a.status_code for a in answers]
    assert statuses[0] == 200 and statuses[-1] == 503, statuses
    assert "127.0.0.1" not in answers[-1].text
