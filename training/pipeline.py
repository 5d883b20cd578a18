"""One training run: split, tune, cross-validate, fit, and describe the result of each model.

This module imports no BentoML: :func:`run_training` returns fitted estimators and their
figures; :func:`model_metadata` turns one result into the plain metadata the model store
keeps. Saving is :mod:`training.store`'s job (called by the CLI).
"""

from __future__ import annotations

import importlib.metadata
import logging
import math
import platform
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits
from tqdm.auto import tqdm

from training.data import WineData
from training.ensembles import EnsembleReport, evaluate_ensembles
from training.evaluation import (
    CVResult,
    cross_validate,
    grouped_folds,
    holdout_split,
    metrics_by_type,
    paper_folds,
)
from training.insight import drift_reference_document, held_out_figures, interval_document
from training.models import (
    EVALUATED_MODELS,
    UNTUNED_LIGHTGBM,
    TuningResult,
    default_params,
    fit,
    fit_predict,
    framework_of,
    predict,
    tune_lightgbm,
)
from training.progress import ModelProgress, chain
from training.settings import TrainingSettings
from winemeup.runtimes import MODEL_NAMES
from winemeup.schema import SCHEMA, SCHEMA_VERSION

logger = logging.getLogger(__name__)

LIBRARIES = ("lightgbm", "xgboost", "catboost", "scikit-learn", "optuna", "numpy", "bentoml")

PROTOCOL_NOTES = {
    "grouped": (
        "Held-out test split ({test_pct:.0f}%) and {repeats}x repeated {folds}-fold CV on the training "
        "part, stratified by wine type and quality and grouped by the full feature+type row, so all "
        "exact duplicate rows stay on one side of every split. The saved model is the one fitted on "
        "the training part: its test figures describe exactly that model."
    ),
    "paper": (
        "Paper-style protocol (Cortez et al. 2009: 20 runs of 5-fold CV, no de-duplication): "
        "{repeats}x repeated plain shuffled {folds}-fold CV over all rows of both types. Copies of a "
        "row can fall into both the training and the validation fold, which flatters every model; "
        "use it only to compare with the paper."
    ),
}


@dataclass
class ModelResult:
    """Everything one model family's evaluation and final fit produced."""

    name: str
    framework: str
    params: dict[str, Any]
    cv: CVResult
    """Grouped repeated k-fold CV on the training part."""
    paper_cv: CVResult
    """Paper-style plain repeated k-fold over all rows."""
    test: dict[str, dict[str, float]]
    """Held-out test metrics per scope of the final (saved) model."""
    fit_seconds: float
    """Seconds to fit the final model on the training part."""
    total_seconds: float
    """Seconds for this model in all: tuning, both CVs, final fit and test."""
    cpu_seconds: float
    """CPU seconds of this process (all threads) over the same span: wall time on a busy machine
    is mostly waiting for a core."""
    tuning: TuningResult | None
    estimator: Any = field(repr=False)
    test_predictions: np.ndarray = field(repr=False)
    intervals: dict[str, Any] | None = field(default=None, repr=False)
    """The ``insight/intervals.json`` document stored with the model (saved models only)."""

    @property
    def saved(self) -> bool:
        """Whether this result is one of the seven models that go into the store."""
        return self.name in MODEL_NAMES

    def metrics(self) -> dict[str, Any]:
        """Figures by protocol and scope: ``cv``, ``test`` (grouped) and ``paper_cv``."""
        return {
            "cv": plain_json(self.cv.metrics),
            "test": plain_json(self.test),
            "paper_cv": plain_json(self.paper_cv.metrics),
        }


@dataclass
class DataSummary:
    """What the run trained on."""

    rows: dict[str, int]
    unique_rows: dict[str, int]
    train_rows: int
    test_rows: int
    sha256: dict[str, str]
    dataset_sha256: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "rows": dict(self.rows),
            "unique_rows": dict(self.unique_rows),
            "train_rows": self.train_rows,
            "test_rows": self.test_rows,
            "sha256": dict(self.sha256),
            "dataset_sha256": self.dataset_sha256,
        }


