"""Input drift: a bounded window of the rows this router served, compared with the training bins.

The request path only appends a row to :class:`winemeup.insight.DriftWindow` (a tuple ring
per wine type; about a microsecond). A periodic task, off the request path, bins the window
in a worker thread and sets the Prometheus gauges (PSI per measurement and wine type, the
out-of-range shares, the rows held) that the PrometheusRule alerts on; ``GET /v1/drift``
answers the last aggregation. Memory is bounded by ``window_rows`` per wine type whatever the
traffic.

The reference is the drift reference stored with the default model's version at start-up
(every model of one training run shares the training rows, so one reference serves all).
Rows served before it is read are not recorded.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np

from services.router import metrics
from winemeup.insight import DriftReference, DriftWindow, TypeDrift
from winemeup.schema import SCHEMA

logger = logging.getLogger(__name__)

ReferenceLoader = Callable[[], Awaitable[tuple[str, DriftReference] | None]]
"""Returns (label of the model version, its reference), or None while none can be read yet."""


class DriftMonitor:
    """The served-rows window, its periodic aggregation and the drift gauges."""

    def __init__(self, window_rows: int, interval_seconds: float, psi_threshold: float, enabled: bool = True):
        self.window_rows = window_rows
        self.interval = interval_seconds
        self.psi_threshold = psi_threshold
        self.enabled = enabled
        self.window: DriftWindow | None = None
        self.reference_label: str | None = None
        self.reason = "" if enabled else "drift monitoring is switched off (drift_enabled=false)"
        self._report: dict[str, TypeDrift] = {}
        self._updated: float | None = None
        self._task: asyncio.Task[None] | None = None

    # -- the request path -------------------------------------------------------------------

    def add(self, row: list[float]) -> None:
        """Record one served row (a no-op until the reference is read)."""
        window = self.window
        if window is not None:
            window.add(row)

    def add_rows(self, matrix: np.ndarray) -> None:
        """Record a served batch."""
        window = self.window
        if window is not None:
            window.add_rows(matrix)

    # -- off the request path ---------------------------------------------------------------

    def start(self, load_reference: ReferenceLoader) -> None:
        """Start the periodic task: read the reference (retrying), then aggregate every interval."""
        if self.enabled:
            self._task = asyncio.get_running_loop().create_task(self._run(load_reference))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    async def _run(self, load_reference: ReferenceLoader) -> None:
        while self.window is None:
            try:
                found = await load_reference()
            except Exception as e:
                found = None
                self.reason = f"no drift reference yet: {e}"
            if found is not None:
                self.reference_label, reference = found
                self.window = DriftWindow(reference, self.window_rows)
                self.reason = ""
                logger.info("drift: window of %d rows per wine type against %s", self.window_rows, found[0])
                break
            await asyncio.sleep(min(self.interval, 5.0))
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.aggregate()
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug here must not end monitoring
                logger.exception("drift aggregation failed")

    async def aggregate(self) -> None:
        """Compute the window's drift (in a worker thread) and set the gauges."""
        window = self.window
        if window is None:
            return
        started = time.perf_counter()
        report = await asyncio.to_thread(window.report)
        self._report = report
        self._updated = time.monotonic()
        for wine_type, drift in report.items():
            metrics.DRIFT_WINDOW_ROWS.labels(wine_type).set(drift.rows)
            metrics.DRIFT_OUT_OF_RANGE_ROWS.labels(wine_type).set(drift.out_of_range_rows)
            for feature, value in drift.psi.items():
                metrics.DRIFT_PSI.labels(feature, wine_type).set(value)
                metrics.DRIFT_OUT_OF_RANGE.labels(feature, wine_type).set(drift.out_of_range[feature])
        metrics.DRIFT_AGGREGATION_SECONDS.set(time.perf_counter() - started)

    def describe(self) -> dict[str, Any]:
        """The ``GET /v1/drift`` answer: the last aggregation per wine type and measurement."""
        types = []
        for wine_type, drift in self._report.items():
            finite = [v for v in drift.psi.values() if not math.isnan(v)]
            types.append(
                {
                    "wine_type": wine_type,
                    "rows": drift.rows,
                    "max_psi": max(finite) if finite else None,
                    "out_of_range_rows": drift.out_of_range_rows,
                    "features": [
                        {
                            "feature": f.name,
                            "psi": None if math.isnan(drift.psi[f.name]) else drift.psi[f.name],
                            "out_of_range": drift.out_of_range[f.name],
                        }
                        for f in SCHEMA.measurements
                    ],
                }
            )
        answer: dict[str, Any] = {
            "enabled": self.enabled and self.window is not None,
            "reference": self.reference_label,
            "window_rows": self.window_rows,
            "psi_threshold": self.psi_threshold,
            "updated_seconds_ago": None if self._updated is None else time.monotonic() - self._updated,
            "types": types,
        }
        if self.reason:
            answer["reason"] = self.reason
        return answer
