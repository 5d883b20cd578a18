"""Explanations through the router: the model's per-feature contributions, cache-through.

An explanation (base, score and 12 contributions, plus the method's name) depends only on
the model version and the row, like a score, so it is cached the same way under its own key
namespace (``wmu:e1:``): an in-process LRU, and Redis behind it when the router has one, so
replicas share them. Misses of a batch are explained with one model call: in a worker thread
for an inline model (TreeSHAP costs milliseconds a row, the forests and the SVR a tenth of a
second), ``POST /explain`` for a runner-placed one.

Knows models, cache keys and errors; not HTTP routes.
"""

from __future__ import annotations

import logging
import struct
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from services.router import metrics
from services.router.cache_keys import KEY_PREFIX, KeyMaker
from services.router.lru import MemoryLRU
from services.router.models import ServedModel
from services.router.rate_limited_log import RateLimitedLog
from winemeup.runtimes import Explanation
from winemeup.schema import SCHEMA

logger = logging.getLogger(__name__)

EXPLAIN_PREFIX = b"wmu:e1:"
"""Key namespace of explanations (scores use ``wmu:p1:``)."""
_WIDTH = len(SCHEMA)
_NUMBERS = struct.Struct(f"<{_WIDTH + 2}d")  # base, score, contributions


def explanation_keys(keys: KeyMaker, matrix: np.ndarray) -> list[bytes]:
    """The explanation keys of an (n, 12) matrix: the score keys' digests in their own namespace."""
    cut = len(KEY_PREFIX)
    return [EXPLAIN_PREFIX + key[cut:] for key in keys.keys(matrix)]


def pack_explanation(method: str, base: float, score: float, contributions: Sequence[float]) -> bytes:
    """One row's explanation as the cache stores it: 14 float64s, then the method's name."""
    return _NUMBERS.pack(base, score, *contributions) + method.encode()


def unpack_explanation(value: Any) -> tuple[str, float, float, tuple[float, ...]] | None:
    """(method, base, score, contributions) of a cached value; None for a miss or a foreign value."""
    if not isinstance(value, bytes) or len(value) <= _NUMBERS.size:
        return None
    numbers = _NUMBERS.unpack_from(value)
    return value[_NUMBERS.size :].decode(errors="replace"), numbers[0], numbers[1], numbers[2:]


class ExplanationCache:
    """Explanations by key: an in-process LRU, with Redis behind it when configured. Never raises."""

    def __init__(
        self,
        near_entries: int,
        ttl_seconds: int,
        redis: Any = None,
        backoff_seconds: float = 0.5,
    ):
        self.near: Any = MemoryLRU(near_entries, ttl_seconds)  # holds bytes, not scores
        self.redis = redis
        self.ttl = ttl_seconds
        self.backoff = backoff_seconds
        self.backend = "redis" if redis is not None else "memory"
        self._bypass_until = 0.0
        self._log = RateLimitedLog(logger)

    def _failed(self, op: str, error: BaseException) -> None:
        metrics.CACHE_ERRORS.labels(self.backend).inc()
        self._bypass_until = time.monotonic() + self.backoff
        self._log.warning("redis explanation cache %s failed (%s: %s)", op, type(error).__name__, error)

    async def get_many(self, keys: Sequence[bytes]) -> list[bytes | None]:
        """The cached value of each key, None where there is none."""
        values: list[bytes | None] = [self.near.get(k) for k in keys]
        missing = [i for i, v in enumerate(values) if v is None]
        if missing and self.redis is not None and time.monotonic() >= self._bypass_until:
            try:
                far = await self.redis.mget([keys[i] for i in missing])
            except Exception as e:
                self._failed("get", e)
                return values
            for i, value in zip(missing, far, strict=True):
                if value is not None:
                    values[i] = value
                    self.near.set(keys[i], value)
        return values

    async def set_many(self, items: Sequence[tuple[bytes, bytes]]) -> None:
        """Store values in the LRU, then (one pipeline) in Redis."""
        for key, value in items:
            self.near.set(key, value)
        if not items or self.redis is None or time.monotonic() < self._bypass_until:
            return
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for key, value in items:
                    pipe.set(key, value, ex=self.ttl)
                await pipe.execute()
        except Exception as e:
            self._failed("set", e)

    async def close(self) -> None:
        if self.redis is not None:
            try:
                await self.redis.aclose()
            except Exception as e:  # closing a broken connection must not fail shutdown
                logger.debug("closing redis: %s", e)


@dataclass(slots=True)
class ExplainedRows:
    """Explanations of a batch in input order, whether each came from the cache, the version."""

    version: str
    method: str
    base: list[float]
    scores: list[float]
    contributions: list[tuple[float, ...]]
    cached: list[bool]


class Explainer:
    """Explains rows with a model through the explanation cache, one model call for the misses."""

    def __init__(self, cache: ExplanationCache, timeout_seconds: float):
        self.cache = cache
        self.timeout = timeout_seconds
        self._keymakers: dict[str, KeyMaker] = {}

    def _keys(self, model: str, version: str, matrix: np.ndarray) -> list[bytes]:
        keys = self._keymakers.get(model)
        if keys is None or keys.version != version:
            keys = self._keymakers[model] = KeyMaker(model, version)
        return explanation_keys(keys, matrix)

    async def explain(self, model: ServedModel, matrix: np.ndarray) -> ExplainedRows:
        """Explanations of every row of ``matrix``; each distinct miss computed once."""
        version = await model.ensure_ready()
        keys = self._keys(model.name, version, matrix)
        position: dict[bytes, int] = {}
        for i, key in enumerate(keys):
            position.setdefault(key, i)
        unique = list(position)
        found: dict[bytes, tuple[str, float, float, tuple[float, ...]]] = {}
        for key, value in zip(unique, await self.cache.get_many(unique), strict=True):
            parsed = unpack_explanation(value)
            if parsed is not None:
                found[key] = parsed
        missing = [k for k in unique if k not in found]
        metrics.EXPLAIN_CACHE.labels("hit").inc(len(found))
        metrics.EXPLAIN_CACHE.labels("miss").inc(len(missing))
        cached = [k in found for k in keys]
        if missing:
            started = time.perf_counter()
            served, explanation = await self._compute(model, matrix[[position[k] for k in missing]])
            metrics.EXPLAIN_SECONDS.labels(model.name).observe(time.perf_counter() - started)
            store_keys = (
                missing
                if served == version
                else self._keys(model.name, served, matrix[[position[k] for k in missing]])
            )
            fresh = []
            for i, (key, store_key) in enumerate(zip(missing, store_keys, strict=True)):
                item = (
                    explanation.method,
                    float(explanation.base[i]),
                    float(explanation.scores[i]),
                    tuple(explanation.contributions[i].tolist()),
                )
                found[key] = item
                fresh.append((store_key, pack_explanation(*item)))
            await self.cache.set_many(fresh)
            version = served
        rows = [found[k] for k in keys]
        return ExplainedRows(
            version,
            rows[0][0],
            [r[1] for r in rows],
            [r[2] for r in rows],
            [r[3] for r in rows],
            cached,
        )

    async def _compute(self, model: ServedModel, rows: np.ndarray) -> tuple[str, Explanation]:
        """(version, explanation) of rows, from the model in this process or its runner."""
        return await model.explain(rows, self.timeout)
