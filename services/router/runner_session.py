"""The router's HTTP session to its runners, with a maximum connection age.

A Kubernetes Service balances connections, not requests: a router that keeps its connections
to a runner Service alive forever never sends a request to a runner pod that was added later
(a scale-out sits idle). :class:`RecyclingSession` replaces its aiohttp session (and with it
every pooled connection) once it is ``max_age_seconds`` old, on the next request; the old one
is closed after ``drain_seconds``, so requests in flight on it finish. New connections go
through the Service again and reach the new pods.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from services.router import metrics

logger = logging.getLogger(__name__)


class RecyclingSession:
    """An aiohttp ``ClientSession`` stand-in (``post``, ``get``, ``close``) renewed by age."""

    def __init__(
        self,
        factory: Callable[[], Any],
        max_age_seconds: float,
        drain_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ):
        self._factory = factory
        self.max_age = max_age_seconds
        self.drain_seconds = drain_seconds
        self._clock = clock
        self._session: Any = None  # opened on first use, inside the event loop
        self._born = clock()
        self._draining: dict[Any, asyncio.Task[None]] = {}
        self.recycled = 0

    def _current(self) -> Any:
        if self._session is None:
            self._session, self._born = self._factory(), self._clock()
        elif self.max_age > 0 and self._clock() - self._born >= self.max_age:
            old, self._session, self._born = self._session, self._factory(), self._clock()
            self.recycled += 1
            metrics.RUNNER_CONNECTIONS_RECYCLED.inc()
            self._draining[old] = asyncio.get_running_loop().create_task(self._close_later(old))
        return self._session

    async def _close_later(self, session: Any) -> None:
        await asyncio.sleep(self.drain_seconds)
        self._draining.pop(session, None)
        await session.close()

    def post(self, url: str, **kwargs: Any) -> Any:
        return self._current().post(url, **kwargs)

    def get(self, url: str, **kwargs: Any) -> Any:
        return self._current().get(url, **kwargs)

    async def close(self) -> None:
        """Close the current session and any still draining."""
        for old, task in list(self._draining.items()):
            task.cancel()
            await old.close()
        self._draining.clear()
        if self._session is not None:
            await self._session.close()
