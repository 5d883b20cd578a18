"""Model runtimes, one module per framework, and loading one by model name.

``load_runtime("lightgbm")`` serves the model's accelerated ONNX artifact when it is there and
passes its parity check (:mod:`winemeup.runtimes.accelerated`); otherwise it picks the
framework runtime by the entry's ``framework`` label and imports only that library. The
accelerated path reads the store without BentoML; only the framework path imports it.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import logging
from pathlib import Path
from typing import Any, Literal

from winemeup.runtimes.accelerated import (
    FRAMEWORK,
    ONNX,
    AcceleratedUnavailable,
    OnnxModelRuntime,
    load_accelerated,
)
from winemeup.runtimes.base import ExplainUnavailable, Explanation, ModelInfo, ModelRuntime
from winemeup.runtimes.store import ModelNotInStoreError, StoreEntry, read_entry

logger = logging.getLogger(__name__)

ServingChoice = Literal["auto", "onnx", "framework"]
"""``auto``: the ONNX artifact when it passes parity, else the framework; or force one path."""

MODEL_NAMES = (
    "lightgbm",
    "xgboost",
    "catboost",
    "random_forest",
    "extra_trees",
    "hist_gradient_boosting",
    "svr",
)
"""The seven model families, by the names the router, chart and UI use."""

FRAMEWORK_OF_MODEL = {
    "lightgbm": "lightgbm",
    "xgboost": "xgboost",
    "catboost": "catboost",
    "random_forest": "sklearn",
    "extra_trees": "sklearn",
    "hist_gradient_boosting": "sklearn",
    "svr": "sklearn",
}

_RUNTIMES = {
    "lightgbm": ("winemeup.runtimes.lightgbm", "LightGBMRuntime"),
    "xgboost": ("winemeup.runtimes.xgboost", "XGBoostRuntime"),
    "catboost": ("winemeup.runtimes.catboost", "CatBoostRuntime"),
    "sklearn": ("winemeup.runtimes.sklearn", "SklearnRuntime"),
}


def runtime_class(framework: str) -> type[ModelRuntime]:
    """The runtime class for a framework label."""
    try:
        module_name, class_name = _RUNTIMES[framework]
    except KeyError:
        raise ValueError(f"no runtime for framework {framework!r}; known: {', '.join(_RUNTIMES)}") from None
    cls: type[ModelRuntime] = getattr(importlib.import_module(module_name), class_name)
    return cls


def stored_model(name: str, version: str | None = None) -> Any:
    """The ``bentoml.Model`` entry for a model name (latest version unless one is given)."""
    import bentoml
    from bentoml.exceptions import NotFound

    tag = f"{name}:{version or 'latest'}"
    try:
        return bentoml.models.get(tag)
    except NotFound as e:
        raise ModelNotInStoreError(f"model {tag} is not in the model store") from e


def bentoml_home() -> Path:
    """The model store BentoML itself uses in this process (imports BentoML)."""
    from bentoml._internal.configuration.containers import BentoMLContainer

    return Path(BentoMLContainer.bentoml_home.get())


def load_runtime(
    name: str,
    version: str | None = None,
    batch_threads: int = 1,
    *,
    path: ServingChoice = "auto",
    store: Path | None = None,
) -> ModelRuntime:
    """Load a model from the store by name (and version): its ONNX artifact or its framework.

    ``path``: ``auto`` serves the artifact when it loads and passes parity, else falls back to
    the framework with a warning that says why (the reason is in ``runtime.info.serving``);
    ``onnx`` raises :class:`AcceleratedUnavailable` instead of falling back; ``framework``
    never tries the artifact. ``store``: the BentoML home (default: BentoML's own).
    ``batch_threads``: native threads a large framework batch may use.
    """
    home = store if store is not None else bentoml_home()
    entry = read_entry(home, name, version)
    framework = entry.labels.get("framework") or FRAMEWORK_OF_MODEL.get(name)
    if framework is None:
        raise ValueError(f"model {entry.tag} has no 'framework' label")
    reason = "framework path requested"
    if path != FRAMEWORK:
        try:
            accelerated = load_accelerated(entry, framework, batch_threads)
        except AcceleratedUnavailable as e:
            if path == ONNX:
                raise
            reason = str(e)
            logger.warning("model %s: serving with %s, not ONNX: %s", entry.tag, framework, reason)
        else:
            accelerated = _attach_framework(entry, framework, accelerated, batch_threads)
            parity = accelerated.info.serving["parity"]
            logger.info(
                "model %s: serving ONNX artifact (parity over %d rows: largest difference %.2g, "
                "%d grades flip)",
                entry.tag,
                parity["rows"],
                parity["max_abs_diff"],
                parity["grade_flips"],
            )
            return accelerated
    runtime = load_framework(entry, framework, batch_threads)
    runtime.info = dataclasses.replace(runtime.info, serving={"path": FRAMEWORK, "reason": reason})
    return runtime


def _attach_framework(
    entry: StoreEntry, framework: str, runtime: OnnxModelRuntime, batch_threads: int
) -> OnnxModelRuntime:
    """Give an ONNX runtime its framework, loaded on first need: large batches and explanations."""
    if any(importlib.util.find_spec(module) is None for module in ("bentoml", framework)):
        runtime.framework_error = f"{framework} is not installed"
        if runtime.info.serving.get("crossover_rows") is not None:
            logger.info("model %s: %s is not installed: ONNX serves every batch size", entry.tag, framework)
        return runtime
    runtime.framework_loader = lambda: load_framework(entry, framework, batch_threads)
    runtime.framework_error = None
    crossover = runtime.info.serving.get("crossover_rows")
    if crossover is not None:
        runtime.crossover = int(crossover)
        logger.info("model %s: batches of %d rows or more go to %s", entry.tag, crossover, framework)
    return runtime


def load_framework(entry: StoreEntry, framework: str, batch_threads: int = 1) -> ModelRuntime:
    """The framework runtime of a store entry (imports BentoML and the framework).

    Loaded from the entry's own directory, so both paths read the same store whatever
    BentoML's home in this process is.
    """
    import bentoml

    return runtime_class(framework).load(bentoml.Model.from_path(str(entry.path)), batch_threads)


__all__ = [
    "FRAMEWORK",
    "FRAMEWORK_OF_MODEL",
    "MODEL_NAMES",
    "ONNX",
    "AcceleratedUnavailable",
    "ExplainUnavailable",
    "Explanation",
    "ModelInfo",
    "ModelNotInStoreError",
    "ModelRuntime",
    "ServingChoice",
    "StoreEntry",
    "load_framework",
    "load_runtime",
    "read_entry",
    "runtime_class",
    "stored_model",
]
