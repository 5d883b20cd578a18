"""The Redis tier of the prediction cache: shared by every router replica.

Never fails a request: an error or a timeout is counted, logged (at most once per
``RateLimitedLog.interval`` seconds) and answered as "not cached". After an error the cache
is bypassed for a short back-off, then retried, so Redis coming back is picked up without a
restart.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Awaitable, Sequence

import numpy as np

from services.router import metrics
from services.router.cache import PredictionCache
from services.router.cache_keys import KEY_BYTES, pack_score, unpack_score
from services.router.rate_limited_log import RateLimitedLog
from services.router.redis_connection import describe_redis, redis_client
from services.router.resp import AuthenticationError, RespClient, ResponseError

logger = logging.getLogger(__name__)

BULK_MIN_KEYS = 64
"""Lookups of more keys than this use the bulk connections."""
BULK_TIMEOUT_FACTOR = 10.0
"""Bulk commands may take this many times ``redis_timeout_seconds``."""

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
_SET_BATCH_SHA = hashlib.sha1(_SET_BATCH_LUA.encode()).hexdigest()


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class RedisCache(PredictionCache):
    """Redis backend: GET/MGET for lookups, SET EX (one Lua call for a batch), per-command timeouts.

    Lookups and writes of up to ``BULK_MIN_KEYS`` keys go through one pipelined connection
    (:class:`RespClient`): profiled under 4 concurrent misses, redis-py's asyncio client
    (packing, the pool, the retry wrapper, stream readers) cost about a quarter of the
    router's CPU per miss. Larger batches stay on redis-py's pool.
    """

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
        import redis

        self.ttl = int(ttl_seconds)
        self._ttl_arg = b"%d" % self.ttl
        self.backoff = backoff_seconds
        self.timeout = timeout_seconds
        self.resp = RespClient(url, timeout_seconds, password=password, tls_ca_file=tls_ca_file)
        # Batch commands (MGET of thousands of keys, the batch store) get their own pool with
        # a longer read deadline, so one large batch cannot trip the back-off for everyone.
        self.bulk = redis_client(
            url,
            timeout_seconds * BULK_TIMEOUT_FACTOR,
            password=password,
            tls_ca_file=tls_ca_file,
            max_connections=max_connections,
            connect_timeout_seconds=timeout_seconds,
        )
        # One EVALSHA stores a whole batch with its TTL: a pipeline of N SETs costs N command
        # packings and N reply parses in Python, about 40 µs per row.
        self._set_batch = self.bulk.register_script(_SET_BATCH_LUA)
        self._bypass_until = 0.0
        self._get_queue: list[tuple[bytes, asyncio.Future[float | None]]] = []
        self._set_queue: list[tuple[bytes, float]] = []
        self._set_done: asyncio.Future[None] | None = None
        self._tasks: set[asyncio.Future[None]] = set()
        self._log = RateLimitedLog(logger)
        self._auth_error = (redis.AuthenticationError, AuthenticationError)
        self._errors = metrics.CACHE_ERRORS.labels(self.backend)
        logger.info("prediction cache: Redis at %s", describe_redis(url, password))

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
            if len(keys) > BULK_MIN_KEYS:
                values = await self.bulk.mget(keys)
            else:
                values = await self.resp.mget(list(keys)) if keys else []
        except Exception as e:
            self._failed("get", e)
            return [None] * len(keys)
        return [unpack_score(v) for v in values]

    async def get(self, key: bytes) -> float | None:
        """One key's score. Lookups made in the same event-loop turn go out as one MGET."""
        if self.bypassed:
            return None
        loop = asyncio.get_running_loop()
        if not self._get_queue:
            loop.call_soon(self._flush_gets)
        future: asyncio.Future[float | None] = loop.create_future()
        self._get_queue.append((key, future))
        return await future

    def _flush_gets(self) -> None:
        queued, self._get_queue = self._get_queue, []
        task = asyncio.ensure_future(self._answer_gets(queued))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _answer_gets(self, queued: list[tuple[bytes, asyncio.Future[float | None]]]) -> None:
        keys = [key for key, _ in queued]
        values: list[bytes | None]
        try:
            values = [await self.resp.get(keys[0])] if len(keys) == 1 else await self.resp.mget(keys)
        except Exception as e:
            self._failed("get", e)
            values = [None] * len(keys)
        for (_, future), value in zip(queued, values, strict=True):
            if not future.done():
                future.set_result(unpack_score(value))

    def set_many(self, items: Sequence[tuple[bytes, float]]) -> Awaitable[None]:
        """Store scores; single-score writes made in the same event-loop turn go out as one call.

        Profiled under 4 concurrent misses, redis-py's per-command cost (packing, the pool, the
        retry wrapper, one write and one read each) was a quarter of the router's CPU time.
        """
        if len(items) != 1 or self.bypassed:
            return self._set_many(items)
        loop = asyncio.get_running_loop()
        if self._set_done is None:
            self._set_done = loop.create_future()
            loop.call_soon(self._flush_sets)
        self._set_queue.append(items[0])
        return self._set_done

    def _flush_sets(self) -> None:
        queued, self._set_queue = self._set_queue, []
        done, self._set_done = self._set_done, None
        task = asyncio.ensure_future(self._set_many(queued))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        if done is not None:
            task.add_done_callback(lambda _: _resolve(done))

    async def _set_many(self, items: Sequence[tuple[bytes, float]]) -> None:
        if not items or self.bypassed:
            return
        try:
            if len(items) == 1:
                key, value = items[0]
                await self.resp.set(key, pack_score(value), ex=self.ttl)
                return
            keys = b"".join([key for key, _ in items])
            scores = np.fromiter((value for _, value in items), dtype="<f8", count=len(items)).tobytes()
            # An OOM (or any) error answer to the script counts as a cache error.
            if len(items) > BULK_MIN_KEYS:
                # Off the shared connection: sending a large blob there would hold every
                # lookup queued behind it.
                await self._set_batch(args=[self.ttl, keys, scores, KEY_BYTES])
            else:
                await self._store_batch(keys, scores)
        except Exception as e:
            self._failed("set", e)

    async def _store_batch(self, keys: bytes, scores: bytes) -> None:
        """EVALSHA of the batch script; EVAL (which also caches it in Redis) on NOSCRIPT."""
        args = (self._ttl_arg, keys, scores, b"%d" % KEY_BYTES)
        deadline = self.timeout * BULK_TIMEOUT_FACTOR
        try:
            await self.resp.command("EVALSHA", _SET_BATCH_SHA, 0, *args, timeout=deadline)
        except ResponseError as e:
            if not str(e).startswith("NOSCRIPT"):
                raise
            await self.resp.command("EVAL", _SET_BATCH_LUA, 0, *args, timeout=deadline)

    async def ping(self) -> bool:
        """True when Redis answers now (for /readyz detail; never raises)."""
        try:
            return bool(await self.resp.command("PING") == b"PONG")
        except Exception:
            return False

    async def close(self) -> None:
        try:
            await self.resp.close()
            await self.bulk.aclose()
        except Exception as e:  # closing a broken connection must not fail shutdown
            logger.debug("closing redis: %s", e)