@dataclass
class TrainingRun:
    """A whole run: settings, data, protocol, and one result per evaluated model."""

    started_at: str
    mode: str
    seed: int
    folds: int
    repeats: int
    test_size: float
    trials: int
    threads: int
    data: DataSummary
    results: list[ModelResult]
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    test_index: np.ndarray = field(repr=False, default_factory=lambda: np.empty(0, dtype=np.int64))
    ensembles: EnsembleReport | None = field(default=None, repr=False)
    """Blends of the saved families (grouped protocol), when at least two were trained."""
    ensemble_intervals: dict[str, Any] | None = field(default=None, repr=False)
    """Interval calibration of the best blend (same shape as a model's ``intervals.json``)."""
    drift_reference: dict[str, Any] = field(default_factory=dict, repr=False)
    """The ``insight/drift_reference.json`` document stored with every model of the run."""
    insight_seconds: float = 0.0
    """Seconds spent on blends, interval calibration and the drift reference."""

    def result(self, name: str) -> ModelResult:
        for r in self.results:
            if r.name == name:
                return r
        raise KeyError(name)

    def protocol_notes(self) -> dict[str, str]:
        values = {"test_pct": self.test_size * 100, "repeats": self.repeats, "folds": self.folds}
        return {k: v.format(**values) for k, v in PROTOCOL_NOTES.items()}


def summarize_data(data: WineData, train: np.ndarray, test: np.ndarray) -> DataSummary:
    """Row counts (all and unique, per type), split sizes and checksums."""
    rows: dict[str, int] = {}
    unique: dict[str, int] = {}
    for wine_type, mask in (("red", data.is_red), ("white", ~data.is_red)):
        rows[wine_type] = int(mask.sum())
        unique[wine_type] = int(np.unique(data.X[mask], axis=0).shape[0])
    return DataSummary(
        rows=rows,
        unique_rows=unique,
        train_rows=int(train.size),
        test_rows=int(test.size),
        sha256=dict(data.sha256),
        dataset_sha256=data.dataset_sha256,
    )


def select_models(names: Sequence[str]) -> list[str]:
    """Validate requested model names; all seven when none. Adds the untuned LightGBM reference
    whenever LightGBM is trained."""
    unknown = [n for n in names if n not in MODEL_NAMES]
    if unknown:
        raise ValueError(f"unknown model(s) {', '.join(unknown)}; known: {', '.join(MODEL_NAMES)}")
    chosen = [n for n in MODEL_NAMES if n in names] if names else list(MODEL_NAMES)
    if "lightgbm" in chosen:
        chosen.insert(chosen.index("lightgbm") + 1, UNTUNED_LIGHTGBM)
    return chosen


def run_training(
    data: WineData,
    settings: TrainingSettings,
    names: Sequence[str] = (),
    *,
    progress: bool = True,
) -> TrainingRun:
    """Evaluate and fit the chosen families (all seven when ``names`` is empty).

    Per family: (LightGBM only) Optuna search on grouped folds of the training part; grouped
    repeated CV on the training part; paper-style repeated CV on all rows; final fit on the
    training part scored on the held-out test split.
    """
    # See training.models.fit: the OpenMP pools are capped for the whole run.
    with threadpool_limits(limits=settings.n_jobs):
        return _run_training(data, settings, names, progress=progress)


@dataclass
class _Splits:
    """The splits every model of a run is evaluated on (the same for all of them)."""

    train: np.ndarray
    test: np.ndarray
    cv_folds: list[list[Any]]
    paper_folds: list[list[Any]]
    tuning_folds: list[Any]


def _split(data: WineData, settings: TrainingSettings) -> _Splits:
    groups = data.groups()
    strata = data.strata()
    train, test = holdout_split(strata, groups, settings.test_size, settings.seed)
    repeats = settings.n_repeats
    return _Splits(
        train=train,
        test=test,
        cv_folds=grouped_folds(strata[train], groups[train], settings.cv_folds, repeats, settings.seed),
        paper_folds=paper_folds(len(data), settings.cv_folds, repeats, settings.seed),
        # The search gets its own fold seed: its folds are not the ones the CV figures come from.
        tuning_folds=grouped_folds(strata[train], groups[train], settings.cv_folds, 1, settings.seed + 1000)[
            0
        ],
    )


