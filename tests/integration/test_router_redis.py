"""The router with its Redis cache: hits, batches, and Redis killed, full or slow mid-test."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.waiting import wait_until
from winemeup.schema import SCHEMA

pytestmark = pytest.mark.integration

EXAMPLE = SCHEMA.example()
MODELS = ["lightgbm", "xgboost"]
REDIS_TIMEOUT_SECONDS = 0.1


@pytest.fixture(scope="module")
def stack(
    model_store: Path,
    tmp_path_factory: pytest.TempPathFactory,
    router_launcher: Callable[..., Any],
    redis_launcher: Callable[..., Any],
) -> Iterator[tuple[Any, Any]]:
    """One private Redis and one router using it (lightgbm and xgboost inline)."""
    log_dir = tmp_path_factory.mktemp("router-redis")
    redis = redis_launcher(log_dir)
    handle = None
    try:
        handle = router_launcher(
            log_dir,
            model_store,
            models=MODELS,
            redis_url=redis.url,
            redis_timeout_seconds=REDIS_TIMEOUT_SECONDS,
            cache_backoff_seconds=0.2,
        )
        handle.wait_ready()
        yield handle, redis
    finally:
        if handle is not None:
            handle.process.stop()
        redis.stop()


@pytest.fixture
def client(stack: tuple[Any, Any]) -> Iterator[httpx.Client]:
    router, _ = stack
    with httpx.Client(base_url=router.url, headers=router.headers(), timeout=10) as c:
        yield c


def _wine(alcohol: float) -> dict[str, Any]:
    return {"features": {**EXAMPLE, "alcohol": alcohol}}


def _dbsize(redis: Any) -> int:
    """Cached scores in Redis (the rate limiter's buckets live beside them)."""
    return len(redis.command("KEYS", "wmu:p1:*"))


def _errors(client: httpx.Client, metric_reader: Callable[..., float]) -> float:
    return metric_reader(client.get("/metrics").text, "winemeup_router_cache_errors_total", backend="redis")


def test_miss_then_hit_lands_in_redis(stack: tuple[Any, Any], client: httpx.Client) -> None:
    _, redis = stack
    keys_before = _dbsize(redis)
    first = client.post("/v1/predict", json=_wine(10.5)).json()
    second = client.post("/v1/predict", json=_wine(10.5)).json()
    assert (first["cached"], second["cached"]) == (False, True)
    assert first["score"] == second["score"]
    assert _dbsize(redis) == keys_before + 1
    db0 = redis.command("INFO", "keyspace")["db0"]
    assert db0["keys"] == db0["expires"]  # every cached score carries the TTL


def test_batch_uses_mget_and_pipelined_sets(stack: tuple[Any, Any], client: httpx.Client) -> None:
    _, redis = stack
    before = _dbsize(redis)
    instances = [_wine(11.0 + i / 1000)["features"] for i in range(20)]
    client.post("/v1/predict", json={"features": instances[5]})
    first = client.post("/v1/predict/batch", json={"instances": instances}).json()
    assert [p["cached"] for p in first["predictions"]] == [i == 5 for i in range(20)]
    # A batch's scores are written to Redis just after the answer: wait for them.
    wait_until(lambda: _dbsize(redis) == before + 20, timeout=5, message=lambda: f"{_dbsize(redis) - before}")
    again = client.post("/v1/predict/batch", json={"instances": instances}).json()
    assert all(p["cached"] for p in again["predictions"])
    assert [p["score"] for p in again["predictions"]] == [p["score"] for p in first["predictions"]]


def test_a_second_replica_hits_what_the_first_stored(
    stack: tuple[Any, Any],
    client: httpx.Client,
    model_store: Path,
    tmp_path: Path,
    router: Callable[..., Any],
) -> None:
    _, redis = stack
    first = client.post("/v1/predict", json=_wine(10.75)).json()
    replica = router(model_store, models=["lightgbm"], redis_url=redis.url)
    replica.wait_ready()
    r = httpx.post(f"{replica.url}/v1/predict", json=_wine(10.75), headers=replica.headers()).json()
    assert r["cached"] is True  # from Redis: this replica's near cache was empty
    assert r["score"] == first["score"]
    assert r["model_version"] == first["model_version"]
    # Batches: stored by one Lua call on the first router, read by MGET on the replica.
    instances = [_wine(10.8 + i / 1000)["features"] for i in range(30)]
    keys_before = _dbsize(redis)
    stored = client.post("/v1/predict/batch", json={"instances": instances}).json()["predictions"]
    assert not any(p["cached"] for p in stored)
    wait_until(lambda: _dbsize(redis) == keys_before + 30, timeout=5)
    got = httpx.post(
        f"{replica.url}/v1/predict/batch", json={"instances": instances}, headers=replica.headers()
    ).json()["predictions"]
    assert [p["cached"] for p in got] == [True] * 30
    assert [p["score"] for p in got] == [p["score"] for p in stored]


def test_other_model_same_features_is_not_a_hit(client: httpx.Client) -> None:
    client.post("/v1/predict", json=_wine(12.25))
    other = client.post("/v1/predict", json={**_wine(12.25), "model": "xgboost"}).json()
    assert other["model"] == "xgboost"
    assert other["cached"] is False


def test_redis_killed_then_restarted(
    stack: tuple[Any, Any], client: httpx.Client, metric_reader: Callable[..., float]
) -> None:
    router, redis = stack
    errors_before = _errors(client, metric_reader)

    def miss_seconds(offset: float) -> float:
        """Median time of 20 misses (wines nothing cached)."""
        seconds = []
        for i in range(20):
            started = time.perf_counter()
            r = client.post("/v1/predict", json=_wine(offset + i / 100))
            seconds.append(time.perf_counter() - started)
            assert r.status_code == 200, r.text
            assert r.json()["cached"] is False
        return float(statistics.median(seconds))

    with_redis = miss_seconds(7.0)
    redis.kill()
    try:
        without_redis = miss_seconds(9.0)
        # A dead Redis costs at most its configured timeout per request, never a stall.
        assert without_redis <= 3 * with_redis + REDIS_TIMEOUT_SECONDS, (with_redis, without_redis)
        assert client.get("/readyz").status_code == 200  # no Redis does not make the router unready
        assert client.get("/readyz").json()["cache"] == {"backend": "redis", "reachable": False}
        assert _errors(client, metric_reader) > errors_before
    finally:
        redis.start()
    # Back without a router restart: after the back-off, new scores reach Redis again (the
    # router's near cache alone would also answer "cached", so count Redis keys instead).
    assert _dbsize(redis) == 0  # a killed server without persistence comes back empty
    counter = iter(range(1000))

    def stored_again() -> bool:
        client.post("/v1/predict", json=_wine(9.5 + next(counter) / 10000))
        return _dbsize(redis) > 0

    wait_until(stored_again, timeout=10, message=router.process.log_tail)
    assert "serving without the cache" in router.process.log_path.read_text()


def test_redis_full_is_served_without_cache(
    stack: tuple[Any, Any], client: httpx.Client, metric_reader: Callable[..., float]
) -> None:
    _, redis = stack
    redis.command("CONFIG", "SET", "maxmemory-policy", "noeviction")
    redis.command("CONFIG", "SET", "maxmemory", "1")
    try:
        before = _errors(client, metric_reader)
        r = client.post("/v1/predict", json=_wine(14.2))
        assert r.status_code == 200 and r.json()["cached"] is False
        # The score is written after the answer: the OOM refusal is counted right after it.
        wait_until(lambda: _errors(client, metric_reader) == before + 1, timeout=5)
    finally:
        redis.command("CONFIG", "SET", "maxmemory", "0")
    keys = _dbsize(redis)
    counter = iter(range(1000))

    def stored_again() -> bool:
        client.post("/v1/predict", json=_wine(14.3 + next(counter) / 10000))
        return _dbsize(redis) > keys

    wait_until(stored_again, timeout=10)


def test_redis_slow_is_a_timeout_not_a_slow_answer(
    stack: tuple[Any, Any], client: httpx.Client, metric_reader: Callable[..., float]
) -> None:
    _, redis = stack
    before = _errors(client, metric_reader)
    pause_seconds = 4.0
    redis.command("CLIENT", "PAUSE", str(int(pause_seconds * 1000)), "ALL")
    try:
        started = time.monotonic()
        r = client.post("/v1/predict", json=_wine(8.765))
        elapsed = time.monotonic() - started
        assert r.status_code == 200 and r.json()["cached"] is False
        # Relative to the pause: the answer did not wait for Redis to come back.
        assert elapsed < pause_seconds / 2, f"a paused Redis held the request for {elapsed:.2f}s"
        assert _errors(client, metric_reader) >= before + 1
    finally:
        # The next test needs an answering Redis: wait for the pause to end (PING is held until then).
        wait_until(redis.ping, timeout=pause_seconds + 5)


def test_hot_swap_is_shared_between_replicas(
    stack: tuple[Any, Any], client: httpx.Client, model_store: Path, router: Callable[..., Any]
) -> None:
    _, redis = stack
    other = router(model_store, models=MODELS, redis_url=redis.url, default_sync_seconds=0.2)
    other.wait_ready()
    try:
        r = httpx.put(
            f"{other.url}/v1/models/default", json={"model": "xgboost"}, headers=other.headers(admin=True)
        )
        assert r.status_code == 200 and r.json()["shared"] is True, r.text
        # This replica answers with xgboost at once; the first one adopts it within its sync interval.
        assert httpx.post(f"{other.url}/v1/predict", json=_wine(10.1), headers=other.headers()).json()[
            "model"
        ] == ("xgboost")
        wait_until(
            lambda: client.post("/v1/predict", json=_wine(10.1)).json()["model"] == "xgboost", timeout=5
        )
        assert client.get("/v1/models").json()["default"] == "xgboost"
    finally:
        httpx.put(
            f"{other.url}/v1/models/default", json={"model": "lightgbm"}, headers=other.headers(admin=True)
        )
    wait_until(lambda: client.get("/v1/models").json()["default"] == "lightgbm", timeout=5)
    # A replica configured with another default ignores a swap made over lightgbm.
    third = router(
        model_store, models=MODELS, redis_url=redis.url, default_model="xgboost", default_sync_seconds=0.1
    )
    third.wait_ready()
    swap = httpx.put(
        f"{other.url}/v1/models/default", json={"model": "lightgbm"}, headers=other.headers(admin=True)
    )
    assert swap.status_code == 200 and swap.json()["shared"] is True, swap.text

    # Shared records are read together at every poll: once the third replica has adopted two
    # traffic changes made after the swap, it has read the swapped default record too.
    def third_splits() -> Any:
        return httpx.get(f"{third.url}/v1/traffic", headers=third.headers()).json()["splits"]

    for splits in ({"lightgbm": {"lightgbm": 90, "xgboost": 10}}, {}):
        r = httpx.put(f"{other.url}/v1/traffic", json={"splits": splits}, headers=other.headers(admin=True))
        assert r.status_code == 200 and r.json()["shared"] is True, r.text

        def adopted(want: dict[str, Any] = splits) -> bool:
            return bool(third_splits() == want)

        wait_until(adopted, timeout=5)
    assert httpx.get(f"{third.url}/v1/models", headers=third.headers()).json()["default"] == "xgboost"
