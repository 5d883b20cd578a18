"""Per-key token buckets (this replica's own buckets: Redis's are in test_router_rate_limits.py)."""

from __future__ import annotations

import asyncio

import pytest

from services.router.auth import Role
from services.router.rate_limit import Budget, RateLimiter
from winemeup.errors import TooManyRequests

BUDGETS = {
    "user": Budget(requests_per_second=0.001, request_burst=100, rows_per_second=0.001, row_burst=50),
    "admin": Budget(requests_per_second=0.001, request_burst=3, rows_per_second=0.001, row_burst=3),
}


def test_leases_never_grant_more_than_the_burst_and_keys_are_apart() -> None:
    async def scenario() -> None:
        limiter = RateLimiter(BUDGETS)
        for _ in range(100):  # taken five at a time (5 % of the burst)
            await limiter.admit(b"a", Role.USER, rows=False)
        with pytest.raises(TooManyRequests) as refused:
            await limiter.admit(b"a", Role.USER, rows=False)
        assert (b"retry-after", b"1") not in refused.value.headers()  # 1 token at 0.001/s: long
        assert refused.value.headers()[0][0] == b"retry-after"
        assert await limiter.admit(b"b", Role.USER, rows=False)  # another key: its own budget
        for _ in range(3):
            await limiter.admit(b"c", Role.ADMIN, rows=False)
        with pytest.raises(TooManyRequests):
            await limiter.admit(b"c", Role.ADMIN, rows=False)

    asyncio.run(scenario())


def test_rows_served_are_owed_and_a_rows_route_waits_for_the_debt() -> None:
    async def scenario() -> None:
        limiter = RateLimiter(BUDGETS)
        await limiter.admit(b"k", Role.USER, rows=True)
        await limiter.charge_rows(b"k", Role.USER, 60)  # more than the burst of 50 rows
        with pytest.raises(TooManyRequests):
            await limiter.admit(b"k", Role.USER, rows=True)
        assert await limiter.admit(b"k", Role.USER, rows=False)  # other routes still pass

    asyncio.run(scenario())
