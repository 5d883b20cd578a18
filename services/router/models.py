"""The models the router serves: inline (in this process) or behind a runner (HTTP).

``ServedModel`` is the one interface the registry and the predictor use: ``predict(matrix)``
returns scores and the model version they came from; ``ensure_ready()`` waits until the model
can answer and names its version; ``warm()`` gets it ready without a request; ``status`` is
ready, loading or unavailable. Models know nothing of cache keys (the predictor owns them).

* :class:`InlineModel` loads lazily with :func:`winemeup.runtimes.load_runtime` in a worker
  thread (the event loop never blocks on a load); small batches are predicted on the loop
  itself, large ones in a thread.
* :class:`RunnerModel` calls a runner over a pooled keep-alive aiohttp session. Concurrent
  misses are gathered into one ``/predict`` call by a :class:`MicroBatcher`. A failed or slow
  call marks the model unavailable at once (later requests get a 503 without waiting); a
  background probe of ``/readyz`` marks it ready again and refreshes its version.
"""

from __future__ import annotations

import asyncio
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from services.router import metrics
from winemeup.errors import ModelUnavailable, NotExplainable
from winemeup.runtimes.base import ExplainUnavailable, Explanation
from winemeup.schema import SCHEMA

logger = logging.getLogger(__name__)

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
        try:
            explanation = await asyncio.to_thread(runtime.explain, rows)
        except ExplainUnavailable as e:
            raise NotExplainable(f"model {self.name} cannot be explained here: {e}") from e
        return str(runtime.info.version), explanation

    async def insight(self, version: str, deadline: float) -> InsightFiles:
        from winemeup.insight import INTERVALS_FILE
        from winemeup.runtimes import bentoml_home, read_entry

        def read() -> InsightFiles:
            path = read_entry(
                self.store if self.store is not None else bentoml_home(), self.name, version
            ).path
            intervals, drift = _read_insight_files(path)
            return InsightFiles(version, intervals, drift, str(path / INTERVALS_FILE))

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


class RunnerUnreachable(Exception):
    """A runner call failed; ``timeout`` tells a deadline from other failures."""

    def __init__(self, message: str, timeout: bool = False):
        super().__init__(message)
        self.timeout = timeout


def _read_insight_files(path: Path) -> tuple[Any, Any]:
    from winemeup.insight import DRIFT_REFERENCE_FILE, INTERVALS_FILE

    documents = []
    for relative in (INTERVALS_FILE, DRIFT_REFERENCE_FILE):
        file = path / relative
        documents.append(orjson.loads(file.read_bytes()) if file.is_file() else None)
    return documents[0], documents[1]


class RunnerClient:
    """HTTP client of one runner (the runner HTTP contract), over a shared aiohttp session."""

    def __init__(self, session: Any, base_url: str, timeout_seconds: float):
        import aiohttp

        self.session = session
        self.base_url = base_url.rstrip("/")
        self._predict_url = self.base_url + "/binary/predict"
        self._metadata_url = self.base_url + "/metadata"
        self._readyz_url = self.base_url + "/readyz"
        self._timeout = aiohttp.ClientTimeout(total=timeout_seconds)
        self._headers = {"Content-Type": "application/json"}
        self._binary_headers = {"Content-Type": "application/octet-stream"}

    async def _post(
        self, url: str, payload: bytes, headers: dict[str, str] | None = None
    ) -> tuple[bytes, Any]:
        """POST ``payload``; the body and headers of a 200 answer, RunnerUnreachable otherwise."""
        import aiohttp

        try:
            async with self.session.post(
                url, data=payload, headers=headers or self._headers, timeout=self._timeout
            ) as resp:
                body = await resp.read()
                if resp.status != 200:
                    snippet = body[:200].decode(errors="replace")
                    raise RunnerUnreachable(f"runner answered HTTP {resp.status}: {snippet}")
                return body, resp.headers
        except TimeoutError as e:
            raise RunnerUnreachable(f"no answer within {self._timeout.total:g}s", timeout=True) from e
        except aiohttp.ClientError as e:
            raise RunnerUnreachable(f"{type(e).__name__}: {e}") from e

    async def _post_json(self, url: str, payload: bytes) -> Any:
        body, _ = await self._post(url, payload)
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError as e:
            raise RunnerUnreachable(f"runner answered invalid JSON: {e}") from e

    async def predict(self, matrix: np.ndarray) -> tuple[np.ndarray, str]:
        """``POST /binary/predict`` with float64 rows -> (scores, model_version)."""
        payload = np.ascontiguousarray(matrix, dtype="<f8").tobytes()
        body, headers = await self._post(self._predict_url, payload, self._binary_headers)
        version = headers.get("X-Model-Version")
        if not version or len(body) != 8 * matrix.shape[0]:
            raise RunnerUnreachable(
                f"runner returned {len(body)} bytes (version {version!r}) for {matrix.shape[0]} rows"
            )
        return np.frombuffer(body, dtype="<f8").copy(), version

    async def metadata(self) -> dict[str, Any]:
        """``POST /metadata {}`` -> name, version, framework, labels, metadata."""
        answer = await self._post_json(self._metadata_url, b"{}")
        if not isinstance(answer, dict) or "version" not in answer:
            raise RunnerUnreachable("runner metadata lacks a version")
        return answer

    async def post_json(self, route: str, payload: bytes, deadline: float) -> tuple[int, Any]:
        """POST JSON to ``route``: (HTTP status, decoded body); RunnerUnreachable when no JSON comes back.

        Unlike ``predict``, any status is returned: the caller reads the runner's error body.
        """
        import aiohttp

        try:
            async with self.session.post(
                self.base_url + route,
                data=payload,
                headers=self._headers,
                timeout=aiohttp.ClientTimeout(total=deadline),
            ) as resp:
                body = await resp.read()
                status = resp.status
        except TimeoutError as e:
            raise RunnerUnreachable(f"{route} gave no answer within {deadline:g}s", timeout=True) from e
        except aiohttp.ClientError as e:
            raise RunnerUnreachable(f"{route}: {type(e).__name__}: {e}") from e
        try:
            return status, orjson.loads(body)
        except orjson.JSONDecodeError as e:
            raise RunnerUnreachable(f"{route} answered HTTP {status} without JSON") from e

    async def ready(self) -> bool:
        """True when ``GET /readyz`` answers 200."""
        import aiohttp

        try:
            async with self.session.get(self._readyz_url, timeout=self._timeout) as resp:
                await resp.read()
                return resp.status == 200
        except (TimeoutError, aiohttp.ClientError):
            return False


