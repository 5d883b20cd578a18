"""Models behind a runner (HTTP): the runner client, micro-batching, and the served model.

:class:`RunnerModel` calls a runner through a :class:`RunnerClient`. Concurrent misses are
gathered into one ``/binary/predict`` call by a :class:`MicroBatcher`. A call the
runner cannot answer (connection refused, 5xx, a slow small call) marks the model unavailable
at once, so later requests get a 503 without waiting; a background probe of ``/readyz`` marks
it ready again and refreshes its version. A runner's 4xx is the rows' fault: it is that
request's error and never changes the model's status. Every call carries the shared secret
(``X-WineMeUp-Runner-Token``) when one is configured.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np
import orjson

from services.router import metrics, runner_http
from services.router.models import READY, UNAVAILABLE, InsightFiles, ServedModel
from services.router.runner_http import RunnerTransport
from winemeup.errors import (
    MalformedRequest,
    ModelUnavailable,
    NotExplainable,
    PayloadTooLarge,
    ServiceError,
    ValidationFailed,
)
from winemeup.runtimes.base import Explanation
from winemeup.schema import SCHEMA

logger = logging.getLogger(__name__)


class RunnerUnreachable(Exception):
    """A runner call failed; ``timeout`` tells a deadline from other failures.

    The message is what a client may read (no address, no upstream body); ``detail`` is for
    the log only.
    """

    def __init__(self, message: str, timeout: bool = False, detail: str = ""):
        super().__init__(message)
        self.timeout = timeout
        self.detail = detail or message


class RunnerRefused(Exception):
    """A runner answered 4xx to the rows of a call: the request's fault, never the runner's."""

    def __init__(self, status: int, detail: str):
        super().__init__(f"runner answered HTTP {status}")
        self.status = status
        self.detail = detail

    def client_error(self, model: str) -> ServiceError:
        """The error the client that sent the rows gets (the runner's body stays in the log)."""
        if self.status == 413:
            return PayloadTooLarge(f"model '{model}' refused the rows as too large for one call")
        if self.status == 400:
            return MalformedRequest(f"model '{model}' refused the rows as malformed")
        return ValidationFailed([], f"model '{model}' refused the rows (HTTP {self.status})")


RUNNER_TOKEN_HEADER = "X-WineMeUp-Runner-Token"
"""Header carrying the shared secret the runners require of the router."""


class RunnerClient:
    """HTTP client of one runner: ``predict`` over the transport's pools, the rest over its session."""

    def __init__(self, transport: RunnerTransport, base_url: str, timeout: float, token: str | None = None):
        import aiohttp

        self.session = transport.session
        self.base_url = base_url.rstrip("/")
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        credential = {RUNNER_TOKEN_HEADER: token} if token else {}
        self._headers = {"Content-Type": "application/json", **credential}
        self._get_headers = credential
        binary_headers = {"Content-Type": "application/octet-stream", **credential}
        self._predict = runner_http.BinaryPost(
            transport.connections,
            self.base_url,
            "/binary/predict",
            binary_headers,
            timeout,
        )

    def _refusal(self, url: str, status: int, body: bytes) -> Exception:
        """The error of a non-200 answer: RunnerRefused for the rows' fault, else RunnerUnreachable."""
        snippet = body[:200].decode(errors="replace")
        if 400 <= status < 500 and status not in (401, 403, 408, 429):
            return RunnerRefused(status, snippet)
        return RunnerUnreachable(f"runner answered HTTP {status}", detail=f"{url}: HTTP {status}: {snippet}")

    async def _post(self, url: str, payload: bytes) -> tuple[bytes, Any]:
        """POST ``payload``; the body and headers of a 200 answer, RunnerUnreachable otherwise."""
        import aiohttp

        try:
            async with self.session.post(
                url, data=payload, headers=self._headers, timeout=self._timeout
            ) as resp:
                body = await resp.read()
                if resp.status != 200:
                    raise self._refusal(url, resp.status, body)
                return body, resp.headers
        except TimeoutError as e:
            raise RunnerUnreachable(f"no answer within {self._timeout.total:g}s", timeout=True) from e
        except aiohttp.ClientError as e:
            raise RunnerUnreachable(
                f"runner unreachable ({type(e).__name__})", detail=f"{type(e).__name__}: {e}"
            ) from e

    async def _post_json(self, url: str, payload: bytes) -> Any:
        body, _ = await self._post(url, payload)
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError as e:
            raise RunnerUnreachable(f"runner answered invalid JSON: {e}") from e

    async def predict(self, matrix: np.ndarray) -> tuple[np.ndarray, str]:
        """``POST /binary/predict`` with float64 rows -> (scores, model_version)."""
        payload = np.ascontiguousarray(matrix, dtype="<f8").tobytes()
        try:
            answer = await self._predict(payload)
        except TimeoutError as e:  # before OSError, of which it is a subclass
            raise RunnerUnreachable(f"no answer within {self._timeout.total:g}s", timeout=True) from e
        except OSError as e:
            raise RunnerUnreachable(
                f"runner unreachable ({type(e).__name__})", detail=f"{type(e).__name__}: {e}"
            ) from e
        if answer.status != 200:
            raise self._refusal(self.base_url + "/binary/predict", answer.status, answer.body)
        body, version = answer.body, answer.version
        if not version or len(body) != 8 * matrix.shape[0]:
            raise RunnerUnreachable(
                f"runner returned {len(body)} bytes (version {version!r}) for {matrix.shape[0]} rows"
            )
        return np.frombuffer(body, dtype="<f8").copy(), version

    async def metadata(self) -> dict[str, Any]:
        """``POST /metadata {}`` -> name, version, framework, labels, metadata."""
        answer = await self._post_json(self.base_url + "/metadata", b"{}")
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
            raise RunnerUnreachable(
                f"{route}: runner unreachable ({type(e).__name__})", detail=f"{type(e).__name__}: {e}"
            ) from e
        try:
            return status, orjson.loads(body)
        except orjson.JSONDecodeError as e:
            raise RunnerUnreachable(f"{route} answered HTTP {status} without JSON") from e

    async def ready(self) -> bool:
        """True when ``GET /readyz`` answers 200."""
        import aiohttp

        try:
            async with self.session.get(
                self.base_url + "/readyz", headers=self._get_headers, timeout=self._timeout
            ) as resp:
                await resp.read()
                return resp.status == 200
        except (TimeoutError, aiohttp.ClientError):
            return False


_Waiting = tuple[np.ndarray, "asyncio.Future[tuple[np.ndarray, str]]"]
"""Rows queued for a runner call and the future their caller awaits."""


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
        self._queue: list[_Waiting] = []
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
            batch: list[_Waiting] = []
            rows = 0
            while self._queue and (not batch or rows + self._queue[0][0].shape[0] <= self.max_rows):
                item = self._queue.pop(0)
                batch.append(item)
                rows += item[0].shape[0]
            self._queued_rows -= rows
            self._inflight += 1
            asyncio.get_running_loop().create_task(self._run(batch))

    async def _run(self, batch: list[_Waiting]) -> None:
        try:
            matrix = batch[0][0] if len(batch) == 1 else np.concatenate([m for m, _ in batch])
            try:
                scores, version = await self.call(matrix)
            except ServiceError as e:
                if e.status < 500 and len(batch) > 1:
                    # One caller's rows were refused: every caller gets the answer to its own rows.
                    await self._one_by_one(batch)
                else:
                    self._fail(batch, e)
                return
            except BaseException as e:
                self._fail(batch, e)
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

    @staticmethod
    def _fail(batch: list[_Waiting], e: BaseException) -> None:
        for _, future in batch:
            if not future.done():
                future.set_exception(e)

    async def _one_by_one(self, batch: list[_Waiting]) -> None:
        for matrix, future in batch:
            try:
                result = await self.call(matrix)
            except BaseException as e:
                if not future.done():
                    future.set_exception(e)
                continue
            if not future.done():
                future.set_result(result)


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
        self._inflight = metrics.RUNNER_INFLIGHT.labels(name)
        self._checked = asyncio.Event()

    async def _call(self, matrix: np.ndarray) -> tuple[np.ndarray, str]:
        self._rows.observe(matrix.shape[0])
        try:
            scores, version = await self.client.predict(matrix)
        except RunnerRefused as e:
            # The rows' fault: that request's error; the model stays up for everyone else.
            logger.debug(
                "runner of %s refused %d rows: HTTP %d %s", self.name, matrix.shape[0], e.status, e.detail
            )
            raise e.client_error(self.name) from e
        except RunnerUnreachable as e:
            (self._timeouts if e.timeout else self._errors).inc()
            logger.warning("runner of %s failed on %d rows: %s", self.name, matrix.shape[0], e.detail)
            if not (e.timeout and matrix.shape[0] > self.batcher.max_rows):
                # A client's own large batch running out of time says nothing of the runner.
                self._set_status(UNAVAILABLE, str(e))
            raise ModelUnavailable(self.name, str(e), e.detail) from e
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
            raise ModelUnavailable(self.name, f"runner {e}", e.detail) from e

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
                    logger.warning("runner of %s at %s is not ready", self.name, self.client.base_url)
                    self._set_status(UNAVAILABLE, "runner is not ready")
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
            if self.status != UNAVAILABLE:
                logger.warning("probing the runner of %s failed: %s", self.name, e.detail)
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
        self._inflight.inc()
        try:
            return await self.batcher.submit(matrix)
        finally:
            self._inflight.dec()
