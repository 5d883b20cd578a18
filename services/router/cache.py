"""The prediction cache: key derivation, one interface, an in-memory and a Redis backend.

A key is a BLAKE2b digest of the model name, the model version and the model-input row
packed as float64s, so a hot swap or a new model version can never serve a stale score.
Values are the score packed as one float64.

Neither backend ever fails a request: an error or a timeout is counted, logged (at most
once per ``RateLimitedLog.interval`` seconds) and answered as "not cached". After a Redis error the
cache is bypassed for a short back-off, then retried, so Redis coming back is picked up
without a restart.
"""

from __future__ import annotations

import asyncio
import logging
import struct
import time
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from hashlib import blake2b
from typing import Any, Generic, TypeVar
from urllib.parse import urlsplit

import numpy as np

from services.router import metrics
from winemeup.schema import SCHEMA

logger = logging.getLogger(__name__)

KEY_PREFIX = b"wmu:p1:"
_SCORE = struct.Struct("<d")
_DIGEST_BYTES = 16
KEY_BYTES = len(KEY_PREFIX) + _DIGEST_BYTES
"""Every cache key has this length (the batch store relies on it)."""
BULK_MIN_KEYS = 64
"""Lookups of more keys than this use the bulk connections."""
BULK_TIMEOUT_FACTOR = 10.0
"""Bulk commands may take this many times ``redis_timeout_seconds``."""
_ROW = struct.Struct(f"<{len(SCHEMA)}d")


class KeyMaker:
    """Cache keys for one (model, version): a pre-seeded hash, copied per row."""

    __slots__ = ("_seed", "model", "version")

    def __init__(self, model: str, version: str):
        self.model = model
        self.version = version
        self._seed = blake2b(digest_size=_DIGEST_BYTES, person=b"winemeup-pred")
        # Length-prefix both names so ("ab", "c") and ("a", "bc") can never collide.
        for part in (model.encode(), version.encode()):
            self._seed.update(struct.pack("<I", len(part)))
            self._seed.update(part)

    def key(self, row: Sequence[float]) -> bytes:
        """The key of one model-input row."""
        h = self._seed.copy()
        h.update(_ROW.pack(*row))
        return KEY_PREFIX + h.digest()

    def keys(self, matrix: np.ndarray) -> list[bytes]:
        """The keys of every row of an (n, 12) float64 matrix."""
        data = np.ascontiguousarray(matrix, dtype="<f8")
        view = memoryview(data.tobytes())
        width = data.shape[1] * 8
        seed = self._seed
        out = []
        for start in range(0, len(view), width):
            h = seed.copy()
            h.update(view[start : start + width])
            out.append(KEY_PREFIX + h.digest())
        return out


def pack_score(score: float) -> bytes:
    """A score as the bytes the cache stores."""
    return _SCORE.pack(score)


def unpack_score(value: bytes | str | None) -> float | None:
    """A cached score, or None for a miss or a value this version did not write."""
    if not isinstance(value, bytes) or len(value) != 8:
        return None
    return float(_SCORE.unpack(value)[0])


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

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""


async def _done() -> None:
    """An awaitable that completes at once."""


