"""Ensembles as served models and the traffic policies (split, shadow), with fake models.

Fake models answer fixed scores after a delay and record their calls, so these tests show
what a user would notice: members are called at once and once per batch, a member down fails
or renormalises the blend and changes its version, a bad policy is refused naming the field
and the old one kept, a change reaches another replica through the shared record, and shadow
calls beyond the limit are shed and counted.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

import numpy as np
import pytest

from services.router import metrics
from services.router.cache import MemoryCache
from services.router.ensemble import EnsembleModel, build_ensembles
from services.router.models import READY, UNAVAILABLE, ServedModel
from services.router.policies import Ensemble, PolicyError, Shadow
from services.router.predictor import Predictor
from services.router.registry import ModelRegistry
from services.router.shared_state import MemoryRecords
from services.router.traffic import ShadowDispatcher, Traffic, parse_policies
from winemeup.errors import ModelUnavailable, ValidationFailed
from winemeup.schema import SCHEMA

ROW = SCHEMA.encode(SCHEMA.example())


def in_loop(test: Callable[[], Coroutine[Any, Any, None]]) -> Callable[[], None]:
    """Run an async test in a fresh event loop (the suite has no asyncio plugin)."""

    @functools.wraps(test)
    def run() -> None:
        asyncio.run(test())

    return run


class FakeModel(ServedModel):
    placement = "inline"

    def __init__(self, name: str, score: float, delay: float = 0.0, version: str = "v1"):
        super().__init__(name)
        self.score, self.delay = score, delay
        self.version, self.status = version, READY
        self.calls: list[int] = []

    async def ensure_ready(self) -> str:
        if self.status != READY:
            raise ModelUnavailable(self.name, "down")
        assert self.version is not None
        return self.version

    async def predict(self, matrix: np.ndarray) -> tuple[np.ndarray, str]:
        await self.ensure_ready()
        self.calls.append(matrix.shape[0])
        await asyncio.sleep(self.delay)
        assert self.version is not None
        return np.full(matrix.shape[0], self.score), self.version


def rows(n: int) -> np.ndarray:
    matrix = np.tile(np.array(ROW, dtype=np.float64), (n, 1))
    matrix[:, 10] = np.linspace(8.5, 14.0, n)  # alcohol: distinct wines
    return matrix


# ---- ensembles --------------------------------------------------------------------------------


@in_loop
async def test_members_are_called_at_once_and_once_per_batch() -> None:
    both_called = asyncio.Event()

    class Member(FakeModel):
        """Answers only once both members have been called: sequential calls never finish."""

        async def predict(self, matrix: np.ndarray) -> tuple[np.ndarray, str]:
            self.calls.append(matrix.shape[0])
            if a.calls and b.calls:
                both_called.set()
            await asyncio.wait_for(both_called.wait(), timeout=5)
            return np.full(matrix.shape[0], self.score), str(self.version)

    a, b = Member("lightgbm", 5.0), Member("svr", 7.0)
    blend = EnsembleModel(Ensemble("blend", {"lightgbm": 3, "svr": 1}), [a, b])
    scores, version = await blend.predict(rows(40))
    assert a.calls == [40] and b.calls == [40]
    np.testing.assert_allclose(scores, 5.5)
    assert version == await blend.ensure_ready() == blend.version
    assert blend.describe()["members"] == {"lightgbm": 3, "svr": 1}


@in_loop
async def test_a_member_version_changes_the_ensemble_version() -> None:
    a, b = FakeModel("lightgbm", 5.0), FakeModel("svr", 7.0)
    blend = EnsembleModel(Ensemble("blend", {"lightgbm": 1, "svr": 1}), [a, b])
    before = await blend.ensure_ready()
    b.version = "v2"
    assert await blend.ensure_ready() != before


@in_loop
async def test_member_down_fails_or_renormalises() -> None:
    a, b = FakeModel("lightgbm", 5.0), FakeModel("svr", 7.0)
    strict = EnsembleModel(Ensemble("strict", {"lightgbm": 1, "svr": 1}, "fail"), [a, b])
    lenient = EnsembleModel(Ensemble("lenient", {"lightgbm": 1, "svr": 1}, "renormalize"), [a, b])
    full = await lenient.ensure_ready()
    b.status = UNAVAILABLE
    assert strict.status == UNAVAILABLE and lenient.status == READY
    with pytest.raises(ModelUnavailable, match="member svr"):
        await strict.predict(rows(3))
    scores, version = await lenient.predict(rows(3))
    np.testing.assert_allclose(scores, 5.0)
    assert version != full  # a blend of fewer members is cached apart
    a.status = UNAVAILABLE
    with pytest.raises(ModelUnavailable):
        await lenient.predict(rows(3))


@in_loop
async def test_an_ensemble_is_cached_like_a_model() -> None:
    a, b = FakeModel("lightgbm", 5.0), FakeModel("svr", 7.0)
    blend = EnsembleModel(Ensemble("blend", {"lightgbm": 1, "svr": 1}), [a, b])
    predictor = Predictor(MemoryCache(1000, 60))
    first = await predictor.predict_many(blend, rows(5))
    again = await predictor.predict_many(blend, rows(5))
    assert again.cached == [True] * 5 and again.scores == first.scores and a.calls == [5]
    b.version = "v2"  # a member's new version: a new ensemble version, no stale blend
    fresh = await predictor.predict_many(blend, rows(5))
    assert fresh.cached == [False] * 5 and fresh.version != first.version


def test_ensemble_settings_errors_name_the_field() -> None:
    models: list[ServedModel] = [FakeModel("lightgbm", 5.0), FakeModel("svr", 7.0)]
    with pytest.raises(PolicyError, match=r"ensembles\[0\]\.members\.xgboost"):
        build_ensembles([{"name": "b", "members": {"lightgbm": 1, "xgboost": 1}}], models)
    with pytest.raises(PolicyError, match=r"ensembles\[1\]\.name"):
        build_ensembles(
            [
                {"name": "b", "members": {"lightgbm": 1, "svr": 1}},
                {"name": "svr", "members": {"lightgbm": 1, "b": 1}},
            ],
            models,
        )


# ---- policies ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("doc", "field"),
    [
        ({"splits": {"lightgbm": {"lightgbm": 90, "svr": 20}}}, "splits.lightgbm.weights"),
        ({"splits": {"lightgbm": {"lightgbm": 90, "xgb": 10}}}, "splits.lightgbm.weights.xgb"),
        ({"splits": {"lightgbm": {"lightgbm": -10, "svr": 110}}}, "splits.lightgbm.weights.lightgbm"),
        ({"splits": {"other": {"lightgbm": 100}}}, "splits.other"),
        ({"shadows": {"lightgbm": {"target": "lightgbm"}}}, "shadows.lightgbm.target"),
        ({"shadows": {"lightgbm": {"target": "svr", "fraction": 1.5}}}, "shadows.lightgbm.fraction"),
        ({"shadows": {"nope": {"target": "svr"}}}, "shadows.nope.model"),
        ({"split": {}}, "split"),
    ],
)
def test_bad_policies_name_the_field(doc: dict[str, Any], field: str) -> None:
    with pytest.raises(PolicyError) as e:
        parse_policies(doc, ["lightgbm", "svr"])
    assert e.value.field == field


class SharedMemory(MemoryRecords):
    """Records two registries share, as Redis would."""

    shared = True

    def __init__(self, records: dict[str, Any]) -> None:
        self._records = records

    async def write(self, name: str, record: Mapping[str, Any]) -> bool:
        self._records[name] = dict(record)
        return True


def replica(records: dict[str, Any], configured: dict[str, Any] | None = None) -> Traffic:
    models = [FakeModel("lightgbm", 5.0), FakeModel("svr", 7.0)]
    registry = ModelRegistry(models, "lightgbm", SharedMemory(records))
    return Traffic(registry, Predictor(MemoryCache(1000, 60)), configured or {})


@in_loop
async def test_a_rejected_change_keeps_the_policy_and_a_change_reaches_other_replicas() -> None:
    records: dict[str, Any] = {}
    one, two = replica(records), replica(records)
    split = {"lightgbm": {"lightgbm": 90, "svr": 10}}
    assert await one.update_body(b'{"splits": {"lightgbm": {"lightgbm": 90, "svr": 10}}}') is True
    with pytest.raises(ValidationFailed) as e:
        await one.update_body(b'{"splits": {"lightgbm": {"lightgbm": 90, "svr": 11}}}')
    assert e.value.details[0].field == "splits.lightgbm.weights"
    assert one.document()["splits"] == split
    assert one.registry.policies["lightgbm"].members() == ["lightgbm", "svr"]
    await two.sync()
    assert two.document()["splits"] == split
    # A replica deployed with other configured policies ignores the older runtime change.
    other = replica(records, {"splits": {"lightgbm": {"lightgbm": 50, "svr": 50}}})
    await other.sync()
    assert other.document()["splits"] == {"lightgbm": {"lightgbm": 50, "svr": 50}}


@in_loop
async def test_a_split_batch_makes_one_call_per_model_and_names_each_row() -> None:
    records: dict[str, Any] = {}
    traffic = replica(records, {"splits": {"lightgbm": {"lightgbm": 50, "svr": 50}}})
    lightgbm, svr = traffic.registry.get("lightgbm"), traffic.registry.get("svr")
    assert isinstance(lightgbm, FakeModel) and isinstance(svr, FakeModel)
    result = await traffic.predict_many(lightgbm, rows(200))
    assert result.models is not None and set(result.models) == {"lightgbm", "svr"}
    assert len(lightgbm.calls) == 1 and len(svr.calls) == 1
    assert [
        s == (5.0 if m == "lightgbm" else 7.0) for s, m in zip(result.scores, result.models, strict=True)
    ] == [True] * 200
    assert [traffic.choose_one("lightgbm", list(r)) for r in rows(200)] == result.models


@in_loop
async def test_shadow_calls_beyond_the_limit_are_shed_and_counted() -> None:
    target = FakeModel("svr", 5.2, delay=0.05)
    dispatcher = ShadowDispatcher(Predictor(MemoryCache(1000, 60)), max_inflight=2)
    shadow = Shadow("lightgbm", "svr", 1.0)
    shed = metrics.SHADOW_SHED.labels("lightgbm", "svr")
    agree = metrics.SHADOW_GRADES.labels("lightgbm", "svr", "agree")
    shed_before, agree_before = shed._value.get(), agree._value.get()
    started = [dispatcher.submit(shadow, target, rows(1) + i, np.array([5.0])) for i in range(5)]
    assert started == [True, True, False, False, False]
    assert shed._value.get() - shed_before == 3
    await dispatcher.drain()
    assert agree._value.get() - agree_before == 2 and dispatcher.inflight == 0
