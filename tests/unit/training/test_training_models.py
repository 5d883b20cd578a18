"""Each model family fits and predicts on a small sample; LightGBM's Optuna search."""

from __future__ import annotations

import json

import numpy as np
import pytest

from training.evaluation import grouped_folds
from training.models import (
    EVALUATED_MODELS,
    UNTUNED_LIGHTGBM,
    build_estimator,
    default_params,
    fit,
    framework_of,
    predict,
    tune_lightgbm,
)
from winemeup.runtimes import FRAMEWORK_OF_MODEL, MODEL_NAMES


@pytest.fixture(scope="module")
def sample(wine_data):
    return wine_data.sample(per_type=150, seed=3)


@pytest.mark.parametrize("name", EVALUATED_MODELS)
def test_each_family_learns_something_on_a_small_sample(name: str, sample) -> None:
    params = default_params(name, fast=True, seed=0, n_jobs=1)
    json.dumps(params)  # goes into the model store's metadata as is
    fit_rows, valid = np.arange(len(sample)) % 4 != 0, np.arange(len(sample)) % 4 == 0
    model = fit(name, params, sample.X[fit_rows], sample.y[fit_rows])
    pred = predict(model, sample.X[valid])
    assert pred.shape == (int(valid.sum()),) and pred.dtype == np.float64
    assert np.isfinite(pred).all()
    # Better than always answering the training mean (a model that learnt nothing).
    baseline = np.mean(np.abs(sample.y[valid] - sample.y[fit_rows].mean()))
    assert np.mean(np.abs(pred - sample.y[valid])) < baseline


def test_frameworks_match_the_runtimes() -> None:
    for name in MODEL_NAMES:
        assert framework_of(name) == FRAMEWORK_OF_MODEL[name]
    assert framework_of(UNTUNED_LIGHTGBM) == "lightgbm"
    assert (
        type(build_estimator("svr", default_params("svr", fast=False, seed=0, n_jobs=1))).__name__
        == "Pipeline"
    )


def test_fast_mode_is_cheaper() -> None:
    for name, key in (
        ("xgboost", "n_estimators"),
        ("catboost", "iterations"),
        ("random_forest", "n_estimators"),
    ):
        assert (
            default_params(name, fast=True, seed=0, n_jobs=1)[key]
            < default_params(name, fast=False, seed=0, n_jobs=1)[key]
        )


def test_unknown_family() -> None:
    with pytest.raises(ValueError, match="unknown model 'knn'"):
        default_params("knn", fast=True, seed=0, n_jobs=1)


def test_lightgbm_search_starts_from_defaults_and_never_ends_worse(sample) -> None:
    folds = grouped_folds(sample.strata(), sample.groups(), folds=3, repeats=1, seed=0)[0]
    result = tune_lightgbm(
        sample.X, sample.y, folds, trials=4, fast=True, seed=0, n_jobs=1, show_progress=False
    )
    assert result.trials == 4
    assert result.best_cv_rmse <= result.default_cv_rmse
    defaults = default_params(UNTUNED_LIGHTGBM, fast=True, seed=0, n_jobs=1)
    assert set(defaults) <= set(result.params)
    assert result.params["subsample_freq"] == (1 if result.params["subsample"] < 1.0 else 0)
    # The recorded best really scores what the search says on those folds.
    scores = []
    for fit_rows, valid in folds:
        pred = predict(
            fit("lightgbm", result.params, sample.X[fit_rows], sample.y[fit_rows]), sample.X[valid]
        )
        scores.append(np.sqrt(np.mean((pred - sample.y[valid]) ** 2)))
    assert float(np.mean(scores)) == pytest.approx(result.best_cv_rmse, rel=1e-9)


def test_every_evaluated_family_has_one_entry_in_the_table() -> None:
    from training.models import EVALUATED_MODELS, FAMILIES, build_estimator, default_params

    assert set(FAMILIES) == set(EVALUATED_MODELS)
    with pytest.raises(ValueError, match="unknown model 'knn'"):
        default_params("knn", fast=True, seed=0, n_jobs=1)
    with pytest.raises(ValueError, match="unknown model 'knn'"):
        build_estimator("knn", {})
