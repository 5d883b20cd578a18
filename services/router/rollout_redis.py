"""Rollout figures in Redis: one hash per (model, step epoch), one field per replica.

Each replica writes its own figures of the step whole (``HSET``) and reads every replica's
(``HGETALL``); the gate merges them, so every replica decides from the same wines. A step's
hash expires a day after its last write.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import orjson

from services.router.rate_limited_log import RateLimitedLog
from services.router.redis_records import KEY_PREFIX

logger = logging.getLogger(__name__)

TTL_SECONDS = 86_400


class RedisFigures:
    """:class:`~services.router.rollout_serving.FigureStore` on a Redis client (the shared records' one)."""

    def __init__(self, client: Any):
        self.client = client
        self._log = RateLimitedLog(logger)

    @staticmethod
    def _key(model: str, epoch: int) -> str:
        return f"{KEY_PREFIX}rollout-figures:{model}:{epoch}"

    async def publish(self, model: str, epoch: int, replica: str, figures: Mapping[str, Any]) -> None:
        key = self._key(model, epoch)
        try:
            await self.client.hset(key, replica, orjson.dumps(dict(figures)))
            await self.client.expire(key, TTL_SECONDS)
        except Exception as e:
            self._log.warning("redis hset %s failed (%s: %s)", key, type(e).__name__, e)

    async def gather(self, model: str, epoch: int) -> list[Mapping[str, Any]]:
        key = self._key(model, epoch)
        try:
            found = await self.client.hgetall(key)
        except Exception as e:
            self._log.warning("redis hgetall %s failed (%s: %s)", key, type(e).__name__, e)
            return []
        parts: list[Mapping[str, Any]] = []
        for value in found.values():
            try:
                doc = orjson.loads(value)
            except orjson.JSONDecodeError:
                continue
            if isinstance(doc, dict):
                parts.append(doc)
        return parts
