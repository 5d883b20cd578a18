"""Fresh random wines and a small threaded load against the router container, recording
every answer (model, status, latency) for the fault tests and benchmarks/containers.py."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from winemeup.schema import SCHEMA


def random_wine(rng: random.Random) -> dict[str, Any]:
    """A valid wine no cache has seen: the schema's example with alcohol, sulphates and pH
    drawn at random (continuous values, so two draws never share a cache key)."""
    wine: dict[str, Any] = dict(SCHEMA.example())
    wine["alcohol"] = round(rng.uniform(8.5, 14.0), 9)
    wine["sulphates"] = round(rng.uniform(0.4, 1.2), 9)
    wine["ph"] = round(rng.uniform(2.9, 3.7), 9)
    wine["wine_type"] = rng.choice(["red", "white"])
    return wine


@dataclass(frozen=True)
class Answer:
    model: str
    status: int
    """HTTP status, or 0 for a connection error or timeout."""
    seconds: float
    started: float
    """time.monotonic() when the request was sent."""


@dataclass
class Load:
    """``workers`` threads, each posting fresh random wines to ``/v1/predict`` of the router,
    cycling through ``models``, until :meth:`stop`."""

    router_url: str
    api_key: str
    models: Sequence[str]
    workers: int = 4
    seed: int | None = None
    timeout: float = 10.0
    answers: list[Answer] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _work(self, index: int) -> None:
        rng = random.Random(None if self.seed is None else self.seed * 1000 + index)
        with httpx.Client(
            base_url=self.router_url, headers={"X-API-Key": self.api_key}, timeout=self.timeout
        ) as c:
            i = index
            while not self._stop.is_set():
                model = self.models[i % len(self.models)]
                i += 1
                started = time.monotonic()
                try:
                    status = c.post(
                        "/v1/predict", json={"features": random_wine(rng), "model": model}
                    ).status_code
                except httpx.HTTPError:
                    status = 0
                answer = Answer(model, status, time.monotonic() - started, started)
                with self._lock:
                    self.answers.append(answer)

    def start(self) -> Load:
        for i in range(self.workers):
            thread = threading.Thread(target=self._work, args=(i,), daemon=True, name=f"load-{i}")
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> list[Answer]:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=self.timeout + 5)
        with self._lock:
            return list(self.answers)

    def __enter__(self) -> Load:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
