"""Inline model life cycle with an injected loader: lazy load, failure, retry, thread choice."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import numpy as np
import pytest

from services.router.models import LOADING, READY, UNAVAILABLE, InlineModel
from services.router.runners import RunnerModel, RunnerUnreachable
from winemeup.errors import ModelUnavailable
from winemeup.runtimes.base import ModelInfo


class Runtime:
    """A runtime whose predict takes ``seconds`` and records the thread it ran on."""

    def __init__(self, seconds: float = 0.0, version: str = "v7"):
        self.info = ModelInfo("svr", version, "sklearn", {}, {"metrics": {"rmse": 0.6}})
        self.seconds = seconds
        self.threads: list[int] = []

    def predict(self, rows: Any) -> np.ndarray:
        self.threads.append(threading.get_ident())
        if self.seconds:
            time.sleep(self.seconds)
        matrix = np.asarray(rows, dtype=np.float64)
        return matrix.sum(axis=1)


ROWS = np.ones((2, 12))


def test_lazy_load_then_ready_with_identity() -> None:
    runtime = Runtime()
    loads: list[str] = []

    def loader(name: str) -> Runtime:
        loads.append(name)
        return runtime

    async def scenario() -> None:
        model = InlineModel("svr", thread_min_rows=512, retry_seconds=60, loader=loader)
        assert model.status == LOADING and not loads
        results = await asyncio.gather(*(model.predict(ROWS) for _ in range(5)))
        assert loads == ["svr"]  # concurrent first requests share one load
        assert all(version == "v7" for _, version in results)
        assert model.status == READY
        entry = model.describe()
        assert entry["version"] == "v7" and entry["metrics"] == {"rmse": 0.6}
        assert await model.ensure_ready() == "v7"

    asyncio.run(scenario())


def test_fast_model_predicts_on_the_loop_slow_one_in_a_thread() -> None:
    async def scenario(seconds: float) -> tuple[InlineModel, Runtime]:
        runtime = Runtime(seconds)
        model = InlineModel("svr", 512, 60, loader=lambda _: runtime, loop_max_seconds=0.001)
        await model.ensure_ready()
        runtime.threads.clear()
        await model.predict(ROWS)
        return model, runtime

    loop_thread = threading.get_ident()
    _, fast = asyncio.run(scenario(0.0))
    assert fast.threads == [loop_thread]
    slow_model, slow = asyncio.run(scenario(0.003))
    assert slow.threads and slow.threads[0] != loop_thread
    assert slow_model.row_seconds >= 0.003


def test_failed_load_is_unavailable_then_retried() -> None:
    attempts = 0

    def loader(name: str) -> Runtime:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            raise LookupError("model svr:latest is not in the model store")
        return Runtime()

    async def scenario() -> None:
        model = InlineModel("svr", 512, retry_seconds=60, loader=loader)
        with pytest.raises(ModelUnavailable, match="not in the model store"):
            await model.ensure_ready()
        assert model.status == UNAVAILABLE
        with pytest.raises(ModelUnavailable):  # within the retry interval: no new attempt
            await model.ensure_ready()
        assert attempts == 1
        model.retry_seconds = 0.0  # the interval has passed (no sleeping for it)
        await model.ensure_ready()
        assert model.status == READY and attempts == 2

    asyncio.run(scenario())


class RunnerStub:
    """Stands in for RunnerClient: answers with a version, or fails like an unreachable runner."""

    def __init__(self) -> None:
        self.base_url = "http://runner"
        self.version = "r1"
        self.up = True

    async def ready(self) -> bool:
        return self.up

    async def metadata(self) -> dict[str, Any]:
        if not self.up:
            raise RunnerUnreachable("connection refused")
        return {
            "version": self.version,
            "framework": "sklearn",
            "labels": {},
            "metadata": {"metrics": {"r2": 0.4}},
        }

    async def predict(self, matrix: np.ndarray) -> tuple[np.ndarray, str]:
        if not self.up:
            raise RunnerUnreachable("connection refused")
        return matrix.sum(axis=1), self.version


def test_runner_model_failure_isolation_probe_and_version_change() -> None:
    async def scenario() -> None:
        stub = RunnerStub()
        model = RunnerModel("svr", stub, probe_interval=60, max_rows=64, wait_ms=0, max_inflight=2)  # type: ignore[arg-type]
        await model.probe()
        version = await model.ensure_ready()
        assert (model.status, version, model.describe()["metrics"]) == (READY, "r1", {"r2": 0.4})
        stub.up = False
        with pytest.raises(ModelUnavailable, match="model 'svr' is unavailable: connection refused"):
            await model.predict(ROWS)
        assert model.status == UNAVAILABLE
        with pytest.raises(ModelUnavailable):
            await model.ensure_ready()  # fails fast while marked down
        stub.up, stub.version = True, "r2"
        await model.probe()
        assert model.status == READY and await model.ensure_ready() == "r2"
        stub.version = "r3"  # redeployed between probes: the answer's version wins
        _, version = await model.predict(ROWS)
        assert version == "r3" and model.version == "r3"

    asyncio.run(scenario())
