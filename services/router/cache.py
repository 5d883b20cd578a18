"""The prediction cache: one interface, the in-process cache, and a near tier in front of a far one.

Scores are stored by key (:mod:`~services.router.cache_keys`, owned by the predictor). The
Redis tier is :mod:`~services.router.redis_cache`; the LRU is :mod:`~services.router.lru`.
No backend ever fails a request: failures are counted and read as misses.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Sequence

from services.router.lru import MemoryLRU


class PredictionCache(ABC):
    """Scores by key. Never raises: failures are counted and read as misses."""

    backend: str = "none"

    @abstractmethod
    async def get_many(self, keys: Sequence[bytes]) -> list[float | None]:
        """The cached score of each key, None where there is none (or the cache failed)."""

    @abstractmethod
    def set_many(self, items: Sequence[tuple[bytes, float]]) -> Awaitable[None]:
        """Store scores (with the configured TTL).

        In-process tiers are filled before this returns; the awaitable completes the remote
        write, so a caller may run it in the background without racing its own process.
        """

    async def get(self, key: bytes) -> float | None:
        """The cached score of one key."""
        return (await self.get_many((key,)))[0]

    def peek(self, key: bytes) -> float | None:
        """The score in this process's own tier, without I/O (None when there is no such tier).

        After an awaited miss, a concurrent request may have computed and stored the key in
        the meantime: looking here first keeps concurrent identical misses to one model call.
        """
        return None

    async def ping(self) -> bool | None:
        """Whether a remote tier answers now (None without one); never raises."""
        return None

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""


async def _done() -> None:
    """An awaitable that completes at once."""


class MemoryCache(PredictionCache):
    """The in-process cache used when no Redis URL is configured."""

    backend = "memory"

    def __init__(self, max_entries: int, ttl_seconds: float):
        self.lru = MemoryLRU(max_entries, ttl_seconds)

    async def get_many(self, keys: Sequence[bytes]) -> list[float | None]:
        get = self.lru.get
        return [get(k) for k in keys]

    async def get(self, key: bytes) -> float | None:
        return self.lru.get(key)

    def peek(self, key: bytes) -> float | None:
        return self.lru.get(key)

    def set_many(self, items: Sequence[tuple[bytes, float]]) -> Awaitable[None]:
        put = self.lru.set
        for key, value in items:
            put(key, value)
        return _done()


class TieredCache(PredictionCache):
    """An in-process LRU in front of a shared (far) cache.

    Safe without invalidation because a key names one model version and one row, so the
    score stored under it never changes; the near tier only saves the Redis round trip.
    Replicas still share misses through the far tier.
    """

    def __init__(self, near: MemoryLRU, far: PredictionCache):
        self.near = near
        self.far = far
        self.backend = far.backend

    def peek(self, key: bytes) -> float | None:
        return self.near.get(key)

    async def get(self, key: bytes) -> float | None:
        value = self.near.get(key)
        if value is not None:
            return value
        value = await self.far.get(key)
        if value is not None:
            self.near.set(key, value)
        return value

    async def get_many(self, keys: Sequence[bytes]) -> list[float | None]:
        get = self.near.get
        values = [get(k) for k in keys]
        missing = [i for i, v in enumerate(values) if v is None]
        if missing:
            far = await self.far.get_many([keys[i] for i in missing])
            put = self.near.set
            for i, value in zip(missing, far, strict=True):
                if value is not None:
                    values[i] = value
                    put(keys[i], value)
        return values

    def set_many(self, items: Sequence[tuple[bytes, float]]) -> Awaitable[None]:
        put = self.near.set
        for key, value in items:
            put(key, value)
        return self.far.set_many(items)

    async def ping(self) -> bool | None:
        return await self.far.ping()

    async def close(self) -> None:
        await self.far.close()
