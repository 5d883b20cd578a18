"""One way to wait in tests: :func:`wait_until` a condition holds, or fail saying what was awaited."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class WaitTimeoutError(AssertionError):
    """A condition did not hold in time (an AssertionError: pytest shows it as a failure)."""


def wait_until(
    condition: Callable[[], T | None],
    timeout: float,
    *,
    interval: float = 0.05,
    message: str | Callable[[], str] = "",
) -> T:
    """Call ``condition`` until it returns something truthy, and return that; fail after ``timeout`` s.

    Exceptions of the condition propagate (a probe that can fail transiently catches its
    own). ``message`` (or a function giving it, e.g. a log tail) is added to the failure.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() >= deadline:
            detail = message() if callable(message) else message
            name = getattr(condition, "__name__", repr(condition))
            raise WaitTimeoutError(
                f"{name} still false after {timeout:g} s" + (f": {detail}" if detail else "")
            )
        time.sleep(interval)
