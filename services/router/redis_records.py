"""Shared records in Redis: one JSON string per record under ``wmu:<name>``."""

from __future__ import annotations

import logging
from typing import Any

import orjson

from services.router.rate_limited_log import RateLimitedLog
from services.router.redis_connection import redis_client
from services.router.shared_state import Record

logger = logging.getLogger(__name__)

KEY_PREFIX = "wmu:"
"""Redis key of a record: this prefix and its name (``wmu:default-model``)."""


class RedisRecords:
    """:class:`~services.router.shared_state.SharedRecords` in Redis, on a small pool of its own."""

    shared = True

    def __init__(
        self,
        url: str,
        timeout_seconds: float,
        password: str | None = None,
        tls_ca_file: str | None = None,
    ):
        self.client: Any = redis_client(
            url, timeout_seconds, password=password, tls_ca_file=tls_ca_file, max_connections=4
        )
        # Records are read every second: failures get their own limit, so they never hide the
        # cache's own error line.
        self._log = RateLimitedLog(logger)

    async def read(self, name: str) -> Record | None:
        key = KEY_PREFIX + name
        try:
            value = await self.client.get(key)
        except Exception as e:
            self._log.warning("redis get %s failed (%s: %s)", key, type(e).__name__, e)
            return None
        if value is None:
            return None
        try:
            record = orjson.loads(value)
        except orjson.JSONDecodeError:
            record = None
        if not isinstance(record, dict):
            self._log.warning("ignoring malformed shared record %s: %.100r", key, value)
            return None
        return record

    async def write(self, name: str, record: Record) -> bool:
        key = KEY_PREFIX + name
        try:
            await self.client.set(key, orjson.dumps(dict(record)))
        except Exception as e:
            self._log.warning("redis set %s failed (%s: %s)", key, type(e).__name__, e)
            return False
        return True

    async def close(self) -> None:
        try:
            await self.client.aclose()
        except Exception as e:  # closing a broken connection must not fail shutdown
            logger.debug("closing redis: %s", e)
