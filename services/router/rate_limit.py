"""Per-key budgets: token buckets of requests and of rows, shared between replicas through Redis.

Each API key has two buckets per key class (``user``, ``admin``, from ``rate_limits``): one of
requests (a request takes one token) and one of rows (the rows a batch scored or explained are
charged after it was served, so the bucket may go into debt, a single row with its request; a
rows route is refused while its key's rows bucket is empty). Both are refilled continuously at
their rate up to their burst.

With Redis, one Lua script reads, refills and takes both buckets atomically, with Redis's clock,
so every replica spends the same budget. A replica takes requests a lease at a time (5 % of the
burst, at least one) and spends the lease locally, so most requests cost no round trip; rows
served meanwhile are charged with the next exchange. A replica never grants what it did not
take, so replicas together never exceed the budget; leases unused for a second are dropped.

When Redis fails, this replica falls back to buckets of its own for ``backoff`` seconds (a
budget per replica then: never a refusal because Redis is away).

Over budget: :class:`~winemeup.errors.TooManyRequests` (429) with ``Retry-After``. Every answer
of a guarded route carries the budget as the IETF draft's structured headers
(draft-ietf-httpapi-ratelimit-headers): ``RateLimit-Policy: "requests";q=<burst>;w=<seconds>``
and ``RateLimit: "requests";r=<remaining>;t=<seconds until full>``.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from dataclasses import dataclass
from typing import Any

from services.router import metrics
from services.router.auth import Role
from services.router.rate_limited_log import RateLimitedLog
from services.router.redis_connection import redis_client
from services.router.request_log import key_id
from services.router.settings import RouterSettings
from winemeup.errors import TooManyRequests

logger = logging.getLogger(__name__)

LEASE_FRACTION = 0.05
"""Share of a key's request burst one replica takes from Redis at a time."""
LEASE_SECONDS = 1.0
"""A lease unused for this long is dropped."""

KEY_PREFIX = "wmu:rl1:"
"""Redis keys of the buckets: this prefix, a digest of the API key, ``:q`` (requests) or ``:r`` (rows)."""

# KEYS: requests bucket, rows bucket. ARGV: request rate, request burst, row rate, row burst,
# requests wanted (at least one is granted, at most this many), rows owed (charged whatever the
# answer), 1 when the rows bucket must not be empty after them. Returns {granted (0: refused),
# requests left, rows left, seconds to wait when refused} as strings.
_SCRIPT = """
local now = redis.call('TIME')
local t = tonumber(now[1]) + tonumber(now[2]) / 1000000
local function level(key, rate, burst)
  local v = redis.call('HMGET', key, 'v', 't')
  local tokens, at = tonumber(v[1]), tonumber(v[2])
  if tokens == nil then return burst end
  return math.min(burst, tokens + math.max(0, t - at) * rate)
end
local qr, qb, rr, rb = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local want, charge, need_rows = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local q = level(KEYS[1], qr, qb)
local r = level(KEYS[2], rr, rb) - charge
redis.call('HSET', KEYS[2], 'v', tostring(r), 't', tostring(t))
redis.call('EXPIRE', KEYS[2], math.ceil(math.max(rb, rb - r) / rr) + 1)
local wait = 0
if q < 1 then wait = (1 - q) / qr end
if need_rows == 1 and r < 1 then wait = math.max(wait, (1 - r) / rr) end
if wait > 0 then return {'0', tostring(q), tostring(r), tostring(wait)} end
local grant = math.min(want, math.floor(q))
q = q - grant
redis.call('HSET', KEYS[1], 'v', tostring(q), 't', tostring(t))
redis.call('EXPIRE', KEYS[1], math.ceil(qb / qr) + 1)
return {tostring(grant), tostring(q), tostring(r), '0'}
"""


@dataclass(frozen=True, slots=True)
class Budget:
    """One key class's rates and bursts."""

    requests_per_second: float
    request_burst: float
    rows_per_second: float
    row_burst: float

    def policy_header(self) -> tuple[bytes, bytes]:
        q_window = math.ceil(self.request_burst / self.requests_per_second)
        r_window = math.ceil(self.row_burst / self.rows_per_second)
        requests = f'"requests";q={int(self.request_burst)};w={q_window}'
        value = f'{requests}, "rows";q={int(self.row_burst)};w={r_window}'
        return b"ratelimit-policy", value.encode()


