"""Canary splits and shadows on a real router: share, stickiness, runtime changes, shadow cost.

* 10,000 distinct wines through a 90/10 split of the default name: the canary's share is
  10 % ± 1.5 %, every wine gets the same model again (batch or single), the answers name the
  model, and ``winemeup_router_served_rows_total`` counts the shares.
* A split that does not add up to 100, or that names an unknown model, is a 422 naming the
  field, and the split in force is kept.
* Shadow: a stub runner ten times slower than the served model shadows all of its traffic.
  The answers are the served model's own scores, and the p99 of sequential requests stays
  within noise of the p99 without the shadow (bounded: 300 requests per phase).
* Shadow, deterministically: a stub whose gate holds every call. Single and batch answers
  arrive while it holds them, exactly ``shadow_max_inflight`` calls wait, the rest are shed
  and counted, and the held ones are graded once the gate opens.
* Two replicas on one Redis: a change on one is adopted by the other.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from tests.support.slow_runner import SlowRunner
from tests.support.waiting import wait_until
from winemeup.schema import SCHEMA

pytestmark = pytest.mark.integration

EXAMPLE = SCHEMA.example()


def wines(n: int, offset: int = 0) -> list[dict[str, Any]]:
    """``n`` distinct wines (alcohol and residual sugar vary on a grid)."""
    out = []
    for i in range(offset, offset + n):
        out.append(
            {
                **EXAMPLE,
                "alcohol": round(9.0 + (i % 100) * 0.05, 3),
                "residual_sugar": round(1.0 + (i // 100) * 0.1, 3),
            }
        )
    return out


@pytest.fixture(scope="module")
def slow_runner() -> Iterator[SlowRunner]:
    stub = SlowRunner()
    try:
        yield stub
    finally:
        stub.stop()


@pytest.fixture(scope="module")
def traffic_router(
    model_store: Path,
    tmp_path_factory: pytest.TempPathFactory,
    router_launcher: Callable[..., Any],
    slow_runner: SlowRunner,
) -> Iterator[Any]:
    handle = router_launcher(
        tmp_path_factory.mktemp("router-traffic"),
        model_store,
        models=["lightgbm", "xgboost", "svr"],
        default_model="lightgbm",
        placements={"svr": "runner"},
        runner_urls={"svr": slow_runner.url},
        preload_inline_models=True,
        rate_limit_enabled=False,  # one key measures latency over thousands of requests
    )
    try:
        handle.wait_ready()
        wait_until(
            lambda: (
                httpx.get(handle.url + "/v1/models", headers=handle.headers()).json()["models"][1]["status"]
                == "ready"
            ),
            60,
            interval=0.2,
            message=lambda: handle.process.log_tail(),
        )
        yield handle
    finally:
        handle.process.stop()


@pytest.fixture
def client(traffic_router: Any) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=traffic_router.url, headers=traffic_router.headers(), timeout=30) as c:
        yield c


def _put(router: Any, doc: dict[str, Any]) -> httpx.Response:
    return httpx.put(router.url + "/v1/traffic", json=doc, headers=router.headers(admin=True), timeout=10)


def _batch(client: httpx.Client, batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
    r = client.post("/v1/predict/batch", json={"instances": batch})
    assert r.status_code == 200, r.text
    return r.json()["predictions"]


def test_a_90_10_split_is_sticky_and_shares_10_percent(
    traffic_router: Any, client: httpx.Client, metric_reader: Callable[..., float]
) -> None:
    r = _put(traffic_router, {"splits": {"lightgbm": {"lightgbm": 90, "xgboost": 10}}, "shadows": {}})
    assert r.status_code == 200, r.text
    assert client.get("/v1/traffic").json()["splits"] == {"lightgbm": {"lightgbm": 90, "xgboost": 10}}
    sample = wines(10_000)
    served: list[str] = []
    for start in range(0, len(sample), 2_000):
        served += [p["model"] for p in _batch(client, sample[start : start + 2_000])]
    share = served.count("xgboost") / len(served)
    assert set(served) == {"lightgbm", "xgboost"}
    assert 0.085 <= share <= 0.115, share

    # Sticky: the same wines, in another order and other batches, get the same models.
    order = np.random.default_rng(7).permutation(len(sample))[:3_000]
    again = _batch(client, [sample[i] for i in order])
    assert [p["model"] for p in again] == [served[i] for i in order]
    for i in order[:50]:  # and one at a time
        answer = client.post("/v1/predict", json={"features": sample[i]}).json()
        assert answer["model"] == served[i]

    text = client.get("/metrics").text
    canary = metric_reader(text, "winemeup_router_served_rows_total", requested="lightgbm", model="xgboost")
    total = metric_reader(text, "winemeup_router_served_rows_total", requested="lightgbm")
    assert total >= 13_050 and canary / total == pytest.approx(share, abs=0.01)
    assert (
        metric_reader(text, "winemeup_router_split_weight_percent", requested="lightgbm", model="xgboost")
        == 10
    )


def test_intervals_come_from_the_model_that_served_each_row(
    traffic_router: Any, client: httpx.Client
) -> None:
    """A split spreads a batch over two models: each row's interval is its own model's."""
    assert _put(traffic_router, {"splits": {"lightgbm": {"lightgbm": 50, "xgboost": 50}}}).status_code == 200
    try:
        sample = wines(30, offset=5_000)
        r = client.post("/v1/predict/batch", json={"instances": sample, "interval": 0.8})
        assert r.status_code == 200, r.text
        batch = r.json()["predictions"]
        assert {p["model"] for p in batch} == {"lightgbm", "xgboost"}
        for wine, p in zip(sample, batch, strict=True):
            # A single predict of the same wine is split the same way (sticky).
            one = client.post("/v1/predict", json={"features": wine, "interval": 0.8}).json()
            assert one["model"] == p["model"]
            assert p["interval"] == pytest.approx(one["interval"], abs=1e-12)
    finally:
        _put(traffic_router, {"splits": {}})


@pytest.mark.parametrize(
    ("doc", "field"),
    [
        ({"splits": {"lightgbm": {"lightgbm": 90, "xgboost": 20}}}, "splits.lightgbm.weights"),
        ({"splits": {"lightgbm": {"lightgbm": 90, "xgbost": 10}}}, "splits.lightgbm.weights.xgbost"),
        ({"splits": {"nope": {"lightgbm": 100}}}, "splits.nope"),
        ({"shadows": {"lightgbm": {"target": "nope", "fraction": 0.5}}}, "shadows.lightgbm.target"),
        ({"shadows": {"lightgbm": {"target": "svr", "fraction": 2}}}, "shadows.lightgbm.fraction"),
    ],
)
def test_a_bad_policy_is_rejected_naming_the_field_and_the_old_one_kept(
    traffic_router: Any, client: httpx.Client, doc: dict[str, Any], field: str
) -> None:
    assert _put(traffic_router, {"splits": {"lightgbm": {"lightgbm": 90, "xgboost": 10}}}).status_code == 200
    before = client.get("/v1/traffic").json()
    r = _put(traffic_router, doc)
    assert r.status_code == 422, r.text
    assert r.json()["details"][0]["field"] == field, r.text
    assert client.get("/v1/traffic").json() == before
    forbidden = httpx.put(traffic_router.url + "/v1/traffic", json={}, headers=traffic_router.headers())
    assert forbidden.status_code == 403


def _p99_ms(client: httpx.Client, batch: list[dict[str, Any]]) -> tuple[float, list[float]]:
    seconds, scores = [], []
    for wine in batch:
        started = time.perf_counter()
        r = client.post("/v1/predict", json={"features": wine, "model": "lightgbm"})
        seconds.append(time.perf_counter() - started)
        assert r.status_code == 200 and r.json()["model"] == "lightgbm", r.text
        scores.append(r.json()["score"])
    return float(np.percentile(seconds, 99) * 1000), scores


def test_a_ten_times_slower_shadow_changes_neither_answer_nor_p99(
    traffic_router: Any,
    client: httpx.Client,
    slow_runner: SlowRunner,
    model_store: Path,
    reference_scorer: Callable[..., dict[str, list[float]]],
    metric_reader: Callable[..., float],
) -> None:
    assert _put(traffic_router, {"splits": {}, "shadows": {}}).status_code == 200
    _p99_ms(client, wines(50, 20_000))  # warm the connection
    without, _ = _p99_ms(client, wines(300, 30_000))
    median = float(np.median([_p99_ms(client, [w])[0] for w in wines(30, 40_000)]))
    slow_runner.delay = max(0.01, 10 * median / 1000)  # the shadow model: 10x the served latency
    calls_before = slow_runner.calls
    r = _put(traffic_router, {"shadows": {"lightgbm": {"target": "svr", "fraction": 1.0}}})
    assert r.status_code == 200, r.text
    shadowed = wines(300, 50_000)
    with_shadow, scores = _p99_ms(client, shadowed)
    wait_until(
        lambda: slow_runner.calls > calls_before, 10, message=lambda: "no shadow call reached the runner"
    )
    want = reference_scorer(model_store, [SCHEMA.validate(w) for w in shadowed], ("lightgbm",))["lightgbm"]
    assert scores == pytest.approx(want, rel=1e-9, abs=1e-9)
    shadow_ms = slow_runner.delay * 1000
    print(f"p99 without shadow {without:.2f} ms, with a {shadow_ms:.0f} ms shadow {with_shadow:.2f} ms")
    assert with_shadow <= max(2.0 * without, without + 5.0), (without, with_shadow)

    text = client.get("/metrics").text
    labels = {"model": "lightgbm", "shadow": "svr"}
    graded = metric_reader(text, "winemeup_router_shadow_grades_total", **labels)
    shed = metric_reader(text, "winemeup_router_shadow_shed_total", **labels)
    assert graded + shed >= 250 and graded > 0
    assert metric_reader(text, "winemeup_router_shadow_score_difference_count", **labels) == graded
    (stats,) = client.get("/v1/traffic").json()["shadow_stats"]  # what the UI's Models tab shows
    assert stats["rows"] == graded and 0 <= stats["grade_agreement"] <= 1
    assert _put(traffic_router, {"shadows": {}}).status_code == 200


def test_answers_arrive_while_the_shadow_is_held_and_the_inflight_limit_sheds(
    model_store: Path,
    router: Callable[..., Any],
    slow_runner: SlowRunner,
    metric_reader: Callable[..., float],
) -> None:
    """The shadow target never answers while its gate is closed: single and batch answers
    arrive anyway, exactly ``shadow_max_inflight`` shadow calls wait, and the rest are shed."""
    limit, extra = 3, 4
    handle = router(
        model_store,
        models=["lightgbm", "svr"],
        default_model="lightgbm",
        placements={"svr": "runner"},
        runner_urls={"svr": slow_runner.url},
        preload_inline_models=True,
        shadows={"lightgbm": {"target": "svr", "fraction": 1.0}},
        shadow_max_inflight=limit,
        runner_max_inflight_calls=limit + extra + 1,  # every shadow call reaches the stub
        runner_timeout_seconds=120,  # held shadow calls stay in flight while the test looks
    )
    handle.wait_ready()
    slow_runner.delay = 0.0
    slow_runner.close_gate()
    try:
        calls_before = slow_runner.calls
        with httpx.Client(base_url=handle.url, headers=handle.headers(), timeout=10) as client:

            def svr_ready() -> bool:
                return {m["name"]: m["status"] for m in client.get("/v1/models").json()["models"]}[
                    "svr"
                ] == "ready"

            wait_until(svr_ready, 30, interval=0.1, message=lambda: handle.process.log_tail())
            # A shadow awaited before the answer would hold these answers: the client times out.
            batch = wines(5, offset=60_000)
            r = client.post("/v1/predict/batch", json={"instances": batch})  # one shadow call
            assert r.status_code == 200 and len(r.json()["predictions"]) == len(batch), r.text
            for wine in wines(limit - 1 + extra, offset=61_000):  # one shadow call each
                r = client.post("/v1/predict", json={"features": wine})
                assert r.status_code == 200 and r.json()["model"] == "lightgbm", r.text

            def held() -> bool:
                return slow_runner.blocked == limit

            wait_until(held, 10, message="shadow calls never reached the stub")
            text = client.get("/metrics").text
            labels = {"model": "lightgbm", "shadow": "svr"}
            assert metric_reader(text, "winemeup_router_shadow_inflight") == limit
            # The calls beyond the configured limit: shed, and counted.
            assert metric_reader(text, "winemeup_router_shadow_shed_total", **labels) == extra
            assert slow_runner.calls - calls_before == limit
            (stats,) = client.get("/v1/traffic").json()["shadow_stats"]
            assert stats["shed_calls"] == extra and stats["rows"] == 0

            slow_runner.open_gate()

            def graded() -> float:
                text = client.get("/metrics").text
                return metric_reader(text, "winemeup_router_shadow_grades_total", **labels)

            rows = len(batch) + limit - 1
            wait_until(lambda: graded() == rows, 10, message=lambda: f"{graded()} shadowed rows graded")
            assert slow_runner.blocked == 0
    finally:
        slow_runner.open_gate()


def test_a_change_on_one_replica_reaches_the_other(
    model_store: Path, router: Callable[..., Any], redis_server: Callable[..., Any]
) -> None:
    redis = redis_server()
    common = {"models": ["lightgbm", "xgboost"], "redis_url": redis.url, "default_sync_seconds": 0.2}
    first, second = router(model_store, **common), router(model_store, **common)
    first.wait_ready()
    second.wait_ready()
    split = {"lightgbm": {"lightgbm": 50, "xgboost": 50}}
    r = _put(first, {"splits": split})
    assert r.status_code == 200 and r.json()["shared"] is True, r.text

    def adopted() -> bool:
        return httpx.get(second.url + "/v1/traffic", headers=second.headers()).json()["splits"] == split

    wait_until(adopted, 10, interval=0.1, message=lambda: "the second replica kept its policies")
    batch = {"instances": wines(200)}
    a = httpx.post(first.url + "/v1/predict/batch", json=batch, headers=first.headers(), timeout=30).json()
    b = httpx.post(second.url + "/v1/predict/batch", json=batch, headers=second.headers(), timeout=30).json()
    assert [p["model"] for p in a["predictions"]] == [p["model"] for p in b["predictions"]]