class MicroBatcher:
    """Gathers concurrent predict calls into one call of up to ``max_rows`` rows.

    While ``max_inflight`` calls are running, new requests queue; when a call finishes (or
    at once, if a slot is free) the queue is flushed as one call. Under load this batches
    adaptively; with one request at a time it adds no wait (unless ``wait_ms`` > 0).
    """

    def __init__(
        self,
        call: Callable[[np.ndarray], Awaitable[tuple[np.ndarray, str]]],
        max_rows: int,
        wait_ms: float = 0.0,
        max_inflight: int = 2,
    ):
        self.call = call
        self.max_rows = max_rows
        self.wait = wait_ms / 1000.0
        self.max_inflight = max_inflight
        self._queue: list[tuple[np.ndarray, asyncio.Future[tuple[np.ndarray, str]]]] = []
        self._queued_rows = 0
        self._inflight = 0
        self._scheduled = False

    async def submit(self, matrix: np.ndarray) -> tuple[np.ndarray, str]:
        """Scores for ``matrix`` (possibly computed together with other callers' rows)."""
        if matrix.shape[0] >= self.max_rows:
            return await self.call(matrix)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[tuple[np.ndarray, str]] = loop.create_future()
        self._queue.append((matrix, future))
        self._queued_rows += matrix.shape[0]
        if self._queued_rows >= self.max_rows and self._inflight < self.max_inflight:
            self._flush()
        elif not self._scheduled and self._inflight < self.max_inflight:
            self._scheduled = True
            if self.wait > 0:
                loop.call_later(self.wait, self._flush_scheduled)
            else:
                loop.call_soon(self._flush_scheduled)
        return await future

    def _flush_scheduled(self) -> None:
        self._scheduled = False
        self._flush()

    def _flush(self) -> None:
        while self._queue and self._inflight < self.max_inflight:
            batch: list[tuple[np.ndarray, asyncio.Future[tuple[np.ndarray, str]]]] = []
            rows = 0
            while self._queue and (not batch or rows + self._queue[0][0].shape[0] <= self.max_rows):
                item = self._queue.pop(0)
                batch.append(item)
                rows += item[0].shape[0]
            self._queued_rows -= rows
            self._inflight += 1
            asyncio.get_running_loop().create_task(self._run(batch))

    async def _run(self, batch: list[tuple[np.ndarray, asyncio.Future[tuple[np.ndarray, str]]]]) -> None:
        try:
            matrix = batch[0][0] if len(batch) == 1 else np.concatenate([m for m, _ in batch])
            try:
                scores, version = await self.call(matrix)
            except BaseException as e:
                for _, future in batch:
                    if not future.done():
                        future.set_exception(e)
                return
            start = 0
            for m, future in batch:
                end = start + m.shape[0]
                if not future.done():
                    future.set_result((scores[start:end], version))
                start = end
        finally:
            self._inflight -= 1
            if self._queue:
                self._flush()


