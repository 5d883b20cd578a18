"""The runner service over real HTTP: one ``bentoml serve`` process per model.

Each runner must answer exactly what ``load_runtime(name).predict`` answers in a separate
process reading the same model store, validate what it is sent (4xx naming the problem,
never 500), report readiness, and expose BentoML's metrics.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from services.runner.fleet import RunnerFleet
from services.stack.processes import http_status
from tests.support.model_store import reference_predictions
from tests.support.waiting import wait_until
from winemeup.runtimes import MODEL_NAMES
from winemeup.schema import SCHEMA, quality_grade

pytestmark = [pytest.mark.integration, pytest.mark.slow]

EXAMPLE_ROW = SCHEMA.encode(SCHEMA.example())


def _csv_rows(data_dir: Path, per_type: int = 20) -> list[list[float]]:
    """The first ``per_type`` wines of each UCI file as model-input rows (schema order)."""
    rows: list[list[float]] = []
    for wine_type in ("red", "white"):
        with open(data_dir / f"winequality-{wine_type}.csv", newline="") as f:
            reader = csv.DictReader(f, delimiter=";")
            for i, record in enumerate(reader):
                if i >= per_type:
                    break
                values: dict[str, Any] = {h: float(record[h]) for h in SCHEMA.headers if h != "wine_type"}
                values["wine_type"] = wine_type
                rows.append(SCHEMA.validate(values))
    return rows


@pytest.fixture(scope="module")
def rows(data_dir: Path) -> list[list[float]]:
    return _csv_rows(data_dir)


@pytest.fixture(scope="module")
def expected(model_store: Path, rows: list[list[float]]) -> dict[str, Any]:
    """Scores and version of every model computed by load_runtime in a separate process."""
    return reference_predictions(model_store, rows)


@pytest.fixture(scope="module")
def client() -> Any:
    with httpx.Client(timeout=30) as c:
        yield c


def post(client: httpx.Client, url: str, body: Any) -> httpx.Response:
    return client.post(url, content=json.dumps(body), headers={"Content-Type": "application/json"})


@pytest.mark.parametrize("model", MODEL_NAMES)
def test_predict_equals_load_runtime(
    runner_fleet: RunnerFleet,
    client: httpx.Client,
    rows: list[list[float]],
    expected: dict[str, Any],
    model: str,
) -> None:
    response = post(client, runner_fleet.url(model) + "/predict", {"rows": rows})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == model
    assert body["model_version"] == expected[model]["version"]
    np.testing.assert_allclose(body["scores"], expected[model]["scores"], rtol=1e-12, atol=0)
    # Scores vary with the wine: a runner answering a constant would not pass.
    assert len(set(body["scores"])) > 5


def test_predict_empty_batch(runner_fleet: RunnerFleet, client: httpx.Client) -> None:
    response = post(client, runner_fleet.url("lightgbm") + "/predict", {"rows": []})
    assert response.status_code == 200
    assert response.json()["scores"] == []


@pytest.mark.parametrize("model", ["lightgbm", "catboost", "svr"])
def test_predict_one_accepts_aliases(runner_fleet: RunnerFleet, client: httpx.Client, model: str) -> None:
    by_header = {SCHEMA[n].header: v for n, v in SCHEMA.example().items()}
    assert "fixed acidity" in by_header and "pH" in by_header
    mixed = {**SCHEMA.example()}
    mixed.pop("ph")
    mixed["pH"] = SCHEMA.example()["ph"]
    batch = post(client, runner_fleet.url(model) + "/predict", {"rows": [EXAMPLE_ROW]}).json()
    for features in (SCHEMA.example(), by_header, mixed):
        response = post(client, runner_fleet.url(model) + "/predict_one", {"features": features})
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["model"] == model
        assert body["model_version"] == batch["model_version"]
        assert body["score"] == pytest.approx(batch["scores"][0], rel=1e-12)
        assert body["quality"] == quality_grade(body["score"])


@pytest.mark.parametrize("model", ["lightgbm", "extra_trees", "svr"])
def test_binary_predict_equals_the_json_route(
    runner_fleet: RunnerFleet, client: httpx.Client, rows: list[list[float]], model: str
) -> None:
    """The router's route: float64 rows in, float64 scores and the version header out."""
    want = post(client, runner_fleet.url(model) + "/predict", {"rows": rows}).json()
    body = np.asarray(rows, dtype="<f8").tobytes()
    response = client.post(
        runner_fleet.url(model) + "/binary/predict",
        content=body,
        headers={"Content-Type": "application/octet-stream"},
    )
    assert response.status_code == 200, response.text
    assert response.headers["x-model-version"] == want["model_version"]
    assert np.frombuffer(response.content, dtype="<f8").tolist() == want["scores"]


