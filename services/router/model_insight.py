"""What the router knows of a served model version beyond its scores: intervals and drift bins.

Training stores two documents with every model version (:mod:`winemeup.insight`): the
split-conformal interval calibration and the drift reference bins. An inline model's are read
from the model store; a runner-placed model's come from its runner (``POST /insight``), so a
router without the model store still answers intervals. Each model's documents are read once
per version and kept (one entry per model: bounded).

Knows models and errors, not HTTP routes or cache keys.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from services.router.models import ServedModel
from winemeup.errors import NoCalibration, UnsupportedIntervalLevel
from winemeup.insight import (
    DriftReference,
    InsightError,
    Intervals,
    UnknownLevelError,
)
from winemeup.schema import SCHEMA

logger = logging.getLogger(__name__)

WINE_TYPE_COLUMN = SCHEMA.names.index("wine_type")


@dataclass(frozen=True)
class InsightDocuments:
    """The parsed insight of one model version; ``None`` where the version has none."""

    version: str
    intervals: Intervals | None
    drift_reference: DriftReference | None
    problem: str = ""
    """Why the intervals are missing or unreadable (for the 409)."""


def _parse(name: str, version: str, intervals: Any, drift: Any, where: str) -> InsightDocuments:
    label = f"{name}:{version}"
    parsed_intervals: Intervals | None = None
    problem = f"{where} holds no interval calibration"
    if intervals is not None:
        try:
            parsed_intervals = Intervals.from_dict(intervals, model=label)
            problem = ""
        except InsightError as e:
            problem = str(e)
    reference: DriftReference | None = None
    if drift is not None:
        try:
            reference = DriftReference.from_dict(drift, model=label)
        except InsightError as e:
            logger.warning("model %s: drift reference unreadable: %s", label, e)
    return InsightDocuments(version, parsed_intervals, reference, problem)


class ModelInsight:
    """Interval calibration and drift reference of each served model's current version."""

    def __init__(self, runner_timeout_seconds: float):
        self.timeout = runner_timeout_seconds
        self._documents: dict[str, InsightDocuments] = {}

    async def documents(self, model: ServedModel, version: str) -> InsightDocuments:
        """The insight of ``model`` at ``version`` (read once per version)."""
        known = self._documents.get(model.name)
        if known is not None and known.version == version:
            return known
        files = await model.insight(version, self.timeout)
        found = _parse(model.name, files.version, files.intervals, files.drift_reference, files.where)
        self._documents[model.name] = found
        return found

    async def intervals(
        self, model: ServedModel, version: str, scores: np.ndarray, rows: np.ndarray, level: float
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(low, high)`` per score at ``level``, for each row's wine type.

        :class:`NoCalibration` (409) when the version has no calibration,
        :class:`UnsupportedIntervalLevel` (422) for a level it was not calibrated at.
        """
        found = await self.documents(model, version)
        if found.intervals is None:
            raise NoCalibration(
                f"model {model.name} (version {version}) has no prediction-interval calibration "
                f"({found.problem}); retrain it (python -m training train {model.name}) to get intervals"
            )
        try:
            return found.intervals.interval(scores, rows[:, WINE_TYPE_COLUMN], level)
        except UnknownLevelError as e:
            raise UnsupportedIntervalLevel(str(e)) from e