def _run_training(
    data: WineData, settings: TrainingSettings, names: Sequence[str], *, progress: bool
) -> TrainingRun:
    started = time.perf_counter()
    run_started = time.monotonic()
    cpu_started = time.process_time()
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    chosen = select_models(names)
    splits = _split(data, settings)
    summary = summarize_data(data, splits.train, splits.test)
    logger.info(
        "data: %d rows (%d unique), train %d, test %d, dataset sha256 %s",
        len(data),
        sum(summary.unique_rows.values()),
        splits.train.size,
        splits.test.size,
        summary.dataset_sha256[:12],
    )
    results: list[ModelResult] = []
    models_bar = tqdm(chosen, desc="models", unit="model", disable=not progress)
    for index, name in enumerate(models_bar, start=1):
        models_bar.set_postfix_str(name)
        reporter = ModelProgress(name, index, len(chosen), run_started)
        results.append(_train_one(name, data, splits, settings, reporter, progress=progress))
    insight_started = time.perf_counter()
    ensembles, ensemble_intervals, drift_reference = _insight(data, splits, results)
    return TrainingRun(
        started_at=started_at,
        mode="fast" if settings.fast else "full",
        seed=settings.seed,
        folds=settings.cv_folds,
        repeats=settings.n_repeats,
        test_size=settings.test_size,
        trials=settings.n_trials,
        threads=settings.n_jobs,
        data=summary,
        results=results,
        seconds=time.perf_counter() - started,
        cpu_seconds=time.process_time() - cpu_started,
        test_index=splits.test,
        ensembles=ensembles,
        ensemble_intervals=ensemble_intervals,
        drift_reference=drift_reference,
        insight_seconds=time.perf_counter() - insight_started,
    )


def _insight(
    data: WineData, splits: _Splits, results: list[ModelResult]
) -> tuple[EnsembleReport | None, dict[str, Any] | None, dict[str, Any]]:
    """Interval calibration of every saved model (set on its result), the blends of the saved
    families with the best blend's calibration, and the drift reference of the training split."""
    train, test = splits.train, splits.test
    y_train, is_red_train = data.y[train], data.is_red[train]
    y_test, is_red_test = data.y[test], data.is_red[test]
    saved = [r for r in results if r.saved]
    for r in saved:
        r.intervals = _intervals(r.name, r.cv.oof_repeats, r.test_predictions, data, splits)
    ensembles = None
    ensemble_intervals = None
    if len(saved) >= 2:
        ensembles = evaluate_ensembles(
            {r.name: r.cv.oof_repeats for r in saved},
            {r.name: r.cv.metrics for r in saved},
            {r.name: r.test_predictions for r in saved},
            y_train,
            is_red_train,
            y_test,
            is_red_test,
            splits.cv_folds,
        )
        if ensembles.best is not None:
            best = ensembles.best
            ensemble_intervals = _intervals(best.name, best.oof_repeats, best.test_predictions, data, splits)
    return ensembles, ensemble_intervals, drift_reference_document(data.X[train])


def _intervals(
    name: str, oof_repeats: np.ndarray, test_predictions: np.ndarray, data: WineData, splits: _Splits
) -> dict[str, Any]:
    train, test = splits.train, splits.test
    document = interval_document(name, oof_repeats, data.y[train], data.is_red[train], splits.cv_folds)
    document["held_out_test"] = held_out_figures(document, test_predictions, data.y[test], data.is_red[test])
    return document


def _params(
    name: str,
    X_train: np.ndarray,
    y_train: np.ndarray,
    splits: _Splits,
    settings: TrainingSettings,
    reporter: ModelProgress,
    *,
    progress: bool,
) -> tuple[dict[str, Any], TuningResult | None]:
    """The family's parameters: LightGBM's are searched, the others' are fixed."""
    if name != "lightgbm":
        params = default_params(name, fast=settings.fast, seed=settings.seed, n_jobs=settings.n_jobs)
        return params, None
    reporter.step(f"tuning, {settings.n_trials} trials")
    tuning = tune_lightgbm(
        X_train,
        y_train,
        splits.tuning_folds,
        trials=settings.n_trials,
        fast=settings.fast,
        seed=settings.seed,
        n_jobs=settings.n_jobs,
        show_progress=progress,
        on_trial=lambda done, total: reporter.count("tuning, trial", done, total),
    )
    return tuning.params, tuning


