"""Honest evaluation: duplicate-aware splits, repeated cross-validation and the metrics.

Two protocols are computed for every model:

* ``grouped`` (the honest one): a held-out test split and repeated k-fold CV on the training
  part, both stratified by wine type and quality and *grouped* so that all exact copies of a
  row (same features and wine type) land on the same side of every split.
* ``paper`` (like for like with Cortez et al. 2009): plain repeated shuffled k-fold over all
  rows, as in the paper's 20 runs of 5-fold CV, which did not de-duplicate. Copies of a row
  can then sit in both the training and the validation fold, which flatters every model.

Metrics per wine type and overall: RMSE, MAE (the paper's MAD), R², and accuracy at
tolerance T (share of predictions with ``|prediction - truth| <= T``) for T = 0.5 and 1.0.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.model_selection import KFold, StratifiedGroupKFold

from winemeup.schema import WINE_TYPES

logger = logging.getLogger(__name__)

Fold = tuple[np.ndarray, np.ndarray]
"""Indices of the training rows and of the validation rows of one fold."""

PROTOCOLS = ("grouped", "paper")
SCOPES = ("overall", *WINE_TYPES)
METRICS = ("rmse", "mae", "r2", "acc_0_5", "acc_1_0")

PAPER_SVM = {
    "red": {"mae": 0.46, "acc_0_5": 0.624, "acc_1_0": 0.890},
    "white": {"mae": 0.45, "acc_0_5": 0.646, "acc_1_0": 0.868},
}
"""Cortez et al. (2009), Table 3, SVM: MAD and accuracy at T=0.5 and T=1.0 per wine type."""


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """RMSE, MAE, R², accuracy at tolerance 0.5 and 1.0, and the row count."""
    y_true = np.asarray(y_true, dtype=np.float64)
    y_pred = np.asarray(y_pred, dtype=np.float64)
    error = y_pred - y_true
    n = int(y_true.size)
    if n == 0:
        return {
            "rmse": float("nan"),
            "mae": float("nan"),
            "r2": float("nan"),
            "acc_0_5": float("nan"),
            "acc_1_0": float("nan"),
            "n": 0,
        }
    total = float(np.sum((y_true - y_true.mean()) ** 2))
    r2 = 1.0 - float(np.sum(error**2)) / total if total > 0 else float("nan")
    # A tiny slack so that a float32 prediction of exactly x.5 counts as within 0.5.
    slack = 1e-9
    return {
        "rmse": float(np.sqrt(np.mean(error**2))),
        "mae": float(np.mean(np.abs(error))),
        "r2": r2,
        "acc_0_5": float(np.mean(np.abs(error) <= 0.5 + slack)),
        "acc_1_0": float(np.mean(np.abs(error) <= 1.0 + slack)),
        "n": n,
    }


def metrics_by_type(
    y_true: np.ndarray, y_pred: np.ndarray, is_red: np.ndarray
) -> dict[str, dict[str, float]]:
    """:func:`regression_metrics` overall and for each wine type."""
    return {
        "overall": regression_metrics(y_true, y_pred),
        "red": regression_metrics(y_true[is_red], y_pred[is_red]),
        "white": regression_metrics(y_true[~is_red], y_pred[~is_red]),
    }


def holdout_split(strata: np.ndarray, groups: np.ndarray, test_size: float, seed: int) -> Fold:
    """Grouped held-out split, stratified by ``strata`` where the group sizes allow.

    Takes one fold of a shuffled ``StratifiedGroupKFold`` with ``round(1 / test_size)``
    folds as the test side, so no row has a copy on the other side.
    """
    n_splits = max(2, round(1.0 / test_size))
    splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        # Grades with fewer rows than folds (white 9, red 3) cannot be spread evenly.
        warnings.simplefilter("ignore", UserWarning)
        train, test = next(splitter.split(np.zeros(len(strata)), strata, groups))
    return np.sort(train), np.sort(test)


def grouped_folds(
    strata: np.ndarray, groups: np.ndarray, folds: int, repeats: int, seed: int
) -> list[list[Fold]]:
    """Repeated stratified group k-fold: a list (per repeat) of folds."""
    out: list[list[Fold]] = []
    for repeat in range(repeats):
        splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed + repeat)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            out.append(list(splitter.split(np.zeros(len(strata)), strata, groups)))
    return out


def paper_folds(n_rows: int, folds: int, repeats: int, seed: int) -> list[list[Fold]]:
    """Repeated plain shuffled k-fold, as in the paper (duplicates may straddle folds)."""
    return [
        list(KFold(n_splits=folds, shuffle=True, random_state=seed + repeat).split(np.zeros(n_rows)))
        for repeat in range(repeats)
    ]


def summarize(per_repeat: Sequence[dict[str, dict[str, float]]]) -> dict[str, dict[str, float]]:
    """Mean (and ``<metric>_std``) over repeats of per-scope metrics."""
    out: dict[str, dict[str, float]] = {}
    for scope in SCOPES:
        entry: dict[str, float] = {}
        for metric in METRICS:
            values = np.array([r[scope][metric] for r in per_repeat], dtype=np.float64)
            entry[metric] = float(values.mean())
            entry[f"{metric}_std"] = float(values.std(ddof=1)) if values.size > 1 else 0.0
        entry["n"] = float(per_repeat[0][scope]["n"])
        out[scope] = entry
    return out


@dataclass
class CVResult:
    """Cross-validation of one model under one protocol."""

    protocol: str
    folds: int
    repeats: int
    metrics: dict[str, dict[str, float]]
    """Per scope (overall, red, white): mean over repeats of metrics on pooled out-of-fold predictions."""
    fit_seconds: float
    oof_predictions: np.ndarray = field(repr=False, default_factory=lambda: np.empty(0))
    """Out-of-fold predictions of the first repeat."""
    oof_repeats: np.ndarray = field(repr=False, default_factory=lambda: np.empty((0, 0)))
    """Out-of-fold predictions of every repeat, ``(repeats, n)`` (NaN where a row was in no
    validation fold): what ensembles and prediction intervals are calibrated on."""


def cross_validate(
    fit_predict: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray],
    X: np.ndarray,
    y: np.ndarray,
    is_red: np.ndarray,
    repeats: Sequence[Sequence[Fold]],
    protocol: str,
    progress: Callable[[Iterable[Any]], Iterable[Any]] | None = None,
) -> CVResult:
    """Fit and predict every fold; score the pooled out-of-fold predictions of each repeat.

    ``fit_predict(X_train, y_train, X_valid)`` returns predictions for ``X_valid``.
    """
    started = time.perf_counter()
    per_repeat: list[dict[str, dict[str, float]]] = []
    jobs = [(r, f) for r in range(len(repeats)) for f in range(len(repeats[r]))]
    oof = np.full((len(repeats), y.size), np.nan)
    iterator: Iterable[tuple[int, int]] = progress(jobs) if progress is not None else jobs  # type: ignore[assignment]
    for r, f in iterator:
        train, valid = repeats[r][f]
        oof[r, valid] = fit_predict(X[train], y[train], X[valid])
    for r in range(len(repeats)):
        covered = ~np.isnan(oof[r])
        per_repeat.append(metrics_by_type(y[covered], oof[r][covered], is_red[covered]))
    first_oof = oof[0]
    return CVResult(
        protocol=protocol,
        folds=len(repeats[0]),
        repeats=len(repeats),
        metrics=summarize(per_repeat),
        fit_seconds=time.perf_counter() - started,
        oof_predictions=first_oof,
        oof_repeats=oof,
    )
