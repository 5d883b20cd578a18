"""The runner's pure core: row and feature checks, and ModelServer around a real runtime."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import pytest
from sklearn.linear_model import LinearRegression

from services.runner.core import ModelServer, check_features, check_rows, runner_name
from services.runner.errors import (
    BatchTooLargeError,
    InvalidFeaturesError,
    InvalidRowsError,
    ModelNotLoadedError,
)
from winemeup.api import ErrorBody
from winemeup.runtimes import ModelInfo
from winemeup.runtimes.sklearn import SklearnRuntime
from winemeup.schema import SCHEMA, quality_grade

ROW = SCHEMA.encode(SCHEMA.example())


@pytest.fixture(scope="module")
def runtime() -> SklearnRuntime:
    """A real scikit-learn runtime around a linear model fitted on random rows."""
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, size=(200, len(SCHEMA)))
    y = 3 + 4 * x[:, 10] - 2 * x[:, 1]
    info = ModelInfo(
        name="svr",
        version="v1",
        framework="sklearn",
        labels={"framework": "sklearn"},
        metadata={"metrics": {"rmse": 0.1}},
    )
    return SklearnRuntime(LinearRegression().fit(x, y), info)


def test_check_rows_accepts_a_batch() -> None:
    matrix = check_rows([ROW, ROW], max_rows=2)
    assert matrix.shape == (2, 12) and matrix.dtype == np.float64
    assert check_rows([], max_rows=1).shape == (0, 12)


@pytest.mark.parametrize(
    ("rows", "error", "field"),
    [
        ([ROW[:11]], InvalidRowsError, "rows[0]"),
        ([ROW, [*ROW, 0.0]], InvalidRowsError, "rows[1]"),
        ([[*ROW[:3], float("nan"), *ROW[4:]]], InvalidRowsError, "rows[0][3]"),
        ([[*ROW[:11], float("-inf")]], InvalidRowsError, "rows[0][11]"),
        ([ROW] * 4, BatchTooLargeError, "rows"),
        ("rows", InvalidRowsError, "rows"),
        ([7.4], InvalidRowsError, "rows[0]"),
    ],
)
def test_check_rows_names_the_problem(rows: Any, error: type[Exception], field: str) -> None:
    with pytest.raises(error) as info:
        check_rows(rows, max_rows=3)
    assert field in [e.field for e in info.value.errors]  # type: ignore[attr-defined]


def test_nan_error_names_the_feature() -> None:
    with pytest.raises(InvalidRowsError) as info:
        check_rows([[*ROW[:10], float("nan"), ROW[11]]], max_rows=1)
    assert "alcohol" in info.value.errors[0].problem


def test_error_statuses_are_client_errors_except_not_loaded() -> None:
    assert InvalidRowsError.status == 400
    assert InvalidFeaturesError.status == 400
    assert BatchTooLargeError.status == 413
    assert ModelNotLoadedError.status == 503
    body = BatchTooLargeError("too big", []).body()
    assert body == {"error": "too big", "code": "payload_too_large", "details": []}
    assert ErrorBody.model_validate(body).error == "too big"  # the one error body shape


def test_check_features_accepts_headers_and_names_bad_fields() -> None:
    by_header = {SCHEMA[n].header: v for n, v in SCHEMA.example().items()}
    assert check_features(by_header) == ROW
    with pytest.raises(InvalidFeaturesError) as info:
        check_features({**SCHEMA.example(), "alcohol": -1})
    assert [e.field for e in info.value.errors] == ["features.alcohol"]


def test_model_server_serves_the_runtime(runtime: SklearnRuntime) -> None:
    server = ModelServer("svr", lambda: runtime, batch_max_rows=10)
    assert not server.ready
    with pytest.raises(ModelNotLoadedError, match="still loading"):
        server.predict([ROW])
    server.load()
    assert server.ready and not server.failed
    out = server.predict([ROW, ROW])
    assert out["model"] == "svr" and out["model_version"] == "v1"
    assert out["scores"] == runtime.predict(np.array([ROW, ROW])).tolist()
    one = server.predict_one(SCHEMA.example())
    assert one["score"] == out["scores"][0]
    assert one["quality"] == quality_grade(one["score"])
    assert server.metadata()["metadata"]["metrics"] == {"rmse": 0.1}


def test_model_server_reports_a_failed_load() -> None:
    def missing() -> SklearnRuntime:
        raise LookupError("model svr:nope is not in the model store")

    server = ModelServer("svr", missing, batch_max_rows=10)
    server.load_in_background().join(timeout=5)
    assert server.wait_loaded(0)
    assert server.failed and not server.ready
    with pytest.raises(ModelNotLoadedError, match="svr:nope"):
        server.metadata()


def test_background_load_turns_ready(runtime: SklearnRuntime) -> None:
    gate = threading.Event()

    def slow() -> SklearnRuntime:
        gate.wait(5)
        return runtime

    server = ModelServer("svr", slow, batch_max_rows=10)
    server.load_in_background()
    assert not server.ready and not server.wait_loaded(0.05)
    gate.set()
    assert server.wait_loaded(5) and server.ready


def test_runner_name_is_dns_friendly() -> None:
    assert runner_name("random_forest") == "winemeup-runner-random-forest"
    assert runner_name("lightgbm") == "winemeup-runner-lightgbm"
