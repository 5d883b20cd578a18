"""Cache-through prediction: cache lookup, single-flight, one model call for the misses.

This module knows the cache and the model interfaces, not HTTP.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import numpy as np

from services.router import metrics
from services.router.cache import PredictionCache, SingleFlight
from services.router.models import ServedModel

Result = tuple[float, str]


@dataclass(slots=True)
class BatchResult:
    """Scores of a batch in input order, which rows came from the cache, the model version."""

    scores: list[float]
    cached: list[bool]
    version: str


class Predictor:
    """Scores rows with a model, through the cache, computing each distinct miss once."""

    def __init__(self, cache: PredictionCache, max_background_writes: int = 32):
        self.cache = cache
        self.flight: SingleFlight[Result] = SingleFlight()
        self._hits = metrics.CACHE_HITS.labels(cache.backend)
        self._misses = metrics.CACHE_MISSES.labels(cache.backend)
        self._writes: set[asyncio.Task[None]] = set()
        self._max_writes = max_background_writes

    async def _store_batch(self, items: list[tuple[bytes, float]]) -> None:
        """Store a batch's fresh scores after answering (the cache never fails a request).

        A near cache, if any, is filled before this returns, so this process never recomputes
        them; only other replicas may miss during the Redis write. Beyond
        ``max_background_writes`` pending writes the caller waits (back-pressure).
        """
        write = self.cache.set_many(items)
        if len(self._writes) >= self._max_writes:
            await write
            return
        task = asyncio.ensure_future(write)
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def drain(self) -> None:
        """Wait for pending background cache writes (at shutdown)."""
        if self._writes:
            await asyncio.gather(*self._writes, return_exceptions=True)

    async def predict_one(self, model: ServedModel, row: list[float]) -> tuple[float, str, bool]:
        """(score, model_version, cached) for one model-input row."""
        keys = await model.ensure_ready()
        key = keys.key(row)
        flight = self.flight
        waiter = flight.waiter(key)
        if waiter is None:
            hit = await self.cache.get(key)
            if hit is None:
                # While we asked the cache, another request may have computed it (and stored
                # it locally) or started computing it.
                hit = self.cache.peek(key)
            if hit is not None:
                self._hits.inc()
                return hit, keys.version, True
            waiter = flight.waiter(key)
        if waiter is not None:
            score, version = await asyncio.shield(waiter)
            return score, version, False
        self._misses.inc()
        flight.claim(key)
        try:
            scores, version = await model.predict(np.array((row,), dtype=np.float64))
        except BaseException as e:
            flight.reject(key, e)
            raise
        score = float(scores[0])
        flight.resolve(key, (score, version))
        if version != keys.version and model.keys is not None and model.keys.version == version:
            key = model.keys.key(row)  # the model reported a new version: store under its keys
        elif version != keys.version:
            return score, version, False
        await self.cache.set_many(((key, score),))
        return score, version, False

    async def predict_many(self, model: ServedModel, matrix: np.ndarray) -> BatchResult:
        """Scores for every row of ``matrix``; one model call for all distinct misses."""
        keymaker = await model.ensure_ready()
        version = keymaker.version
        keys = keymaker.keys(matrix)
        n = len(keys)
        # Distinct keys, in first-seen order; duplicates in one batch are looked up once.
        position: dict[bytes, int] = {}
        for i, key in enumerate(keys):
            position.setdefault(key, i)
        unique = list(position)
        values = await self.cache.get_many(unique)
        known: dict[bytes, float] = {}
        from_cache: set[bytes] = set()
        pending: list[tuple[bytes, asyncio.Future[Result]]] = []
        compute: list[bytes] = []
        flight = self.flight
        peek = self.cache.peek
        for key, value in zip(unique, values, strict=True):
            if value is None:
                value = peek(key)  # computed by a concurrent request while we waited
            if value is not None:
                known[key] = value
                from_cache.add(key)
                continue
            waiter = flight.waiter(key)
            if waiter is not None:
                pending.append((key, waiter))
            else:
                compute.append(key)
        self._hits.inc(len(from_cache))
        self._misses.inc(len(unique) - len(from_cache))
        if compute:
            for key in compute:
                flight.claim(key)
            idx = [position[k] for k in compute]
            try:
                scores, version = await model.predict(matrix[idx])
            except BaseException as e:
                for key in compute:
                    flight.reject(key, e)
                raise
            fresh = scores.tolist()
            for key, score in zip(compute, fresh, strict=True):
                known[key] = score
                flight.resolve(key, (score, version))
            if version == keymaker.version:
                await self._store_batch(list(zip(compute, fresh, strict=True)))
            elif model.keys is not None and model.keys.version == version:
                new_keys = model.keys.keys(matrix[idx])
                await self._store_batch(list(zip(new_keys, fresh, strict=True)))
        for key, waiter in pending:
            known[key] = (await asyncio.shield(waiter))[0]
        return BatchResult(
            scores=[known[k] for k in keys],
            cached=[k in from_cache for k in keys] if from_cache else [False] * n,
            version=version,
        )
