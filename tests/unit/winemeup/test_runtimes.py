"""Each framework runtime loads from a real BentoML model store and predicts what the model did."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from winemeup.runtimes import ModelNotInStoreError, load_runtime
from winemeup.schema import SCHEMA

RNG = np.random.default_rng(7)
X = RNG.uniform(0.0, 1.0, size=(200, len(SCHEMA)))
Y = 3.0 + 4.0 * X[:, 0] + X[:, 10] + RNG.normal(0.0, 0.1, size=200)


def _lightgbm() -> tuple[Any, Any, Callable[[np.ndarray], np.ndarray]]:
    import bentoml
    import lightgbm as lgb

    model = lgb.LGBMRegressor(n_estimators=20, verbose=-1).fit(X, Y)
    return bentoml.lightgbm, model, model.predict


def _xgboost() -> tuple[Any, Any, Callable[[np.ndarray], np.ndarray]]:
    import bentoml
    import xgboost as xgb

    model = xgb.XGBRegressor(n_estimators=20, max_depth=3).fit(X, Y)
    return bentoml.xgboost, model, model.predict


def _catboost() -> tuple[Any, Any, Callable[[np.ndarray], np.ndarray]]:
    import bentoml
    from catboost import CatBoostRegressor

    model = CatBoostRegressor(iterations=20, verbose=False, allow_writing_files=False).fit(X, Y)
    return bentoml.catboost, model, model.predict


def _sklearn() -> tuple[Any, Any, Callable[[np.ndarray], np.ndarray]]:
    import bentoml
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVR

    model = make_pipeline(StandardScaler(), SVR()).fit(X, Y)
    return bentoml.sklearn, model, model.predict


@pytest.mark.parametrize(
    ("framework", "build"),
    [("lightgbm", _lightgbm), ("xgboost", _xgboost), ("catboost", _catboost), ("sklearn", _sklearn)],
)
def test_runtime_round_trip_predicts_what_the_model_did(framework: str, build: Callable[[], Any]) -> None:
    module, model, predict = build()
    name = f"runtime-test-{framework}-{uuid.uuid4().hex[:6]}"
    module.save_model(name, model, labels={"framework": framework}, metadata={"metrics": {"rmse": 0.1}})

    runtime = load_runtime(name)

    assert runtime.framework == framework
    assert runtime.info.name == name and runtime.info.version
    assert runtime.info.metrics == {"rmse": 0.1}
    scores = runtime.predict(X[:17])
    assert scores.shape == (17,) and scores.dtype == np.float64
    np.testing.assert_allclose(scores, predict(X[:17]), rtol=1e-6, atol=1e-6)
    # A single row (1-D) is a batch of one; an empty batch gives no scores.
    assert runtime.predict(X[0]).shape == (1,)
    assert runtime.predict(np.empty((0, len(SCHEMA)))).shape == (0,)


def test_wrong_width_is_rejected_with_the_shape() -> None:
    import bentoml
    import lightgbm as lgb

    name = f"runtime-test-width-{uuid.uuid4().hex[:6]}"
    bentoml.lightgbm.save_model(
        name, lgb.LGBMRegressor(n_estimators=5, verbose=-1).fit(X, Y), labels={"framework": "lightgbm"}
    )
    with pytest.raises(ValueError, match=r"expected rows of 12 features, got shape \(3, 5\)"):
        load_runtime(name).predict(np.zeros((3, 5)))


def test_missing_model_names_the_tag() -> None:
    with pytest.raises(ModelNotInStoreError, match="no-such-model:latest"):
        load_runtime("no-such-model")