def _train_one(
    name: str,
    data: WineData,
    splits: _Splits,
    settings: TrainingSettings,
    reporter: ModelProgress,
    *,
    progress: bool,
) -> ModelResult:
    """Tune (LightGBM), run both CVs, fit on the training part and score the held-out test."""
    model_started = time.perf_counter()
    model_cpu_started = time.process_time()
    train, test = splits.train, splits.test
    X_train, y_train = data.X[train], data.y[train]
    params, tuning = _params(name, X_train, y_train, splits, settings, reporter, progress=progress)
    runner = fit_predict(name, params, settings.n_jobs)
    cv = _cross_validate(runner, "grouped", data.subset(train), splits.cv_folds, reporter, progress)
    paper = _cross_validate(runner, "paper", data, splits.paper_folds, reporter, progress)
    reporter.step("final fit on the training part")
    fit_started = time.perf_counter()
    estimator = fit(name, params, X_train, y_train, settings.n_jobs)
    fit_seconds = time.perf_counter() - fit_started
    test_pred = predict(estimator, data.X[test])
    result = ModelResult(
        name=name,
        framework=framework_of(name),
        params=params,
        cv=cv,
        paper_cv=paper,
        test=metrics_by_type(data.y[test], test_pred, data.is_red[test]),
        fit_seconds=fit_seconds,
        total_seconds=time.perf_counter() - model_started,
        cpu_seconds=time.process_time() - model_cpu_started,
        tuning=tuning,
        estimator=estimator,
        test_predictions=test_pred,
    )
    reporter.step(f"done, test RMSE {result.test['overall']['rmse']:.4f}")
    logger.info(
        "%s: grouped CV RMSE %.4f, test RMSE %.4f, paper CV MAE %.4f (%.1f s)",
        name,
        cv.metrics["overall"]["rmse"],
        result.test["overall"]["rmse"],
        paper.metrics["overall"]["mae"],
        result.total_seconds,
    )
    return result


def _cross_validate(
    runner: Any,
    protocol: str,
    data: WineData,
    repeats: list[list[Any]],
    reporter: ModelProgress,
    progress: bool,
) -> CVResult:
    """One protocol's repeated CV of a family, with a bar and progress lines per fold."""
    reporter.step(f"{protocol} CV, {sum(len(r) for r in repeats)} folds")
    bars = chain(
        _fold_bar(f"{reporter.name} {protocol} CV", progress),
        reporter.counted(f"{protocol} CV", "fold"),
    )
    return cross_validate(runner, data.X, data.y, data.is_red, repeats, protocol, progress=bars)


def _fold_bar(desc: str, enabled: bool) -> Callable[[Iterable[Any]], Iterable[Any]]:
    def wrap(items: Iterable[Any]) -> Iterable[Any]:
        return tqdm(items, desc=desc, unit="fold", leave=False, disable=not enabled)

    return wrap


def library_versions() -> dict[str, str]:
    """Installed versions of the libraries a model depends on."""
    out = {"python": platform.python_version()}
    for lib in LIBRARIES:
        try:
            out[lib] = importlib.metadata.version(lib)
        except importlib.metadata.PackageNotFoundError:
            try:
                out[lib] = importlib.metadata.version(f"{lib}-cpu")
            except importlib.metadata.PackageNotFoundError:
                continue
    return out


def model_labels(run: TrainingRun) -> dict[str, str]:
    """Short BentoML labels (``framework`` is added by the store adapter)."""
    return {
        "dataset": run.data.dataset_sha256[:12],
        "schema": SCHEMA_VERSION,
        "mode": run.mode,
    }


def model_metadata(result: ModelResult, run: TrainingRun) -> dict[str, Any]:
    """JSON-serialisable metadata of one saved model: metrics, parameters, provenance."""
    meta: dict[str, Any] = {
        "metrics": result.metrics(),
        "params": plain_json(result.params),
        "feature_schema_version": SCHEMA_VERSION,
        "feature_order": list(SCHEMA.names),
        "target": "quality",
        "training_seconds": round(result.fit_seconds, 3),
        "evaluation_seconds": round(result.total_seconds, 3),
        "trained_at": run.started_at,
        "mode": run.mode,
        "seed": run.seed,
        "protocol": {
            "cv": f"grouped stratified {run.folds}-fold x {run.repeats} on the training split",
            "test": f"grouped stratified held-out split, {run.test_size:.0%} of rows",
            "paper_cv": f"plain shuffled {run.folds}-fold x {run.repeats} over all rows (paper-style)",
            "duplicates": "grouped protocols keep all copies of a row on one side",
        },
        "data": run.data.as_dict(),
        "library_versions": library_versions(),
    }
    if result.tuning is not None:
        meta["tuning"] = plain_json(result.tuning.as_dict())
    return meta


def plain_json(value: Any) -> Any:
    """Plain JSON types: NaN/inf become None, numpy scalars become Python numbers, floats rounded."""
    if isinstance(value, dict):
        return {str(k): plain_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain_json(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        return round(value, 6) if math.isfinite(value) else None
    return value


__all__ = [
    "EVALUATED_MODELS",
    "DataSummary",
    "ModelResult",
    "TrainingRun",
    "model_labels",
    "model_metadata",
    "run_training",
    "select_models",
]
