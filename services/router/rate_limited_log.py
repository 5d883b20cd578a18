"""A warning logged at most once per interval (Redis failures can happen on every request)."""

from __future__ import annotations

import logging
import time
from typing import Any


class RateLimitedLog:
    """Logs a warning at most once per ``interval`` seconds, counting what it swallowed."""

    def __init__(self, log: logging.Logger, interval: float = 10.0):
        self.log = log
        self.interval = interval
        self._next = 0.0
        self._suppressed = 0

    def warning(self, message: str, *args: Any) -> None:
        now = time.monotonic()
        if now < self._next:
            self._suppressed += 1
            return
        if self._suppressed:
            message += f" ({self._suppressed} similar messages suppressed)"
        self._suppressed = 0
        self._next = now + self.interval
        self.log.warning(message, *args)
