"""Names of the custom resources and of the seven model families as Kubernetes names.

Kept free of heavy imports (the operator image carries no ML library): the family list is
checked against :data:`winemeup.runtimes.MODEL_NAMES` by the tests.
"""

from __future__ import annotations

GROUP = "serving.winemeup.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
WINEMODEL = "WineModel"
WINEMODELS = "winemodels"
WINETRAFFIC = "WineTraffic"
WINETRAFFICS = "winetraffics"

FIELD_MANAGER = "winemeup-operator"
"""The server-side apply field manager of every object the operator writes."""
MANAGED_BY = "winemeup-operator"
"""The app.kubernetes.io/managed-by label of the objects the operator creates."""
GENERATION_ANNOTATION = f"{GROUP}/generation"
"""Annotation on each desired object: the WineModel generation it was computed from."""

FAMILIES = (
    "lightgbm",
    "xgboost",
    "catboost",
    "random_forest",
    "extra_trees",
    "hist_gradient_boosting",
    "svr",
)
"""The seven model families, by the names the router and chart use."""


def slug(model: str) -> str:
    """A model name as a Kubernetes name: random_forest -> random-forest."""
    return model.replace("_", "-")


def model_of(name: str) -> str | None:
    """The model family a WineModel named ``name`` serves, or None when it names none."""
    model = name.replace("-", "_")
    return model if model in FAMILIES and slug(model) == name else None


WINEMODEL_NAMES = tuple(slug(m) for m in FAMILIES)
"""The only names a WineModel may have (the CRD's CEL rule lists the same)."""
