"""The small model-runtime interface every framework module implements.

A runtime wraps one model loaded from the BentoML model store: ``predict(rows)`` takes a
2-D array of model-input rows (schema order, see :mod:`winemeup.schema`) and returns a 1-D
float64 array of scores, one per row. Output-shape quirks of each library are handled in its
own module, never by callers.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from winemeup.schema import SCHEMA


@dataclass(frozen=True)
class ModelInfo:
    """What the model store says of a model: identity plus what training recorded."""

    name: str
    version: str
    framework: str
    labels: dict[str, str] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    load_seconds: float = 0.0
    serving: dict[str, Any] = field(default_factory=dict)
    """How the model is served: ``path`` (onnx | framework), the parity report or the reason."""

    @property
    def serving_path(self) -> str:
        return str(self.serving.get("path", "framework"))

    @property
    def metrics(self) -> dict[str, Any]:
        """The evaluation figures stored at training time (empty if none)."""
        value = self.metadata.get("metrics", {})
        return value if isinstance(value, dict) else {}

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "framework": self.framework,
            "labels": dict(self.labels),
            "metadata": dict(self.metadata),
            "serving": dict(self.serving),
        }


TREE_SHAP = (
    "TreeSHAP (exact, path-dependent, the framework's own implementation or the shap package's); "
    "base is the model's mean prediction over its training data"
)


class ExplainUnavailable(RuntimeError):
    """The model cannot be explained the way it is served here (the router answers 422)."""


@dataclass(frozen=True)
class Explanation:
    """Per-feature contributions of each row: ``base + contributions.sum(axis=1) == scores``.

    ``method`` names how they were computed and what ``base`` means (the mean prediction over
    the training data for TreeSHAP; the score of a reference wine for baseline Shapley).
    """

    method: str
    base: np.ndarray
    """(n,) the value the contributions start from."""
    contributions: np.ndarray
    """(n, 12) one contribution per feature, in schema order."""
    scores: np.ndarray
    """(n,) the model's scores for the rows."""

    @property
    def additivity_error(self) -> float:
        """Largest |base + sum(contributions) - score| over the rows."""
        if self.scores.size == 0:
            return 0.0
        return float(np.max(np.abs(self.base + self.contributions.sum(axis=1) - self.scores)))


BATCH_THREADING_MIN_ROWS = 256
"""Batches at least this large may use ``batch_threads`` native threads; smaller ones use one."""


class ModelRuntime(ABC):
    """One loaded model: ``load`` it, ``predict`` rows, read its ``info``.

    ``batch_threads`` is how many native threads a large batch may use. A request-sized
    predict is always single-threaded: starting a thread pool costs more than it saves.
    """

    framework: ClassVar[str]
    serving_path: ClassVar[str] = "framework"
    """``onnx`` for the accelerated artifact, ``framework`` for the library's own predict."""

    def __init__(self, model: Any, info: ModelInfo, batch_threads: int = 1):
        self.model = model
        self.info = info
        self.batch_threads = max(1, batch_threads)

    def threads_for(self, rows: int) -> int:
        """Native threads to use for a batch of ``rows`` rows."""
        return self.batch_threads if rows >= BATCH_THREADING_MIN_ROWS else 1

    @classmethod
    def load(cls, stored: Any, batch_threads: int = 1) -> ModelRuntime:
        """Load a runtime from a ``bentoml.Model`` (an entry of the model store)."""
        started = time.perf_counter()
        model = cls._load_model(stored)
        info = ModelInfo(
            name=stored.tag.name,
            version=stored.tag.version,
            framework=cls.framework,
            labels=dict(stored.info.labels),
            metadata=dict(stored.info.metadata),
            load_seconds=time.perf_counter() - started,
            serving={"path": "framework"},
        )
        return cls(model, info, batch_threads)

    @classmethod
    @abstractmethod
    def _load_model(cls, stored: Any) -> Any:
        """Load the library's own model object from the model store entry."""

    @abstractmethod
    def _predict(self, rows: np.ndarray) -> Any:
        """The library's predict on a C-contiguous float64 (n, 12) array."""

    @staticmethod
    def _matrix(rows: Any) -> np.ndarray:
        matrix = np.ascontiguousarray(rows, dtype=np.float64)
        if matrix.ndim == 1:
            matrix = matrix.reshape(1, -1)
        if matrix.ndim != 2 or matrix.shape[1] != len(SCHEMA):
            raise ValueError(f"expected rows of {len(SCHEMA)} features, got shape {matrix.shape}")
        return matrix

    def predict(self, rows: Any) -> np.ndarray:
        """Scores for a batch of model-input rows, as a 1-D float64 array of the same length."""
        matrix = self._matrix(rows)
        if matrix.shape[0] == 0:
            return np.empty(0, dtype=np.float64)
        scores = np.asarray(self._predict(matrix), dtype=np.float64).reshape(-1)
        if scores.shape[0] != matrix.shape[0]:
            raise ValueError(f"{self.framework} returned {scores.shape[0]} scores for {matrix.shape[0]} rows")
        return scores

    def explain(self, rows: Any) -> Explanation:
        """Per-feature contributions for a batch of model-input rows (see :class:`Explanation`).

        Raises :class:`ExplainUnavailable` when this model cannot be explained here.
        """
        matrix = self._matrix(rows)
        if matrix.shape[0] == 0:
            empty = np.empty(0, dtype=np.float64)
            return Explanation("none", empty, np.empty((0, len(SCHEMA))), empty)
        explanation = self._explain(matrix)
        if explanation.contributions.shape != matrix.shape:
            raise ValueError(
                f"{self.framework} explained {explanation.contributions.shape} for {matrix.shape}"
            )
        return explanation

    def _explain(self, rows: np.ndarray) -> Explanation:
        raise ExplainUnavailable(f"model {self.info.name} ({self.framework}) has no explanation method")

    @property
    def metadata(self) -> dict[str, Any]:
        """Identity and training metadata of the loaded model."""
        return self.info.as_dict()
