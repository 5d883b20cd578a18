"""The models the router serves: inline (in this process) or behind a runner (HTTP).

``ServedModel`` is the one interface the registry and the predictor use: ``predict(matrix)``
returns scores and the model version they came from; ``ensure_ready()`` waits until the model
can answer and names its version; ``warm()`` gets it ready without a request; ``status`` is
ready, loading or unavailable. Models know nothing of cache keys (the predictor owns them).

* :class:`InlineModel` loads lazily with :func:`winemeup.runtimes.load_runtime` in a worker
  thread (the event loop never blocks on a load); small batches are predicted on the loop
  itself, large ones in a thread.
* :class:`~services.router.runners.RunnerModel` calls the model's runner over HTTP.
"""

from __future__ import annotations

import asyncio
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from services.router import metrics
from winemeup.errors import (
    ModelUnavailable,
    NotExplainable,
)
from winemeup.runtimes.base import ExplainUnavailable, Explanation
from winemeup.schema import SCHEMA

logger = logging.getLogger(__name__)

EXPLAIN_PIECE_ROWS = 4
"""Rows an inline model explains between two checks of the deadline (a forest: ~0.5 s a row)."""

READY = "ready"
LOADING = "loading"
UNAVAILABLE = "unavailable"


@dataclass(frozen=True)
class InsightFiles:
    """The raw insight documents of one model version, and where they were looked for."""

    version: str
    intervals: Any
    drift_reference: Any
    where: str


class ServedModel(ABC):
    """One model as the routes see it."""

    placement: str = ""
    in_process: bool = False
    """True when the model runs in this process: the pod can serve only once it is loaded
    (a runner is shared by every pod, so its outage is that model's 503, not the pod's)."""

    def __init__(self, name: str):
        self.name = name
        self.status = LOADING
        self.reason = ""
        self.version: str | None = None
        self.framework: str | None = None
        self.metadata: dict[str, Any] = {}
        self.labels: dict[str, str] = {}
        self.serving: dict[str, Any] = {}
        self._ready_gauge = metrics.MODEL_READY.labels(name, self.placement)
        self._ready_gauge.set(0)

    def _set_status(self, status: str, reason: str = "") -> None:
        if status != self.status:
            log = logger.info if status == READY else logger.warning
            log(
                "model %s (%s): %s -> %s%s",
                self.name,
                self.placement,
                self.status,
                status,
                f" ({reason})" if reason else "",
            )
        self.status = status
        self.reason = reason
        self._ready_gauge.set(1 if status == READY else 0)

    def _set_identity(
        self, version: str, framework: str | None, labels: dict[str, str], metadata: dict[str, Any]
    ) -> None:
        if version != self.version:
            if self.version is not None:
                logger.info("model %s: version %s -> %s", self.name, self.version, version)
            self.version = version
        self.framework = framework
        self.labels = labels
        self.metadata = metadata

    def _set_serving(self, serving: dict[str, Any]) -> None:
        """Record which path serves the model (onnx | framework); count falling back to the framework."""
        path = str(serving.get("path") or "framework")
        if serving == self.serving:
            return
        self.serving = dict(serving)
        metrics.set_serving_path(self.name, self.placement, path)
        reason = str(serving.get("reason", ""))
        if path == "framework" and reason != "framework path requested":
            metrics.ACCELERATED_FALLBACKS.labels(self.name, self.placement).inc()
            logger.warning(
                "model %s (%s): served by its framework, not ONNX: %s", self.name, self.placement, reason
            )
        else:
            logger.info("model %s (%s): served by %s", self.name, self.placement, path)

    @abstractmethod
    async def ensure_ready(self) -> str:
        """Wait until the model can answer and return its version; raise ModelUnavailable."""

    @abstractmethod
    async def predict(self, matrix: np.ndarray) -> tuple[np.ndarray, str]:
        """Scores for an (n, 12) float64 matrix and the model version that produced them."""

    async def explain(self, rows: np.ndarray, deadline: float) -> tuple[str, Explanation]:
        """(version, per-feature contributions) of rows; :class:`NotExplainable` when it has none."""
        raise NotExplainable(
            f"model {self.name} is a {type(self).__name__}, which has no per-feature explanation"
        )

    async def insight(self, version: str, deadline: float) -> InsightFiles:
        """The interval calibration and drift reference stored with ``version`` (None where absent)."""
        return InsightFiles(version, None, None, f"a {type(self).__name__} stores no calibration")

    async def start(self) -> None:  # noqa: B027 - optional hook
        """Begin background work (probes)."""

    async def warm(self) -> None:  # noqa: B027 - optional hook
        """Get ready to answer without waiting for a request (load, warm up); never raises."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Stop background work."""

    def describe(self) -> dict[str, Any]:
        """The entry of this model in ``GET /v1/models``."""
        metrics_ = self.metadata.get("metrics", {}) if isinstance(self.metadata, dict) else {}
        entry: dict[str, Any] = {
            "name": self.name,
            "framework": self.framework,
            "version": self.version,
            "placement": self.placement,
            "status": self.status,
            "metrics": metrics_ if isinstance(metrics_, dict) else {},
            "serving": self.serving,
        }
        if self.reason:
            entry["reason"] = self.reason
        return entry


