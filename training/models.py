"""The seven model families: their estimators, hyper-parameters and LightGBM's Optuna search.

Every family is ONE combined model over red and white wines with ``wine_type`` as a feature,
fitted on float64 arrays in schema order (``SCHEMA.names``), so that a runtime's 12-column
rows match. Hyper-parameters are plain JSON-serialisable dicts: they go into the model
store's metadata as they are.
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from training.evaluation import Fold
from winemeup.runtimes import FRAMEWORK_OF_MODEL, MODEL_NAMES

logger = logging.getLogger(__name__)

UNTUNED_LIGHTGBM = "lightgbm_untuned"
"""Reference row: LightGBM with its default parameters, evaluated but not saved."""

EVALUATED_MODELS = tuple(
    n for name in MODEL_NAMES for n in ((name, UNTUNED_LIGHTGBM) if name == "lightgbm" else (name,))
)
"""Everything the leaderboard shows, in order."""


def framework_of(name: str) -> str:
    """The framework label of a model family (``lightgbm_untuned`` is LightGBM)."""
    return "lightgbm" if name == UNTUNED_LIGHTGBM else FRAMEWORK_OF_MODEL[name]


@dataclass(frozen=True)
class Family:
    """How to build one model family and what it is trained with."""

    estimator: Callable[[dict[str, Any]], Any]
    """An unfitted estimator from hyper-parameters (imports its library on first use)."""
    params: Callable[[bool, int, int], dict[str, Any]]
    """Hyper-parameters from ``(fast, seed, n_jobs)``."""


def _lightgbm_params(fast: bool, seed: int, n_jobs: int) -> dict[str, Any]:
    # LightGBM's own defaults, spelled out so that the metadata records them (the tuning's
    # first trial); the same in fast mode.
    return {
        "n_estimators": 100,
        "learning_rate": 0.1,
        "num_leaves": 31,
        "min_child_samples": 20,
        "subsample": 1.0,
        "subsample_freq": 0,
        "colsample_bytree": 1.0,
        "reg_alpha": 0.0,
        "reg_lambda": 0.0,
        "random_state": seed,
        "n_jobs": n_jobs,
        "verbose": -1,
    }


def _xgboost_params(fast: bool, seed: int, n_jobs: int) -> dict[str, Any]:
    return {
        "n_estimators": 120 if fast else 500,
        "learning_rate": 0.1 if fast else 0.04,
        "max_depth": 6,
        "min_child_weight": 1.0,
        "subsample": 0.8,
        "colsample_bytree": 0.8,
        "reg_lambda": 1.0,
        "tree_method": "hist",
        "random_state": seed,
        "n_jobs": n_jobs,
    }


def _catboost_params(fast: bool, seed: int, n_jobs: int) -> dict[str, Any]:
    return {
        "iterations": 150 if fast else 1000,
        "learning_rate": 0.15 if fast else 0.06,
        "depth": 6,
        "loss_function": "RMSE",
        "random_seed": seed,
        "thread_count": n_jobs,
        "verbose": False,
        "allow_writing_files": False,
    }


def _forest_params(max_features: float) -> Callable[[bool, int, int], dict[str, Any]]:
    def params(fast: bool, seed: int, n_jobs: int) -> dict[str, Any]:
        return {
            "n_estimators": 40 if fast else 250,
            "max_features": max_features,
            "min_samples_leaf": 1,
            "random_state": seed,
            "n_jobs": n_jobs,
        }

    return params


def _hist_gradient_boosting_params(fast: bool, seed: int, n_jobs: int) -> dict[str, Any]:
    return {
        "max_iter": 100 if fast else 400,
        "learning_rate": 0.1 if fast else 0.05,
        "max_leaf_nodes": 31,
        "min_samples_leaf": 10,
        "l2_regularization": 1.0,
        "early_stopping": False,
        "random_state": seed,
    }


def _svr_params(fast: bool, seed: int, n_jobs: int) -> dict[str, Any]:
    # Cortez et al. (2009): RBF SVM on standardised inputs. Their gamma was grid-searched per
    # wine type; here one combined model, with C and gamma picked once on grouped 5-fold CV
    # of the training split (C in {1, 3}, gamma in {0.1, 0.3, 1}, epsilon in {0.1, 0.5}).
    # Fast mode widens the epsilon tube: about 3x fewer support vectors, 3x quicker fits.
    return {"C": 1.0, "epsilon": 0.5 if fast else 0.1, "gamma": 0.1, "kernel": "rbf", "cache_size": 500}


def _lightgbm(params: dict[str, Any]) -> Any:
    import lightgbm

    return lightgbm.LGBMRegressor(**params)


def _xgboost(params: dict[str, Any]) -> Any:
    import xgboost

    return xgboost.XGBRegressor(**params)


def _catboost(params: dict[str, Any]) -> Any:
    import catboost

    return catboost.CatBoostRegressor(**params)


def _sklearn(class_name: str) -> Callable[[dict[str, Any]], Any]:
    def build(params: dict[str, Any]) -> Any:
        import sklearn.ensemble

        return getattr(sklearn.ensemble, class_name)(**params)

    return build


def _svr(params: dict[str, Any]) -> Any:
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVR

    return Pipeline([("scale", StandardScaler()), ("svr", SVR(**params))])


FAMILIES: Mapping[str, Family] = {
    "lightgbm": Family(_lightgbm, _lightgbm_params),
    UNTUNED_LIGHTGBM: Family(_lightgbm, _lightgbm_params),
    "xgboost": Family(_xgboost, _xgboost_params),
    "catboost": Family(_catboost, _catboost_params),
    "random_forest": Family(_sklearn("RandomForestRegressor"), _forest_params(max_features=0.33)),
    "extra_trees": Family(_sklearn("ExtraTreesRegressor"), _forest_params(max_features=0.5)),
    "hist_gradient_boosting": Family(
        _sklearn("HistGradientBoostingRegressor"), _hist_gradient_boosting_params
    ),
    "svr": Family(_svr, _svr_params),
}
"""Every evaluated family by name: how to build it and its hyper-parameters."""


def _family(name: str) -> Family:
    try:
        return FAMILIES[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; known: {', '.join(EVALUATED_MODELS)}") from None


def default_params(name: str, *, fast: bool, seed: int, n_jobs: int) -> dict[str, Any]:
    """Hyper-parameters of a family (LightGBM: the untuned defaults, the tuning's first trial)."""
    return _family(name).params(fast, seed, n_jobs)


def build_estimator(name: str, params: dict[str, Any]) -> Any:
    """An unfitted estimator of a family with the given hyper-parameters."""
    return _family(name).estimator(params)


def fit(name: str, params: dict[str, Any], X: np.ndarray, y: np.ndarray, threads: int = 1) -> Any:
    """Fit a fresh estimator of a family on float64 rows in schema order.

    ``threads`` caps the OpenMP/BLAS pools too (HistGradientBoosting has no ``n_jobs``): the
    OpenMP libraries spin-wait for their threads, and on a busy 2-core machine two threads
    each were measured 6-30x slower than one.
    """
    estimator = build_estimator(name, params)
    with threadpool_limits(limits=threads), warnings.catch_warnings():
        # LightGBM/sklearn warn about missing feature names: we fit on plain arrays on purpose.
        warnings.filterwarnings("ignore", message=".*feature names.*")
        estimator.fit(np.ascontiguousarray(X, dtype=np.float64), np.asarray(y, dtype=np.float64))
    return estimator


def predict(estimator: Any, X: np.ndarray) -> np.ndarray:
    """Predictions of a fitted estimator as a 1-D float64 array."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*feature names.*")
        out = estimator.predict(np.ascontiguousarray(X, dtype=np.float64))
    return np.asarray(out, dtype=np.float64).reshape(-1)


def fit_predict(name: str, params: dict[str, Any], threads: int = 1) -> Any:
    """A ``(X_train, y_train, X_valid) -> predictions`` function for cross-validation."""

    def run(X_train: np.ndarray, y_train: np.ndarray, X_valid: np.ndarray) -> np.ndarray:
        return predict(fit(name, params, X_train, y_train, threads), X_valid)

    return run


@dataclass
class TuningResult:
    """What the Optuna search of LightGBM found."""

    params: dict[str, Any]
    best_cv_rmse: float
    default_cv_rmse: float
    trials: int
    pruned: int
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "best_cv_rmse": self.best_cv_rmse,
            "default_cv_rmse": self.default_cv_rmse,
            "trials": self.trials,
            "pruned": self.pruned,
            "seconds": round(self.seconds, 2),
            "sampler": "TPE",
            "objective": "grouped k-fold CV RMSE on the training split",
        }


# The search space is bounded by serving cost as well as accuracy: LightGBM's predict time
# grows with trees x depth, and an early unbounded search picked 697 trees at a learning
# rate of 0.009, which cost 56 ms per 1,000 rows single-threaded (12 ms for 300 trees of the
# same model) for a CV RMSE gain in the third decimal. 300 trees at a learning rate of at
# least 0.02 keeps a 1,000-row batch well inside the router's 50,000 rows/s goal.
MAX_LIGHTGBM_TREES = 300


def _lightgbm_objective(
    base: dict[str, Any], X: np.ndarray, y: np.ndarray, folds: Sequence[Fold], n_jobs: int
) -> Callable[[Any], float]:
    """Optuna's objective: mean RMSE over ``folds`` of parameters drawn around ``base``."""
    import optuna

    def objective(trial: optuna.Trial) -> float:
        params = dict(base)
        params.update(
            n_estimators=trial.suggest_int("n_estimators", 50, MAX_LIGHTGBM_TREES, log=True),
            learning_rate=trial.suggest_float("learning_rate", 0.02, 0.2, log=True),
            num_leaves=trial.suggest_int("num_leaves", 8, 128, log=True),
            min_child_samples=trial.suggest_int("min_child_samples", 2, 60),
            subsample=trial.suggest_float("subsample", 0.5, 1.0),
            colsample_bytree=trial.suggest_float("colsample_bytree", 0.3, 1.0),
            reg_alpha=trial.suggest_float("reg_alpha", 0.0, 2.0),
            reg_lambda=trial.suggest_float("reg_lambda", 0.0, 10.0),
        )
        params["subsample_freq"] = 1 if params["subsample"] < 1.0 else 0
        scores: list[float] = []
        for step, (train, valid) in enumerate(folds):
            pred = predict(fit("lightgbm", params, X[train], y[train], n_jobs), X[valid])
            scores.append(float(np.sqrt(np.mean((pred - y[valid]) ** 2))))
            trial.report(float(np.mean(scores)), step)
            if trial.should_prune():
                raise optuna.TrialPruned()
        return float(np.mean(scores))

    return objective


def tune_lightgbm(
    X: np.ndarray,
    y: np.ndarray,
    folds: Sequence[Fold],
    *,
    trials: int,
    fast: bool,
    seed: int,
    n_jobs: int,
    show_progress: bool = True,
    on_trial: Callable[[int, int], None] | None = None,
) -> TuningResult:
    """Tune an ``LGBMRegressor`` with Optuna (TPE), minimising the mean RMSE over ``folds``.

    ``folds`` index the TRAINING part only. The first trial is LightGBM's defaults, so the
    best trial's CV RMSE is never worse than the untuned model's on these folds; unpromising
    trials are pruned fold by fold (median rule). ``on_trial(done, trials)`` is called after
    each trial (progress reporting).
    """
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    base = default_params("lightgbm", fast=fast, seed=seed, n_jobs=n_jobs)
    objective = _lightgbm_objective(base, X, y, folds, n_jobs)

    started = time.perf_counter()
    study = optuna.create_study(
        direction="minimize",
        sampler=optuna.samplers.TPESampler(seed=seed),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=1),
        study_name="lightgbm",
    )
    tuned_keys = (
        "n_estimators",
        "learning_rate",
        "num_leaves",
        "min_child_samples",
        "subsample",
        "colsample_bytree",
        "reg_alpha",
        "reg_lambda",
    )
    study.enqueue_trial({k: base[k] for k in tuned_keys})
    callbacks = [] if on_trial is None else [lambda study, _trial: on_trial(len(study.trials), trials)]
    study.optimize(objective, n_trials=trials, show_progress_bar=show_progress, callbacks=callbacks)
    best = dict(base)
    best.update(study.best_params)
    best["subsample_freq"] = 1 if best["subsample"] < 1.0 else 0
    first = study.trials[0]
    default_rmse = float(first.value) if first.value is not None else math.nan
    pruned = sum(1 for t in study.trials if t.state == optuna.trial.TrialState.PRUNED)
    logger.info("lightgbm tuning: best CV RMSE %.4f (defaults %.4f)", study.best_value, default_rmse)
    return TuningResult(
        params=best,
        best_cv_rmse=float(study.best_value),
        default_cv_rmse=default_rmse,
        trials=len(study.trials),
        pruned=pruned,
        seconds=time.perf_counter() - started,
    )
