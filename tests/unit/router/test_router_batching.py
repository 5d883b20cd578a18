"""Micro-batching of runner calls and cache-through prediction (no network: in-process models)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Sequence

import numpy as np
import pytest

from services.router.cache import MemoryCache, PredictionCache
from services.router.lru import MemoryLRU
from services.router.models import READY, ServedModel
from services.router.predictor import Predictor
from services.router.runners import MicroBatcher
from winemeup.errors import ModelUnavailable


class SumModel(ServedModel):
    """Scores a row by the sum of its values; counts calls and rows; can be made to fail."""

    placement = "inline"

    def __init__(self, version: str = "v1", delay: float = 0.0):
        super().__init__("lightgbm")
        self._set_identity(version, "test", {}, {})
        self.status = READY
        self.calls: list[int] = []
        self.delay = delay
        self.fail = False

    async def ensure_ready(self) -> str:
        assert self.version is not None
        return self.version

    async def predict(self, matrix: np.ndarray) -> tuple[np.ndarray, str]:
        self.calls.append(matrix.shape[0])
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.fail:
            raise ModelUnavailable(self.name, "down")
        assert self.version is not None
        return matrix.sum(axis=1), self.version


def rows(n: int, offset: float = 0.0) -> np.ndarray:
    return np.arange(n * 12, dtype=np.float64).reshape(n, 12) + offset


def test_concurrent_submits_become_one_call() -> None:
    calls: list[int] = []

    async def call(matrix: np.ndarray) -> tuple[np.ndarray, str]:
        calls.append(matrix.shape[0])
        await asyncio.sleep(0.01)
        return matrix[:, 0].copy(), "v"

    async def scenario() -> list[float]:
        batcher = MicroBatcher(call, max_rows=100, max_inflight=1)
        results = await asyncio.gather(*(batcher.submit(rows(1, i)) for i in range(20)))
        return [float(scores[0]) for scores, _ in results]

    assert asyncio.run(scenario()) == [float(i) for i in range(20)]
    assert calls == [20]


def test_queued_rows_are_split_at_max_rows_and_results_match() -> None:
    calls: list[int] = []

    async def call(matrix: np.ndarray) -> tuple[np.ndarray, str]:
        calls.append(matrix.shape[0])
        await asyncio.sleep(0.005)
        return matrix[:, 0].copy(), "v"

    async def scenario() -> None:
        batcher = MicroBatcher(call, max_rows=8, max_inflight=1)
        subs = [rows(3, 1000 * i) for i in range(6)]
        results = await asyncio.gather(*(batcher.submit(m) for m in subs))
        for m, (scores, _) in zip(subs, results, strict=True):
            assert scores.tolist() == m[:, 0].tolist()

    asyncio.run(scenario())
    assert sum(calls) == 18
    assert max(calls) <= 8
    assert len(calls) < 6  # some calls carried several submissions


def test_a_failed_call_fails_every_caller_in_it() -> None:
    async def call(matrix: np.ndarray) -> tuple[np.ndarray, str]:
        raise ModelUnavailable("svr", "connection refused")

    async def scenario() -> list[object]:
        batcher = MicroBatcher(call, max_rows=100)
        return await asyncio.gather(*(batcher.submit(rows(1)) for _ in range(5)), return_exceptions=True)

    assert all(isinstance(r, ModelUnavailable) for r in asyncio.run(scenario()))


def test_predict_one_miss_then_hit() -> None:
    async def scenario() -> None:
        model = SumModel()
        predictor = Predictor(MemoryCache(100, 60))
        row = rows(1)[0].tolist()
        assert await predictor.predict_one(model, row) == (sum(row), "v1", False)
        assert await predictor.predict_one(model, row) == (sum(row), "v1", True)
        assert model.calls == [1]

    asyncio.run(scenario())


def test_concurrent_identical_misses_call_the_model_once() -> None:
    async def scenario() -> None:
        model = SumModel(delay=0.02)
        predictor = Predictor(MemoryCache(100, 60))
        row = rows(1)[0].tolist()
        results = await asyncio.gather(*(predictor.predict_one(model, row) for _ in range(25)))
        assert {r[0] for r in results} == {sum(row)}
        assert model.calls == [1]

    asyncio.run(scenario())


def test_new_version_never_serves_the_old_score() -> None:
    async def scenario() -> None:
        cache = MemoryCache(100, 60)
        predictor = Predictor(cache)
        row = rows(1)[0].tolist()
        old = SumModel("v1")
        await predictor.predict_one(old, row)
        new = SumModel("v2")
        _score, version, cached = await predictor.predict_one(new, row)
        assert (version, cached) == ("v2", False)
        assert new.calls == [1]

    asyncio.run(scenario())


def test_batch_one_call_for_distinct_misses_in_input_order() -> None:
    async def scenario() -> None:
        model = SumModel()
        predictor = Predictor(MemoryCache(1000, 60))
        matrix = rows(5)
        first = await predictor.predict_one(model, matrix[2].tolist())
        batch = np.concatenate([matrix, matrix[:2]])  # rows 0 and 1 appear twice
        result = await predictor.predict_many(model, batch)
        assert result.scores == batch.sum(axis=1).tolist()
        assert result.cached == [False, False, True, False, False, False, False]
        assert first[0] == result.scores[2]
        assert model.calls == [1, 4]  # one call for the single row, one for 4 distinct misses
        again = await predictor.predict_many(model, batch)
        assert again.cached == [True] * 7
        assert model.calls == [1, 4]

    asyncio.run(scenario())


def test_a_failed_model_call_is_not_cached_and_is_retried() -> None:
    async def scenario() -> None:
        model = SumModel()
        model.fail = True
        predictor = Predictor(MemoryCache(100, 60))
        row = rows(1)[0].tolist()
        with pytest.raises(ModelUnavailable):
            await predictor.predict_one(model, row)
        with pytest.raises(ModelUnavailable):
            await predictor.predict_many(model, rows(3))
        model.fail = False
        assert (await predictor.predict_one(model, row))[2] is False
        assert len(predictor.flight) == 0

    asyncio.run(scenario())


class SlowRemoteCache(PredictionCache):
    """A local tier plus a 'remote' tier that answers after a delay and never holds anything yet
    (like Redis before a concurrent request's SET has landed)."""

    backend = "memory"

    def __init__(self) -> None:
        self.local = MemoryLRU(100, 60)

    async def get_many(self, keys: Sequence[bytes]) -> list[float | None]:
        await asyncio.sleep(0.01)
        return [None] * len(keys)

    def peek(self, key: bytes) -> float | None:
        return self.local.get(key)

    def set_many(self, items: Sequence[tuple[bytes, float]]) -> Awaitable[None]:
        for key, value in items:
            self.local.set(key, value)
        return asyncio.sleep(0.01)


@pytest.mark.parametrize("batch", [False, True])
def test_miss_computed_while_waiting_on_the_remote_cache_is_not_recomputed(batch: bool) -> None:
    async def scenario() -> None:
        model = SumModel()  # answers synchronously: done before the other request's lookup returns
        predictor = Predictor(SlowRemoteCache())
        row = rows(1)[0].tolist()
        if batch:
            batches = await asyncio.gather(*(predictor.predict_many(model, rows(1)) for _ in range(2)))
            assert [b.scores for b in batches] == [[sum(row)]] * 2
        else:
            singles = await asyncio.gather(*(predictor.predict_one(model, row) for _ in range(2)))
            assert {s[0] for s in singles} == {sum(row)}
        assert model.calls == [1]

    asyncio.run(scenario())
