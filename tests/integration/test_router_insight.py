"""Model insight through a real router: explanations, prediction intervals and drift.

One router serves the seven models inline from the session model store (which training
gave interval calibration and drift reference files); another serves lightgbm and svr from
their BentoML runners, so explanations and intervals also travel the runner path.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.waiting import wait_until
from tests.support.wines import WINES, read_wines
from winemeup.runtimes import MODEL_NAMES
from winemeup.schema import SCHEMA, quality_grade

pytestmark = pytest.mark.integration

EXAMPLE = SCHEMA.example()
ADDITIVITY = {"xgboost": 2e-5}
"""XGBoost computes in float32 (test_explain.py measured 2e-5); every other model 1e-6."""


@pytest.fixture(scope="module")
def inline_router(
    model_store: Path, tmp_path_factory: pytest.TempPathFactory, router_launcher: Callable[..., Any]
) -> Iterator[Any]:
    handle = router_launcher(
        tmp_path_factory.mktemp("router-insight"),
        model_store,
        batch_max_rows=2000,
        drift_interval_seconds=0.5,
        drift_window_rows=1000,
    )
    try:
        handle.wait_ready()
        yield handle
    finally:
        handle.process.stop()


@pytest.fixture(scope="module")
def client(inline_router: Any) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=inline_router.url, headers=inline_router.headers(), timeout=120) as c:
        yield c


def _check_explanations(answer: dict[str, Any], model: str, scores: list[float]) -> None:
    tolerance = ADDITIVITY.get(model, 1e-6)
    assert answer["model"] == model and answer["method"]
    for item, score in zip(answer["explanations"], scores, strict=True):
        names = [c["feature"] for c in item["contributions"]]
        assert names == SCHEMA.names
        total = item["base"] + sum(c["contribution"] for c in item["contributions"])
        assert abs(total - item["score"]) <= tolerance, (model, total, item["score"])
        # The explained score is the served one (ONNX and framework agree within 1e-4 here).
        assert abs(item["score"] - score) < 1e-4, (model, item["score"], score)


@pytest.mark.parametrize("model", MODEL_NAMES)
def test_explanations_add_up_to_the_served_score_for_every_model(client: httpx.Client, model: str) -> None:
    predicted = client.post("/v1/predict/batch", json={"instances": WINES, "model": model})
    assert predicted.status_code == 200, predicted.text
    scores = [p["score"] for p in predicted.json()["predictions"]]
    started = time.perf_counter()
    answer = client.post("/v1/explain/batch", json={"instances": WINES, "model": model})
    seconds = time.perf_counter() - started
    assert answer.status_code == 200, answer.text
    _check_explanations(answer.json(), model, scores)
    assert not any(item["cached"] for item in answer.json()["explanations"])
    print(f"{model}: explained {len(WINES)} rows in {seconds * 1000:.0f} ms through the router")
    again = client.post("/v1/explain/batch", json={"instances": WINES, "model": model}).json()
    assert all(item["cached"] for item in again["explanations"])
    assert [i["contributions"] for i in again["explanations"]] == [
        i["contributions"] for i in answer.json()["explanations"]
    ]


def test_single_explain_names_features_with_their_values(client: httpx.Client) -> None:
    wine = {**EXAMPLE, "alcohol": 13.1, "wine_type": "white"}
    answer = client.post("/v1/explain", json={"features": wine, "model": "lightgbm"})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    values = {c["feature"]: c["value"] for c in body["contributions"]}
    assert values["alcohol"] == 13.1 and values["wine_type"] == "white"
    assert body["quality"] == quality_grade(body["score"])
    assert body["cached"] is False
    assert client.post("/v1/explain", json={"features": wine, "model": "lightgbm"}).json()["cached"] is True


def test_explain_checks_the_body_like_predict(client: httpx.Client) -> None:
    bad = client.post("/v1/explain", json={"features": {**EXAMPLE, "ph": 9.0}})
    assert bad.status_code == 422 and bad.json()["details"][0]["field"] == "features.ph"
    unknown = client.post("/v1/explain", json={"features": EXAMPLE, "model": "nope"})
    assert unknown.status_code == 404


def test_intervals_on_predict_and_batch(client: httpx.Client) -> None:
    answers = {
        level: client.post("/v1/predict", json={"features": EXAMPLE, "interval": level}).json()
        for level in (0.8, 0.9)
    }
    for level, answer in answers.items():
        interval = answer["interval"]
        assert interval["level"] == level
        assert 0 <= interval["low"] < answer["score"] < interval["high"] <= 10
    width = {lv: a["interval"]["high"] - a["interval"]["low"] for lv, a in answers.items()}
    assert width[0.8] < width[0.9]
    plain = client.post("/v1/predict", json={"features": EXAMPLE}).json()
    assert "interval" not in plain
    batch = client.post("/v1/predict/batch", json={"instances": WINES, "model": "svr", "interval": 0.9})
    assert batch.status_code == 200, batch.text
    for p in batch.json()["predictions"]:
        assert p["interval"]["low"] < p["score"] < p["interval"]["high"]


def test_an_unsupported_interval_level_is_a_422(client: httpx.Client) -> None:
    answer = client.post("/v1/predict", json={"features": EXAMPLE, "interval": 0.5})
    assert answer.status_code == 422
    assert answer.json()["details"][0]["field"] == "interval"


def test_drift_sees_red_wines_sent_as_white(client: httpx.Client, data_dir: Path) -> None:
    reds = read_wines(data_dir, "red", as_type="white")[:1000]
    answer = client.post("/v1/predict/batch", json={"instances": reds})
    assert answer.status_code == 200, answer.text

    def aggregated() -> dict[str, Any] | None:
        """The drift report once the white window holds the 1,000 rows sent."""
        drift: dict[str, Any] = client.get("/v1/drift").json()
        white = [t for t in drift["types"] if t["wine_type"] == "white"]
        return drift if white and white[0]["rows"] >= 1000 else None

    drift = wait_until(aggregated, 20, interval=0.3)
    white_type = next(t for t in drift["types"] if t["wine_type"] == "white")
    assert drift["enabled"] and drift["reference"].startswith("lightgbm:")
    assert white_type["rows"] == 1000  # the window holds at most drift_window_rows
    assert white_type["max_psi"] > drift["psi_threshold"]
    by_feature = {f["feature"]: f["psi"] for f in white_type["features"]}
    assert by_feature["total_sulfur_dioxide"] > 1.0  # reds hold far less sulphur dioxide
    metrics = httpx.get(client.base_url.join("/metrics")).text
    assert 'winemeup_router_drift_psi{feature="total_sulfur_dioxide",wine_type="white"}' in metrics


def test_a_model_without_calibration_answers_409_naming_it(
    model_store: Path, tmp_path: Path, router: Callable[..., Any]
) -> None:
    store = tmp_path / "store"
    shutil.copytree(model_store / "models" / "lightgbm", store / "models" / "lightgbm", symlinks=True)
    for found in (store / "models" / "lightgbm").glob("*/insight/intervals.json"):
        found.unlink()
    handle = router(model_store=store, models=["lightgbm"], default_model="lightgbm")
    handle.wait_ready()
    answer = httpx.post(
        handle.url + "/v1/predict", json={"features": EXAMPLE, "interval": 0.9}, headers=handle.headers()
    )
    assert answer.status_code == 409, answer.text
    body = answer.json()
    assert body["code"] == "no_calibration"
    assert "lightgbm" in body["error"] and "retrain" in body["error"]
    plain = httpx.post(handle.url + "/v1/predict", json={"features": EXAMPLE}, headers=handle.headers())
    assert plain.status_code == 200


def test_explanations_and_intervals_through_runners(
    start_runners: Callable[..., Any], router: Callable[..., Any]
) -> None:
    fleet = start_runners(["lightgbm", "svr"])
    handle = router(
        models=["lightgbm", "svr"],
        placement="runner",
        runner_urls={m: fleet.urls[m] for m in ("lightgbm", "svr")},
    )
    handle.wait_ready()
    with httpx.Client(base_url=handle.url, headers=handle.headers(), timeout=60) as c:
        for model in ("lightgbm", "svr"):
            predicted = c.post(
                "/v1/predict/batch", json={"instances": WINES, "model": model, "interval": 0.8}
            )
            assert predicted.status_code == 200, predicted.text
            predictions = predicted.json()["predictions"]
            assert all(p["interval"]["low"] < p["score"] < p["interval"]["high"] for p in predictions)
            answer = c.post("/v1/explain/batch", json={"instances": WINES, "model": model})
            assert answer.status_code == 200, answer.text
            _check_explanations(answer.json(), model, [p["score"] for p in predictions])
