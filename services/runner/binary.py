"""The runner's binary predict route, a plain ASGI app beside the BentoML API.

Mounted at ``/binary``, and called directly by
:class:`services.runner.middleware.BinaryRouteMiddleware` ahead of BentoML's middleware stack.

``POST /binary/predict`` takes little-endian float64 rows (12 values each, schema order) and
answers their float64 scores, with the model version in ``X-Model-Version``. The router calls
it for every miss. Why beside BentoML's typed ``/predict``: measured here with one wrk thread
and 4 connections on one-row LightGBM predictions, the typed JSON route answered 634-712
requests/s (p50 4.5-6.0 ms) and this route 976-1,481 requests/s (p50 2.3-3.2 ms) in the same
process: BentoML's per-request IO descriptors and pydantic validation cost more than the
model. Errors are the runner's usual JSON body (:mod:`services.runner.errors`).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from services.runner.core import ModelServer
from services.runner.errors import BatchTooLargeError, ModelNotLoadedError
from services.runner.middleware import INTERNAL_ERROR
from winemeup.errors import MethodNotAllowed, RouteNotFound, ServiceError

logger = logging.getLogger(__name__)

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


class BinaryPredictApp:
    """ASGI app: ``POST /predict`` with binary rows, answered by the runner's ``ModelServer``."""

    def __init__(self, max_body_bytes: int) -> None:
        self.server: ModelServer | None = None
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        await self.answer(scope, receive, send)

    async def answer(self, scope: Scope, receive: Receive, send: Send) -> int:
        """Answer one HTTP request; the status sent (its metrics count it by status)."""
        try:
            if scope["path"].rstrip("/").rsplit("/", 1)[-1] != "predict":
                raise RouteNotFound("POST /binary/predict only")
            if scope["method"] != "POST":
                raise MethodNotAllowed("POST /binary/predict only", ["POST"])
            body = await self._body(receive)
            if self.server is None:
                raise ModelNotLoadedError("the runner is starting")
            scores, version = self.server.predict_binary(body)
        except ServiceError as e:
            await _json(send, e.status, e.body(), e.headers())
            return e.status
        except Exception:
            # Answered here, not by ErrorBodyMiddleware: this app also serves ahead of it.
            logger.exception("unhandled error on %s %s", scope["method"], scope["path"])
            await _json(send, 500, ServiceError(INTERNAL_ERROR).body())
            return 500
        headers = [
            (b"content-type", b"application/octet-stream"),
            (b"content-length", str(len(scores)).encode()),
            (b"x-model-version", version.encode()),
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": scores})
        return 200

    async def _body(self, receive: Receive) -> bytes:
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                raise BatchTooLargeError(f"body larger than {self.max_body_bytes} bytes (batch_max_rows)")
            chunks.append(chunk)
            more = message.get("more_body", False)
        return b"".join(chunks)


async def _json(
    send: Send, status: int, body: dict[str, Any], extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    payload = orjson.dumps(body)
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(payload)).encode()),
        *(extra or []),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})
