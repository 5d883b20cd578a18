"""ASGI middlewares of the runner: only the router may call it, and every error has one shape.

- :class:`RunnerTokenMiddleware` answers 401 to any call without the shared secret in
  ``X-WineMeUp-Runner-Token`` (compared in constant time). The probes (``/livez``,
  ``/healthz``, ``/readyz``) and ``/metrics`` answer without it: kubelets and Prometheus carry
  no secret, and they reveal nothing a caller could use to score or explain.
- :class:`ErrorBodyMiddleware` rewrites every error answer that is not already in the one
  body shape (:class:`winemeup.api.ErrorBody`): BentoML's pydantic validation errors (which
  carry pydantic documentation URLs), Starlette's plain-text 404/405, BentoML's list-wrapped
  errors and any unhandled exception, so a client reads
  ``{"error": str, "code": str, "details": [{"field", "problem"}]}`` from every route.

Plain ASGI, no web framework: BentoML adds them with ``Service.add_asgi_middleware``.
"""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import orjson

from winemeup.errors import ServiceError, Unauthenticated
from winemeup.schema import FieldError

logger = logging.getLogger(__name__)

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[..., Awaitable[None]]

TOKEN_HEADER = "X-WineMeUp-Runner-Token"
"""Header carrying the shared secret on every router -> runner call."""

OPEN_PATHS = frozenset({"/livez", "/healthz", "/readyz", "/metrics"})
"""Paths answered without the token: probes and metrics."""

INTERNAL_ERROR = "internal error of the runner (its log has the details)"
_TOKEN_KEY = TOKEN_HEADER.lower().encode()
_CODES = {400: "malformed_request", 401: "unauthenticated", 404: "not_found", 405: "method_not_allowed",
          413: "payload_too_large", 415: "unsupported_media_type", 422: "validation_error",
          429: "too_many_requests", 503: "not_ready"}  # fmt: skip


async def send_error(send: Send, error: ServiceError) -> None:
    """Answer ``error`` in the one body shape, with its headers."""
    payload = orjson.dumps(error.body())
    await send(
        {
            "type": "http.response.start",
            "status": error.status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
                *error.headers(),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})


def token_error(scope: Scope, token: bytes) -> Unauthenticated | None:
    """The 401 of a request whose ``X-WineMeUp-Runner-Token`` is not exactly once ``token``
    (compared in constant time); None when it is."""
    given = [value for key, value in scope["headers"] if key == _TOKEN_KEY]
    if len(given) == 1 and hmac.compare_digest(given[0], token):
        return None
    reason = "missing" if not given else "given twice" if len(given) > 1 else "not the runner's token"
    return Unauthenticated(
        f"this runner answers only the router: {TOKEN_HEADER} {reason}", [FieldError(TOKEN_HEADER, reason)]
    )


class RunnerTokenMiddleware:
    """401 for every call but the probes and /metrics unless it carries the shared secret."""

    def __init__(self, app: ASGIApp, token: str | None) -> None:
        self.app = app
        self._token = token.encode() if token else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._token is None or scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        refused = token_error(scope, self._token)
        if refused is not None:
            await send_error(send, refused)
            return
        await self.app(scope, receive, send)


BINARY_PREDICT_PATH = "/binary/predict"
"""The router's route for misses, answered by :class:`BinaryRouteMiddleware`."""


class BinaryRouteMetricsSink(Protocol):
    """Where :class:`BinaryRouteMiddleware` counts its answers (:mod:`services.runner.binary_metrics`)."""

    def observe(self, status: int, seconds: float) -> None: ...


