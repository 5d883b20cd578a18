"""Training side of model insight: conformal interval calibration and drift reference bins.

**Which residuals calibrate the intervals.** Split-conformal needs residuals of rows the model
did not train on. Two sources were possible: a calibration part carved out of the grouped
training split, or the out-of-fold residuals of the grouped CV the run computes anyway. The
out-of-fold residuals are used:

* the saved model keeps the whole training split (a calibration part would cost it ~20 % of
  its rows, or cost every family an extra fit);
* every training row calibrates (about 1,040 red and 3,120 white rows per repeat instead of
  about a fifth of that), so the quantiles are steadier;
* the grouped folds keep duplicate rows on one side, so the residuals are honest.

The price: the out-of-fold models saw 80 % of the training split and the saved model all of
it, so its residuals are slightly smaller and the intervals slightly conservative (CV+ of
Barber et al. 2021 bounds the miscoverage at 2α in the worst case). The held-out test, which
takes no part in the calibration, measures the coverage actually reached.

**Difficulty estimate.** ``normalised`` intervals scale the conformal quantile by the mean
absolute residual in quantile bins of the predicted score (per wine type): the router has
the score and the wine type of every row, nothing more is needed. It is served only when a
check on the training split (calibrate on four folds' residuals, measure on the fifth) finds
it narrower at the same coverage; both are measured and reported.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from training.evaluation import Fold
from winemeup.insight import (
    DRIFT_REFERENCE_FILE,
    INTERVAL_METHODS,
    INTERVALS_FILE,
    INTERVALS_FORMAT,
    Calibration,
    DriftReference,
    Intervals,
    ScaleBins,
    bin_index,
    level_key,
    quantile_edges,
    write_json,
)
from winemeup.schema import WINE_TYPES

LEVELS = (0.8, 0.9)
"""Nominal coverage levels calibrated."""
SCORE_BINS = 5
"""Quantile bins of the predicted score the difficulty estimate is made in."""
NARROWER_BY = 0.02
"""``normalised`` is served when the training-split check finds it at least this much (relative)
narrower at every level, at a coverage no more than :data:`COVERAGE_SLACK` below the absolute one."""
COVERAGE_SLACK = 0.01
DRIFT_BINS = 10
"""Quantile bins per feature of the drift reference."""
METHOD_NOTE = (
    "split-conformal; residuals: out-of-fold predictions of the grouped CV on the training split "
    "(every repeat); per wine type; absolute: score ± q; normalised: score ± q x mean |residual| "
    "in quantile bins of the score"
)


def conformal_quantile(values: np.ndarray, level: float) -> float:
    """The ``ceil((n + 1) level)``-th smallest value (split-conformal's finite-sample quantile)."""
    ordered = np.sort(np.asarray(values, dtype=np.float64))
    n = ordered.size
    if n == 0:
        return math.inf
    k = math.ceil((n + 1) * level)
    return float(ordered[min(k, n) - 1])


def score_scale_bins(scores: np.ndarray, abs_residuals: np.ndarray, bins: int = SCORE_BINS) -> ScaleBins:
    """Mean absolute residual per quantile bin of the score: the difficulty estimate."""
    edges = quantile_edges(scores, bins)
    index = bin_index(edges, scores)
    overall = float(abs_residuals.mean())
    scales = np.empty(edges.size + 1)
    for b in range(scales.size):
        in_bin = abs_residuals[index == b]
        scales[b] = float(in_bin.mean()) if in_bin.size else overall
    # A floor keeps one lucky bin from collapsing its intervals to a point.
    return ScaleBins(edges, np.maximum(scales, max(0.1 * overall, 1e-6)))


def calibrate(scores: np.ndarray, y: np.ndarray, levels: Sequence[float] = LEVELS) -> dict[str, Calibration]:
    """Both methods' calibration from one wine type's out-of-fold scores and targets."""
    abs_res = np.abs(np.asarray(y, dtype=np.float64) - scores)
    out: dict[str, Calibration] = {}
    for method in INTERVAL_METHODS:
        bins = ScaleBins.unit() if method == "absolute" else score_scale_bins(scores, abs_res)
        normalised = abs_res / bins.scale(scores)
        out[method] = Calibration(bins, {level_key(lv): conformal_quantile(normalised, lv) for lv in levels})
    return out


def _coverage_width(
    calibration: Calibration, scores: np.ndarray, y: np.ndarray, level: float
) -> dict[str, float]:
    half = calibration.half_width(scores, level_key(level))
    return {
        "coverage": float(np.mean(np.abs(y - scores) <= half)),
        "mean_width": float(np.mean(2 * half)),
    }


def fold_check(
    scores: np.ndarray, y: np.ndarray, folds: Sequence[np.ndarray], levels: Sequence[float] = LEVELS
) -> dict[str, dict[str, dict[str, float]]]:
    """Calibrate on all folds but one, measure on that one, pooled: ``{method: {level: figures}}``.

    ``folds`` are the index arrays of the rows of each fold (one wine type's rows). Figures:
    pooled coverage and mean width, and the standard deviation of the coverage from fold to
    fold (what one held-out split of that size may show by chance).
    """
    hits: dict[tuple[str, str], list[np.ndarray]] = {}
    widths: dict[tuple[str, str], list[np.ndarray]] = {}
    everything = np.arange(scores.size)
    for held in folds:
        rest = np.setdiff1d(everything, held, assume_unique=True)
        calibrations = calibrate(scores[rest], y[rest], levels)
        for method, calibration in calibrations.items():
            for level in levels:
                half = calibration.half_width(scores[held], level_key(level))
                hits.setdefault((method, level_key(level)), []).append(np.abs(y[held] - scores[held]) <= half)
                widths.setdefault((method, level_key(level)), []).append(2 * half)
    return {
        method: {
            level_key(lv): {
                "coverage": float(np.concatenate(hits[(method, level_key(lv))]).mean()),
                "mean_width": float(np.concatenate(widths[(method, level_key(lv))]).mean()),
                "coverage_fold_std": float(np.std([h.mean() for h in hits[(method, level_key(lv))]])),
            }
            for lv in levels
        }
        for method in INTERVAL_METHODS
    }


def choose_method(check: Mapping[str, Mapping[str, Mapping[str, float]]]) -> str:
    """``normalised`` only when the check finds it narrower at every level at the same coverage."""
    for level, absolute in check["absolute"].items():
        normalised = check["normalised"][level]
        if normalised["mean_width"] > (1 - NARROWER_BY) * absolute["mean_width"]:
            return "absolute"
        if normalised["coverage"] < absolute["coverage"] - COVERAGE_SLACK:
            return "absolute"
    return "normalised"


def interval_document(
    model: str,
    oof_repeats: np.ndarray,
    y_train: np.ndarray,
    is_red_train: np.ndarray,
    cv_folds: Sequence[Sequence[Fold]],
    levels: Sequence[float] = LEVELS,
) -> dict[str, Any]:
    """A model's ``intervals.json`` from its grouped-CV out-of-fold predictions (all repeats)."""
    by_type: dict[str, Any] = {}
    rows: dict[str, int] = {}
    first_fold_of = np.full(y_train.size, -1)
    for k, (_, valid) in enumerate(cv_folds[0]):
        first_fold_of[valid] = k
    for wine_type, mask in ((WINE_TYPES[0], is_red_train), (WINE_TYPES[1], ~is_red_train)):
        scores = oof_repeats[:, mask].reshape(-1)
        targets = np.tile(y_train[mask], oof_repeats.shape[0])
        keep = ~np.isnan(scores)
        calibrations = calibrate(scores[keep], targets[keep], levels)
        first = oof_repeats[0, mask]
        fold_ids = first_fold_of[mask]
        check = fold_check(
            first, y_train[mask], [np.flatnonzero(fold_ids == k) for k in range(len(cv_folds[0]))], levels
        )
        rows[wine_type] = int(mask.sum())
        by_type[wine_type] = {
            "selected": choose_method(check),
            **{method: calibration.to_dict() for method, calibration in calibrations.items()},
            "training_check": check,
        }
    return {
        "format": INTERVALS_FORMAT,
        "model": model,
        "levels": [float(lv) for lv in levels],
        "method": METHOD_NOTE,
        "calibration": {
            "source": "grouped_cv_out_of_fold",
            "repeats": int(oof_repeats.shape[0]),
            "folds": len(cv_folds[0]),
            "rows_per_repeat": rows,
            "score_bins": SCORE_BINS,
            "choice_rule": f"normalised when at least {NARROWER_BY:.0%} narrower at every level with "
            f"coverage no more than {COVERAGE_SLACK * 100:.0f} point(s) below absolute, in a 5-fold "
            "check on the training split's out-of-fold residuals",
        },
        "by_type": by_type,
    }


def held_out_figures(
    document: Mapping[str, Any], scores: np.ndarray, y: np.ndarray, is_red: np.ndarray
) -> dict[str, Any]:
    """Coverage and mean width on the held-out test, per wine type, level and method.

    Computed through :class:`winemeup.insight.Intervals`, i.e. exactly what is served.
    """
    intervals = Intervals.from_dict(document)
    out: dict[str, Any] = {}
    for wine_type, mask in ((WINE_TYPES[0], is_red), (WINE_TYPES[1], ~is_red)):
        entry: dict[str, Any] = {"rows": int(mask.sum()), "selected": intervals.selected[wine_type]}
        for method in INTERVAL_METHODS:
            by_level = {}
            for level in intervals.levels:
                low, high = intervals.interval(scores[mask], wine_type, level, method=method)
                by_level[level_key(level)] = {
                    "coverage": float(np.mean((y[mask] >= low) & (y[mask] <= high))),
                    "mean_width": float(np.mean(high - low)),
                }
            entry[method] = by_level
        out[wine_type] = entry
    return out


def drift_reference_document(X_train: np.ndarray, bins: int = DRIFT_BINS) -> dict[str, Any]:
    """The ``drift_reference.json`` of the models trained on ``X_train``."""
    reference = DriftReference.build(X_train, bins=bins, source="training split of the run (grouped)")
    return reference.to_dict()


def write_model_insight(
    version_dir: Path, intervals: Mapping[str, Any] | None, drift_reference: Mapping[str, Any]
) -> list[Path]:
    """Write ``insight/intervals.json`` and ``insight/drift_reference.json`` into a saved model's
    version directory; returns the paths written."""
    written = [write_json(version_dir, DRIFT_REFERENCE_FILE, drift_reference)]
    if intervals is not None:
        written.append(write_json(version_dir, INTERVALS_FILE, intervals))
    return written
