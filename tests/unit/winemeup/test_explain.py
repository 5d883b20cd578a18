"""Explanations of all seven models: base plus contributions is the score, and what they cost.

Each model is explained as it is served (from its ONNX artifact, with the framework loaded
for TreeSHAP), on wines of the real data set.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from training.data import load_wine_data
from winemeup.runtimes import MODEL_NAMES, ExplainUnavailable, load_runtime
from winemeup.runtimes.explain import BASELINE_SHAPLEY, baseline_shapley
from winemeup.schema import SCHEMA

pytestmark = pytest.mark.slow

ADDITIVITY = 1e-6
XGBOOST_ADDITIVITY = 2e-5
"""XGBoost computes its scores and its contributions in float32: measured here, its own
pred_contribs summed to within 4.9e-6 of its own predict (shap's TreeSHAP: 1.0e-5)."""


@pytest.fixture(scope="module")
def wines(data_dir: Path) -> np.ndarray:
    data = load_wine_data(data_dir, "", timeout=1.0, verify=True)
    rows = np.ascontiguousarray(data.X, dtype=np.float64)
    return rows[np.random.default_rng(3).choice(len(rows), size=6, replace=False)]


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_base_plus_contributions_is_the_score(name: str, model_store: Path, wines: np.ndarray) -> None:
    runtime = load_runtime(name, store=model_store)
    explanation = runtime.explain(wines)

    assert explanation.contributions.shape == (len(wines), len(SCHEMA))
    tolerance = XGBOOST_ADDITIVITY if name == "xgboost" else ADDITIVITY
    assert explanation.additivity_error <= tolerance, explanation.additivity_error
    # The explained score is the served one (within the accelerated path's parity).
    np.testing.assert_allclose(explanation.scores, runtime.predict(wines), atol=2e-5, rtol=0)
    # Not all zero: the features do move the score.
    assert np.abs(explanation.contributions).sum(axis=1).min() > 1e-3
    expected_method = BASELINE_SHAPLEY if name == "svr" else "TreeSHAP"
    assert explanation.method.startswith(expected_method[:20])


def test_baseline_shapley_is_exact_for_a_linear_model() -> None:
    """For f(x) = w.x + c, the Shapley value of feature i is w_i (x_i - b_i): a closed form."""
    rng = np.random.default_rng(0)
    weights = rng.normal(size=len(SCHEMA))
    rows, baseline = rng.normal(size=(3, len(SCHEMA))), rng.normal(size=len(SCHEMA))

    explanation = baseline_shapley(lambda x: x @ weights + 2.0, rows, baseline)

    np.testing.assert_allclose(explanation.contributions, weights * (rows - baseline), atol=1e-12)
    np.testing.assert_allclose(explanation.base, baseline @ weights + 2.0, atol=1e-12)
    assert explanation.additivity_error < 1e-12


def test_svr_is_explained_from_its_onnx_artifact_alone(model_store: Path, wines: np.ndarray) -> None:
    runtime = load_runtime("svr", path="onnx", store=model_store)
    runtime.framework_loader = None  # type: ignore[attr-defined]  # as in an image without scikit-learn
    runtime.framework_error = "scikit-learn is not installed"  # type: ignore[attr-defined]

    explanation = runtime.explain(wines[:2])

    assert explanation.additivity_error <= ADDITIVITY
    assert runtime._framework is None  # type: ignore[attr-defined]


def test_a_tree_model_without_its_framework_cannot_be_explained(model_store: Path, wines: np.ndarray) -> None:
    runtime = load_runtime("lightgbm", path="onnx", store=model_store)
    runtime.framework_loader = None  # type: ignore[attr-defined]
    runtime.framework_error = "lightgbm is not installed"  # type: ignore[attr-defined]

    with pytest.raises(ExplainUnavailable, match=r"ONNX artifact.*lightgbm is not installed"):
        runtime.explain(wines[:1])
