"""BentoML adapter: point BentoML at a model store and save fitted models into it.

BentoML reads ``BENTOML_HOME`` once, when its container first resolves the home folder, so
:func:`use_model_store` must run before anything touches the store (in practice: before
``bentoml`` is imported). Every model is saved with the BentoML module of its library and a
``framework`` label, which :func:`winemeup.runtimes.load_runtime` dispatches on.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

from training.models import framework_of

logger = logging.getLogger(__name__)


class ModelStoreError(RuntimeError):
    """The model store is not the one asked for, or a saved model does not load back faithfully."""


def use_model_store(home: Path) -> Path:
    """Make ``home`` (a BentoML home; models go to ``home/models``) the store of this process.

    Writing the environment is the only way to steer BentoML's home; it is done here, in the
    one adapter that talks to BentoML. Raises :class:`ModelStoreError` when BentoML already
    resolved a different home in this process.
    """
    home = home.expanduser().resolve()
    home.mkdir(parents=True, exist_ok=True)
    os.environ["BENTOML_HOME"] = str(home)
    os.environ.setdefault("BENTOML_DO_NOT_TRACK", "True")
    if "bentoml" in sys.modules:
        from bentoml._internal.configuration.containers import BentoMLContainer

        current = Path(BentoMLContainer.bentoml_home.get()).resolve()
        if current != home:
            raise ModelStoreError(
                f"BentoML in this process already uses the model store {current}; "
                f"cannot switch to {home} (set it before bentoml is imported)"
            )
    return home


def save_model(name: str, estimator: Any, *, labels: dict[str, str], metadata: dict[str, Any]) -> str:
    """Save a fitted estimator under ``name`` with its library's BentoML module; return the tag.

    The ``framework`` label is set from the family (lightgbm | xgboost | catboost | sklearn).
    """
    import bentoml

    framework = framework_of(name)
    all_labels = {**labels, "framework": framework}
    if framework == "lightgbm":
        # bentoml.lightgbm stores a Booster; its load_model gives one back.
        model = bentoml.lightgbm.save_model(name, estimator.booster_, labels=all_labels, metadata=metadata)
    elif framework == "xgboost":
        model = bentoml.xgboost.save_model(name, estimator, labels=all_labels, metadata=metadata)
    elif framework == "catboost":
        model = bentoml.catboost.save_model(name, estimator, labels=all_labels, metadata=metadata)
    elif framework == "sklearn":
        model = bentoml.sklearn.save_model(name, estimator, labels=all_labels, metadata=metadata)
    else:  # pragma: no cover - framework_of only knows the four
        raise ValueError(f"no BentoML module for framework {framework!r}")
    logger.info("saved %s", model.tag)
    return str(model.tag)


CANDIDATE_LABEL = "rollout"
"""Label of a version saved with ``--candidate`` (value ``candidate``): not the store's ``latest``."""


def latest_version(home: Path, name: str) -> str | None:
    """The version the store's ``latest`` pointer names for ``name`` (None: none saved yet)."""
    try:
        return (home / "models" / name / "latest").read_text().strip() or None
    except OSError:
        return None


def keep_stable_latest(home: Path, name: str, stable: str | None) -> None:
    """Point ``latest`` back at ``stable`` after saving a candidate.

    BentoML moves ``latest`` to every new save; a candidate must not become what a runner or
    the router loads when no version is named. The stable version stays ``latest``; the
    candidate is named by its version (and carries the label ``rollout: candidate``).
    """
    if stable is not None:
        (home / "models" / name / "latest").write_text(stable)


def verify_round_trip(tag: str, rows: np.ndarray, expected: np.ndarray) -> None:
    """Load ``tag`` through :func:`winemeup.runtimes.load_runtime` and check it predicts ``expected``.

    The comparison is exact: a saved model must predict what it predicted before saving.
    """
    from winemeup.runtimes import load_runtime

    name, _, version = tag.partition(":")
    runtime = load_runtime(name, version or None, path="framework")
    got = runtime.predict(rows)
    if got.shape != expected.shape or not np.array_equal(got, expected):
        worst = float(np.max(np.abs(got - expected))) if got.shape == expected.shape else float("nan")
        raise ModelStoreError(
            f"{tag}: the loaded model predicts differently from the fitted one "
            f"(largest difference {worst:g} over {len(rows)} rows)"
        )
