"""Conformal interval calibration and the drift reference, as training computes and stores them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from training.data import WineData
from training.evaluation import grouped_folds, holdout_split
from training.insight import (
    LEVELS,
    choose_method,
    conformal_quantile,
    drift_reference_document,
    fold_check,
    held_out_figures,
    interval_document,
    write_model_insight,
)
from winemeup.insight import DriftReference, DriftWindow, read_drift_reference, read_intervals


def test_conformal_quantile_is_the_finite_sample_rank() -> None:
    values = np.arange(1.0, 10.0)  # 9 residuals: ceil(10 x 0.8) = 8th smallest
    assert conformal_quantile(values, 0.8) == 8.0
    assert conformal_quantile(values, 0.9) == 9.0
    assert conformal_quantile(values[:3], 0.9) == 3.0  # too few rows: the largest, not less
    assert conformal_quantile(np.empty(0), 0.8) == float("inf")


def synthetic(n: int, heteroscedastic: bool, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    scores = rng.uniform(4.0, 7.5, n)
    spread = 0.1 + 0.6 * (scores - 4.0) if heteroscedastic else np.full(n, 0.6)
    return scores, scores + rng.standard_t(5, n) * spread


def calibrated(scores: np.ndarray, y: np.ndarray, repeats: int = 2) -> dict[str, Any]:
    """An ``intervals.json`` for one score column used as every repeat's out-of-fold predictions."""
    is_red = np.arange(y.size) % 4 == 0
    folds = grouped_folds(is_red.astype(np.int64), np.arange(y.size), 5, repeats, seed=0)
    return interval_document("m", np.tile(scores, (repeats, 1)), y, is_red, folds)


@pytest.mark.parametrize("heteroscedastic", [False, True])
def test_stored_intervals_cover_fresh_data_at_the_nominal_level(heteroscedastic: bool) -> None:
    scores, y = synthetic(4000, heteroscedastic, seed=1)
    document = calibrated(scores, y)
    fresh_scores, fresh_y = synthetic(40_000, heteroscedastic, seed=2)
    is_red = np.arange(fresh_y.size) % 4 == 0
    figures = held_out_figures(document, fresh_scores, fresh_y, is_red)
    for wine_type in ("red", "white"):
        for method in ("absolute", "normalised"):
            for level in LEVELS:
                coverage = figures[wine_type][method][f"{level:g}"]["coverage"]
                assert abs(coverage - level) < 0.02, (wine_type, method, level, coverage)


def test_normalised_only_when_it_narrows_at_the_same_coverage() -> None:
    by_type = {
        False: calibrated(*synthetic(4000, False, seed=3))["by_type"],
        True: calibrated(*synthetic(4000, True, seed=3))["by_type"],
    }
    assert {t: v["selected"] for t, v in by_type[False].items()} == {"red": "absolute", "white": "absolute"}
    assert {t: v["selected"] for t, v in by_type[True].items()} == {
        "red": "normalised",
        "white": "normalised",
    }
    check = by_type[True]["white"]["training_check"]
    for level in ("0.8", "0.9"):
        assert check["normalised"][level]["mean_width"] < 0.98 * check["absolute"][level]["mean_width"]


def test_choice_rule_refuses_narrower_intervals_that_cover_less() -> None:
    check = {
        "absolute": {
            "0.8": {"coverage": 0.80, "mean_width": 1.6},
            "0.9": {"coverage": 0.90, "mean_width": 2.2},
        },
        "normalised": {
            "0.8": {"coverage": 0.77, "mean_width": 1.3},
            "0.9": {"coverage": 0.90, "mean_width": 1.9},
        },
    }
    assert choose_method(check) == "absolute"
    check["normalised"]["0.8"]["coverage"] = 0.80
    assert choose_method(check) == "normalised"
    check["normalised"]["0.9"]["mean_width"] = 2.19  # under 2 % narrower: not worth it
    assert choose_method(check) == "absolute"


def test_fold_check_measures_each_fold_out_of_sample() -> None:
    scores, y = synthetic(2000, False, seed=4)
    folds = [np.arange(i, 2000, 5) for i in range(5)]
    check = fold_check(scores, y, folds)
    for method in ("absolute", "normalised"):
        for level in LEVELS:
            assert abs(check[method][f"{level:g}"]["coverage"] - level) < 0.03


def test_insight_files_land_in_the_version_directory(tmp_path: Path, wine_data: WineData) -> None:
    version_dir = tmp_path / "models" / "svr" / "abc"
    version_dir.mkdir(parents=True)
    scores, y = synthetic(1000, False, seed=5)
    drift = drift_reference_document(wine_data.X)
    written = write_model_insight(version_dir, calibrated(scores, y), drift)
    assert sorted(p.relative_to(version_dir).as_posix() for p in written) == [
        "insight/drift_reference.json",
        "insight/intervals.json",
    ]
    assert (
        json.loads((version_dir / "insight" / "intervals.json").read_text())["format"]
        == "winemeup.intervals/1"
    )
    intervals = read_intervals(version_dir)
    low, high = intervals.interval([5.0, 6.0], ["red", "white"], 0.9)
    assert np.all(high > low)
    assert read_drift_reference(version_dir).rows == {"red": 1599, "white": 4898}
    # A model saved without intervals (none calibrated) gets only the drift reference.
    bare = tmp_path / "bare"
    assert [p.name for p in write_model_insight(bare, None, drift)] == ["drift_reference.json"]


def test_drift_reference_of_the_training_split_flags_the_test_split_as_stable(wine_data: WineData) -> None:
    train, test = holdout_split(wine_data.strata(), wine_data.groups(), 0.2, 42)
    reference = DriftReference.from_dict(drift_reference_document(wine_data.X[train]))
    window = DriftWindow(reference, size=5000)
    window.add_rows(wine_data.X[test])
    for wine_type, drift in window.report().items():
        assert max(drift.psi.values()) < 0.1, (wine_type, drift.psi)
