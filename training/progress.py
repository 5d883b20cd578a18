"""Progress of a training run as log lines: one per model and step, with the time spent.

Every line goes to the ``training.progress`` logger, whatever the progress bars do
(``--no-progress`` hides only the bars), so a log file shows where a run is: the local stack
(:mod:`services.stack.launcher`) echoes these lines to its console while ``make run`` trains.
A line reads::

    [3/8] xgboost: grouped CV, fold 6/15 (12 s on this model, 1 min 40 s in all)

Long steps (folds of a CV, trials of a search) report at most one line per
``every_seconds``, and always their last item.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sized
from dataclasses import dataclass, field
from typing import Any, TypeVar

PROGRESS_LOGGER = "training.progress"
"""Name of the logger the progress lines go to (the stack launcher filters its log on it)."""

logger = logging.getLogger(PROGRESS_LOGGER)

T = TypeVar("T")


def duration(seconds: float) -> str:
    """``42 s``, ``3 min 05 s``: how long, as a person reads it."""
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    return f"{whole // 60} min {whole % 60:02d} s"


@dataclass
class ModelProgress:
    """Reports the steps of one model of a run: ``step("grouped CV")``, ``count(...)``."""

    name: str
    index: int
    total: int
    run_started: float
    every_seconds: float = 10.0
    clock: Callable[[], float] = time.monotonic
    started: float = field(init=False)
    _last_line: float = field(init=False)

    def __post_init__(self) -> None:
        self.started = self.clock()
        self._last_line = self.started

    def step(self, what: str) -> None:
        """One line now: the model is at step ``what``."""
        now = self.clock()
        self._last_line = now
        logger.info(
            "[%d/%d] %s: %s (%s on this model, %s in all)",
            self.index,
            self.total,
            self.name,
            what,
            duration(now - self.started),
            duration(now - self.run_started),
        )

    def count(self, what: str, done: int, total: int) -> None:
        """``done`` of ``total`` items of step ``what``: a line if a while has passed, or at the end."""
        if done >= total or self.clock() - self._last_line >= self.every_seconds:
            self.step(f"{what} {done}/{total}")

    def counted(self, what: str, unit: str) -> Callable[[Iterable[T]], Iterator[T]]:
        """A wrapper of an iterable that counts its items as ``what, <unit> i/n``."""

        def wrap(items: Iterable[T]) -> Iterator[T]:
            sized = items if isinstance(items, Sized) else list(items)
            total = len(sized)
            for done, item in enumerate(sized, start=1):
                yield item  # the caller works on the item before asking for the next one
                self.count(f"{what}, {unit}", done, total)

        return wrap


def chain(
    *wrappers: Callable[[Iterable[Any]], Iterable[Any]] | None,
) -> Callable[[Iterable[Any]], Iterable[Any]]:
    """One iterable wrapper applying each given one in turn (``None`` is skipped)."""

    def wrap(items: Iterable[Any]) -> Iterable[Any]:
        for wrapper in wrappers:
            if wrapper is not None:
                items = wrapper(items)
        return items

    return wrap
