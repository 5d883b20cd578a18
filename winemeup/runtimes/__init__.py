"""Model runtimes, one module per framework, and loading one by model name.

``load_runtime("lightgbm")`` reads the model store entry, picks the runtime by the entry's
``framework`` label and imports only that library.
"""

from __future__ import annotations

import importlib
from typing import Any

from winemeup.runtimes.base import ModelInfo, ModelRuntime

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


class ModelNotInStoreError(LookupError):
    """The model store holds no model under that name (and version)."""


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


def load_runtime(name: str, version: str | None = None, batch_threads: int = 1) -> ModelRuntime:
    """Load a model from the store by name (and version) into its framework's runtime.

    ``batch_threads``: native threads a large batch may use (LightGBM and CatBoost).
    """
    stored = stored_model(name, version)
    framework = stored.info.labels.get("framework") or FRAMEWORK_OF_MODEL.get(name)
    if framework is None:
        raise ValueError(f"model {stored.tag} has no 'framework' label")
    return runtime_class(framework).load(stored, batch_threads)


__all__ = [
    "FRAMEWORK_OF_MODEL",
    "MODEL_NAMES",
    "ModelInfo",
    "ModelNotInStoreError",
    "ModelRuntime",
    "load_runtime",
    "runtime_class",
    "stored_model",
]
