"""Evaluation core: metrics, duplicate-aware splits, cross-validation."""

from __future__ import annotations

import numpy as np
import pytest

from training.evaluation import (
    cross_validate,
    grouped_folds,
    holdout_split,
    metrics_by_type,
    paper_folds,
    regression_metrics,
)


def test_regression_metrics_on_known_values() -> None:
    y = np.array([5.0, 6.0, 7.0, 5.0])
    pred = np.array([5.4, 6.6, 5.0, 5.0])  # errors 0.4, 0.6, -2, 0
    m = regression_metrics(y, pred)
    assert m["mae"] == pytest.approx((0.4 + 0.6 + 2.0 + 0.0) / 4)
    assert m["rmse"] == pytest.approx(np.sqrt((0.16 + 0.36 + 4.0) / 4))
    assert m["acc_0_5"] == pytest.approx(0.5)  # 0.4 and 0.0
    assert m["acc_1_0"] == pytest.approx(0.75)
    ss_tot = np.sum((y - y.mean()) ** 2)
    assert m["r2"] == pytest.approx(1 - 4.52 / ss_tot)
    assert m["n"] == 4


def test_tolerance_boundary_counts_as_hit() -> None:
    # |error| == T is within tolerance T (the paper's definition), also through float32.
    y = np.array([6.0, 6.0])
    pred = np.array([np.float32(6.5), np.float32(5.0)], dtype=np.float64)
    m = regression_metrics(y, pred)
    assert m["acc_0_5"] == 0.5 and m["acc_1_0"] == 1.0


def test_metrics_by_type_splits_red_and_white() -> None:
    y = np.array([5.0, 5.0, 6.0, 6.0])
    pred = np.array([5.0, 5.0, 7.0, 7.0])
    red = np.array([True, True, False, False])
    m = metrics_by_type(y, pred, red)
    assert m["red"]["mae"] == 0.0 and m["white"]["mae"] == 1.0 and m["overall"]["mae"] == 0.5


def test_holdout_and_grouped_folds_keep_duplicates_together(wine_data) -> None:
    groups, strata = wine_data.groups(), wine_data.strata()
    train, test = holdout_split(strata, groups, 0.2, seed=7)
    assert np.intersect1d(train, test).size == 0
    assert train.size + test.size == len(wine_data)
    assert np.intersect1d(groups[train], groups[test]).size == 0
    assert test.size / len(wine_data) == pytest.approx(0.2, abs=0.02)
    # Stratified: the red share and the grade mix are kept.
    red = wine_data.is_red
    assert red[test].mean() == pytest.approx(red.mean(), abs=0.02)
    assert wine_data.y[test].mean() == pytest.approx(wine_data.y.mean(), abs=0.05)

    repeats = grouped_folds(strata[train], groups[train], folds=5, repeats=2, seed=7)
    assert len(repeats) == 2 and all(len(r) == 5 for r in repeats)
    for folds in repeats:
        covered = np.concatenate([valid for _, valid in folds])
        assert np.array_equal(np.sort(covered), np.arange(train.size))
        for fit_rows, valid in folds:
            assert np.intersect1d(groups[train][fit_rows], groups[train][valid]).size == 0
    assert not np.array_equal(repeats[0][0][1], repeats[1][0][1])


def test_paper_folds_do_split_duplicates(wine_data) -> None:
    # The paper's protocol does not group: copies of a row land on both sides.
    groups = wine_data.groups()
    (fit_rows, valid), *_ = paper_folds(len(wine_data), folds=5, repeats=1, seed=1)[0]
    assert np.intersect1d(groups[fit_rows], groups[valid]).size > 100


def test_cross_validate_pools_out_of_fold_predictions() -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(100, 3))
    y = np.round(X[:, 0] * 2 + 6)
    red = np.arange(100) % 2 == 0
    repeats = paper_folds(100, folds=4, repeats=3, seed=0)
    seen: list[int] = []

    def mean_model(X_fit: np.ndarray, y_fit: np.ndarray, X_valid: np.ndarray) -> np.ndarray:
        seen.append(len(X_fit))
        return np.full(len(X_valid), y_fit.mean())

    result = cross_validate(mean_model, X, y, red, repeats, "paper")
    assert len(seen) == 12 and set(seen) == {75}
    assert result.repeats == 3 and result.folds == 4
    assert result.oof_predictions.shape == (100,) and not np.isnan(result.oof_predictions).any()
    overall = result.metrics["overall"]
    assert overall["n"] == 100
    assert overall["rmse"] == pytest.approx(np.std(y), rel=0.1)
    assert overall["rmse_std"] > 0
