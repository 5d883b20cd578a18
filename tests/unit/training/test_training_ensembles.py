"""Blends: non-negative weights summing to one, fitted without the fold they are scored on."""

from __future__ import annotations

import numpy as np
import pytest

from training.ensembles import (
    ENSEMBLE_NAME,
    FITTERS,
    evaluate_ensembles,
    fit_weights,
    lad_simplex_weights,
    nested_blend,
    nnls_simplex_weights,
    pruned,
)
from training.evaluation import Fold, metrics_by_type


def folds_of(n: int, k: int) -> list[Fold]:
    ids = np.arange(n) % k
    return [(np.flatnonzero(ids != f), np.flatnonzero(ids == f)) for f in range(k)]


@pytest.mark.parametrize("fit", sorted(FITTERS))
def test_weights_are_non_negative_and_sum_to_one(fit: str) -> None:
    rng = np.random.default_rng(3)
    y = rng.integers(3, 9, 600).astype(float)
    good = y + rng.normal(0, 0.4, y.size)
    worse = y + rng.normal(0, 0.8, y.size)
    anti = 12.0 - y  # negatively correlated: unconstrained least squares would give it a negative weight
    w = FITTERS[fit](np.column_stack([good, worse, anti]), y)
    assert np.all(w >= 0) and w.sum() == pytest.approx(1.0)
    assert w[0] > w[1] and w[2] < 0.05


def test_declared_weights_drop_negligible_members_and_stay_on_the_simplex() -> None:
    w = pruned(np.array([0.6049, 0.39, 0.005, 0.0001]))
    assert w[2] == 0 and w[3] == 0 and w.sum() == pytest.approx(1.0, abs=1e-12)
    assert np.all(np.round(w, 4) == w)
    assert list(pruned(np.array([0.004, 0.002]))) == [1.0, 0.0]


def test_lad_weights_minimise_the_mad_nnls_the_squares() -> None:
    rng = np.random.default_rng(5)
    y = rng.integers(3, 9, 800).astype(float)
    # One member with rare huge errors (good MAD, bad RMSE), one with steady moderate errors.
    spiky = y + np.where(rng.random(y.size) < 0.1, 4.0, 0.0)
    steady = y + rng.normal(0, 0.7, y.size)
    P = np.column_stack([spiky, steady])
    lad, ls = lad_simplex_weights(P, y), nnls_simplex_weights(P, y)
    assert np.mean(np.abs(P @ lad - y)) <= np.mean(np.abs(P @ ls - y)) + 1e-9
    assert np.mean((P @ ls - y) ** 2) <= np.mean((P @ lad - y) ** 2) + 1e-9
    assert lad[0] > ls[0]


@pytest.mark.parametrize("fit", sorted(FITTERS))
def test_a_fold_is_scored_with_weights_fitted_without_it(fit: str) -> None:
    """Member A is exact on fold 0 (60 % of the rows) and 3 grades off elsewhere; member B the
    other way round.

    Weights fitted without fold 0 see only B being exact, so fold 0 is scored with B alone
    and is 3 grades off. Had fold 0's rows leaked into its weights, A would get most of the
    weight (all of it for LAD, 60 % for least squares) and fold 0's error would drop.
    """
    n = 300
    y = np.random.default_rng(1).integers(3, 9, n).astype(float)
    ids = np.repeat([0, 1, 2], [180, 60, 60])
    folds = [(np.flatnonzero(ids != f), np.flatnonzero(ids == f)) for f in range(3)]
    in_fold0 = np.isin(np.arange(n), folds[0][1])
    a = np.where(in_fold0, y, y + 3.0)
    b = np.where(in_fold0, y + 3.0, y)
    blended, weights = nested_blend(np.column_stack([a, b]), y, folds, FITTERS[fit])
    np.testing.assert_allclose(weights[0], [0.0, 1.0])
    assert np.mean(np.abs(blended[in_fold0] - y[in_fold0])) == pytest.approx(3.0)
    # Folds 1 and 2: weights fitted on fold 0 (A exact) and the other (B exact) rows.
    assert np.all(weights >= 0) and np.allclose(weights.sum(axis=1), 1.0)
    # The leak this guards against: weights fitted on all rows would score fold 0 better.
    leaked = fit_weights(np.column_stack([a, b]), y, FITTERS[fit])
    assert np.mean(np.abs(np.column_stack([a, b])[in_fold0] @ leaked - y[in_fold0])) < 1.5