class MemoryLRU:
    """A bounded LRU map with a per-entry TTL; pure, no I/O (``clock`` is injectable)."""

    def __init__(self, max_entries: int, ttl_seconds: float, clock: Callable[[], float] = time.monotonic):
        if max_entries <= 0:
            raise ValueError("max_entries must be positive")
        self.max_entries = max_entries
        self.ttl = ttl_seconds
        self.clock = clock
        self._data: OrderedDict[bytes, tuple[float, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._data)

    def get(self, key: bytes) -> float | None:
        """The live value of ``key`` (refreshing its recency), or None."""
        entry = self._data.get(key)
        if entry is None:
            return None
        expires, value = entry
        if expires <= self.clock():
            del self._data[key]
            return None
        self._data.move_to_end(key)
        return value

    def set(self, key: bytes, value: float) -> None:
        """Store ``value`` for ``ttl`` seconds, evicting the least recently used beyond capacity."""
        data = self._data
        data[key] = (self.clock() + self.ttl, value)
        data.move_to_end(key)
        while len(data) > self.max_entries:
            data.popitem(last=False)


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


class RateLimitedLog:
    """Logs a warning at most once per ``interval`` seconds, counting what it swallowed."""

    def __init__(self, log: logging.Logger, interval: float = 10.0):
        self.log = log
        self.interval = interval
        self._next = 0.0
        self._suppressed = 0

    def warning(self, message: str, *args: Any) -> None:
        now = time.monotonic()
        if now < self._next:
            self._suppressed += 1
            return
        if self._suppressed:
            message += f" ({self._suppressed} similar messages suppressed)"
        self._suppressed = 0
        self._next = now + self.interval
        self.log.warning(message, *args)


# Keys and scores travel as two packed blobs (fixed widths): three arguments instead of
# 2n+1 saves redis-py about 2 µs of packing per row. The keys are not declared in KEYS, so
# this assumes one Redis instance (as the chart deploys), not Redis Cluster.
_SET_BATCH_LUA = """
local ttl = tonumber(ARGV[1])
local keys, scores = ARGV[2], ARGV[3]
local kw, sw = tonumber(ARGV[4]), 8
local n = #scores / sw
for i = 0, n - 1 do
  redis.call('SET', string.sub(keys, i * kw + 1, (i + 1) * kw), string.sub(scores, i * sw + 1, (i + 1) * sw),
             'EX', ttl)
end
return n
"""


class RedisCache(PredictionCache):
    """Redis backend: GET/MGET for lookups, SET EX (one Lua call for a batch), per-command timeouts."""

    backend = "redis"

    def __init__(
        self,
        url: str,
        ttl_seconds: int,
        timeout_seconds: float,
        backoff_seconds: float = 0.5,
        max_connections: int = 256,
        password: str | None = None,
        tls_ca_file: str | None = None,
    ):
        import redis.asyncio as redis

        self.ttl = int(ttl_seconds)
        self.backoff = backoff_seconds
        tls = url.startswith("rediss://")
        # A password in the URL wins (redis-py's from_url); otherwise the separate one is sent
        # with AUTH. A TLS handshake to a managed Redis takes a few round trips: give the
        # connect a floor of 0.5 s there (commands keep their own deadline).
        options: dict[str, Any] = {"password": password} if password else {}
        connect_timeout = max(timeout_seconds, 0.5) if tls else timeout_seconds
        if tls and tls_ca_file:
            options["ssl_ca_certs"] = tls_ca_file
        # A plain pool: the blocking pool's condition variable and timeout context cost about
        # 70 µs per command. Running out of connections is a cache error like any other.
        pool = redis.ConnectionPool.from_url(
            url,
            max_connections=max_connections,
            socket_timeout=timeout_seconds,
            socket_connect_timeout=connect_timeout,
            health_check_interval=0,
            **options,
        )
        self.client = redis.Redis(connection_pool=pool, retry_on_timeout=False)
        # Batch commands (MGET of thousands of keys, the batch store) get their own pool with
        # a longer read deadline, so one large batch cannot trip the back-off for everyone.
        bulk_pool = redis.ConnectionPool.from_url(
            url,
            max_connections=max_connections,
            socket_timeout=timeout_seconds * BULK_TIMEOUT_FACTOR,
            socket_connect_timeout=connect_timeout,
            health_check_interval=0,
            **options,
        )
        self.bulk = redis.Redis(connection_pool=bulk_pool, retry_on_timeout=False)
        # One EVALSHA stores a whole batch with its TTL: a pipeline of N SETs costs N command
        # packings and N reply parses in Python, about 40 µs per row.
        self._set_batch = self.bulk.register_script(_SET_BATCH_LUA)
        self._bypass_until = 0.0
        self._log = RateLimitedLog(logger)
        # The shared default-model record is read every second: its failures get their own
        # limit, so they never hide the cache's own error line.
        self._shared_log = RateLimitedLog(logger)
        self._auth_error: type[BaseException] = redis.AuthenticationError
        self._errors = metrics.CACHE_ERRORS.labels(self.backend)
        where = urlsplit(url)
        logger.info(
            "prediction cache: Redis at %s:%s db %s (TLS %s, password %s)",
            where.hostname,
            where.port or 6379,
            where.path.lstrip("/") or "0",
            "on" if tls else "off",
            "set" if (password or where.password) else "none",
        )

    def _failed(self, op: str, error: BaseException) -> None:
        self._errors.inc()
        self._bypass_until = time.monotonic() + self.backoff
        # The URL may carry a password: name the error type and message only.
        hint = (
            " (check the Redis password: redis_password or the URL)"
            if isinstance(error, self._auth_error)
            else ""
        )
        self._log.warning(
            "redis cache %s failed (%s: %s)%s; serving without the cache, retrying in %.1fs",
            op,
            type(error).__name__,
            error,
            hint,
            self.backoff,
        )

    @property
    def bypassed(self) -> bool:
        """True during the back-off after an error."""
        return time.monotonic() < self._bypass_until

    async def get_many(self, keys: Sequence[bytes]) -> list[float | None]:
        if self.bypassed:
            return [None] * len(keys)
        try:
            values = await (self.bulk if len(keys) > BULK_MIN_KEYS else self.client).mget(keys)
        except Exception as e:
            self._failed("get", e)
            return [None] * len(keys)
        return [unpack_score(v) for v in values]

    async def get(self, key: bytes) -> float | None:
        if self.bypassed:
            return None
        try:
            value = await self.client.get(key)
        except Exception as e:
            self._failed("get", e)
            return None
        return unpack_score(value)

    def set_many(self, items: Sequence[tuple[bytes, float]]) -> Awaitable[None]:
        return self._set_many(items)

    async def _set_many(self, items: Sequence[tuple[bytes, float]]) -> None:
        if not items or self.bypassed:
            return
        try:
            if len(items) == 1:
                key, value = items[0]
                await self.client.set(key, pack_score(value), ex=self.ttl)
                return
            keys = b"".join([key for key, _ in items])
            scores = np.fromiter((value for _, value in items), dtype="<f8", count=len(items)).tobytes()
            # An OOM (or any) error answer to the script counts as a cache error.
            await self._set_batch(args=[self.ttl, keys, scores, KEY_BYTES])
        except Exception as e:
            self._failed("set", e)

    async def get_text(self, key: str) -> str | None:
        """A small shared value (e.g. the default model); None when absent or Redis fails."""
        try:
            value = await self.client.get(key)
        except Exception as e:
            self._shared_log.warning("redis get %s failed (%s: %s)", key, type(e).__name__, e)
            return None
        return value.decode() if isinstance(value, bytes) else value

    async def set_text(self, key: str, value: str) -> bool:
        """Store a small shared value without expiry; False when Redis fails."""
        try:
            await self.client.set(key, value)
        except Exception as e:
            self._shared_log.warning("redis set %s failed (%s: %s)", key, type(e).__name__, e)
            return False
        return True

    async def ping(self) -> bool:
        """True when Redis answers now (for /readyz detail; never raises)."""
        try:
            return bool(await self.client.ping())
        except Exception:
            return False

    async def close(self) -> None:
        try:
            await self.client.aclose()
            await self.bulk.aclose()
        except Exception as e:  # closing a broken connection must not fail shutdown
            logger.debug("closing redis: %s", e)


class TieredCache(PredictionCache):
    """An in-process LRU in front of Redis.

    Safe without invalidation because a key names one model version and one row, so the
    score stored under it never changes; the near tier only saves the Redis round trip.
    Replicas still share misses through Redis.
    """

    def __init__(self, near: MemoryLRU, far: RedisCache):
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

    async def close(self) -> None:
        await self.far.close()


T = TypeVar("T")


class SingleFlight(Generic[T]):
    """Concurrent computations of the same key share one call.

    ``run(key, compute)`` does it all. A caller driving the steps itself asks
    ``waiter(key)`` for the computation already in flight; when there is none it ``claim``s
    the key, computes, then ``resolve``s or ``reject``s it.
    """

    def __init__(self) -> None:
        self._inflight: dict[bytes, asyncio.Future[T]] = {}

    def __len__(self) -> int:
        return len(self._inflight)

    def waiter(self, key: bytes) -> asyncio.Future[T] | None:
        """The in-flight future for ``key``, if any."""
        return self._inflight.get(key)

    def claim(self, key: bytes) -> asyncio.Future[T]:
        """Register the caller as the one computing ``key``."""
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        return future

    def resolve(self, key: bytes, value: T) -> None:
        future = self._inflight.pop(key, None)
        if future is not None and not future.done():
            future.set_result(value)

    def reject(self, key: bytes, error: BaseException) -> None:
        future = self._inflight.pop(key, None)
        if future is not None and not future.done():
            future.set_exception(error)
            # Nobody may be waiting: mark the exception retrieved to avoid loop warnings.
            future.exception()

    async def run(self, key: bytes, compute: Callable[[], Awaitable[T]]) -> tuple[T, bool]:
        """Compute ``key`` once for all concurrent callers; returns (value, shared)."""
        existing = self._inflight.get(key)
        if existing is not None:
            return await asyncio.shield(existing), True
        self.claim(key)
        try:
            value = await compute()
        except BaseException as e:
            self.reject(key, e)
            raise
        self.resolve(key, value)
        return value, False


def make_cache(
    redis_url: str | None,
    ttl_seconds: int,
    max_entries: int,
    timeout_seconds: float,
    backoff_seconds: float = 0.5,
    near_entries: int = 0,
    redis_password: str | None = None,
    redis_tls_ca_file: str | None = None,
) -> PredictionCache:
    """Redis (behind a near LRU of ``near_entries`` unless 0) when a URL is set, else the in-memory LRU."""
    if redis_url:
        far = RedisCache(
            redis_url,
            ttl_seconds,
            timeout_seconds,
            backoff_seconds,
            password=redis_password,
            tls_ca_file=redis_tls_ca_file,
        )
        if near_entries > 0:
            return TieredCache(MemoryLRU(near_entries, ttl_seconds), far)
        return far
    return MemoryCache(max_entries, ttl_seconds)
