"""Cache-through prediction: cache keys, cache lookup, single-flight, one model call for the misses.

The predictor owns the cache keys (a model only reports its version). This module knows the
cache and the model interfaces, not HTTP.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from services.router import metrics
from services.router.cache import PredictionCache
from services.router.cache_keys import KeyMaker
from services.router.models import ServedModel
from services.router.single_flight import SingleFlight

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
        self._keymakers: dict[str, KeyMaker] = {}

    def keys_of(self, model: str, version: str) -> KeyMaker:
        """The key maker of one model version (one seeded hash per model, replaced on a new version)."""
        keys = self._keymakers.get(model)
        if keys is None or keys.version != version:
            keys = self._keymakers[model] = KeyMaker(model, version)
        return keys

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
        version = await model.ensure_ready()
        keys = self._keymakers.get(model.name)
        if keys is None or keys.version != version:
            keys = self.keys_of(model.name, version)
        key = keys.key(row)
        hit = await self.cache.get(key)
        if hit is None:
            # While we asked the cache, another request may have computed and stored it here.
            hit = self.cache.peek(key)
        if hit is not None:
            self._hits.inc()
            return hit, version, True

        async def compute() -> Result:
            scores, served = await model.predict(np.array((row,), dtype=np.float64))
            return float(scores[0]), served

        (score, served), shared = await self.flight.run(key, compute)
        if not shared:
            self._misses.inc()
            if served != version:  # the model reported a new version: store under its keys
                key = self.keys_of(model.name, served).key(row)
            # After answering, like a batch's scores: the near tier is filled before this returns.
            await self._store_batch([(key, score)])
        return score, served, False

    async def predict_many(self, model: ServedModel, matrix: np.ndarray) -> BatchResult:
        """Scores for every row of ``matrix``; one model call for all distinct misses."""
        version = await model.ensure_ready()
        keys = self.keys_of(model.name, version).keys(matrix)
        # Distinct keys, in first-seen order; duplicates in one batch are looked up once.
        position: dict[bytes, int] = {}
        for i, key in enumerate(keys):
            position.setdefault(key, i)
        unique = list(position)
        values = await self.cache.get_many(unique)
        peek = self.cache.peek
        known: dict[bytes, float] = {}
        missing: list[bytes] = []
        for key, value in zip(unique, values, strict=True):
            if value is None:
                value = peek(key)  # computed by a concurrent request while we waited
            if value is None:
                missing.append(key)
            else:
                known[key] = value
        self._hits.inc(len(known))
        self._misses.inc(len(missing))
        if not missing:
            return BatchResult([known[k] for k in keys], [True] * len(keys), version)
        served, fresh = await self._compute_missing(model, version, matrix, missing, position)
        cached = [k in known for k in keys] if known else [False] * len(keys)
        known.update(fresh)
        return BatchResult([known[k] for k in keys], cached, served)

    async def _compute_missing(
        self,
        model: ServedModel,
        version: str,
        matrix: np.ndarray,
        missing: list[bytes],
        position: dict[bytes, int],
    ) -> tuple[str, dict[bytes, float]]:
        """(version, score by key) of the misses: one model call for those nobody else computes."""

        async def compute(indices: list[int]) -> Sequence[Result]:
            rows = matrix[[position[missing[i]] for i in indices]]
            scores, served = await model.predict(rows)
            return [(score, served) for score in scores.tolist()]

        results, mine = await self.flight.run_many(missing, compute)
        fresh = {key: score for key, (score, _) in zip(missing, results, strict=True)}
        served = results[mine[0] if mine else 0][1]
        if mine:
            if served == version:
                store = [missing[i] for i in mine]
            else:  # the model reported a new version: store under its keys
                store = self.keys_of(model.name, served).keys(matrix[[position[missing[i]] for i in mine]])
            await self._store_batch([(k, fresh[missing[i]]) for k, i in zip(store, mine, strict=True)])
        return served, fresh