class InlineModel(ServedModel):
    """A model loaded into the router process."""

    placement = "inline"
    in_process = True

    def __init__(
        self,
        name: str,
        thread_min_rows: int,
        retry_seconds: float,
        loader: Callable[[str], Any] | None = None,
        loop_max_seconds: float = 0.00025,
        store: Path | None = None,
    ):
        super().__init__(name)
        self.store = store
        """The model store it loads from (None: BentoML's home), where its version's insight lives."""
        self.runtime: Any = None
        self.thread_min_rows = thread_min_rows
        self.loop_max_seconds = loop_max_seconds
        self.row_seconds = 0.0
        self.retry_seconds = retry_seconds
        self._loader = loader
        self._load_task: asyncio.Task[None] | None = None
        self._failed_at = 0.0

    async def explain(self, rows: np.ndarray, deadline: float) -> tuple[str, Explanation]:
        if self.runtime is None:
            await self.ensure_ready()
        runtime = self.runtime
        # A thread cannot be stopped: the rows are explained a few at a time and the deadline
        # is checked between pieces, so an expired request stops costing CPU within one piece.
        expires = time.monotonic() + deadline
        pieces: list[Explanation] = []
        for start in range(0, rows.shape[0], EXPLAIN_PIECE_ROWS):
            if pieces and time.monotonic() > expires:
                raise ModelUnavailable(
                    self.name,
                    f"the explanation did not finish within {deadline:g}s (explain_timeout_seconds)",
                )
            try:
                pieces.append(
                    await asyncio.to_thread(runtime.explain, rows[start : start + EXPLAIN_PIECE_ROWS])
                )
            except ExplainUnavailable as e:
                raise NotExplainable(f"model {self.name} cannot be explained here: {e}") from e
        if len(pieces) == 1:
            return str(runtime.info.version), pieces[0]
        explanation = Explanation(
            pieces[0].method,
            np.concatenate([p.base for p in pieces]),
            np.concatenate([p.contributions for p in pieces]),
            np.concatenate([p.scores for p in pieces]),
        )
        return str(runtime.info.version), explanation

    async def insight(self, version: str, deadline: float) -> InsightFiles:
        from winemeup.insight import INTERVALS_FILE
        from winemeup.runtimes import bentoml_home, read_entry

        def read() -> InsightFiles:
            path = read_entry(
                self.store if self.store is not None else bentoml_home(), self.name, version
            ).path
            intervals, drift = _read_insight_files(path)
            if intervals is None:
                logger.info("model %s:%s: no %s under %s", self.name, version, INTERVALS_FILE, path)
            return InsightFiles(version, intervals, drift, "the model store")

        return await asyncio.to_thread(read)

    def _load_blocking(self) -> Any:
        loader = self._loader
        if loader is None:
            from winemeup.runtimes import load_runtime

            loader = load_runtime
        runtime = loader(self.name)
        # Warm up (first calls allocate) and time a one-row predict: slow models predict in a
        # thread so they never hold the event loop for milliseconds.
        row = np.array([SCHEMA.validate(SCHEMA.example())], dtype=np.float64)
        for _ in range(3):
            runtime.predict(row)
        timings = []
        for _ in range(5):
            started = time.perf_counter()
            runtime.predict(row)
            timings.append(time.perf_counter() - started)
        self.row_seconds = sorted(timings)[len(timings) // 2]
        if self.row_seconds > self.loop_max_seconds:
            self.thread_min_rows = 1
        return runtime

    async def _load(self) -> None:
        self._set_status(LOADING)
        started = time.perf_counter()
        try:
            runtime = await asyncio.to_thread(self._load_blocking)
        except Exception as e:
            self._failed_at = time.monotonic()
            self._set_status(UNAVAILABLE, f"load failed: {e}")
            logger.exception("loading model %s failed", self.name)
            return
        seconds = time.perf_counter() - started
        info = runtime.info
        self.runtime = runtime
        self._set_identity(info.version, info.framework, dict(info.labels), dict(info.metadata))
        self._set_serving(dict(getattr(info, "serving", {}) or {"path": "framework"}))
        metrics.MODEL_LOAD_SECONDS.labels(self.name).set(seconds)
        logger.info(
            "loaded model %s:%s (%s) in %.2fs; one-row predict %.0f µs, %s",
            self.name,
            info.version,
            info.framework,
            seconds,
            self.row_seconds * 1e6,
            "on the event loop" if self.thread_min_rows > 1 else "in a thread",
        )
        self._set_status(READY)

    def begin_load(self) -> asyncio.Task[None]:
        """Start loading (once) unless loaded; a failed load is retried after ``retry_seconds``."""
        task = self._load_task
        if task is not None and not task.done():
            return task
        if self.runtime is None and (
            task is None or time.monotonic() - self._failed_at >= self.retry_seconds
        ):
            task = self._load_task = asyncio.get_running_loop().create_task(self._load())
            return task
        assert task is not None
        return task

    async def warm(self) -> None:
        await asyncio.shield(self.begin_load())

    async def ensure_ready(self) -> str:
        version = self.version
        if version is not None and self.runtime is not None:
            return version
        await asyncio.shield(self.begin_load())
        if self.runtime is None or self.version is None:
            raise ModelUnavailable(self.name, self.reason or "not loaded")
        return self.version

    async def predict(self, matrix: np.ndarray) -> tuple[np.ndarray, str]:
        runtime = self.runtime
        if runtime is None:
            await self.ensure_ready()
            runtime = self.runtime
        # A single-row tree predict takes tens of microseconds: a thread hop costs more than
        # it saves. Large batches go to a thread so other requests keep being served.
        if matrix.shape[0] < self.thread_min_rows:
            scores = runtime.predict(matrix)
        else:
            scores = await asyncio.to_thread(runtime.predict, matrix)
        return scores, runtime.info.version


def _read_insight_files(path: Path) -> tuple[Any, Any]:
    from winemeup.insight import DRIFT_REFERENCE_FILE, INTERVALS_FILE

    documents = []
    for relative in (INTERVALS_FILE, DRIFT_REFERENCE_FILE):
        file = path / relative
        documents.append(orjson.loads(file.read_bytes()) if file.is_file() else None)
    return documents[0], documents[1]