@dataclass(slots=True)
class _Bucket:
    tokens: float
    at: float


@dataclass(slots=True)
class _Lease:
    """Requests this replica took from a key's shared budget ahead of use, and rows it owes."""

    requests: float
    rows_left: float
    """The shared rows bucket at the last exchange, less the rows served since."""
    owed_rows: int
    taken_at: float
    requests_left: float
    """The shared requests bucket at the last exchange (for the RateLimit header)."""


@dataclass(frozen=True, slots=True)
class _Grant:
    granted: int
    requests_left: float
    rows_left: float
    wait: float


class RateLimiter:
    """Admits or refuses a request by its key's budget (see the module docstring)."""

    def __init__(
        self,
        budgets: dict[str, Budget],
        redis: Any = None,
        backoff_seconds: float = 0.5,
        lease_fraction: float = LEASE_FRACTION,
    ):
        self.budgets = budgets
        self.lease_fraction = lease_fraction
        self._leases: dict[str, _Lease] = {}
        self.redis = redis
        self.backoff = backoff_seconds
        self._script: Any = redis.register_script(_SCRIPT) if redis is not None else None
        self._local: dict[bytes, _Bucket] = {}
        self._bypass_until = 0.0
        self._log = RateLimitedLog(logger)
        self._refusals = RateLimitedLog(logger)
        self._digests: dict[bytes, str] = {}

    def _digest(self, key: bytes) -> str:
        digest = self._digests.get(key)
        if digest is None:
            if len(self._digests) > 10_000:
                self._digests.clear()
            digest = self._digests[key] = hashlib.blake2b(key, digest_size=12, person=b"wmu-rl").hexdigest()
        return digest

    async def _exchange(self, digest: str, budget: Budget, want: int, charge: int, need_rows: bool) -> _Grant:
        """Take up to ``want`` requests (at least one) and charge ``charge`` rows, in Redis when
        it answers, else in this replica's own buckets."""
        if self._script is not None and time.monotonic() >= self._bypass_until:
            try:
                granted, q, r, wait = await self._script(
                    keys=[f"{KEY_PREFIX}{digest}:q", f"{KEY_PREFIX}{digest}:r"],
                    args=[
                        budget.requests_per_second,
                        budget.request_burst,
                        budget.rows_per_second,
                        budget.row_burst,
                        want,
                        charge,
                        1 if need_rows else 0,
                    ],
                )
                return _Grant(int(float(granted)), float(q), float(r), float(wait))
            except Exception as e:
                self._bypass_until = time.monotonic() + self.backoff
                self._log.warning(
                    "redis rate limit failed, local budgets for now (%s: %s)", type(e).__name__, e
                )
        return self._exchange_locally(digest.encode(), budget, want, charge, need_rows)

    def _exchange_locally(
        self, digest: bytes, budget: Budget, want: int, charge: int, need_rows: bool
    ) -> _Grant:
        now = time.monotonic()
        q = self._level(digest + b":q", budget.requests_per_second, budget.request_burst, now)
        r = self._level(digest + b":r", budget.rows_per_second, budget.row_burst, now)
        r.tokens -= charge  # owed whatever the answer
        wait = (1 - q.tokens) / budget.requests_per_second if q.tokens < 1 else 0.0
        if need_rows and r.tokens < 1:
            wait = max(wait, (1 - r.tokens) / budget.rows_per_second)
        if wait > 0:
            return _Grant(0, q.tokens, r.tokens, wait)
        granted = min(want, math.floor(q.tokens))
        q.tokens -= granted
        return _Grant(granted, q.tokens, r.tokens, 0.0)

    def _level(self, name: bytes, rate: float, burst: float, now: float) -> _Bucket:
        bucket = self._local.get(name)
        if bucket is None:
            if len(self._local) > 100_000:
                self._local.clear()
            bucket = self._local[name] = _Bucket(burst, now)
        bucket.tokens = min(burst, bucket.tokens + (now - bucket.at) * rate)
        bucket.at = now
        return bucket

    @staticmethod
    def _class_of(role: Role) -> str:
        return "admin" if role is Role.ADMIN else "user"

    def _lease_size(self, budget: Budget) -> int:
        return max(1, math.floor(budget.request_burst * self.lease_fraction))

    async def admit(
        self, key: bytes, role: Role, rows: bool, single_row: bool = False
    ) -> list[tuple[bytes, bytes]]:
        """Take one request from the key's budget (and, for a rows route, need rows left; a
        single-row route's row is counted at once).

        Requests are taken from the shared budget a lease at a time (``lease_fraction`` of the
        burst, at least one): most requests spend this replica's lease without a round trip,
        and the rows served meanwhile are charged with the next exchange. A lease unused for
        ``LEASE_SECONDS`` is dropped (those requests are lost to the key, never granted twice).
        The RateLimit headers for the answer; TooManyRequests when over budget.
        """
        key_class = self._class_of(role)
        budget = self.budgets[key_class]
        digest = self._digest(key)
        now = time.monotonic()
        lease = self._leases.get(digest)
        if lease is not None and now - lease.taken_at > LEASE_SECONDS:
            lease.requests = 0.0
        if lease is None or lease.requests < 1 or (rows and lease.rows_left < 1):
            owed = lease.owed_rows if lease is not None else 0
            carried = max(0.0, lease.requests) if lease is not None else 0.0
            grant = await self._exchange(digest, budget, self._lease_size(budget), owed, rows)
            if lease is not None:
                lease.owed_rows, lease.rows_left = 0, grant.rows_left  # charged, refused or not
            if grant.granted < 1:
                self._refuse(key, key_class, budget, grant)
            if len(self._leases) > 100_000:
                self._leases.clear()
            lease = self._leases[digest] = _Lease(
                grant.granted + carried, grant.rows_left, 0, now, grant.requests_left
            )
        lease.requests -= 1
        if single_row:
            lease.owed_rows += 1
            lease.rows_left -= 1
        left = lease.requests_left + lease.requests
        reset = math.ceil(max(0.0, budget.request_burst - left) / budget.requests_per_second)
        return [budget.policy_header(), (b"ratelimit", f'"requests";r={int(left)};t={reset}'.encode())]

    def _refuse(self, key: bytes, key_class: str, budget: Budget, grant: _Grant) -> None:
        metrics.RATE_LIMITED.labels(key_class).inc()
        self._refusals.warning("rate limit: %s over its %s budget", key_id(key), key_class)
        reset = math.ceil(max(0.0, budget.request_burst - grant.requests_left) / budget.requests_per_second)
        headers = [budget.policy_header(), (b"ratelimit", f'"requests";r=0;t={reset}'.encode())]
        raise TooManyRequests(
            f"over the {key_class} key's budget of {budget.requests_per_second:g} requests and "
            f"{budget.rows_per_second:g} rows per second; retry after the Retry-After seconds",
            grant.wait,
            headers,
        )

    async def charge_rows(self, key: bytes, role: Role, rows: int) -> None:
        """Owe the rows a request was served; they are charged with the key's next exchange."""
        lease = self._leases.get(self._digest(key))
        if lease is not None and rows > 0:
            lease.owed_rows += rows
            lease.rows_left -= rows

    async def close(self) -> None:
        if self.redis is not None:
            try:
                await self.redis.aclose()
            except Exception as e:  # closing a broken connection must not fail shutdown
                logger.debug("closing redis: %s", e)


class Unlimited(RateLimiter):
    """No budgets (``rate_limit_enabled`` false)."""

    def __init__(self) -> None:
        super().__init__({})

    async def admit(
        self, key: bytes, role: Role, rows: bool, single_row: bool = False
    ) -> list[tuple[bytes, bytes]]:
        return []

    async def charge_rows(self, key: bytes, role: Role, rows: int) -> None:
        return None


def build_rate_limiter(s: RouterSettings) -> RateLimiter:
    """The limiter the settings ask for: Redis-shared when the router has Redis."""
    if not s.rate_limit_enabled:
        return Unlimited()
    budgets = {name: Budget(**values) for name, values in s.rate_limits.items()}
    redis = None
    if s.redis_url is not None:
        ca = str(s.redis_tls_ca_file) if s.redis_tls_ca_file is not None else None
        password = s.redis_password.get_secret_value() if s.redis_password is not None else None
        redis = redis_client(
            s.redis_url.get_secret_value(),
            s.redis_timeout_seconds,
            password=password,
            tls_ca_file=ca,
            max_connections=64,
        )
    return RateLimiter(budgets, redis, s.cache_backoff_seconds)
