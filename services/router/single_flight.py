"""Concurrent computations of the same key share one call (one row or the misses of a batch)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")


class SingleFlight(Generic[T]):
    """Concurrent computations of the same key share one call.

    ``run(key, compute)`` computes one key once for every concurrent caller.
    ``run_many(keys, compute)`` computes, with one call, the keys nobody else is computing and
    waits for the others. A failure reaches every caller waiting on the keys it covered.
    """

    def __init__(self) -> None:
        self._inflight: dict[Hashable, asyncio.Future[T]] = {}

    def __len__(self) -> int:
        return len(self._inflight)

    def _claim(self, key: Hashable) -> asyncio.Future[T]:
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        return future

    def _resolve(self, key: Hashable, value: T) -> None:
        future = self._inflight.pop(key, None)
        if future is not None and not future.done():
            future.set_result(value)

    def _reject(self, key: Hashable, error: BaseException) -> None:
        future = self._inflight.pop(key, None)
        if future is not None and not future.done():
            future.set_exception(error)
            # Nobody may be waiting: mark the exception retrieved to avoid loop warnings.
            future.exception()

    async def run(self, key: Hashable, compute: Callable[[], Awaitable[T]]) -> tuple[T, bool]:
        """Compute ``key`` once for all concurrent callers; returns (value, shared).

        ``shared`` is True for a caller that waited on another caller's computation.
        """
        existing = self._inflight.get(key)
        if existing is not None:
            return await asyncio.shield(existing), True
        self._claim(key)
        try:
            value = await compute()
        except BaseException as e:
            self._reject(key, e)
            raise
        self._resolve(key, value)
        return value, False

    async def run_many(
        self,
        keys: Sequence[Hashable],
        compute: Callable[[list[int]], Awaitable[Sequence[T]]],
    ) -> tuple[list[T], list[int]]:
        """Values of distinct ``keys``; returns (values in key order, indices this call computed).

        ``compute(indices)`` is called at most once, with the indices of the keys no concurrent
        caller is computing, and returns their values in that order.
        """
        inflight = self._inflight
        waiting: list[tuple[int, asyncio.Future[T]]] = []
        mine: list[int] = []
        for i, key in enumerate(keys):
            existing = inflight.get(key)
            if existing is not None:
                waiting.append((i, existing))
            else:
                mine.append(i)
        values: list[T | None] = [None] * len(keys)
        if mine:
            for i in mine:
                self._claim(keys[i])
            try:
                computed = await compute(mine)
            except BaseException as e:
                for i in mine:
                    self._reject(keys[i], e)
                raise
            for i, value in zip(mine, computed, strict=True):
                values[i] = value
                self._resolve(keys[i], value)
        for i, future in waiting:
            values[i] = await asyncio.shield(future)
        return values, mine  # type: ignore[return-value]  # every slot is filled above