class BinaryRouteMiddleware:
    """Answers ``POST /binary/predict`` itself, ahead of BentoML's middleware stack; every other
    request goes to ``app`` (BentoML's whole app) unchanged.

    The router calls this route for every miss. Profiled on a runner under 4 connections of
    misses, BentoML's stack around it (request context, OpenTelemetry, traffic metrics, timeout,
    Starlette's routing and exception layers, and the two middlewares above) took about 40 % of
    the worker's samples, several times the model. This keeps what the route needs: the shared
    secret (constant-time, the same 401), the one error body shape (an unhandled exception is
    the same 500 as :class:`ErrorBodyMiddleware` answers), and a count by status and a latency
    (``metrics``), since BentoML's request metrics no longer see the route. ``predict``
    answers a request in the one error shape whatever fails, and returns the status it sent
    (:meth:`services.runner.binary.BinaryPredictApp.answer`). BentoML's request timeout does
    not apply: the model call runs on the event loop and no timer could interrupt it anyway.
    """

    def __init__(
        self,
        app: ASGIApp,
        predict: Callable[[Scope, Receive, Send], Awaitable[int]],
        token: str | None,
        metrics: BinaryRouteMetricsSink,
    ) -> None:
        self.app = app
        self.predict = predict
        self.metrics = metrics
        self._token = token.encode() if token else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != BINARY_PREDICT_PATH:
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the server answers if the exception below escapes
        try:
            if self._token is not None and (refused := token_error(scope, self._token)) is not None:
                await send_error(send, refused)
                status = refused.status
            else:
                status = await self.predict(scope, receive, send)
        finally:
            self.metrics.observe(status, time.perf_counter() - started)


def _field(location: Any) -> str:
    """``("rows", 0, 3)`` -> ``rows[0][3]``; ``("features", "ph")`` -> ``features.ph``."""
    out = ""
    for part in location if isinstance(location, list | tuple) else [location]:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "body"


def normalise_error(status: int, body: bytes) -> dict[str, Any]:
    """The one error body for an error answer ``body`` of any shape the runner's stack produces."""
    try:
        doc = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        doc = None
    if isinstance(doc, list) and len(doc) == 1:  # BentoML wraps some errors in a list
        doc = doc[0]
    code = _CODES.get(status, "internal_error" if status >= 500 else "client_error")
    if isinstance(doc, dict) and isinstance(doc.get("error"), str) and isinstance(doc.get("code"), str):
        return {"error": doc["error"], "code": doc["code"], "details": doc.get("details") or []}
    if isinstance(doc, dict) and isinstance(doc.get("detail"), list):  # pydantic, via BentoML
        details = [
            {"field": _field(e.get("loc", ())), "problem": str(e.get("msg", "invalid"))}
            for e in doc["detail"]
            if isinstance(e, dict)
        ]
        shown = "; ".join(f"{d['field']}: {d['problem']}" for d in details[:5])
        count = len(details)
        return {
            "error": f"{count} invalid field{'s' if count != 1 else ''}: {shown}",
            "code": "validation_error",
            "details": details,
        }
    if status >= 500 and status != 503:
        message = INTERNAL_ERROR
    elif isinstance(doc, dict) and isinstance(doc.get("error") or doc.get("detail"), str):
        message = doc.get("error") or doc["detail"]
    else:
        text = body.decode("utf-8", "replace").strip()
        message = text[:200] if text else f"HTTP {status}"
    return {"error": message, "code": code, "details": []}


class ErrorBodyMiddleware:
    """Rewrites every 4xx/5xx answer into the one error body shape (see the module docstring)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start: Message | None = None
        started = False
        chunks: list[bytes] = []

        async def capture(message: Message) -> None:
            nonlocal start, started
            if message["type"] == "http.response.start":
                started = True
                if message["status"] < 400:
                    await send(message)
                else:
                    start = message
                return
            if message["type"] != "http.response.body" or start is None:
                await send(message)
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body", False):
                return
            payload = orjson.dumps(normalise_error(start["status"], b"".join(chunks)))
            kept = [(k, v) for k, v in start.get("headers", []) if k.lower() not in _REPLACED]
            headers = [
                *kept,
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
            ]
            await send({"type": "http.response.start", "status": start["status"], "headers": headers})
            await send({"type": "http.response.body", "body": payload})

        try:
            await self.app(scope, receive, capture)
        except Exception:
            logger.exception("unhandled error on %s %s", scope.get("method"), scope.get("path"))
            if started:
                raise
            await send_error(send, ServiceError(INTERNAL_ERROR))


_REPLACED = frozenset({b"content-type", b"content-length"})