def test_no_validation_target_reaches_the_weights_it_is_scored_with() -> None:
    n, k = 120, 4
    y = np.arange(n, dtype=float)  # every target is unique: it names its row
    P = np.column_stack([y + 1.0, y - 1.0])
    seen: list[set[float]] = []

    def spy(p: np.ndarray, targets: np.ndarray) -> np.ndarray:
        seen.append(set(targets.tolist()))
        return nnls_simplex_weights(p, targets)

    folds = folds_of(n, k)
    nested_blend(P, y, folds, spy)
    assert len(seen) == k
    for (_, valid), targets in zip(folds, seen, strict=True):
        assert targets.isdisjoint(y[valid].tolist())
        assert len(targets) == n - valid.size


def synthetic_members(
    seed: int = 0,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """Three members with independent errors: their blend beats each of them."""
    rng = np.random.default_rng(seed)
    n_train, n_test, repeats = 900, 300, 2
    y_train = rng.integers(3, 9, n_train).astype(float)
    y_test = rng.integers(3, 9, n_test).astype(float)
    noise = {"m1": 0.5, "m2": 0.55, "m3": 0.6, "m4": 0.9}
    oof = {m: y_train + rng.normal(0, s, (repeats, n_train)) for m, s in noise.items()}
    test = {m: y_test + rng.normal(0, s, n_test) for m, s in noise.items()}
    return oof, test, y_train, y_test


def test_evaluate_ensembles_reports_the_blend_to_declare() -> None:
    oof, test, y_train, y_test = synthetic_members()
    red_train = np.arange(y_train.size) % 3 == 0
    red_test = np.arange(y_test.size) % 3 == 0
    cv_folds = [folds_of(y_train.size, 5), folds_of(y_train.size, 5)[::-1]]
    cv_metrics = {
        m: metrics_by_type(y_train, oof[m][0], red_train)  # one repeat suffices for ranking
        for m in oof
    }
    report = evaluate_ensembles(oof, cv_metrics, test, y_train, red_train, y_test, red_test, cv_folds)
    names = {b.name for b in report.blends}
    assert names == {f"{ENSEMBLE_NAME}_{s}_{f}" for s in ("all", "top3") for f in ("nnls", "lad")}
    assert report.best is not None and report.declare is not None
    declare = report.declare
    assert set(declare) == {"name", "members", "on_member_down"} and declare["name"] == ENSEMBLE_NAME
    assert declare["on_member_down"] in ("fail", "renormalize")
    assert sum(declare["members"].values()) == pytest.approx(1.0) and min(declare["members"].values()) > 0
    assert set(declare["members"]) <= set(oof)
    # Independent errors: the blend wins clearly, for both types, and says so.
    assert report.goal["met"] is True and report.goal["statement"].startswith("Goal met")
    for wine_type in ("red", "white"):
        assert report.best.cv[wine_type]["mae"] < report.best_single[wine_type][1] - 0.005
    assert report.best.test["overall"]["mae"] < min(np.mean(np.abs(test[m] - y_test)) for m in test)


def test_goal_not_met_is_said_plainly() -> None:
    oof, test, y_train, y_test = synthetic_members()
    # Copies of one member: no blend can do better than it.
    oof = {m: oof["m1"].copy() for m in ("m1", "m2", "m3")}
    test = {m: test["m1"].copy() for m in oof}
    red_train = np.arange(y_train.size) % 3 == 0
    cv_metrics = {m: metrics_by_type(y_train, oof[m][0], red_train) for m in oof}
    report = evaluate_ensembles(
        oof,
        cv_metrics,
        test,
        y_train,
        red_train,
        y_test,
        np.arange(y_test.size) % 3 == 0,
        [folds_of(y_train.size, 5)] * 2,
    )
    assert report.goal["met"] is False
    assert report.goal["statement"].startswith("Goal NOT met: no blend improves")
    assert all(not v["met"] for v in report.goal["by_type"].values())


def test_fewer_than_two_families_make_no_blend() -> None:
    oof, test, y_train, y_test = synthetic_members()
    red = np.zeros(y_train.size, dtype=bool)
    report = evaluate_ensembles(
        {"m1": oof["m1"]},
        {"m1": metrics_by_type(y_train, oof["m1"][0], red)},
        {"m1": test["m1"]},
        y_train,
        red,
        y_test,
        np.zeros(y_test.size, dtype=bool),
        [folds_of(y_train.size, 5)] * 2,
    )
    assert report.blends == [] and report.declare is None and report.best is None
