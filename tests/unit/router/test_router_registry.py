"""The model registry: lookup, the default model and its shared record, readiness, policies."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

import numpy as np
import pytest

from services.router.models import LOADING, READY, ServedModel
from services.router.registry import DEFAULT_RECORD, ModelRegistry
from services.router.shared_state import MemoryRecords, Record
from services.router.single_flight import SingleFlight
from winemeup.errors import NotReady, UnknownModel


class FakeModel(ServedModel):
    """A model that is ready at once (or after ``warm()`` when ``in_process``)."""

    def __init__(self, name: str, in_process: bool = False, ready: bool = True):
        self.placement = "inline" if in_process else "runner"
        self.in_process = in_process
        super().__init__(name)
        self.warmed = 0
        self._set_identity("v1", "test", {}, {})
        self._set_status(READY if ready else LOADING)

    async def warm(self) -> None:
        self.warmed += 1
        self._set_status(READY)

    async def ensure_ready(self) -> str:
        return "v1"

    async def predict(self, matrix: np.ndarray) -> tuple[np.ndarray, str]:
        return matrix.sum(axis=1), "v1"


class SharedDict:
    """SharedRecords seen by several registries (replicas) in one process."""

    shared = True

    def __init__(self, store: dict[str, dict[str, Any]], fail: bool = False):
        self.store = store
        self.fail = fail

    async def read(self, name: str) -> Record | None:
        return None if self.fail else self.store.get(name)

    async def write(self, name: str, record: Record) -> bool:
        if self.fail:
            return False
        self.store[name] = dict(record)
        return True

    async def close(self) -> None:
        return None


def registry(names: Iterable[str] = ("lightgbm", "xgboost"), shared: Any = None) -> ModelRegistry:
    return ModelRegistry([FakeModel(n) for n in names], "lightgbm", shared or MemoryRecords())


def test_resolve_names_the_default_and_rejects_unknown_models() -> None:
    reg = registry()
    assert reg.resolve(None).name == "lightgbm"
    assert reg.resolve("xgboost").name == "xgboost"
    with pytest.raises(UnknownModel, match="this router serves lightgbm, xgboost"):
        reg.resolve("svr")


def test_configured_default_must_be_served() -> None:
    with pytest.raises(ValueError, match="default model 'svr'"):
        ModelRegistry([FakeModel("lightgbm")], "svr", MemoryRecords())


def test_a_swap_is_adopted_by_another_replica_and_marked_in_the_list() -> None:
    async def scenario() -> None:
        store: dict[str, dict[str, Any]] = {}
        one, two = registry(shared=SharedDict(store)), registry(shared=SharedDict(store))
        swap = await one.set_default("xgboost")
        assert (swap.previous, swap.model.name, swap.shared) == ("lightgbm", "xgboost", True)
        assert store[DEFAULT_RECORD] == {"model": "xgboost", "configured": "lightgbm"}
        assert two.resolve(None).name == "lightgbm"
        await two.sync_default()
        assert two.resolve(None).name == "xgboost"
        assert [e["name"] for e in two.describe() if e["default"]] == ["xgboost"]

    asyncio.run(scenario())


def test_a_swap_made_over_another_configured_default_is_ignored() -> None:
    async def scenario() -> None:
        store = {DEFAULT_RECORD: {"model": "xgboost", "configured": "catboost"}}
        reg = registry(shared=SharedDict(store))
        await reg.sync_default()
        assert reg.default == "lightgbm"

    asyncio.run(scenario())


def test_a_failed_shared_write_still_swaps_here_and_says_not_shared() -> None:
    async def scenario() -> None:
        reg = registry(shared=SharedDict({}, fail=True))
        swap = await reg.set_default("xgboost")
        assert swap.shared is False and reg.default == "xgboost"
        local = registry()
        assert (await local.set_default("xgboost")).shared is False  # memory records are not shared

    asyncio.run(scenario())


def test_only_an_in_process_default_still_loading_makes_the_pod_unready() -> None:
    async def scenario() -> None:
        inline = FakeModel("lightgbm", in_process=True, ready=False)
        reg = ModelRegistry([inline, FakeModel("svr", ready=False)], "lightgbm", MemoryRecords())
        with pytest.raises(NotReady, match="lightgbm"):
            reg.default_ready()
        await asyncio.sleep(0)  # the readiness probe started warming it
        assert inline.warmed == 1
        assert reg.default_ready() is inline
        assert reg.not_ready() == ["svr"]
        runner_default = ModelRegistry([FakeModel("svr", ready=False)], "svr", MemoryRecords())
        assert runner_default.default_ready().name == "svr"  # a runner outage is a 503, not unready

    asyncio.run(scenario())


def test_policies_must_name_served_models() -> None:
    class Split:
        def __init__(self, *names: str):
            self.names = names

        def members(self) -> Iterable[str]:
            return self.names

    reg = registry()
    reg.set_policy("canary", Split("lightgbm", "xgboost"))
    assert "canary" in reg.policies
    with pytest.raises(UnknownModel, match="svr"):
        reg.set_policy("bad", Split("svr"))
    reg.set_policy("canary", None)
    assert reg.policies == {}


def test_run_many_computes_each_key_once_across_overlapping_batches() -> None:
    calls: list[list[int]] = []

    async def scenario() -> tuple[list[int], list[int]]:
        flight: SingleFlight[int] = SingleFlight()

        def computing(keys: list[bytes]) -> Any:
            async def compute(indices: list[int]) -> list[int]:
                calls.append([int(keys[i]) for i in indices])
                await asyncio.sleep(0.01)
                return [int(keys[i]) * 10 for i in indices]

            return compute

        first, second = [b"1", b"2", b"3"], [b"2", b"3", b"4"]
        a = asyncio.create_task(flight.run_many(first, computing(first)))
        await asyncio.sleep(0)
        b = asyncio.create_task(flight.run_many(second, computing(second)))
        (va, mine_a), (vb, mine_b) = await a, await b
        assert (mine_a, mine_b) == ([0, 1, 2], [2])
        assert len(flight) == 0
        return va, vb

    assert asyncio.run(scenario()) == ([10, 20, 30], [20, 30, 40])
    assert calls == [[1, 2, 3], [4]]


def test_run_many_failure_reaches_the_waiters() -> None:
    async def scenario() -> None:
        flight: SingleFlight[int] = SingleFlight()

        async def failing(indices: list[int]) -> list[int]:
            await asyncio.sleep(0.01)
            raise RuntimeError("model down")

        async def never(indices: list[int]) -> list[int]:
            raise AssertionError("the key is in flight: nothing to compute")

        a = asyncio.create_task(flight.run_many([b"k"], failing))
        await asyncio.sleep(0)
        b = asyncio.create_task(flight.run_many([b"k"], never))
        for task in (a, b):
            with pytest.raises(RuntimeError, match="model down"):
                await task
        assert len(flight) == 0

    asyncio.run(scenario())