class RunnerModel(ServedModel):
    """A model served by its own runner process."""

    placement = "runner"

    def __init__(
        self,
        name: str,
        client: RunnerClient,
        probe_interval: float,
        max_rows: int,
        wait_ms: float,
        max_inflight: int,
    ):
        super().__init__(name)
        self.client = client
        self.probe_interval = probe_interval
        self.batcher = MicroBatcher(self._call, max_rows, wait_ms, max_inflight)
        self._probe_task: asyncio.Task[None] | None = None
        self._errors = metrics.RUNNER_ERRORS.labels(name)
        self._timeouts = metrics.RUNNER_TIMEOUTS.labels(name)
        self._rows = metrics.RUNNER_CALL_ROWS.labels(name)
        self._checked = asyncio.Event()

    async def _call(self, matrix: np.ndarray) -> tuple[np.ndarray, str]:
        self._rows.observe(matrix.shape[0])
        try:
            scores, version = await self.client.predict(matrix)
        except RunnerUnreachable as e:
            (self._timeouts if e.timeout else self._errors).inc()
            self._set_status(UNAVAILABLE, str(e))
            raise ModelUnavailable(self.name, str(e)) from e
        if version != self.version:
            # The runner now serves another version: new cache keys from here on.
            self._set_identity(version, self.framework, self.labels, self.metadata)
        return scores, version

    async def _post_json(self, route: str, payload: bytes, deadline: float) -> tuple[int, Any]:
        # Unlike a predict, a failure here does not mark the runner down: an explanation or an
        # insight read is slower and rarer than a predict, and the probe owns the runner's status.
        try:
            return await self.client.post_json(route, payload, deadline)
        except RunnerUnreachable as e:
            raise ModelUnavailable(self.name, f"runner {e}") from e

    async def explain(self, rows: np.ndarray, deadline: float) -> tuple[str, Explanation]:
        payload = orjson.dumps({"rows": rows}, option=orjson.OPT_SERIALIZE_NUMPY)
        status, answer = await self._post_json("/explain", payload, deadline)
        if status == 422:
            reason = answer.get("error", "") if isinstance(answer, dict) else ""
            raise NotExplainable(f"model {self.name} cannot be explained by its runner: {reason}")
        if status != 200 or not isinstance(answer, dict):
            raise ModelUnavailable(self.name, f"runner /explain answered HTTP {status}")
        try:
            explanation = Explanation(
                str(answer["method"]),
                np.asarray(answer["base"], dtype=np.float64),
                np.asarray(answer["contributions"], dtype=np.float64).reshape(-1, len(SCHEMA)),
                np.asarray(answer["scores"], dtype=np.float64),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise ModelUnavailable(self.name, f"runner /explain answered a malformed body: {e}") from e
        if explanation.scores.shape[0] != rows.shape[0]:
            raise ModelUnavailable(self.name, "runner /explain answered the wrong number of rows")
        return str(answer.get("model_version", "")), explanation

    async def insight(self, version: str, deadline: float) -> InsightFiles:
        status, answer = await self._post_json("/insight", b"{}", deadline)
        if status != 200 or not isinstance(answer, dict):
            raise ModelUnavailable(self.name, f"runner /insight answered HTTP {status}")
        served = str(answer.get("model_version", version))
        return InsightFiles(served, answer.get("intervals"), answer.get("drift_reference"), "its runner")

    async def probe(self) -> None:
        """Check ``/readyz``; on success refresh the version from ``/metadata``."""
        try:
            if not await self.client.ready():
                if self.status != UNAVAILABLE or not self.reason:
                    self._set_status(UNAVAILABLE, f"runner at {self.client.base_url} is not ready")
                return
            meta = await self.client.metadata()
            self._set_identity(
                str(meta["version"]),
                meta.get("framework"),
                dict(meta.get("labels") or {}),
                dict(meta.get("metadata") or {}),
            )
            self._set_serving(
                dict(meta.get("serving") or {"path": "framework", "reason": "runner did not say"})
            )
            self._set_status(READY)
        except RunnerUnreachable as e:
            self._set_status(UNAVAILABLE, str(e))
        finally:
            self._checked.set()

    async def _probe_loop(self) -> None:
        while True:
            try:
                await self.probe()
            except asyncio.CancelledError:
                raise
            except Exception:  # a probe bug must not end probing
                logger.exception("probing runner of %s failed", self.name)
            await asyncio.sleep(self.probe_interval)

    async def start(self) -> None:
        self._probe_task = asyncio.get_running_loop().create_task(self._probe_loop())

    async def close(self) -> None:
        if self._probe_task is not None:
            self._probe_task.cancel()

    async def ensure_ready(self) -> str:
        version = self.version
        if self.status == READY and version is not None:
            return version
        if not self._checked.is_set():
            # First requests right after start-up wait for the first probe (bounded by its timeout).
            await self._checked.wait()
            version = self.version
            if self.status == READY and version is not None:
                return version
        raise ModelUnavailable(self.name, self.reason or "runner not ready")

    async def predict(self, matrix: np.ndarray) -> tuple[np.ndarray, str]:
        if self.status != READY:
            raise ModelUnavailable(self.name, self.reason or "runner not ready")
        return await self.batcher.submit(matrix)
