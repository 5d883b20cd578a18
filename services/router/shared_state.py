"""State every router replica sees: the hot-swapped default model and the traffic policies.

:class:`SharedRecords` is the small interface the registry and the traffic policies use: named
JSON-like records, read and written whole. :class:`MemoryRecords` keeps them in this process
(one replica, or tests); :class:`~services.router.redis_records.RedisRecords` shares them
through Redis. :class:`RecordPoller` is the one loop that reads every followed record.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from typing import Any, Protocol

logger = logging.getLogger(__name__)

Record = Mapping[str, Any]


class SharedRecords(Protocol):
    """Named records shared between replicas. Never raises: a failure reads as absent."""

    shared: bool
    """True when other replicas see what this one writes."""

    async def read(self, name: str) -> Record | None:
        """The record stored under ``name``, or None (absent, unreadable, or the store failed)."""
        ...

    async def write(self, name: str, record: Record) -> bool:
        """Store ``record`` under ``name`` (no expiry); False when the store failed."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...


class MemoryRecords:
    """Records kept in this process only."""

    shared = False

    def __init__(self) -> None:
        self._records: dict[str, dict[str, Any]] = {}

    async def read(self, name: str) -> Record | None:
        return self._records.get(name)

    async def write(self, name: str, record: Record) -> bool:
        self._records[name] = dict(record)
        return True

    async def close(self) -> None:
        return None


class RecordPoller:
    """Reads every followed record every ``interval`` seconds and hands it to its follower.

    One task for all shared records (the default model, the traffic policies), started only
    when the records are shared: in-process records never change behind this replica's back.
    """

    def __init__(self, records: SharedRecords, interval: float):
        self.records = records
        self.interval = interval
        self._followers: dict[str, Callable[[Record], None]] = {}
        self._task: asyncio.Task[None] | None = None

    def follow(self, name: str, adopt: Callable[[Record], None]) -> None:
        """Call ``adopt(record)`` with the record ``name`` at every poll where it exists."""
        self._followers[name] = adopt

    async def poll(self) -> None:
        """Read every followed record once; a follower's failure is logged, never raised."""
        for name, adopt in self._followers.items():
            record = await self.records.read(name)
            if record is None:
                continue
            try:
                adopt(record)
            except Exception:  # one bad record must not stop following the others
                logger.exception("adopting the shared record %s failed", name)

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.poll()
            except Exception:  # a poll bug must not end polling
                logger.exception("polling the shared records failed")

    async def start(self) -> None:
        """Adopt the shared records now, then follow them (only when records are shared)."""
        if self.records.shared:
            await self.poll()
            self._task = asyncio.get_running_loop().create_task(self._loop())

    async def close(self) -> None:
        """Stop polling."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