@pytest.mark.parametrize(
    ("body", "status", "named"),
    [
        pytest.param(b"\x00" * 95, 400, "body", id="not-whole-rows"),
        pytest.param(
            np.array([[*EXAMPLE_ROW[:3], np.nan, *EXAMPLE_ROW[4:]]]).tobytes(), 400, "rows[0][3]", id="nan"
        ),
        pytest.param(np.zeros((10_001, 12)).tobytes(), 413, "batch_max_rows", id="too-many-rows"),
    ],
)
def test_binary_predict_rejects_bad_bodies(
    runner_fleet: RunnerFleet, client: httpx.Client, body: bytes, status: int, named: str
) -> None:
    response = client.post(runner_fleet.url("lightgbm") + "/binary/predict", content=body)
    assert response.status_code == status, response.text
    assert named in response.text
    assert "error" in response.json()


def test_metadata_carries_training_metrics(
    runner_fleet: RunnerFleet, client: httpx.Client, expected: dict[str, Any]
) -> None:
    for model in MODEL_NAMES:
        response = post(client, runner_fleet.url(model) + "/metadata", {})
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["name"] == model
        assert body["version"] == expected[model]["version"]
        assert body["framework"] == body["labels"]["framework"]
        assert isinstance(body["metadata"].get("metrics"), dict) and body["metadata"]["metrics"]
        # Served from the ONNX artifact, with the parity the runner measured at load.
        assert body["serving"]["path"] == "onnx", body["serving"]
        assert body["serving"]["parity"]["passed"] is True


BAD_ROWS = [
    pytest.param({"rows": [[1.0, 2.0]]}, "rows[0]", id="short-row"),
    pytest.param({"rows": [EXAMPLE_ROW, [*EXAMPLE_ROW, 1.0]]}, "rows[1]", id="long-row"),
    pytest.param({"rows": [[*EXAMPLE_ROW[:11], float("nan")]]}, "rows[0][11]", id="nan"),
    pytest.param({"rows": [[float("inf"), *EXAMPLE_ROW[1:]]]}, "rows[0][0]", id="infinity"),
    pytest.param({"rows": [["7.4x", *EXAMPLE_ROW[1:]]]}, "rows", id="string"),
    pytest.param({"rows": [["7.4", *EXAMPLE_ROW[1:]]]}, "rows", id="numeric-string"),
    pytest.param({"rows": [[True, *EXAMPLE_ROW[1:]]]}, "rows", id="boolean"),
    pytest.param({"rows": "not a list"}, "rows", id="not-a-list"),
    pytest.param({"rows": [7.4]}, "rows", id="flat"),
    pytest.param({}, "rows", id="missing"),
]


@pytest.mark.parametrize(("body", "named"), BAD_ROWS)
def test_bad_rows_are_client_errors(
    runner_fleet: RunnerFleet, client: httpx.Client, body: Any, named: str
) -> None:
    # json.dumps writes NaN/Infinity literals, which Python's JSON readers accept.
    response = post(client, runner_fleet.url("xgboost") + "/predict", body)
    assert response.status_code == 400, response.text  # every malformed JSON row: one status
    assert named in response.text


def test_batch_too_large(runner_fleet: RunnerFleet, client: httpx.Client) -> None:
    response = post(client, runner_fleet.url("lightgbm") + "/predict", {"rows": [EXAMPLE_ROW] * 10_001})
    assert response.status_code == 413, response.text
    assert "batch_max_rows=10000" in response.json()["error"]


