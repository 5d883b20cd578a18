"""State every router replica sees (the hot-swapped default model; later traffic policies).

:class:`SharedRecords` is the small interface the registry uses: named JSON-like records,
read and written whole. :class:`MemoryRecords` keeps them in this process (one replica, or
tests); :class:`~services.router.redis_records.RedisRecords` shares them through Redis.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

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
