"""The near tier of the prediction cache: a bounded in-process LRU with a per-entry TTL."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable


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
