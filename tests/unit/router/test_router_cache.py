"""Cache keys, the in-memory LRU with TTL, and single-flight."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from services.router.cache import MemoryCache
from services.router.cache_keys import KeyMaker, pack_score, unpack_score
from services.router.lru import MemoryLRU
from services.router.single_flight import SingleFlight

ROW = [7.4, 0.7, 0.0, 1.9, 0.076, 11.0, 34.0, 0.9978, 3.51, 0.56, 9.4, 1.0]


def test_key_depends_on_model_version_and_every_value() -> None:
    base = KeyMaker("lightgbm", "v1").key(ROW)
    assert KeyMaker("lightgbm", "v1").key(ROW) == base
    assert KeyMaker("xgboost", "v1").key(ROW) != base
    assert KeyMaker("lightgbm", "v2").key(ROW) != base
    for i in range(len(ROW)):
        changed = list(ROW)
        changed[i] += 1e-9
        assert KeyMaker("lightgbm", "v1").key(changed) != base, f"value {i} does not reach the key"


def test_key_separates_name_and_version_boundaries() -> None:
    assert KeyMaker("ab", "c").key(ROW) != KeyMaker("a", "bc").key(ROW)


def test_int_and_float_spellings_of_a_value_share_a_key() -> None:
    as_ints = [int(v) if float(v).is_integer() else v for v in ROW]
    assert KeyMaker("svr", "1").key(as_ints) == KeyMaker("svr", "1").key(ROW)


def test_matrix_keys_equal_row_keys() -> None:
    rng = np.random.default_rng(0)
    matrix = rng.random((50, 12))
    maker = KeyMaker("catboost", "x")
    assert maker.keys(matrix) == [maker.key(row.tolist()) for row in matrix]


def test_score_round_trip_and_foreign_values() -> None:
    assert unpack_score(pack_score(5.123456789)) == 5.123456789
    assert unpack_score(None) is None
    assert unpack_score(b"5.1") is None  # written by something else: a miss, not a crash


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_lru_evicts_least_recently_used() -> None:
    lru = MemoryLRU(2, ttl_seconds=100)
    lru.set(b"a", 1.0)
    lru.set(b"b", 2.0)
    assert lru.get(b"a") == 1.0  # a is now the most recent
    lru.set(b"c", 3.0)
    assert lru.get(b"b") is None
    assert lru.get(b"a") == 1.0
    assert lru.get(b"c") == 3.0
    assert len(lru) == 2


def test_lru_entries_expire_after_ttl() -> None:
    clock = Clock()
    lru = MemoryLRU(10, ttl_seconds=5, clock=clock)
    lru.set(b"a", 1.0)
    clock.now = 4.9
    assert lru.get(b"a") == 1.0
    clock.now = 5.0
    assert lru.get(b"a") is None
    assert len(lru) == 0


def test_lru_rejects_zero_capacity() -> None:
    with pytest.raises(ValueError, match="max_entries must be positive"):
        MemoryLRU(0, 1)


def test_memory_cache_get_many_keeps_order() -> None:
    async def scenario() -> list[float | None]:
        cache = MemoryCache(10, 60)
        await cache.set_many([(b"x", 1.5), (b"z", 2.5)])
        return await cache.get_many([b"z", b"y", b"x"])

    assert asyncio.run(scenario()) == [2.5, None, 1.5]


def test_single_flight_runs_concurrent_callers_once() -> None:
    calls = 0

    async def scenario() -> list[tuple[int, bool]]:
        flight: SingleFlight[int] = SingleFlight()
        gate = asyncio.Event()

        async def compute() -> int:
            nonlocal calls
            calls += 1
            await gate.wait()
            return 42

        tasks = [asyncio.create_task(flight.run(b"k", compute)) for _ in range(10)]
        await asyncio.sleep(0)
        gate.set()
        results = await asyncio.gather(*tasks)
        assert len(flight) == 0
        return results

    results = asyncio.run(scenario())
    assert calls == 1
    assert [value for value, _ in results] == [42] * 10
    assert sum(1 for _, shared in results if not shared) == 1


def test_single_flight_shares_errors_and_then_retries() -> None:
    calls = 0

    async def scenario() -> int:
        flight: SingleFlight[int] = SingleFlight()
        gate = asyncio.Event()

        async def failing() -> int:
            nonlocal calls
            calls += 1
            await gate.wait()
            raise RuntimeError("boom")

        tasks = [asyncio.create_task(flight.run(b"k", failing)) for _ in range(3)]
        await asyncio.sleep(0)
        gate.set()
        outcomes = await asyncio.gather(*tasks, return_exceptions=True)
        assert all(isinstance(o, RuntimeError) for o in outcomes)

        async def ok() -> int:
            return 7

        value, shared = await flight.run(b"k", ok)
        assert not shared
        return value

    assert asyncio.run(scenario()) == 7
    assert calls == 1
