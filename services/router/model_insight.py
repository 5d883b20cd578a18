"""What the router knows of a served model version beyond its scores: intervals and drift bins.

Training stores two documents with every model version (:mod:`winemeup.insight`): the
split-conformal interval calibration and the drift reference bins. An inline model's are read
from the model store; a runner-placed model's come from its runner (``POST /insight``), so a
router without the model store still answers intervals. Each model's documents are read once
per version and kept (one entry per model: bounded).

Knows models and errors, not HTTP routes or cache keys.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from services.router.errors import ModelUnavailable, NoCalibration, UnsupportedIntervalLevel
from services.router.models import InlineModel, RunnerModel, ServedModel
from winemeup.insight import (
    DRIFT_REFERENCE_FILE,
    INTERVALS_FILE,
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


async def runner_call(model: RunnerModel, route: str, payload: bytes, deadline: float) -> tuple[int, Any]:
    """POST JSON to ``route`` of a model's runner: (HTTP status, decoded body); 503 when unreachable.

    Unlike the predict path, a failure here does not mark the runner down: an explanation or
    an insight read is slower and rarer than a predict, and the probe owns the runner's status.
    """
    import aiohttp

    client = model.client
    try:
        async with client.session.post(
            client.base_url + route,
            data=payload,
            headers={"Content-Type": "application/json"},
            timeout=aiohttp.ClientTimeout(total=deadline),
        ) as resp:
            body = await resp.read()
            status = resp.status
    except TimeoutError as e:
        raise ModelUnavailable(model.name, f"runner {route} gave no answer within {deadline:g}s") from e
    except aiohttp.ClientError as e:
        raise ModelUnavailable(model.name, f"runner {route}: {type(e).__name__}: {e}") from e
    try:
        return status, orjson.loads(body)
    except orjson.JSONDecodeError as e:
        raise ModelUnavailable(model.name, f"runner {route} answered HTTP {status} without JSON") from e


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


def _read_version_dir(path: Path) -> tuple[Any, Any]:
    documents = []
    for relative in (INTERVALS_FILE, DRIFT_REFERENCE_FILE):
        file = path / relative
        documents.append(json.loads(file.read_text()) if file.is_file() else None)
    return documents[0], documents[1]


class ModelInsight:
    """Interval calibration and drift reference of each served model's current version."""

    def __init__(self, store: Path | None, runner_timeout_seconds: float):
        self.store = store
        self.timeout = runner_timeout_seconds
        self._documents: dict[str, InsightDocuments] = {}

    async def documents(self, model: ServedModel, version: str) -> InsightDocuments:
        """The insight of ``model`` at ``version`` (read once per version)."""
        known = self._documents.get(model.name)
        if known is not None and known.version == version:
            return known
        if isinstance(model, RunnerModel):
            status, answer = await runner_call(model, "/insight", b"{}", self.timeout)
            if status != 200 or not isinstance(answer, dict):
                raise ModelUnavailable(model.name, f"runner /insight answered HTTP {status}")
            version = str(answer.get("model_version", version))
            found = _parse(
                model.name, version, answer.get("intervals"), answer.get("drift_reference"), "its runner"
            )
        elif isinstance(model, InlineModel):
            path = await asyncio.to_thread(self._version_dir, model.name, version)
            intervals, drift = await asyncio.to_thread(_read_version_dir, path)
            found = _parse(model.name, version, intervals, drift, str(path / INTERVALS_FILE))
        else:
            found = InsightDocuments(version, None, None, f"a {type(model).__name__} stores no calibration")
        self._documents[model.name] = found
        return found

    def _version_dir(self, name: str, version: str) -> Path:
        from winemeup.runtimes import bentoml_home, read_entry

        return read_entry(self.store if self.store is not None else bentoml_home(), name, version).path

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