def test_batch_max_rows_is_a_setting(start_runners: Any, client: httpx.Client) -> None:
    fleet = start_runners(["extra_trees"], env={"WINEMEUP_RUNNER_BATCH_MAX_ROWS": "3"})
    url = fleet.url("extra_trees") + "/predict"
    assert post(client, url, {"rows": [EXAMPLE_ROW] * 3}).status_code == 200
    response = post(client, url, {"rows": [EXAMPLE_ROW] * 4})
    assert response.status_code == 413
    assert response.json()["details"] == [{"field": "rows", "problem": "at most 3 rows per call, got 4"}]


BAD_FEATURES = [
    pytest.param({**SCHEMA.example(), "alcohol": 99.0}, "features.alcohol", id="out-of-range"),
    pytest.param(
        {k: v for k, v in SCHEMA.example().items() if k != "density"}, "features.density", id="missing"
    ),
    pytest.param({**SCHEMA.example(), "colour": "red"}, "features.colour", id="unknown"),
    pytest.param({**SCHEMA.example(), "wine_type": "rose"}, "features.wine_type", id="bad-category"),
    pytest.param({**SCHEMA.example(), "ph": "3.5"}, "features.ph", id="string-number"),
    pytest.param({**SCHEMA.example(), "pH": 3.3}, "features.ph", id="given-twice"),
]


@pytest.mark.parametrize(("features", "field"), BAD_FEATURES)
def test_bad_features_name_the_field(
    runner_fleet: RunnerFleet, client: httpx.Client, features: dict[str, Any], field: str
) -> None:
    response = post(client, runner_fleet.url("random_forest") + "/predict_one", {"features": features})
    assert response.status_code == 400, response.text
    body = response.json()
    assert field in [d["field"] for d in body["details"]]
    assert field in body["error"]


def test_features_not_an_object(runner_fleet: RunnerFleet, client: httpx.Client) -> None:
    response = post(client, runner_fleet.url("random_forest") + "/predict_one", {"features": [1, 2, 3]})
    assert response.status_code == 400
    assert "features" in response.text


def test_health_and_metrics(runner_fleet: RunnerFleet, client: httpx.Client) -> None:
    for model in MODEL_NAMES:
        base = runner_fleet.url(model)
        assert client.get(base + "/readyz").status_code == 200
        assert client.get(base + "/livez").status_code == 200
        post(client, base + "/predict", {"rows": [EXAMPLE_ROW]})
        metrics = client.get(base + "/metrics").text
        service = f'service_name="winemeup-runner-{model.replace("_", "-")}"'
        lines = [
            line
            for line in metrics.splitlines()
            if line.startswith("bentoml_service_request_total")
            and 'endpoint="/predict"' in line
            and 'http_response_code="200"' in line
            and service in line
        ]
        assert lines, f"{model}: no /predict request counter for its own service in /metrics"
        assert float(lines[0].rsplit(" ", 1)[1]) >= 1
        assert "bentoml_service_request_duration_seconds_bucket" in metrics


def test_runner_without_its_model_is_alive_false_and_not_ready(
    start_runners: Any, client: httpx.Client
) -> None:
    """Readiness reflects the model: a version missing from the store never turns ready."""
    fleet = start_runners(["svr"], env={"WINEMEUP_RUNNER_VERSION": "no-such-version"}, wait=False)
    base = fleet.url("svr")
    wait_until(
        lambda: (http_status(base + "/livez"), http_status(base + "/readyz")) == (503, 503),
        timeout=60,
        interval=0.2,
    )
    response = post(client, base + "/predict", {"rows": [EXAMPLE_ROW]})
    assert response.status_code == 503
    assert "no-such-version" in response.json()["error"]


def test_kill_and_restart_one_runner(runner_fleet: RunnerFleet, client: httpx.Client) -> None:
    victim, bystander = "hist_gradient_boosting", "lightgbm"
    before = post(client, runner_fleet.url(victim) + "/predict", {"rows": [EXAMPLE_ROW]}).json()
    runner_fleet.kill(victim)
    try:
        assert not runner_fleet.alive(victim)
        assert http_status(runner_fleet.url(victim) + "/readyz") is None
        assert (
            post(client, runner_fleet.url(bystander) + "/predict", {"rows": [EXAMPLE_ROW]}).status_code == 200
        )
    finally:
        runner_fleet.restart(victim)
    after = post(client, runner_fleet.url(victim) + "/predict", {"rows": [EXAMPLE_ROW]}).json()
    assert after == before
    assert not math.isnan(after["scores"][0])
